/**
 * `deno task bench`: the benchmarks of startup-lock, each printing its figures
 * and whether its target is met (a missed target never fails the run):
 *
 * - `startup` (`startup.ts`): each command's start-up time and memory against
 *   the runtime's own floor in the same run: `healthcheck` against a one-line
 *   fetch, `hold` once idle against a bare idle program, the server idle and
 *   its first answer against a bare `Deno.serve`;
 * - `handoff` (`handoff.ts`): from a release to the waiting client's 200, with the
 *   default flags and with `--stateFile`;
 * - `rollout` (`rollout.ts`): 20 apps on 2 slots, release on ready
 *   against the original fixed duration and the ideal schedule;
 * - `memory` (`memory.ts`): RSS idle and with 10,000 clients waiting;
 * - `http` (`http.ts`): throughput and latency under many keep-alive
 *   connections, measured with `wrk` against a bare `Deno.serve` handler in
 *   the same run, with the default flags and variants that each change one thing;
 * - `redis` (`redis.ts`): the Redis store against a redis-server started for the
 *   run: a `PING` round trip (the floor), the store's acquire in round trips
 *   (target 2), acquire latency and
 *   throughput against the memory store, and the handoff from a release on
 *   one replica to a waiter on another (target p99 ≤ 5 ms), beside its floor, two HTTP round
 *   trips to a bare `Deno.serve`. Skipped where redis-server is not installed.
 * - `nemesis` (`nemesis.ts`): minutes of the randomized fault run of
 *   `bench/_nemesis.ts` (Redis killed and flushed, replicas frozen, pub/sub
 *   killed, a gate closed), with each property's verdict as a target.
 * - `fair` (`fair.ts`): 45 clients on 3 Redis replicas, hopping between them at
 *   random or sticking to one, without and with faults: the longest wait
 *   against the line's drain time (target 1.5×), and the most holders.
 *   `BENCH_FAIR_SECONDS` (60) per run, `BENCH_FAIR_SEED` (16). Skipped where
 *   redis-server is not installed.
 *
 * All run by default; name some to run only those:
 * `deno task bench -- handoff,rollout` or `BENCH_ONLY=memory deno task bench`.
 *
 * `--baseline DIR` (or `BENCH_BASELINE=DIR`) also measures the program of
 * another checkout in the same run, such as the main branch before a
 * redesign: every part runs for both, the throughput rounds alternate between
 * all the servers, and a closing comparison sets the figures side by side.
 * Both programs then run the same way, `deno run` of their own `main.ts` and
 * `deno.json` with the same permission flags (`program.ts`).
 *
 * Environment overrides: `BENCH_STARTS` (5 rounds of `startup`), `BENCH_HANDOFFS` (1000),
 * `BENCH_WAITERS` (10000),
 * and for `http` `BENCH_SECONDS` (3), `BENCH_ROUNDS` (3),
 * `BENCH_WARMUP_SECONDS` (1, once per server, before the first concurrency),
 * `BENCH_THREADS` (2) and `BENCH_CONNECTIONS` (`50,1000`).
 *
 * @module
 */
import { makeScratchDir, removeScratchDir } from "./_scratch.ts";
import { comparisonLines, figuresComparisonMarkdown } from "./compare.ts";
import { type Figure, figuresMarkdown, targetLines as figureTargetLines } from "./figures.ts";
import { runFair } from "./fair.ts";
import { HANDOFF_VARIANTS, runHandoff } from "./handoff.ts";
import {
  type HttpConfig,
  type HttpResults,
  printResults,
  runHttp,
  type Stoppable,
} from "./http.ts";
import { runMemory } from "./memory.ts";
import { runNemesisBench } from "./nemesis.ts";
import { runRedis } from "./redis.ts";
import type { ChildProcess } from "./process.ts";
import { defaultProgram, type Program, programsToCompare } from "./program.ts";
import { runRollout } from "./rollout.ts";
import { SETTLE_MS, STATE_FILE_LENGTH_FACTOR } from "./servers.ts";
import { runStartup } from "./startup.ts";
import { WRK_MISSING, wrkVersion } from "./wrk.ts";

/** The parts of the benchmark, in the order they run. */
export const PARTS = [
  "startup",
  "handoff",
  "rollout",
  "memory",
  "http",
  "redis",
  "nemesis",
  "fair",
] as const;

/** One part of the benchmark. */
export type Part = (typeof PARTS)[number];

/** Unmeasured handoffs before the measured ones. */
const HANDOFF_WARMUP = 100;

