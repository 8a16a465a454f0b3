/**
 * Child processes of the benchmarks: startup-lock started with any flags (a
 * {@linkcode Program} of `program.ts`), and helper scripts. Either may run with the open-file limit raised to
 * the hard limit, since every waiting client is a file descriptor.
 *
 * @module
 */
import type { Program } from "./program.ts";

/** A running child process. */
export interface ChildProcess {
  /** Its process id (the program itself, not a shell: the shell `exec`s it). */
  pid: number;
  /** Every line it printed so far, stdout and stderr together. */
  lines: string[];
  /** Whether it has exited. */
  exited(): boolean;
  /** Resolves with the first line matching `pattern`; rejects when it exits or after `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Sends SIGTERM, then SIGKILL if it has not exited within 10 s. */
  stop(): Promise<void>;
}

/** A startup-lock server in a child process. */
export interface LockProcess extends ChildProcess {
  /** `http://127.0.0.1:PORT/` */
  url: string;
}

/** Options of {@linkcode spawnChild} and {@linkcode launchLockServer}. */
export interface SpawnOptions {
  /** Raise the open-file limit to the hard limit first (through `sh`). @default {false} */
  raiseFileLimit?: boolean;
}

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;
// `exec` keeps the pid: the shell becomes the program.
const RAISE_FILE_LIMIT = 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"';

/**
 * Starts `program` on a free port of 127.0.0.1 with `flags` and waits until
 * `/healthz` answers. Its `Listening on` line may never come (`--logLevel warn`), so
 * the port is picked here.
 */
export async function launchLockServer(
  program: Program,
  flags: readonly string[],
  options: SpawnOptions = {},
): Promise<LockProcess> {
  const { command, args } = program;
  const port = freePort();
  const child = spawnChild(
    command,
    [...args, "--host", "127.0.0.1", "--port", String(port), ...flags],
    options,
  );
  const url = `http://127.0.0.1:${port}/`;
  try {
    await waitUntilServing(child, url);
  } catch (error) {
    await child.stop();
    throw error;
  }
  return { ...child, url };
}

/** Starts `command` with its output collected into lines. */
export function spawnChild(
  command: string,
  args: readonly string[],
  options: SpawnOptions = {},
): ChildProcess {
  const raise = options.raiseFileLimit ?? false;
  const process = new Deno.Command(raise ? "sh" : command, {
    args: raise ? ["-c", RAISE_FILE_LIMIT, command, ...args] : [...args],
    env: childEnv(),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let exited = false;
  const status = process.status.finally(() => exited = true);
  const reading = Promise.all([collect(process.stdout, lines), collect(process.stderr, lines)]);
  const stop = async () => {
    if (!exited) signal(process, "SIGTERM");
    const timer = setTimeout(() => signal(process, "SIGKILL"), STOP_TIMEOUT_MS);
    await status;
    clearTimeout(timer);
    await reading;
  };
  const waitForLine = async (pattern: RegExp, timeoutMs = STARTUP_TIMEOUT_MS) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = lines.find((l) => pattern.test(l));
      if (line !== undefined) return line;
      if (exited || Date.now() > deadline) {
        throw new Error(
          `${command} printed no line matching ${pattern}` +
            `${exited ? " before exiting" : ` within ${timeoutMs} ms`}:\n${lines.join("\n")}`,
        );
      }
      await delay(20);
    }
  };
  return { pid: process.pid, lines, exited: () => exited, waitForLine, stop };
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The environment without the program's own `STARTUP_LOCK_*` variables. */
function childEnv(): Record<string, string> {
  const env = Object.entries(Deno.env.toObject()).filter(([k]) => !k.startsWith("STARTUP_LOCK_"));
  return { ...Object.fromEntries(env), NO_COLOR: "1" };
}

/**
 * The most lines kept of a child's output: enough for its start and its
 * errors. A server logging a line per request under wrk prints millions; the
 * rest is read and let go, as a log shipper would, so that keeping them does
 * not burden the benchmark's own process, which shares the CPUs.
 */
const MAX_KEPT_LINES = 10_000;

async function collect(stream: ReadableStream<Uint8Array>, lines: string[]): Promise<void> {
  let buffer = "";
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    if (lines.length >= MAX_KEPT_LINES) continue;
    buffer += decoder.decode(chunk, { stream: true });
    const parts = buffer.split("\n");
    buffer = parts.pop() ?? "";
    lines.push(...parts.slice(0, MAX_KEPT_LINES - lines.length));
  }
  if (buffer && lines.length < MAX_KEPT_LINES) lines.push(buffer);
}

function signal(process: Deno.ChildProcess, name: Deno.Signal): void {
  try {
    process.kill(name);
  } catch { /* already gone */ }
}

/** A port of 127.0.0.1 that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

async function waitUntilServing(child: ChildProcess, url: string): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (child.exited() || Date.now() > deadline) {
      throw new Error(
        `startup-lock did not answer on ${url} within ${STARTUP_TIMEOUT_MS} ms:\n` +
          child.lines.join("\n"),
      );
    }
    try {
      const response = await fetch(new URL("healthz", url));
      await response.body?.cancel();
      if (response.ok) return;
    } catch { /* not listening yet */ }
    await delay(50);
  }
}
