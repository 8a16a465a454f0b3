/**
 * The randomized fault run of `tests/_nemesis.ts` for minutes: a real
 * redis-server (`appendfsync always`), 3 replicas of the program, 200 clients
 * with ids asking in chunks, and a nemesis that every 2–5 s kills Redis,
 * freezes a replica, kills the pub/sub connections, closes a replica's gate
 * or flushes Redis. Prints each property's verdict (`tests/_nemesis_checks.ts`)
 * and the figures: grants, most holders seen, the longest free slot while a
 * client waited, waits, faults by kind. A violated property is a figure whose
 * target is NOT met; it never fails the run.
 *
 * Environment: `BENCH_NEMESIS_SECONDS` (180), `BENCH_NEMESIS_CLIENTS` (200),
 * `BENCH_NEMESIS_REPLICAS` (3), `BENCH_NEMESIS_LOCKS` (4),
 * `BENCH_NEMESIS_SEED` (random, printed to replay the run),
 * `BENCH_NEMESIS_MAX_DURATION_MS` (5000, the replicas' `--maxDuration`),
 * `BENCH_NEMESIS_FAULTS` (the kinds to draw from, comma-separated; all by default),
 * `BENCH_NEMESIS_HISTORY=FILE` (everything recorded, as JSON, to study a failure). A bad
 * value skips the part with one line saying what is allowed.
 *
 * @module
 */
import { FAULT_KINDS, type FaultKind, runNemesis } from "./_nemesis.ts";
import { judgementLines, LIVENESS_BOUND_MS } from "./_nemesis_checks.ts";
import { REDIS_SERVER } from "./_redis_server.ts";
import { atMost, type Figure, formatMs, formatSeconds, labelText } from "./figures.ts";
import type { ChildProcess } from "./process.ts";
import type { Program } from "./program.ts";

/** Options of {@linkcode runNemesisBench}. */
export interface NemesisBenchOptions {
  program: Program;
  label?: string;
  /** Told of each child process, so that an interrupted run stops it. */
  track: (child: ChildProcess) => void;
}

const NAME = "Fault run (nemesis)";

/** Reads `BENCH_NEMESIS_*`; throws `RangeError` on a bad value. */
export function nemesisConfig(get: (name: string) => string | undefined) {
  const int = (name: string, fallback: number) => {
    const raw = get(`BENCH_NEMESIS_${name}`);
    if (raw === undefined || raw === "") return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(`BENCH_NEMESIS_${name}: expected a positive integer, got "${raw}"`);
    }
    return value;
  };
  const faults = get("BENCH_NEMESIS_FAULTS")?.split(",").map((f) => f.trim()).filter((f) => f) ??
    [...FAULT_KINDS];
  for (const f of faults) {
    if (!(FAULT_KINDS as readonly string[]).includes(f)) {
      throw new RangeError(
        `BENCH_NEMESIS_FAULTS: expected some of ${FAULT_KINDS.join(", ")}, got "${f}"`,
      );
    }
  }
  return {
    faults: faults as FaultKind[],
    seconds: int("SECONDS", 180),
    clients: int("CLIENTS", 200),
    replicas: int("REPLICAS", 3),
    locks: int("LOCKS", 4),
    seed: int("SEED", Math.floor(Math.random() * 2 ** 31) + 1),
    maxDurationMs: int("MAX_DURATION_MS", 5_000),
  };
}

/** Runs the fault run, printing as it goes; returns its figures. */
export async function runNemesisBench(options: NemesisBenchOptions): Promise<Figure[]> {
  if (!REDIS_SERVER) {
    console.log(`\n${NAME}: skipped, redis-server is not installed (apt-get install redis-server)`);
    return [];
  }
  let config: ReturnType<typeof nemesisConfig>;
  try {
    config = nemesisConfig((name) => Deno.env.get(name));
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    console.log(`\n${NAME}: skipped, ${error.message}`);
    return [];
  }
  console.log(
    `\n${NAME}${labelText(options.label)}: replay with BENCH_NEMESIS_SEED=${config.seed} ` +
      `BENCH_NEMESIS_SECONDS=${config.seconds} BENCH_NEMESIS_CLIENTS=${config.clients}`,
  );
  const run = await runNemesis({
    ...config,
    program: options.program,
    track: (pid) => options.track(killable(pid)),
  });
  for (const line of judgementLines(run.judgement)) console.log(`  ${line}`);
  const dump = Deno.env.get("BENCH_NEMESIS_HISTORY");
  if (dump) await Deno.writeTextFile(dump, JSON.stringify(run.history));
  const f = run.judgement.figures;
  const verdict = (property: string) => run.judgement.verdicts.find((v) => v.property === property);
  const holds = (property: string) => ({
    text: "holds",
    met: verdict(property)?.ok ?? false,
  });
  const kinds = (record: Partial<Record<string, number>>) =>
    Object.entries(record).map(([k, v]) => `${k} ${v}`).join(", ") || "none";
  const at = (measure: string) => `${measure} (${config.seconds} s, seed ${config.seed})`;
  return [
    { benchmark: NAME, measure: at("grants"), value: String(f.grants) },
    {
      benchmark: NAME,
      measure: "most holders outside recovery windows, by the clients' records",
      value: `${f.maxHoldersOutsideRecovery} of ${config.locks}`,
      target: holds("safety (clients)"),
    },
    {
      benchmark: NAME,
      measure: "most holders anywhere (clients' records) / in Redis",
      value: `${f.maxHoldersClients} / ${f.maxHoldersRedis}`,
      target: holds("safety (Redis)"),
    },
    {
      benchmark: NAME,
      measure: "grants inside a recovery window after a loss of Redis data",
      value: String(f.recoveryGrants),
      target: holds("recovery"),
    },
    {
      benchmark: NAME,
      measure: "longest free slot while an able client waited (not excused)",
      value: formatMs(f.longestUnexcusedGapMs),
      target: atMost(f.longestUnexcusedGapMs, LIVENESS_BOUND_MS, formatSeconds(LIVENESS_BOUND_MS)),
    },
    {
      benchmark: NAME,
      measure: "longest free slot while a client waited, by fault",
      value: kinds(f.longestGapByKind) + (Object.keys(f.longestGapByKind).length ? " ms" : ""),
    },
    {
      benchmark: NAME,
      measure: "wait from first request to 200: p50 / p99 / longest",
      value: `${formatSeconds(f.waitP50Ms)} / ${formatSeconds(f.waitP99Ms)} / ${
        formatSeconds(f.waitMaxMs)
      }`,
    },
    {
      benchmark: NAME,
      measure: "clients unserved after the faults stopped",
      value: String(f.unserved),
      target: holds("served"),
    },
    {
      benchmark: NAME,
      measure: "replica crashes (exit codes, uncaught errors)",
      value: verdict("no crash")?.ok ? "none" : (verdict("no crash")?.examples.join("; ") ?? ""),
      target: holds("no crash"),
    },
    { benchmark: NAME, measure: "faults injected", value: kinds(f.faults) },
  ];
}

/** A child process known only by its pid, for the bench's cleanup on an interrupt. */
function killable(pid: number): ChildProcess {
  return {
    pid,
    lines: [],
    exited: () => false,
    waitForLine: () => Promise.reject(new Error("not watched")),
    stop: () => {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone already.
      }
      return Promise.resolve();
    },
  };
}
