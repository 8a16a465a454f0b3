/**
 * The `http` part of `deno task bench`: throughput and latency under many keep-alive connections,
 * measured with `wrk` against a bare `Deno.serve` handler that always
 * answers 423, in the same run. startup-lock runs as users run it first,
 * with the default flags (log level `info`, text lines, metrics on as they
 * always are), then in variants that each change one thing (`servers.ts`):
 * - `deny`: one slot, taken first, so every request is a 423 (refusals are
 *   logged at `debug` only, so no line per request).
 * - `acquire`: a million slots that expire after 1 s, so requests get 200,
 *   each with a "Lock granted" line and, a second later, a "Lock expired" one.
 * - `acquire, --logLevel warn`: no line per request; the default's
 *   throughput relative to it is the cost of logging (target
 *   {@link LOG_TARGET_RATIO}).
 * - `acquire, --logFormat json`: the same lines as JSON.
 * - `acquire, --stateFile`: every grant on disk before its 200; its rounds
 *   run `STATE_FILE_LENGTH_FACTOR` times as long, to settle.
 * - `acquire, /metrics scraped`: metrics cannot be turned off, so what
 *   varies is a Prometheus fetching `/metrics` every
 *   `SCRAPE_INTERVAL_MS` during the run.
 *
 * Each acquire run is followed by a pause of `SETTLE_MS` (`servers.ts`): the
 * locks it granted last expire (and are logged) then, not during the next
 * server's run.
 *
 * A baseline checkout (`--baseline`) runs `deny`, `acquire` and `acquire,
 * --logLevel warn` only, so that its cost of logging is measured too. Each
 * server is measured at each concurrency in alternating rounds; the tables
 * show the median of the rounds. The variants are also printed relative to
 * `acquire` in the same run.
 *
 * @module
 */
import { delay } from "./process.ts";
import type { Program } from "./program.ts";
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
  startBareServer,
  startLockServer,
  STATE_FILE_LENGTH_FACTOR,
} from "./servers.ts";
import { runWrk, type WrkResult } from "./wrk.ts";

/** How the `http` part runs, from `BENCH_*` variables. */
export interface HttpConfig {
  seconds: number;
  rounds: number;
  warmupSeconds: number;
  threads: number;
  connections: number[];
}

/** A server under test, its name in the tables, and how startup-lock runs in it. */
interface Target {
  name: string;
  server: BenchServer;
  mode?: ModeSpec;
}
/** Something started that must be stopped, even when the run is interrupted. */
export interface Stoppable {
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
  config: HttpConfig,
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
export interface HttpResults {
  rows: Summary[];
  /** One line per scraped server and concurrency: how many scrapes, how long they took. */
  scrapeLines: string[];
  /**
   * One line per startup-lock server that dropped log lines during the run: a
   * server that drops lines writes less, so its figure would flatter it.
   */
  droppedLines: string[];
}

/** Runs the `http` part: every server at every concurrency, in alternating rounds. */
export async function runHttp(
  config: HttpConfig,
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

/** Prints the `http` part's tables and ratios. */
export function printResults(results: HttpResults): void {
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
  console.log("\nFor docs/performance.md:\n");
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
