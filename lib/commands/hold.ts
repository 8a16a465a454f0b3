/**
 * `startup-lock hold`: the client as a Kubernetes native sidecar (an init
 * container with `restartPolicy: Always`). The kubelet starts the app only
 * once the sidecar's startupProbe passes, so `GET /acquired` answers 503 until
 * the lock is held and 200 from then on. The lock is released once the app's
 * ready URL answers 2xx (or, for `tcp://HOST:PORT`, accepts a connection);
 * then the sidecar idles until the pod stops.
 *
 * @module
 */
import {
  type Command,
  type Env,
  type FlagSpec,
  HELP_FLAG,
  type Parsed,
  parseFlags,
  parseInteger,
  Reader,
  renderUsage,
} from "../args.ts";
import { aborted } from "../client/_time.ts";
import { acquireLock, type AcquireOptions, releaseHeldLock } from "../client/lock.ts";
import { note, onStopSignals, type StopSignal } from "../client/output.ts";
import { type ReadyOptions, releaseWhenReady } from "../client/ready.ts";
import { describeError, UsageError } from "../errors.ts";
import { EXIT } from "../exit.ts";
import { ACQUIRE_FLAGS, readAcquire, reportFailure } from "./acquire.ts";
import { readReady, READY_INTERVAL_FLAG, READY_URL_FLAG } from "./_client.ts";

/** Where `hold` answers its probes: next to the server's 8888, on every interface so the kubelet reaches it. */
export const DEFAULT_LISTEN = "0.0.0.0:8889";

/** What `hold` needs. */
export interface HoldOptions extends ReadyOptions {
  acquire: AcquireOptions;
  readyUrl: URL;
  listen: { hostname: string; port: number };
}

/** The flags of `hold`. */
export const HOLD_FLAGS: readonly FlagSpec[] = [
  ...ACQUIRE_FLAGS,
  { ...READY_URL_FLAG, description: READY_URL_FLAG.description + "; required" },
  READY_INTERVAL_FLAG,
  {
    name: "listen",
    kind: "value",
    valueName: "HOST:PORT",
    default: DEFAULT_LISTEN,
    description: "Where to answer GET /acquired (503, then 200 once the lock is held) and /healthz",
  },
  HELP_FLAG,
];

/** `HOST:PORT`, `[IPv6]:PORT`, or `:PORT` for every interface. */
export function parseListen(text: string): { hostname: string; port: number } {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/[\]]*):(\d+)$/.exec(text.trim());
  if (!match) throw new RangeError(`expected HOST:PORT such as ${DEFAULT_LISTEN} or [::]:8889`);
  const host = match[1]!.replace(/^\[(.*)\]$/, "$1");
  return { hostname: host || "0.0.0.0", port: parseInteger(match[2]!, 0, 65535) };
}

function parse(argv: readonly string[], env: Env): Parsed<HoldOptions> {
  const raw = parseFlags(argv, HOLD_FLAGS, env);
  if (raw.values.has("help")) return { action: "help" };
  const read = new Reader(raw);
  const acquire = readAcquire(read, env);
  const { readyUrl, readyIntervalMs } = readReady(read);
  if (!readyUrl) {
    throw new UsageError(
      "Missing --readyUrl URL (or STARTUP_LOCK_READY_URL): the app's readiness endpoint, " +
        "such as http://localhost:8080/ready (released once it answers 2xx) or " +
        "tcp://localhost:5432 (once it accepts a connection)",
    );
  }
  const listen = read.value("listen", parseListen(DEFAULT_LISTEN), parseListen);
  return { action: "run", options: { acquire, readyUrl, readyIntervalMs, listen } };
}

/**
 * The sidecar's own endpoints: `GET /acquired` (503 before the lock is held,
 * 200 after; it stays 200 once the lock is released, as a startupProbe needs)
 * and `GET /healthz` (200 while the process runs).
 */
export function createProbeHandler(isAcquired: () => boolean): (request: Request) => Response {
  return (request) => {
    const path = new URL(request.url).pathname;
    if (path !== "/acquired" && path !== "/healthz") return text(404, `Not found: ${path}\n`);
    if (request.method !== "GET" && request.method !== "HEAD") {
      return text(405, `Method ${request.method} is not allowed on ${path}\n`, {
        Allow: "GET, HEAD",
      });
    }
    if (path === "/healthz") return text(200, "OK\n");
    return isAcquired() ? text(200, "Lock acquired\n") : text(503, "Waiting for a lock\n");
  };
}

/** Returns the exit code. */
async function run(options: HoldOptions): Promise<number> {
  const stopping = new AbortController();
  let stopSignal: StopSignal | undefined;
  using _signals = onStopSignals((signal) => {
    stopSignal ??= signal;
    stopping.abort();
  });
  let acquired = false;
  const { hostname, port } = options.listen;
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname,
      port,
      onListen: (addr) =>
        note(
          `Listening on http://${formatHost(addr.hostname)}:${addr.port}/: ` +
            "GET /acquired answers 503 until the lock is held, then 200",
          "listening",
        ),
    }, createProbeHandler(() => acquired));
  } catch (error) {
    note(
      `Cannot listen on ${formatHost(hostname)}:${port} (--listen): ${describeError(error)}`,
      "listen_failed",
      "error",
    );
    return EXIT.FAILURE;
  }

  try {
    const result = await acquireLock(options.acquire, { signal: stopping.signal });
    if (result.kind === "timeout" || result.kind === "failed") {
      return reportFailure(result, options.acquire);
    }
    if (result.kind === "acquired") {
      acquired = true;
      const outcome = await releaseWhenReady(result.lock, options, stopping.signal);
      if (outcome === "stopped") await releaseHeldLock(result.lock, `received ${stopSignal}`);
      else note("Idling until SIGTERM or SIGINT", "idling");
    }
    await aborted(stopping.signal);
    note(`Received ${stopSignal}: stopping`, "stopped");
    return EXIT.OK;
  } finally {
    await server.shutdown();
  }
}

function formatHost(hostname: string): string {
  return hostname.includes(":") ? `[${hostname}]` : hostname;
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", ...headers },
  });
}

/** `startup-lock hold`: the sidecar; exits 0 on SIGTERM or SIGINT. */
export const holdCommand: Command<HoldOptions> = {
  name: "hold",
  flags: HOLD_FLAGS,
  usage: () =>
    renderUsage({
      synopsis: "startup-lock hold --server URL --readyUrl URL [FLAGS]",
      about: [
        "For a Kubernetes native sidecar: answers GET /acquired with 503 until the lock is",
        "held and 200 after (point the startupProbe at it), releases the lock once",
        "--readyUrl answers 2xx (a tcp://HOST:PORT: accepts a connection), then idles",
        "until SIGTERM or SIGINT and exits 0.",
      ],
      flags: HOLD_FLAGS,
    }),
  parse,
  run,
};
