/**
 * Memory: the resident set size of startup-lock idle, and with 10,000 clients
 * waiting on long-poll requests while one holder keeps the only slot.
 *
 * As a baseline, the same clients wait on `pending_server.ts`, a bare
 * `Deno.serve` handler that keeps their requests pending: what any server
 * built on `Deno.serve` pays per waiting client.
 *
 * The waiting clients come from two child processes running
 * `memory_clients.ts`, each with the open-file limit raised to the hard limit
 * (the server too: each waiting client is a socket on both sides). The RSS is
 * read from `/proc/PID/status` through `sh`, since Deno asks for `--allow-all`
 * to read `/proc`.
 *
 * @module
 */
import { atMost, type Figure, labelText } from "./figures.ts";
import { acquire, untilStatus } from "./lock_api.ts";
import { type ChildProcess, launchLockServer, spawnChild } from "./process.ts";
import type { Program } from "./program.ts";

/** The RSS with every client waiting should stay at or under this, in MB. */
export const MEMORY_TARGET_MB = 150;
/** How long a client asks to wait: longer than the measurement takes. */
const WAIT = "60s";
/** Client processes the waiting clients are split across. */
const CLIENT_PROCESSES = 2;
/** How long the clients may take to be queued, in ms. */
const QUEUE_TIMEOUT_MS = 45_000;
const CLIENTS = new URL("memory_clients.ts", import.meta.url).pathname;
const PENDING_SERVER = new URL("pending_server.ts", import.meta.url).pathname;
const BARE = "bare Deno.serve";
const NAME = "Memory (RSS)";

/** Options of {@linkcode runMemory}. */
export interface MemoryOptions {
  /** The startup-lock to measure. */
  program: Program;
  /** Named in the heading when set: which of several programs this is. */
  label?: string;
  /** Also measure the bare `Deno.serve` baseline. @default {true} */
  bare?: boolean;
  /** Waiting clients to open. */
  waiters: number;
  /** Gets each process started, so that an interrupted run can stop it. */
  track: (child: ChildProcess) => void;
}

/** The RSS and peak RSS of a process, in bytes. */
export interface Memory {
  rss: number;
  peak: number;
}

