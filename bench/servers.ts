/**
 * The servers of the throughput benchmark, as child processes on 127.0.0.1:
 * startup-lock (this checkout's, or another's) in one of its modes, and the
 * bare `Deno.serve` baseline of `bare_server.ts`. Process handling is shared
 * with the other benchmarks (`process.ts`).
 *
 * The modes follow the rule of the benchmarks: what users run first, then
 * variants, each named by what differs. `deny` and `acquire` run with the
 * default flags (the default log level and format, metrics on as always);
 * the variants of `acquire` change one thing each.
 *
 * @module
 */
import { SCRATCH_DIR } from "./_scratch.ts";
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
export type LockMode =
  | "deny"
  | "acquire"
  | "acquire-warn"
  | "acquire-json"
  | "acquire-state"
  | "acquire-scraped";

/** The modes in the order of the tables: the default flags first, then the variants. */
export const LOCK_MODES: readonly LockMode[] = [
  "deny",
  "acquire",
  "acquire-warn",
  "acquire-json",
  "acquire-state",
  "acquire-scraped",
];

/** The modes with the default flags, as users run startup-lock: the rows held to targets. */
export const DEFAULT_MODES: readonly LockMode[] = ["deny", "acquire"];

/**
 * The modes a baseline checkout runs too: the default flags, and `--logLevel
 * warn`, which any version has, so that the cost of logging before and after
 * a change is measured in the same run.
 */
export const BASELINE_MODES: readonly LockMode[] = [...DEFAULT_MODES, "acquire-warn"];

/** Where the `--stateFile` variant keeps its locks (the benchmark may not write, the server may). */
export const BENCH_STATE_FILE = `${SCRATCH_DIR}/state.json`;

/** How often the scraped variant fetches `/metrics`, a busy Prometheus's pace. */
export const SCRAPE_INTERVAL_MS = 1_000;

/**
 * A `--stateFile` round runs this many times as long as the others: its
 * throughput depends on how many locks each write holds, which takes the
 * first second of a round (the locks' duration) to settle.
 */
export const STATE_FILE_LENGTH_FACTOR = 2;

/** What a mode is and how it is measured. */
export interface ModeSpec {
  /** Its name in the tables, after the program's name. */
  label: string;
  /** The flags, after `--host 127.0.0.1 --port PORT`. */
  flags: readonly string[];
  /** `GET /metrics` every this many milliseconds while measured. */
  scrapeEveryMs?: number;
  /** Each round runs this many times as long as the others. @default {1} */
  lengthFactor?: number;
  /**
   * A pause after each run, before the next server's: the locks granted at
   * the end of a run expire (and are logged) during the following second,
   * and must not take the CPU from the next server's run. @default {0}
   */
  settleMs?: number;
}

/** How long the acquire modes' locks are held: their `--timeout 1s`. */
const LOCK_MS = 1_000;

/** The pause after an acquire run: its last locks' duration, and a little for their log lines. */
export const SETTLE_MS = LOCK_MS + 100;

// A million slots that expire after 1 s never run out: almost every request is a 200.
const ACQUIRE = ["--locks", "1000000", "--timeout", "1s"];

/** Each mode: its label and flags. */
export const MODES: Record<LockMode, ModeSpec> = {
  // One slot, taken before the run: every request is a 423 (refusals are logged at debug only).
  deny: { label: "deny (423)", flags: ["--locks", "1", "--timeout", "1h"] },
  // The default level and format: a "Lock granted" line per request, and one when it expires.
  acquire: { label: "acquire (200)", flags: ACQUIRE, settleMs: SETTLE_MS },
  // No line per request: the baseline of the cost of logging.
  "acquire-warn": {
    label: "acquire, --logLevel warn (200)",
    flags: [...ACQUIRE, "--logLevel", "warn"],
    settleMs: SETTLE_MS,
  },
  "acquire-json": {
    label: "acquire, --logFormat json (200)",
    flags: [...ACQUIRE, "--logFormat", "json"],
    settleMs: SETTLE_MS,
  },
  // Every grant on disk before its 200 (group commit), at the default level.
  "acquire-state": {
    label: "acquire, --stateFile (200)",
    flags: [...ACQUIRE, "--stateFile", BENCH_STATE_FILE],
    lengthFactor: STATE_FILE_LENGTH_FACTOR,
    settleMs: SETTLE_MS,
  },
  // Metrics are always on; this is the same server while a Prometheus scrapes it.
  "acquire-scraped": {
    label: `acquire, /metrics scraped every ${SCRAPE_INTERVAL_MS / 1000} s (200)`,
    flags: ACQUIRE,
    scrapeEveryMs: SCRAPE_INTERVAL_MS,
    settleMs: SETTLE_MS,
  },
};

const BARE_SERVER = new URL("bare_server.ts", import.meta.url).pathname;

/** Starts `program` in `mode` and waits until it answers. */
export async function startLockServer(program: Program, mode: LockMode): Promise<BenchServer> {
  const server = await launchLockServer(program, MODES[mode].flags);
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
