/**
 * The servers of the throughput benchmark, as child processes on 127.0.0.1:
 * startup-lock (this checkout's, or another's) in one of two modes, and the bare `Deno.serve` baseline of
 * `bare_server.ts`. Process handling is shared with the other benchmarks
 * (`process.ts`).
 *
 * @module
 */
import { launchLockServer, spawnChild } from "./process.ts";
import type { Program } from "./program.ts";

/** A server under test, running in a child process. */
export interface BenchServer {
  /** `http://127.0.0.1:PORT/` */
  url: string;
  /** Sends SIGTERM, then SIGKILL if the process has not exited within 10 s. */
  stop(): Promise<void>;
}

/** How startup-lock is run. */
export type LockMode = "deny" | "acquire" | "acquire-logged" | "acquire-json" | "acquire-state";

/** Where the state-file variant keeps its locks (the benchmark may not write, the server may). */
export const BENCH_STATE_FILE = `/tmp/startup-lock-bench-${Deno.pid}.json`;

/** The flags of each mode, after `--host 127.0.0.1 --port PORT`. */
export const MODE_FLAGS: Record<LockMode, readonly string[]> = {
  // One slot, taken before the run: every request is a 423.
  deny: ["--locks", "1", "--timeout", "1h", "--logLevel", "warn"],
  // Slots expire after 1 s and never run out: almost every request is a 200.
  acquire: ["--locks", "1000000", "--timeout", "1s", "--logLevel", "warn"],
  // The same at the default log level and format: a "Lock granted" line per request.
  "acquire-logged": ["--locks", "1000000", "--timeout", "1s"],
  // The same with JSON lines.
  "acquire-json": ["--locks", "1000000", "--timeout", "1s", "--logFormat", "json"],
  // The acquire mode with every grant on disk before its 200 (--stateFile, group commit).
  "acquire-state": [
    "--locks",
    "1000000",
    "--timeout",
    "1s",
    "--logLevel",
    "warn",
    "--stateFile",
    BENCH_STATE_FILE,
  ],
};

const BARE_SERVER = new URL("bare_server.ts", import.meta.url).pathname;

/** Starts `program` in `mode` and waits until it answers. */
export async function startLockServer(program: Program, mode: LockMode): Promise<BenchServer> {
  const server = await launchLockServer(program, MODE_FLAGS[mode]);
  try {
    if (mode === "deny") await takeOnlySlot(server.url);
  } catch (error) {
    await server.stop();
    throw error;
  }
  return { url: server.url, stop: server.stop };
}

/**
 * Starts `bare_server.ts` and reads its port from its first line of output;
 * `readRequest` makes it read the URL, method and `Accept` header first.
 */
export async function startBareServer(readRequest = false): Promise<BenchServer> {
  const flags = readRequest ? ["--read-request"] : [];
  const child = spawnChild(Deno.execPath(), [
    "run",
    "--quiet",
    "--allow-net",
    BARE_SERVER,
    ...flags,
  ]);
  try {
    const line = await child.waitForLine(/^\d+$/);
    return { url: `http://127.0.0.1:${line}/`, stop: child.stop };
  } catch (error) {
    await child.stop();
    throw error;
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
