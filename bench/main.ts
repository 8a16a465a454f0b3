/**
 * `deno task bench`: four benchmarks of startup-lock, each printing its figures
 * and whether its target is met (a missed target never fails the run):
 *
 * - `handoff` (`handoff.ts`): from a release to the waiting client's 200;
 * - `rollout` (`rollout.ts`): 20 apps on 2 slots, release on ready
 *   against the original fixed duration and the ideal schedule;
 * - `memory` (`memory.ts`): RSS idle and with 10,000 clients waiting;
 * - `http`: throughput and latency under many keep-alive connections,
 *   measured with `wrk` against a bare `Deno.serve` handler that always
 *   answers 423, in the same run:
 *   - `deny`: one slot, taken first, so every request is a 423.
 *   - `acquire`: a million slots that expire after 1 s, so requests get 200.
 *
 *   Each server is measured at each concurrency in alternating rounds; the
 *   tables show the median of the rounds.
 *
 * All run by default; name some to run only those:
 * `deno task bench -- handoff,rollout` or `BENCH_ONLY=memory deno task bench`.
 * Environment overrides: `BENCH_HANDOFFS` (1000), `BENCH_WAITERS` (10000),
 * and for `http` `BENCH_SECONDS` (5), `BENCH_ROUNDS` (3),
 * `BENCH_WARMUP_SECONDS` (1), `BENCH_THREADS` (2) and `BENCH_CONNECTIONS`
 * (`50,1000`).
 *
 * @module
 */
import { programCommand, USING_COMPILED } from "../tests/_program.ts";
import { type Figure, figuresMarkdown, targetLines as figureTargetLines } from "./figures.ts";
import { runHandoff } from "./handoff.ts";
import { runMemory } from "./memory.ts";
import type { ChildProcess } from "./process.ts";
import { runRollout } from "./rollout.ts";
import {
  BARE_NAME,
  markdownTable,
  median,
  summarize,
  type Summary,
  targetLines,
  textTable,
} from "./report.ts";
import { type BenchServer, startBareServer, startLockServer } from "./servers.ts";
import { runWrk, WRK_MISSING, type WrkResult, wrkVersion } from "./wrk.ts";

/** The parts of the benchmark, in the order they run. */
export const PARTS = ["handoff", "rollout", "memory", "http"] as const;

/** One part of the benchmark. */
export type Part = (typeof PARTS)[number];

/** Unmeasured handoffs before the measured ones. */
const HANDOFF_WARMUP = 100;

/** What to measure, from the environment. */
export interface BenchConfig {
  /** Measured handoffs of the `handoff` part. */
  handoffs: number;
  /** Waiting clients of the `memory` part. */
  waiters: number;
  seconds: number;
  rounds: number;
  warmupSeconds: number;
  threads: number;
  connections: number[];
}

/** A server under test and its name in the tables. */
interface Target {
  name: string;
  server: BenchServer;
}

/** Reads the configuration from `BENCH_*` variables; throws `RangeError` on bad values. */
export function readConfig(get: (name: string) => string | undefined): BenchConfig {
  const read = (name: string, fallback: number, min = 1) => {
    const raw = get(name);
    return raw ? integer(name, raw, min) : fallback;
  };
  return {
    handoffs: read("BENCH_HANDOFFS", 1000),
    waiters: read("BENCH_WAITERS", 10_000),
    seconds: read("BENCH_SECONDS", 5),
    rounds: read("BENCH_ROUNDS", 3),
    warmupSeconds: read("BENCH_WARMUP_SECONDS", 1, 0),
    threads: read("BENCH_THREADS", 2),
    connections: (get("BENCH_CONNECTIONS") || "50,1000").split(",").map((c) =>
      integer("BENCH_CONNECTIONS", c, 1)
    ),
  };
}

/**
 * The parts named in `args` (`deno task bench -- handoff,memory`), else in
 * `only` (`BENCH_ONLY`), else all; throws `RangeError` on an unknown name.
 */
export function selectParts(args: readonly string[], only: string | undefined): Part[] {
  const named = args.filter((a) => a !== "--");
  const names = (named.length > 0 ? named.join(",") : only ?? "").split(",")
    .map((n) => n.trim()).filter((n) => n !== "");
  if (names.length === 0) return [...PARTS];
  for (const name of names) {
    if (!(PARTS as readonly string[]).includes(name)) {
      throw new RangeError(`Unknown benchmark "${name}": expected some of ${PARTS.join(", ")}`);
    }
  }
  return PARTS.filter((p) => names.includes(p));
}

function integer(name: string, raw: string, min: number): number {
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isInteger(value) || value < min) {
    throw new RangeError(`${name}: expected integers of at least ${min}, got "${raw}"`);
  }
  return value;
}

async function machineLines(wrk: string | undefined, config: BenchConfig): Promise<string[]> {
  // Deno asks for --allow-all to read /proc, so a shell reads it.
  const cpu = await shell("sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -n 1");
  const { command, args } = programCommand();
  const program = USING_COMPILED ? command : `deno ${args.join(" ")}`;
  const rounds = `${config.rounds} alternating round${config.rounds === 1 ? "" : "s"}`;
  return [
    `CPU:     ${cpu || "unknown"} (${navigator.hardwareConcurrency} cores)`,
    `System:  ${Deno.build.os} ${Deno.build.arch}, kernel ${await shell("uname -r")}, ` +
    `open files up to ${await shell("ulimit -Hn")}`,
    `Deno:    ${Deno.version.deno} (V8 ${Deno.version.v8})`,
    `Program: ${program}`,
    ...(wrk === undefined ? [] : [
      `wrk:     ${wrk}, -t${config.threads}`,
      `Runs:    ${rounds} of ${config.seconds} s per server and concurrency ` +
      `(after ${config.warmupSeconds} s of warm-up); medians shown`,
    ]),
  ];
}

