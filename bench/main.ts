/**
 * `deno task bench`: four benchmarks of startup-lock, each printing its figures
 * and whether its target is met (a missed target never fails the run):
 *
 * - `handoff` (`handoff.ts`): from a release to the waiting client's 200, with the
 *   default flags and with `--stateFile`;
 * - `rollout` (`rollout.ts`): 20 apps on 2 slots, release on ready
 *   against the original fixed duration and the ideal schedule;
 * - `memory` (`memory.ts`): RSS idle and with 10,000 clients waiting;
 * - `http`: throughput and latency under many keep-alive connections,
 *   measured with `wrk` against a bare `Deno.serve` handler that always
 *   answers 423, in the same run. startup-lock runs as users run it first,
 *   with the default flags (log level `info`, text lines, metrics on as they
 *   always are), then in variants that each change one thing (`servers.ts`):
 *   - `deny`: one slot, taken first, so every request is a 423 (refusals are
 *     logged at `debug` only, so no line per request).
 *   - `acquire`: a million slots that expire after 1 s, so requests get 200,
 *     each with a "Lock granted" line and, a second later, a "Lock expired" one.
 *   - `acquire, --logLevel warn`: no line per request; the default's
 *     throughput relative to it is the cost of logging (target
 *     {@link LOG_TARGET_RATIO}).
 *   - `acquire, --logFormat json`: the same lines as JSON.
 *   - `acquire, --stateFile`: every grant on disk before its 200; its rounds
 *     run {@link STATE_FILE_LENGTH_FACTOR} times as long, to settle.
 *   - `acquire, /metrics scraped`: metrics cannot be turned off, so what
 *     varies is a Prometheus fetching `/metrics` every
 *     {@link SCRAPE_INTERVAL_MS} ms during the run.
 *
 *   Each acquire run is followed by a pause of {@link SETTLE_MS} ms: the
 *   locks it granted last expire (and are logged) then, not during the next
 *   server's run.
 *
 *   A baseline checkout (`--baseline`) runs `deny`, `acquire` and `acquire,
 *   --logLevel warn` only, so that its cost of logging is measured too. Each
 *   server is measured at each concurrency in alternating rounds; the tables
 *   show the median of the rounds. The variants are also printed relative to
 *   `acquire` in the same run.
 *
 * - `redis` (`redis.ts`): the Redis store against a redis-server started for the
 *   run: a `PING` round trip (the floor), the store's acquire in round trips
 *   (target 2), acquire latency and
 *   throughput against the memory store, and the handoff from a release on
 *   one replica to a waiter on another (target p99 ≤ 5 ms). Skipped where redis-server is not
 *   installed.
 *
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
 * Environment overrides: `BENCH_HANDOFFS` (1000), `BENCH_WAITERS` (10000),
 * and for `http` `BENCH_SECONDS` (3), `BENCH_ROUNDS` (3),
 * `BENCH_WARMUP_SECONDS` (1, once per server, before the first concurrency),
 * `BENCH_THREADS` (2) and `BENCH_CONNECTIONS` (`50,1000`).
 *
 * @module
 */
import { comparisonLines, figuresComparisonMarkdown } from "./compare.ts";
import { type Figure, figuresMarkdown, targetLines as figureTargetLines } from "./figures.ts";
import { runFair } from "./fair.ts";
import { HANDOFF_VARIANTS, runHandoff } from "./handoff.ts";
import { runMemory } from "./memory.ts";
import { runRedis } from "./redis.ts";
import { type ChildProcess, delay } from "./process.ts";
import { defaultProgram, type Program, programsToCompare } from "./program.ts";
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
import { type Scrapes, scrapesText, startScraper } from "./scraper.ts";
import {
  BASELINE_MODES,
  type BenchServer,
  DEFAULT_MODES,
  LOCK_MODES,
  MODES,
  type ModeSpec,
  SCRAPE_INTERVAL_MS,
  SETTLE_MS,
  startBareServer,
  startLockServer,
  STATE_FILE_LENGTH_FACTOR,
} from "./servers.ts";
import { runWrk, WRK_MISSING, type WrkResult, wrkVersion } from "./wrk.ts";

/** The parts of the benchmark, in the order they run. */
export const PARTS = ["handoff", "rollout", "memory", "http", "redis", "fair"] as const;

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
  /** Seconds of each run of the `fair` part. */
  fairSeconds: number;
  /** The seed of the `fair` part's random choices. */
  fairSeed: number;
}