/** What to measure, from the environment. */
export interface BenchConfig extends HttpConfig {
  /** Rounds of the `startup` part. */
  starts: number;
  /** Measured handoffs of the `handoff` part. */
  handoffs: number;
  /** Waiting clients of the `memory` part. */
  waiters: number;
  /** Seconds of each run of the `fair` part. */
  fairSeconds: number;
  /** The seed of the `fair` part's random choices. */
  fairSeed: number;
}

/** Reads the configuration from `BENCH_*` variables; throws `RangeError` on bad values. */
export function readConfig(get: (name: string) => string | undefined): BenchConfig {
  const read = (name: string, fallback: number, min = 1) => {
    const raw = get(name);
    return raw ? integer(name, raw, min) : fallback;
  };
  return {
    starts: read("BENCH_STARTS", 5),
    handoffs: read("BENCH_HANDOFFS", 1000),
    waiters: read("BENCH_WAITERS", 10_000),
    seconds: read("BENCH_SECONDS", 3),
    rounds: read("BENCH_ROUNDS", 3),
    warmupSeconds: read("BENCH_WARMUP_SECONDS", 1, 0),
    threads: read("BENCH_THREADS", 2),
    fairSeconds: read("BENCH_FAIR_SECONDS", 60),
    fairSeed: read("BENCH_FAIR_SEED", 16, 0),
    connections: (get("BENCH_CONNECTIONS") || "50,1000").split(",").map((c) =>
      integer("BENCH_CONNECTIONS", c, 1)
    ),
  };
}

/** What the command line and the environment ask for. */
export interface BenchOptions {
  parts: Part[];
  /** The directory of the other checkout to measure too, if any. */
  baseline: string | undefined;
}

/**
 * Reads `--baseline DIR` (else `BENCH_BASELINE`) and the names of the parts
 * to run (see {@linkcode selectParts}) from `args`.
 *
 * @throws {RangeError} for an unknown option, a missing value or an unknown part
 */
export function parseBenchArgs(
  args: readonly string[],
  get: (name: string) => string | undefined,
): BenchOptions {
  const names: string[] = [];
  let baseline = get("BENCH_BASELINE") || undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    if (arg === "--baseline" || arg.startsWith("--baseline=")) {
      const value = arg === "--baseline" ? args[++i] : arg.slice("--baseline=".length);
      if (!value) {
        throw new RangeError(
          "Missing value of --baseline: expected the directory of another startup-lock checkout",
        );
      }
      baseline = value;
    } else if (arg.startsWith("-") && arg !== "--") {
      throw new RangeError(
        `Unknown option "${arg}": expected --baseline DIR and names of benchmarks ` +
          `(${PARTS.join(", ")})`,
      );
    } else {
      names.push(arg);
    }
  }
  return { parts: selectParts(names, get("BENCH_ONLY")), baseline };
}

/**
 * The programs to measure: this checkout's as users run it, or, with a
 * baseline, this checkout's and the baseline's, started the same way.
 *
 * @throws {RangeError} when `baseline` is not a startup-lock checkout
 */