/** Reads `VmRSS` and `VmHWM` of `/proc/PID/status` (Linux only). */
export async function readMemory(pid: number): Promise<Memory> {
  const out = await new Deno.Command("sh", {
    args: ["-c", 'cat "/proc/$0/status"', String(pid)],
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const kibibytes = (field: string) => {
    const value = new RegExp(`^${field}:\\s*(\\d+) kB$`, "m").exec(text)?.[1];
    if (value === undefined) throw new Error(`No ${field} in /proc/${pid}/status`);
    return Number(value) * 1024;
  };
  return { rss: kibibytes("VmRSS"), peak: kibibytes("VmHWM") };
}

/** What one server measured. */
interface Measured {
  idle: Memory;
  loaded: Memory;
  after: Memory;
  /** Clients that waited. */
  waiters: number;
  /** From starting the client processes until the server counted every client, in ms. */
  queuedMs: number;
}

/** A server under test. */
interface Subject {
  url: string;
  pid: number;
}

/** Runs the benchmark, printing as it goes; returns its figures. */
export async function runMemory(options: MemoryOptions): Promise<Figure[]> {
  const { waiters } = options;
  console.log(
    `\nMemory${labelText(options.label)}: RSS of the server idle, then with ${
      waiters.toLocaleString("en-US")
    } ` +
      `clients waiting (?wait=${WAIT}) on one held slot`,
  );
  if (Deno.build.os !== "linux") {
    console.log("  skipped: reads /proc, Linux only");
    return [];
  }
  const lock = await launchLockServer(options.program, [
    ...["--locks", "1", "--timeout", "1h", "--maxWait", "2m"],
    ...["--maxWaiters", String(waiters)],
  ], { raiseFileLimit: true });
  options.track(lock);
  let measured: Measured;
  try {
    if (!await acquire(lock.url, { id: "holder" })) throw new Error("The holder was refused");
    measured = await measure(lock, options.program.name, options);
  } finally {
    await lock.stop();
  }

  const baseline = options.bare ?? true ? await measureBare(options) : undefined;

  const perWaiter = (m: Measured) =>
    `${((m.loaded.rss - m.idle.rss) / m.waiters / 1024).toFixed(1)} KiB`;
  const count = measured.waiters.toLocaleString("en-US");
  const figures: Figure[] = [
    {
      benchmark: NAME,
      measure: "startup-lock idle, one slot held",
      value: megabytes(measured.idle.rss),
    },
    {
      benchmark: NAME,
      measure: `startup-lock with ${count} clients waiting`,
      value: megabytes(measured.loaded.rss),
      target: atMost(measured.loaded.rss / 1e6, MEMORY_TARGET_MB, `${MEMORY_TARGET_MB} MB`),
    },
    { benchmark: NAME, measure: "startup-lock per waiting client", value: perWaiter(measured) },
  ];
  if (baseline) {
    figures.push({
      benchmark: NAME,
      measure: `baseline: ${BARE} with ${
        baseline.waiters.toLocaleString("en-US")
      } pending requests`,
      value: `${megabytes(baseline.loaded.rss)} (${perWaiter(baseline)} each)`,
    });
  }
  return figures;
}

/** Measures `pending_server.ts`, a bare `Deno.serve` handler, the same way. */
async function measureBare(options: MemoryOptions): Promise<Measured> {
  const bare = spawnChild(Deno.execPath(), ["run", "--quiet", "--allow-net", PENDING_SERVER], {
    raiseFileLimit: true,
  });
  options.track(bare);
  try {
    const port = await bare.waitForLine(/^\d+$/);
    return await measure({ url: `http://127.0.0.1:${port}/`, pid: bare.pid }, BARE, options);
  } finally {
    await bare.stop();
  }
}

/** Reads the RSS of `subject` idle, with every client waiting, and after they left. */
async function measure(subject: Subject, name: string, options: MemoryOptions): Promise<Measured> {
  const { url, pid } = subject;
  const children: ChildProcess[] = [];
  try {
    const idle = await readMemory(pid);
    row(`${name}, idle`, formatMemory(idle));
    const started = performance.now();
    let waiters = 0;
    for (let k = 0; k < CLIENT_PROCESSES; k++) {
      const count = Math.floor(options.waiters / CLIENT_PROCESSES) +
        (k < options.waiters % CLIENT_PROCESSES ? 1 : 0);
      const child = spawnChild(
        Deno.execPath(),
        ["run", "--quiet", "--allow-net", CLIENTS, url, String(count), `waiter${k}`, WAIT],
        { raiseFileLimit: true },
      );
      options.track(child);
      children.push(child);
      waiters += count;
    }
    await untilStatus(url, ({ waiting }) => waiting >= waiters, {
      timeoutMs: QUEUE_TIMEOUT_MS,
      intervalMs: 200,
      check: () => checkClients(children),
    });
    const queuedMs = performance.now() - started;
    const loaded = await readMemory(pid);
    checkClients(children);
    row(
      `${name}, ${waiters.toLocaleString("en-US")} waiting`,
      `${formatMemory(loaded)} (all counted after ${(queuedMs / 1000).toFixed(1)} s)`,
    );
    await Promise.all(children.splice(0).map((c) => c.stop()));
    await untilStatus(url, ({ waiting }) => waiting === 0, { intervalMs: 100 });
    const after = await readMemory(pid);
    row(`${name}, after the clients left`, formatMemory(after));
    return { idle, loaded, after, waiters, queuedMs };
  } finally {
    await Promise.all(children.map((c) => c.stop()));
  }
}

/** Throws when a client process has exited or reported an early answer. */
function checkClients(children: readonly ChildProcess[]): void {
  for (const child of children) {
    const early = child.lines.filter((l) => l.startsWith("early "));
    if (child.exited() || early.length > 0) {
      throw new Error(
        `A client process ${child.exited() ? "exited" : `saw ${early.length} early answers`}:\n` +
          child.lines.slice(0, 20).join("\n"),
      );
    }
  }
}

function row(label: string, text: string): void {
  console.log(`  ${`${label}:`.padEnd(44)} ${text}`);
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function formatMemory(memory: Memory): string {
  return `RSS ${megabytes(memory.rss)} (peak ${megabytes(memory.peak)})`;
}
