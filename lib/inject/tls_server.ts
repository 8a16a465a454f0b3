/**
 * An HTTPS server whose certificate can change under it: cert-manager renews
 * the webhook's certificate in a Secret, the kubelet swaps the files of the
 * Secret volume, and new connections must see the new certificate without a
 * restart of the pod.
 *
 * `Deno.serve` takes its certificate once, and binding a second TLS listener
 * to the same port (`reusePort`) needs `--unstable-net`. So the server reads
 * the two files every few seconds; when they changed and make a valid pair,
 * it closes the listener (in-flight requests finish on their connections) and
 * listens again on the same port with the new pair. Between the two, for a
 * few milliseconds, a new connection is refused: with `failurePolicy: Ignore`
 * a pod admitted then goes in without the lock, once per rotation at most.
 * A pair that is not valid (the files are swapped one at a time, or broken)
 * is reported and the old one kept.
 *
 * @module
 */
import { describeError } from "../errors.ts";

/** How long to keep trying to listen again after closing the old listener: it frees the port in milliseconds. */
export const REBIND_TIMEOUT_MS = 5_000;
/** The pause between tries to listen again. */
const REBIND_RETRY_MS = 5;

/** A certificate chain and its key, in PEM. */
export interface TlsPair {
  cert: string;
  key: string;
}

/** Options of {@linkcode serveTlsReloading}. */
export interface ReloadingServerOptions {
  hostname: string;
  /** `0` picks a free port, kept across reloads. */
  port: number;
  certFile: string;
  keyFile: string;
  /** How often to read the files again. */
  checkIntervalMs: number;
  handler: (request: Request) => Response | Promise<Response>;
  /** Called after the new pair serves. @default {nothing} */
  onReload?: () => void;
  /**
   * Called once per pair that cannot serve, which is not used, and once per reason the files
   * cannot be read, until they can. @default {nothing}
   */
  onReloadError?: (error: unknown) => void;
}

/** A running server. */
export interface ReloadingServer extends AsyncDisposable {
  /** Where it listens. */
  readonly addr: Deno.NetAddr;
  /** Rejects when the server cannot listen again after a reload: the process should exit. */
  readonly failed: Promise<never>;
  /**
   * Reads the files now, and serves them when they changed and are valid.
   * Resolves to whether a new pair now serves.
   */
  check(): Promise<boolean>;
  /** Stops listening, lets in-flight requests finish, stops reading the files. */
  shutdown(): Promise<void>;
}

/**
 * Reads the pair and starts serving it.
 *
 * @throws when a file cannot be read or the pair is not valid, or the address cannot be bound
 */
export async function serveTlsReloading(options: ReloadingServerOptions): Promise<ReloadingServer> {
  const { hostname, handler } = options;
  let pair = await readPair(options);
  const listen = (port: number) =>
    Deno.serve({ hostname, port, ...pair, onListen: () => {} }, handler);
  let server = listen(options.port);
  const addr = server.addr;
  let rejected: string | undefined;
  let checking: Promise<boolean> | undefined;
  let closed = false;
  let fail: (error: unknown) => void = () => {};
  const failed = new Promise<never>((_, reject) => fail = reject);
  failed.catch(() => {}); // read by the caller; never an unhandled rejection

  const swap = async (next: TlsPair): Promise<boolean> => {
    validatePair(next);
    const old = server;
    const draining = old.shutdown();
    const deadline = performance.now() + REBIND_TIMEOUT_MS;
    for (;;) {
      try {
        pair = next;
        server = listen(addr.port);
        break;
      } catch (error) {
        if (!(error instanceof Deno.errors.AddrInUse) || performance.now() > deadline) {
          fail(new Error(`Cannot listen again on port ${addr.port}: ${describeError(error)}`));
          throw error;
        }
        await new Promise((resolve) => setTimeout(resolve, REBIND_RETRY_MS));
      }
    }
    await draining;
    return true;
  };

  /** Why the files could not be read at the last check, once told; until they can be. */
  let unreadable: string | undefined;
  const check = (): Promise<boolean> => {
    checking ??= (async () => {
      try {
        if (closed) return false;
        const next = await readPair(options);
        unreadable = undefined;
        const text = next.cert + next.key;
        if (text === pair.cert + pair.key || text === rejected) return false;
        try {
          await swap(next);
        } catch (error) {
          rejected = text;
          options.onReloadError?.(error);
          return false;
        }
        rejected = undefined;
        options.onReload?.();
        return true;
      } catch (error) {
        // A file missing for a moment while the kubelet swaps the volume's files; told once, not
        // at every check, until the files can be read again.
        const reason = describeError(error);
        if (reason !== unreadable) options.onReloadError?.(error);
        unreadable = reason;
        return false;
      } finally {
        checking = undefined;
      }
    })();
    return checking;
  };

  const timer = setInterval(check, options.checkIntervalMs);
  const shutdown = async () => {
    if (closed) return;
    closed = true;
    clearInterval(timer);
    await checking;
    await server.shutdown();
  };
  return { addr, failed, check, shutdown, [Symbol.asyncDispose]: shutdown };
}

async function readPair(options: { certFile: string; keyFile: string }): Promise<TlsPair> {
  const [cert, key] = await Promise.all([
    Deno.readTextFile(options.certFile),
    Deno.readTextFile(options.keyFile),
  ]);
  return { cert, key };
}

/**
 * Throws unless `pair` is a certificate and its key: a TLS listener refuses a
 * mismatched pair, so open one on a free loopback port and close it again,
 * before the working listener is closed for the swap.
 */
function validatePair(pair: TlsPair): void {
  Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...pair }).close();
}