/** A server under test, its name in the tables, and how startup-lock runs in it. */
interface Target {
  name: string;
  server: BenchServer;
  mode?: ModeSpec;
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

/** Something started that must be stopped, even when the run is interrupted. */
interface Stoppable {
  stop(): Promise<void>;
}

async function startTargets(
  programs: readonly Program[],
  started: Stoppable[],
): Promise<Target[]> {
  const start = async (
    name: string,
    launch: () => Promise<BenchServer>,
    mode?: ModeSpec,
  ): Promise<Target> => {
    const server = await launch();
    started.push(server);
    return { name, server, ...(mode ? { mode } : {}) };
  };
  const targets = [
    await start(BARE_NAME, () => startBareServer()),
    await start("bare Deno.serve reading the request (423)", () => startBareServer(true)),
  ];
  // The default flags and --logLevel warn of every program, then this checkout's other
  // variants: a baseline may not know their flags, and what they cost is this checkout's figure.
  const runs = [
    ...programs.flatMap((program) => BASELINE_MODES.map((mode) => ({ program, mode }))),
    ...programs.slice(0, 1).flatMap((program) =>
      LOCK_MODES.filter((m) => !BASELINE_MODES.includes(m)).map((mode) => ({ program, mode }))
    ),
  ];
  // Started together: each takes a moment to compile and listen.
  const starting = await Promise.allSettled(runs.map(({ program, mode }) => {
    const spec = MODES[mode];
    return start(`${program.name} ${spec.label}`, () => startLockServer(program, mode), spec);
  }));
  for (const result of starting) {
    if (result.status === "rejected") throw result.reason;
    targets.push(result.value);
  }
  return targets;
}

/** What the rounds of every target at one concurrency measured. */
interface Measured {
  /** Each target's rounds, in the order of the targets. */
  runs: WrkResult[][];
  /** The scrapes of `/metrics` during each target's rounds, for targets that are scraped. */
  scrapes: (Scrapes | undefined)[];
}

/** Measures every target at one concurrency, after `warmupSeconds` each. */
async function measure(
  targets: readonly Target[],
  connections: number,
  config: BenchConfig,
  warmupSeconds: number,
): Promise<Measured> {
  const wrk = async (target: Target, seconds: number, settle = true) => {
    const result = await runWrk({
      url: target.server.url,
      threads: config.threads,
      connections,
      seconds,
    });
    // Its locks expire in the next second: not during the next server's run.
    if (settle && target.mode?.settleMs) await delay(target.mode.settleMs);
    return result;
  };
  if (warmupSeconds > 0) {
    // No warm-up run is measured: only the last one must settle before the first round.
    for (const [i, target] of targets.entries()) {
      await wrk(target, warmupSeconds, i === targets.length - 1);
    }
  }
  const runs: WrkResult[][] = targets.map(() => []);
  const scrapes: (Scrapes | undefined)[] = targets.map((t) =>
    t.mode?.scrapeEveryMs ? { count: 0, failed: 0, durationsMs: [] } : undefined
  );
  for (let round = 0; round < config.rounds; round++) {
    // Rotate the order so that no server always runs first or last.
    for (let k = 0; k < targets.length; k++) {
      const i = (round + k) % targets.length;
      const target = targets[i];
      if (!target) continue;
      const every = target.mode?.scrapeEveryMs;
      const scraper = every ? startScraper(target.server.url, every) : undefined;
      let result: WrkResult;
      let scraped: Scrapes | undefined;
      try {
        result = await wrk(target, config.seconds * (target.mode?.lengthFactor ?? 1));
      } finally {
        scraped = await scraper?.stop();
      }
      runs[i]?.push(result);
      const total = scrapes[i];
      if (scraped && total) {
        total.count += scraped.count;
        total.failed += scraped.failed;
        total.durationsMs.push(...scraped.durationsMs);
      }
      console.log(progressLine(target.name, connections, round, result, scraped));
    }
  }
  return { runs, scrapes };
}

function progressLine(
  name: string,
  connections: number,
  round: number,
  r: WrkResult,
  scraped: Scrapes | undefined,
): string {
  return `  round ${round + 1}  c=${connections}  ${name}: ${
    Math.round(r.requestsPerSecond)
  } req/s, ` +
    `p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms` +
    (scraped ? `; /metrics: ${scrapesText(scraped)}` : "");
}

function summarizeAll(
  targets: readonly Target[],
  connections: number,
  runs: WrkResult[][],
): Summary[] {
  const bare = median((runs[0] ?? []).map((r) => r.requestsPerSecond));
  return targets.map((t, i) => summarize(t.name, connections, runs[i] ?? [], bare));
}

/** The throughput part's figures: one summary per server and concurrency, and the scrapes. */
interface HttpResults {
  rows: Summary[];
  /** One line per scraped server and concurrency: how many scrapes, how long they took. */
  scrapeLines: string[];
  /**
   * One line per startup-lock server that dropped log lines during the run: a
   * server that drops lines writes less, so its figure would flatter it.
   */
  droppedLines: string[];
}

async function bench(
  config: BenchConfig,
  programs: readonly Program[],
  started: Stoppable[],
): Promise<HttpResults> {
  const targets = await startTargets(programs, started);
  const rows: Summary[] = [];
  const scrapeLines: string[] = [];
  for (const [n, connections] of config.connections.entries()) {
    console.log(`\n${connections} connections:`);
    // Warm up once: later concurrencies find the servers' code compiled already.
    const measured = await measure(
      targets,
      connections,
      config,
      n === 0 ? config.warmupSeconds : 0,
    );
    rows.push(...summarizeAll(targets, connections, measured.runs));
    for (const [i, scrapes] of measured.scrapes.entries()) {
      if (scrapes) {
        scrapeLines.push(
          `${targets[i]?.name} at ${connections} connections: ${scrapesText(scrapes)}`,
        );
      }
    }
  }
  const droppedLines: string[] = [];
  for (const target of targets) {
    if (!target.mode) continue;
    const dropped = await logLinesDropped(target.server.url);
    if (dropped) droppedLines.push(`${target.name}: ${dropped.toLocaleString("en-US")}`);
  }
  return { rows, scrapeLines, droppedLines };
}

/** `startup_lock_log_lines_dropped_total` of the server at `url`; `undefined` if it has none. */
async function logLinesDropped(url: string): Promise<number | undefined> {
  try {
    const response = await fetch(`${url}metrics`);
    const text = await response.text();
    const value = /^startup_lock_log_lines_dropped_total (\d+)$/m.exec(text)?.[1];
    return value === undefined ? undefined : Number(value);
  } catch {
    return undefined; // A baseline without /metrics.
  }
}

/** What the rows are, printed before the results. */
export const ROWS_LEGEND: readonly string[] = [
  "deny and acquire run with the default flags, as users run startup-lock: log level info, text",
  "lines (a line per grant and one per expiry), metrics on (they cannot be turned off). Each",
  "variant of acquire changes one thing: --logLevel warn (no line per request: the baseline of",
  "the cost of logging), --logFormat json, --stateFile (at the default level; rounds " +
  `${STATE_FILE_LENGTH_FACTOR}× as long),`,
  `and /metrics fetched every ${SCRAPE_INTERVAL_MS / 1000} s during the run, as a Prometheus ` +
  "would: with metrics always on,",
  "being scraped is what can vary.",
];

function printResults(results: HttpResults): void {
  const { rows, scrapeLines, droppedLines } = results;
  console.log(`\nResults (median of rounds; "vs bare" = req/s relative to the bare handler):\n`);
  for (const line of ROWS_LEGEND) console.log(line);
  console.log();
  console.log(textTable(rows));
  console.log("\nThroughput target (the default flags):");
  for (const line of targetLines(rows.filter(isDefaultRow))) console.log(`  ${line}`);
  console.log(
    "\nCost of logging (acquire at the default level, relative to the same server at " +
      "--logLevel warn):",
  );
  for (const line of logCostLines(rows)) console.log(`  ${line}`);
  console.log("\nVariants (relative to acquire with the default flags, same run):");
  for (const line of variantLines(rows)) console.log(`  ${line}`);
  console.log(
    droppedLines.length === 0
      ? "\nNo server dropped a log line: every line was written and read."
      : "\nLog lines DROPPED because the benchmark's reader of stderr fell behind (such a server " +
        "wrote less than it would have):",
  );
  for (const line of droppedLines) console.log(`  ${line}`);
  if (scrapeLines.length > 0) {
    console.log("\nScrapes of /metrics during the scraped rounds:");
    for (const line of scrapeLines) console.log(`  ${line}`);
  }
  console.log("\nFor the README:\n");
  console.log(markdownTable(rows));
}

/** Whether `row` is startup-lock with the default flags. */
function isDefaultRow(row: Summary): boolean {
  return DEFAULT_MODES.some((mode) => row.server.endsWith(` ${MODES[mode].label}`));
}

/** Acquire throughput at the default level must stay at least this share of it at `warn`. */
export const LOG_TARGET_RATIO = 0.85;

/** The row of `mode` of the program whose default acquire row is `acquire`, at its concurrency. */
function rowOf(rows: readonly Summary[], acquire: Summary, mode: keyof typeof MODES) {
  return rows.find((r) =>
    r.connections === acquire.connections &&
    r.server === `${programOf(acquire)} ${MODES[mode].label}`
  );
}

/** The program's name in a row of acquire with the default flags. */
function programOf(acquire: Summary): string {
  return acquire.server.slice(0, -` ${MODES.acquire.label}`.length);
}

/** The rows of acquire with the default flags. */
function acquireRows(rows: readonly Summary[]): Summary[] {
  return rows.filter((r) => r.server.endsWith(` ${MODES.acquire.label}`));
}

/** `name: ` before each line of a program when there are several (a baseline), else nothing. */
function programPrefix(rows: readonly Summary[]): (acquire: Summary) => string {
  const several = new Set(acquireRows(rows).map(programOf)).size > 1;
  return (acquire) => several ? `${programOf(acquire)}: ` : "";
}

/**
 * The throughput of acquire at the default level (text) and as JSON, relative
 * to the same server at `--logLevel warn`; the default is held to
 * {@linkcode LOG_TARGET_RATIO}.
 */
export function logCostLines(rows: readonly Summary[]): string[] {
  const prefix = programPrefix(rows);
  return acquireRows(rows).flatMap((acquire) => {
    const base = rowOf(rows, acquire, "acquire-warn");
    if (!base || base.requestsPerSecond === 0) return [];
    const ratio = (row: Summary) => row.requestsPerSecond / base.requestsPerSecond;
    const text = ratio(acquire);
    const json = rowOf(rows, acquire, "acquire-json");
    return [
      `${prefix(acquire)}default (text) at ${acquire.connections} connections: ${
        text.toFixed(2)
      } of ` +
      `--logLevel warn (target ${LOG_TARGET_RATIO}): ${
        text >= LOG_TARGET_RATIO ? "met" : "NOT met"
      }`,
      ...json
        ? [
          `${prefix(acquire)}--logFormat json at ${json.connections} connections: ${
            ratio(json).toFixed(2)
          } of ` +
          "--logLevel warn",
        ]
        : [],
    ];
  });
}

/** Each variant of acquire relative to acquire with the default flags, in the same run. */
export function variantLines(rows: readonly Summary[]): string[] {
  const prefix = programPrefix(rows);
  return acquireRows(rows).flatMap((acquire) =>
    LOCK_MODES.filter((mode) => mode.startsWith("acquire-")).flatMap((mode) => {
      const row = rowOf(rows, acquire, mode);
      if (!row || acquire.requestsPerSecond === 0) return [];
      const variant = MODES[mode].label.replace(/^acquire, (.*) \(200\)$/, "$1");
      return [
        `${prefix(acquire)}${variant} at ${row.connections} connections: ` +
        `${(row.requestsPerSecond / acquire.requestsPerSecond).toFixed(2)} of the default ` +
        `(${formatRate(row.requestsPerSecond)} vs ${formatRate(acquire.requestsPerSecond)} req/s)`,
      ];
    })
  );
}

function formatRate(perSecond: number): string {
  return Math.round(perSecond).toLocaleString("en-US");
}

/** Prints the figures of the handoff, rollout and memory parts together. */
function printFigures(figures: readonly Figure[], programs: readonly Program[]): void {
  console.log("\nTargets (handoff, rollout, memory):");
  for (const line of figureTargetLines(figures)) console.log(`  ${line}`);
  console.log("\nFor the README:\n");
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
  const onSignal = () => stopAll(started).finally(() => Deno.exit(130));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let http: HttpResults = { rows: [], scrapeLines: [], droppedLines: [] };
  try {
    for (const part of parts) {
      if (part === "http") {
        if (wrk === undefined) continue;
        console.log("\nHTTP throughput (wrk):");
        http = await bench(config, programs, started);
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
          // This checkout's own fairness: a baseline's is not compared.
          : part === "fair"
          ? (i > 0 ? [] : await runFair({
            ...(common.label === undefined ? {} : { label: common.label }),
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
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) Deno.exit(await main());
