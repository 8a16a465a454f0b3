/**
 * Helpers for the client's black-box tests: the client as a running child
 * process whose output can be awaited line by line, a stand-in for the
 * original server's protocol, and a free port.
 *
 * @module
 */
import { programCommand } from "./_program.ts";

/** A client process that runs in the background. */
export interface RunningClient extends AsyncDisposable {
  process: Deno.ChildProcess;
  /** Every stdout line so far. */
  stdout: string[];
  /** Every stderr line so far. */
  stderr: string[];
  /** Resolves with the first line on `stream` matching `pattern`; rejects when the process ends first or after `timeoutMs`. */
  waitForLine(stream: "stdout" | "stderr", pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code once the process has ended and its output is read. */
  exited(): Promise<number>;
  /** Sends a signal (if still running). */
  kill(signal?: Deno.Signal): void;
}

/** The environment of a client process: the program's own variables cleared, then `env`. */
function clientEnv(env: Record<string, string>): Record<string, string> {
  const base = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => !k.startsWith("STARTUP_LOCK_")),
  );
  return { ...base, NO_COLOR: "1", ...env };
}

/** Starts the program with `args` (a client command) in the background. */
export function startClient(args: string[], env: Record<string, string> = {}): RunningClient {
  const { command, args: lead } = programCommand();
  const process = new Deno.Command(command, {
    args: [...lead, ...args],
    env: clientEnv(env),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = { stdout: [] as string[], stderr: [] as string[] };
  const waiters = new Set<() => void>();
  const wake = () => waiters.forEach((w) => w());
  const collect = async (stream: ReadableStream<Uint8Array>, into: string[]) => {
    let buffer = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      const parts = buffer.split("\n");
      buffer = parts.pop() ?? "";
      into.push(...parts);
      wake();
    }
    if (buffer) into.push(buffer);
  };
  const reading = Promise.all([
    collect(process.stdout, lines.stdout),
    collect(process.stderr, lines.stderr),
  ]);
  let ended = false;
  const status = (async () => {
    const { code } = await process.status;
    await reading;
    ended = true;
    wake();
    return code;
  })();
  const output = () => `stdout:\n${lines.stdout.join("\n")}\nstderr:\n${lines.stderr.join("\n")}`;

  const waitForLine = (stream: "stdout" | "stderr", pattern: RegExp, timeoutMs = 20_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const line = lines[stream].find((l) => pattern.test(l));
        if (line !== undefined) settle(() => resolve(line));
        else if (ended) {
          settle(() =>
            reject(new Error(`Exited before ${stream} matched ${pattern}:\n${output()}`))
          );
        }
      };
      const timer = setTimeout(
        () => settle(() => reject(new Error(`No ${pattern} within ${timeoutMs} ms:\n${output()}`))),
        timeoutMs,
      );
      const settle = (fn: () => void) => {
        clearTimeout(timer);
        waiters.delete(check);
        fn();
      };
      waiters.add(check);
      check();
    });

  const kill = (signal: Deno.Signal = "SIGTERM") => {
    if (ended) return;
    try {
      process.kill(signal);
    } catch { /* already gone */ }
  };

  return {
    process,
    ...lines,
    waitForLine,
    exited: () => status,
    kill,
    async [Symbol.asyncDispose]() {
      kill("SIGKILL");
      await status;
    },
  };
}

/** A stand-in server that records every request. */
export interface StandIn extends AsyncDisposable {
  url: string;
  /** The URL of every request, in order. */
  requests: URL[];
  /** The method of every request, in order. */
  methods: string[];
}

/** Serves `respond` on a free port of 127.0.0.1, recording every request. */
export function startStandIn(
  respond: (request: Request, index: number) => Response | Promise<Response>,
): StandIn {
  const requests: URL[] = [];
  const methods: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    requests.push(new URL(request.url));
    methods.push(request.method);
    return respond(request, requests.length - 1);
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    requests,
    methods,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

/**
 * A stand-in for the original server: every request, whatever its method and
 * path (as the original's handler on "/" does), answers 423 (plain text)
 * `lockedFor` times, then 200.
 */
export function startOriginalServer(lockedFor: number): StandIn {
  return startStandIn((_request, index) =>
    index < lockedFor
      ? new Response("Locked", { status: 423 })
      : new Response("Lock acquired", { status: 200 })
  );
}

/** A port nothing listens on (free at the time of the call). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** A 22-character base64url lock token. */
export const TOKEN = /^[A-Za-z0-9_-]{22}$/;