export function selectPrograms(baseline: string | undefined): Program[] {
  if (baseline === undefined) return [defaultProgram()];
  try {
    return programsToCompare(baseline);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    throw new RangeError(`Invalid --baseline "${baseline}": ${error.message}`);
  }
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

async function machineLines(
  wrk: string | undefined,
  config: BenchConfig,
  programs: readonly Program[],
): Promise<string[]> {
  // Deno asks for --allow-all to read /proc, so a shell reads it.
  const cpu = await shell("sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -n 1");
  const programLines = programs.length === 1
    ? [`Program: ${programs[0]?.description}`]
    : await Promise.all(programs.map(async (p) => {
      const commit = await lastCommit(p.dir);
      return `Program: ${p.name} (${commit ?? p.dir}): ${p.description}`;
    }));
  const rounds = `${config.rounds} alternating round${config.rounds === 1 ? "" : "s"}`;
  return [
    `CPU:     ${cpu || "unknown"} (${navigator.hardwareConcurrency} cores)`,
    `System:  ${Deno.build.os} ${Deno.build.arch}, kernel ${await shell("uname -r")}, ` +
    `open files up to ${await shell("ulimit -Hn")}`,
    `Deno:    ${Deno.version.deno} (V8 ${Deno.version.v8})`,
    ...programLines,
    ...(wrk === undefined ? [] : [
      `wrk:     ${wrk}, -t${config.threads}`,
      `Runs:    ${rounds} of ${config.seconds} s per server and concurrency ` +
      `(--stateFile: ${config.seconds * STATE_FILE_LENGTH_FACTOR} s), after ` +
      `${config.warmupSeconds} s of warm-up per server; each acquire run is followed by ` +
      `${SETTLE_MS / 1000} s for its locks to expire; medians shown`,
    ]),
  ];
}

/** `abc1234 subject` of the last commit in `dir`, if it is a git checkout. */
async function lastCommit(dir: string): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("git", {
      args: ["-C", dir, "log", "-1", "--format=%h %s"],
      stdin: "null",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : undefined;
  } catch {
    return undefined; // no git
  }
}

/** The trimmed stdout of a shell command; empty when it fails. */
async function shell(script: string): Promise<string> {
  const out = await new Deno.Command("sh", { args: ["-c", script], stdin: "null" }).output();
  return out.success ? new TextDecoder().decode(out.stdout).trim() : "";
}

/** Prints the figures of the handoff, rollout and memory parts together. */
function printFigures(figures: readonly Figure[], programs: readonly Program[]): void {
  console.log("\nTargets (start-up, handoff, rollout, memory):");
  for (const line of figureTargetLines(figures)) console.log(`  ${line}`);
  console.log("\nFor docs/performance.md:\n");
  console.log(
    programs.length === 1
      ? figuresMarkdown(figures)
      : figuresComparisonMarkdown(figures, programs.map((p) => p.name)),
  );
}

async function stopAll(servers: readonly Stoppable[]): Promise<void> {
  await Promise.allSettled(servers.map((s) => s.stop()));
}

/** Runs the parts of the benchmark selected by `args` or `BENCH_ONLY`; returns the exit code. */
export async function main(args: readonly string[] = Deno.args): Promise<number> {
  let config: BenchConfig;
  let parts: Part[];
  let programs: Program[];
  try {
    const get = (name: string) => Deno.env.get(name);
    config = readConfig(get);
    const options = parseBenchArgs(args, get);
    parts = options.parts;
    programs = selectPrograms(options.baseline);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    console.error(error.message);
    return 2;
  }
  const wrk = parts.includes("http") || parts.includes("redis") ? await wrkVersion() : undefined;
  // Without wrk the other parts still run; the exit code tells that one was skipped.
  const wrkMissing = parts.includes("http") && wrk === undefined;
  if (wrkMissing) console.error(WRK_MISSING);
  for (const line of await machineLines(wrk, config, programs)) console.log(line);
  const started: Stoppable[] = [];
  const track = (child: ChildProcess) => started.push(child);
  const figures: Figure[] = [];
  const onSignal = () => stopAll(started).then(removeScratchDir).finally(() => Deno.exit(130));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let http: HttpResults = { rows: [], scrapeLines: [], droppedLines: [] };
  await makeScratchDir();
  try {
    for (const part of parts) {
      if (part === "http") {
        if (wrk === undefined) continue;
        console.log("\nHTTP throughput (wrk):");
        http = await runHttp(config, programs, started);
        printResults(http);
        continue;
      }
      for (const [i, program] of programs.entries()) {
        const common = {
          program,
          track,
          ...(programs.length > 1 ? { label: program.name } : {}),
        };
        const measured = part === "handoff"
          ? await runHandoff({
            ...common,
            handoffs: config.handoffs,
            warmup: HANDOFF_WARMUP,
            // A baseline may not know a variant's flags; what a variant costs is this checkout's.
            ...(i > 0 ? { variants: HANDOFF_VARIANTS.slice(0, 1) } : {}),
          })
          : part === "rollout"
          ? await runRollout(common)
          : part === "startup"
          ? await runStartup({ ...common, rounds: config.starts })
          : part === "nemesis"
          ? await runNemesisBench(common)
          // This checkout's own fairness: a baseline's is not compared.
          : part === "fair"
          ? (i > 0 ? [] : await runFair({
            ...(common.label === undefined ? {} : { label: common.label }),
            program,
            seconds: config.fairSeconds,
            seed: config.fairSeed,
          }))
          : part === "redis"
          ? await runRedis({
            ...common,
            samples: config.handoffs,
            warmup: HANDOFF_WARMUP,
            // Throughput needs wrk, and the HTTP part's rounds give the memory store's at length.
            seconds: wrk === undefined ? 0 : config.seconds,
          })
          // The bare Deno.serve baseline is the same for every program: measured once.
          : await runMemory({ ...common, waiters: config.waiters, bare: i === 0 });
        figures.push(
          ...programs.length > 1
            ? measured.map((f) => ({ ...f, program: program.name }))
            : measured,
        );
      }
    }
    if (figures.length > 0) printFigures(figures, programs);
    if (programs.length > 1) {
      const [ours, theirs] = programs as [Program, Program];
      console.log(`\nThis checkout against the baseline checkout ${theirs.dir}, in the same run:`);
      for (const line of comparisonLines(http.rows, figures, ours.name, theirs.name)) {
        console.log(`  ${line}`);
      }
    }
    return wrkMissing ? 1 : 0;
  } finally {
    await stopAll(started);
    await removeScratchDir();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) Deno.exit(await main());
