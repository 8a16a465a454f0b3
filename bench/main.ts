/**
 * `deno task bench`: throughput and latency of startup-lock under many
 * keep-alive connections, measured with `wrk` against a bare `Deno.serve`
 * handler that always answers 423, in the same run.
 *
 * - `deny`: one slot, taken first, so every request is a 423.
 * - `acquire`: a million slots that expire after 1 s, so requests get 200.
 *
 * Each server is measured at each concurrency in alternating rounds; the tables
 * show the median of the rounds. Environment overrides: `BENCH_SECONDS` (5),
 * `BENCH_ROUNDS` (3), `BENCH_WARMUP_SECONDS` (1), `BENCH_THREADS` (2) and
 * `BENCH_CONNECTIONS` (`50,1000`).
 *
 * @module
 */
import { programCommand, USING_COMPILED } from "../tests/_program.ts";
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

/** What to measure, from the environment. */
export interface BenchConfig {
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
    seconds: read("BENCH_SECONDS", 5),
    rounds: read("BENCH_ROUNDS", 3),
    warmupSeconds: read("BENCH_WARMUP_SECONDS", 1, 0),
    threads: read("BENCH_THREADS", 2),
    connections: (get("BENCH_CONNECTIONS") || "50,1000").split(",").map((c) =>
      integer("BENCH_CONNECTIONS", c, 1)
    ),
  };
}

function integer(name: string, raw: string, min: number): number {
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isInteger(value) || value < min) {
    throw new RangeError(`${name}: expected integers of at least ${min}, got "${raw}"`);
  }
  return value;
}

async function machineLines(wrk: string, config: BenchConfig): Promise<string[]> {
  // Deno asks for --allow-all to read /proc, so a shell reads it.
  const cpu = await shell("sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -n 1");
  const { command, args } = programCommand();
  const program = USING_COMPILED ? command : `deno ${args.join(" ")}`;
  const rounds = `${config.rounds} alternating round${config.rounds === 1 ? "" : "s"}`;
  return [
    `CPU:     ${cpu || "unknown"} (${navigator.hardwareConcurrency} cores)`,
    `System:  ${Deno.build.os} ${Deno.build.arch}, kernel ${await shell("uname -r")}`,
    `Deno:    ${Deno.version.deno} (V8 ${Deno.version.v8})`,
    `wrk:     ${wrk}, -t${config.threads}, open files up to ${await shell("ulimit -Hn")}`,
    `Program: ${program}`,
    `Runs:    ${rounds} of ${config.seconds} s per server and concurrency ` +
    `(after ${config.warmupSeconds} s of warm-up); medians shown`,
  ];
}

/** The trimmed stdout of a shell command; empty when it fails. */
async function shell(script: string): Promise<string> {
  const out = await new Deno.Command("sh", { args: ["-c", script], stdin: "null" }).output();
  return out.success ? new TextDecoder().decode(out.stdout).trim() : "";
}

async function startTargets(started: BenchServer[]): Promise<Target[]> {
  const start = async (name: string, launch: () => Promise<BenchServer>): Promise<Target> => {
    const server = await launch();
    started.push(server);
    return { name, server };
  };
  return [
    await start(BARE_NAME, startBareServer),
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

async function bench(config: BenchConfig, started: BenchServer[]): Promise<Summary[]> {
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

async function stopAll(servers: readonly BenchServer[]): Promise<void> {
  await Promise.allSettled(servers.map((s) => s.stop()));
}

/** Runs the benchmark; returns the exit code. */
export async function main(): Promise<number> {
  const wrk = await wrkVersion();
  if (wrk === undefined) {
    console.error(WRK_MISSING);
    return 1;
  }
  let config: BenchConfig;
  try {
    config = readConfig((name) => Deno.env.get(name));
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    console.error(error.message);
    return 2;
  }
  for (const line of await machineLines(wrk, config)) console.log(line);
  const started: BenchServer[] = [];
  const onSignal = () => stopAll(started).finally(() => Deno.exit(130));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    printResults(await bench(config, started));
    return 0;
  } finally {
    await stopAll(started);
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) Deno.exit(await main());