/** The trimmed stdout of a shell command; empty when it fails. */
async function shell(script: string): Promise<string> {
  const out = await new Deno.Command("sh", { args: ["-c", script], stdin: "null" }).output();
  return out.success ? new TextDecoder().decode(out.stdout).trim() : "";
}

/** Something started that must be stopped, even when the run is interrupted. */
interface Stoppable {
  stop(): Promise<void>;
}

async function startTargets(started: Stoppable[]): Promise<Target[]> {
  const start = async (name: string, launch: () => Promise<BenchServer>): Promise<Target> => {
    const server = await launch();
    started.push(server);
    return { name, server };
  };
  return [
    await start(BARE_NAME, () => startBareServer()),
    await start("bare Deno.serve reading the request (423)", () => startBareServer(true)),
    await start("startup-lock deny (423)", () => startLockServer("deny")),
    await start("startup-lock acquire (200)", () => startLockServer("acquire")),
  ];
}

/** Measures every target at one concurrency; returns each target's rounds. */
async function measure(
  targets: readonly Target[],
  connections: number,
  config: BenchConfig,
): Promise<WrkResult[][]> {
  const wrk = (target: Target, seconds: number) =>
    runWrk({ url: target.server.url, threads: config.threads, connections, seconds });
  if (config.warmupSeconds > 0) {
    for (const target of targets) await wrk(target, config.warmupSeconds);
  }
  const runs: WrkResult[][] = targets.map(() => []);
  for (let round = 0; round < config.rounds; round++) {
    // Rotate the order so that no server always runs first or last.
    for (let k = 0; k < targets.length; k++) {
      const i = (round + k) % targets.length;
      const target = targets[i];
      if (!target) continue;
      const result = await wrk(target, config.seconds);
      runs[i]?.push(result);
      console.log(progressLine(target.name, connections, round, result));
    }
  }
  return runs;
}

function progressLine(name: string, connections: number, round: number, r: WrkResult): string {
  return `  round ${round + 1}  c=${connections}  ${name}: ${
    Math.round(r.requestsPerSecond)
  } req/s, ` +
    `p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms`;
}

function summarizeAll(
  targets: readonly Target[],
  connections: number,
  runs: WrkResult[][],
): Summary[] {
  const bare = median((runs[0] ?? []).map((r) => r.requestsPerSecond));
  return targets.map((t, i) => summarize(t.name, connections, runs[i] ?? [], bare));
}

async function bench(config: BenchConfig, started: Stoppable[]): Promise<Summary[]> {
  const targets = await startTargets(started);
  const rows: Summary[] = [];
  for (const connections of config.connections) {
    console.log(`\n${connections} connections:`);
    rows.push(...summarizeAll(targets, connections, await measure(targets, connections, config)));
  }
  return rows;
}

function printResults(rows: readonly Summary[]): void {
  console.log(`\nResults (median of rounds; "vs bare" = req/s relative to the bare handler):\n`);
  console.log(textTable(rows));
  console.log("\nThroughput target:");
  for (const line of targetLines(rows)) console.log(`  ${line}`);
  console.log("\nFor the README:\n");
  console.log(markdownTable(rows));
}

/** Prints the figures of the handoff, rollout and memory parts together. */
function printFigures(figures: readonly Figure[]): void {
  console.log("\nTargets (handoff, rollout, memory):");
  for (const line of figureTargetLines(figures)) console.log(`  ${line}`);
  console.log("\nFor the README:\n");
  console.log(figuresMarkdown(figures));
}

async function stopAll(servers: readonly Stoppable[]): Promise<void> {
  await Promise.allSettled(servers.map((s) => s.stop()));
}

/** Runs the parts of the benchmark selected by `args` or `BENCH_ONLY`; returns the exit code. */
export async function main(args: readonly string[] = Deno.args): Promise<number> {
  let config: BenchConfig;
  let parts: Part[];
  try {
    config = readConfig((name) => Deno.env.get(name));
    parts = selectParts(args, Deno.env.get("BENCH_ONLY"));
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    console.error(error.message);
    return 2;
  }
  const wrk = parts.includes("http") ? await wrkVersion() : undefined;
  // Without wrk the other parts still run; the exit code tells that one was skipped.
  const wrkMissing = parts.includes("http") && wrk === undefined;
  if (wrkMissing) console.error(WRK_MISSING);
  for (const line of await machineLines(wrk, config)) console.log(line);
  const started: Stoppable[] = [];
  const track = (child: ChildProcess) => started.push(child);
  const figures: Figure[] = [];
  const onSignal = () => stopAll(started).finally(() => Deno.exit(130));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    for (const part of parts) {
      if (part === "handoff") {
        figures.push(
          ...await runHandoff({ handoffs: config.handoffs, warmup: HANDOFF_WARMUP, track }),
        );
      } else if (part === "rollout") {
        figures.push(...await runRollout({ track }));
      } else if (part === "memory") {
        figures.push(...await runMemory({ waiters: config.waiters, track }));
      } else if (wrk !== undefined) {
        console.log("\nHTTP throughput (wrk):");
        printResults(await bench(config, started));
      }
    }
    if (figures.length > 0) printFigures(figures);
    return wrkMissing ? 1 : 0;
  } finally {
    await stopAll(started);
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) Deno.exit(await main());
