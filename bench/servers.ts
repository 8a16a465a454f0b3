/**
 * Starts the servers under test as child processes on 127.0.0.1: startup-lock
 * (through `programCommand()`, the way the black-box tests run it) and the bare
 * `Deno.serve` baseline of `bare_server.ts`.
 *
 * @module
 */
import { programCommand } from "../tests/_program.ts";

/** A server under test, running in a child process. */
export interface BenchServer {
  /** `http://127.0.0.1:PORT/` */
  url: string;
  /** Sends SIGTERM, then SIGKILL if the process has not exited within 10 s. */
  stop(): Promise<void>;
}

/** How startup-lock is run. */
export type LockMode = "deny" | "acquire";

/** The flags of each mode, after `--host 127.0.0.1 --port PORT`. */
export const MODE_FLAGS: Record<LockMode, readonly string[]> = {
  // One slot, taken before the run: every request is a 423.
  deny: ["--locks", "1", "--timeout", "1h", "--logLevel", "warn"],
  // Slots expire after 1 s and never run out: almost every request is a 200.
  acquire: ["--locks", "1000000", "--timeout", "1s", "--logLevel", "warn"],
};

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;
const BARE_SERVER = new URL("bare_server.ts", import.meta.url).pathname;

/**
 * Starts startup-lock in `mode` and waits until it answers. At `--logLevel warn`
 * it does not log its `Listening on` line, so the port is picked here.
 */
export async function startLockServer(mode: LockMode): Promise<BenchServer> {
  const { command, args } = programCommand();
  const port = freePort();
  const child = spawn(command, [
    ...args,
    ...["--host", "127.0.0.1", "--port", String(port)],
    ...MODE_FLAGS[mode],
  ]);
  const url = `http://127.0.0.1:${port}/`;
  try {
    await waitUntilServing(child, url);
    if (mode === "deny") await takeOnlySlot(url);
  } catch (error) {
    await child.stop();
    throw error;
  }
  return { url, stop: child.stop };
}

/** Starts `bare_server.ts` and reads its port from its first line of output. */
export async function startBareServer(): Promise<BenchServer> {
  const child = spawn(Deno.execPath(), ["run", "--quiet", "--allow-net", BARE_SERVER]);
  try {
    const line = await child.waitForLine(/^\d+$/);
    return { url: `http://127.0.0.1:${line}/`, stop: child.stop };
  } catch (error) {
    await child.stop();
    throw error;
  }
}

interface Child {
  stop(): Promise<void>;
  /** Resolves with the first output line matching `pattern`. */
  waitForLine(pattern: RegExp): Promise<string>;
  /** Whether the process has exited. */
  exited(): boolean;
  /** Everything it printed so far. */
  output(): string;
}

function spawn(command: string, args: string[]): Child {
  const process = new Deno.Command(command, {
    args,
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
  const waitForLine = async (pattern: RegExp) => {
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    for (;;) {
      const line = lines.find((l) => pattern.test(l));
      if (line !== undefined) return line;
      if (exited || Date.now() > deadline) throw startError(command, lines);
      await delay(20);
    }
  };
  return { stop, waitForLine, exited: () => exited, output: () => lines.join("\n") };
}

/** The environment without the program's own `STARTUP_LOCK_*` variables. */
function childEnv(): Record<string, string> {
  const env = Object.entries(Deno.env.toObject()).filter(([k]) => !k.startsWith("STARTUP_LOCK_"));
  return { ...Object.fromEntries(env), NO_COLOR: "1" };
}

async function collect(stream: ReadableStream<Uint8Array>, lines: string[]): Promise<void> {
  let buffer = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    const parts = buffer.split("\n");
    buffer = parts.pop() ?? "";
    lines.push(...parts);
  }
  if (buffer) lines.push(buffer);
}

function signal(process: Deno.ChildProcess, name: Deno.Signal): void {
  try {
    process.kill(name);
  } catch { /* already gone */ }
}

/** A port of 127.0.0.1 that was free a moment ago. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

async function waitUntilServing(child: Child, url: string): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (child.exited() || Date.now() > deadline) throw startError(url, [child.output()]);
    try {
      const response = await fetch(new URL("healthz", url));
      await response.body?.cancel();
      if (response.ok) return;
    } catch { /* not listening yet */ }
    await delay(50);
  }
}

/** Takes the server's only slot, then checks that the next request is refused. */
async function takeOnlySlot(url: string): Promise<void> {
  for (const expected of [200, 423]) {
    const response = await fetch(url);
    await response.body?.cancel();
    if (response.status !== expected) {
      throw new Error(`Expected ${expected} from ${url} in deny mode, got ${response.status}`);
    }
  }
}

function startError(what: string, lines: string[]): Error {
  return new Error(`${what} did not start within ${STARTUP_TIMEOUT_MS} ms:\n${lines.join("\n")}`);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
