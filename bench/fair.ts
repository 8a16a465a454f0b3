/**
 * Fairness behind a load balancer (issue 16): the randomized run of
 * `bench/_fair_run.ts` at length. 45 clients on 3 replicas sharing a
 * redis-server, 3 slots, 2 s chunks; four runs: clients that hop between
 * replicas at random and clients that stick to one, each without and with
 * faults (Redis `kill -9` and restarted, Redis or a replica frozen, pub/sub
 * killed). For each: the longest wait against the time the line needs to
 * drain (target: at most {@linkcode WAIT_TO_DRAIN_TARGET}×), in seconds and
 * on the line's own clock (the most grants to others while one turn waited,
 * against one per client: what a stalling machine cannot stretch), grants,
 * and the most holders the clients believed there were (target: the slots).
 *
 * `BENCH_FAIR_SECONDS` (60) sets each run's length, `BENCH_FAIR_SEED` (16)
 * its random choices.
 *
 * @module
 */
import { type FairReport, fairRun, type ProgramLauncher } from "./_fair_run.ts";
import { REDIS_SERVER } from "./_redis_server.ts";
import { atMost, type Figure, formatSeconds, labelText } from "./figures.ts";

/** The longest wait may be at most this many drain times. */
export const WAIT_TO_DRAIN_TARGET = 1.5;

const NAME = "Fair behind a load balancer";
const SLOTS = 3;
const CLIENTS = 45;

/** Options of {@linkcode runFair}. */
export interface FairBenchOptions {
  label?: string;
  /** The program the replicas run. */
  program: ProgramLauncher;
  /** Each run's length. */
  seconds: number;
  seed: number;
}

/** Runs the four runs one after the other, printing as it goes; returns their figures. */
export async function runFair(options: FairBenchOptions): Promise<Figure[]> {
  if (!REDIS_SERVER) {
    console.log(`\n${NAME}: skipped, redis-server is not installed (apt-get install redis-server)`);
    return [];
  }
  console.log(
    `\n${NAME}${labelText(options.label)}: 45 clients, 3 replicas, ${SLOTS} slots, ` +
      `${options.seconds} s per run, seed ${options.seed}`,
  );
  const figures: Figure[] = [];
  for (const hop of [true, false]) {
    for (const faults of [false, true]) {
      const what = `${hop ? "hopping" : "sticky"} clients${faults ? ", faults" : ""}`;
      const report = await fairRun({
        program: options.program,
        seed: options.seed,
        runMs: options.seconds * 1000,
        hop,
        faults,
        log: (line) => console.log(`  ${what}: fault at ${line}`),
      });
      const ratio = report.longestWaitMs / report.drainMs;
      console.log(`  ${what}: ${summary(report)}`);
      figures.push(
        {
          benchmark: NAME,
          measure: `${what}: longest wait / drain time (45 clients ÷ grants per second)`,
          value: `${formatSeconds(report.longestWaitMs)} / ${formatSeconds(report.drainMs)} = ${
            ratio.toFixed(2)
          }`,
          target: atMost(ratio, WAIT_TO_DRAIN_TARGET, `${WAIT_TO_DRAIN_TARGET}×`),
        },
        {
          benchmark: NAME,
          measure: `${what}: the most grants to others while one turn waited / ${CLIENTS} clients`,
          value: `${report.mostGrantsBefore} / ${CLIENTS} = ${
            (report.mostGrantsBefore / CLIENTS).toFixed(2)
          }`,
          target: atMost(
            report.mostGrantsBefore / CLIENTS,
            WAIT_TO_DRAIN_TARGET,
            `${WAIT_TO_DRAIN_TARGET}×`,
          ),
        },
        {
          benchmark: NAME,
          measure: `${what}: grants, clients never served`,
          value: `${report.grants}, ${report.unserved.length}`,
        },
        {
          benchmark: NAME,
          measure: `${what}: most holders (clients' records / Redis)`,
          value: `${report.maxHolders} / ${report.serverMaxHolders}`,
          target: atMost(Math.max(report.maxHolders, report.serverMaxHolders), SLOTS, `${SLOTS}`),
        },
      );
    }
  }
  return figures;
}

function summary(r: FairReport): string {
  return `longest wait ${formatSeconds(r.longestWaitMs)} (${r.longestWaitClient}), drain ` +
    `${formatSeconds(r.drainMs)} (${r.grantsPerSecond.toFixed(2)} grants/s); at most ` +
    `${r.mostGrantsBefore} grants to others while one turn waited (${r.worstTurnClient}), ` +
    `${r.handBacks.length} handed back, ${r.grants} grants, ` +
    `most holders ${r.maxHolders} (clients) ${r.serverMaxHolders} (Redis), ` +
    `${r.shortGrants} grants shorter than asked, unserved ${r.unserved.length}, ` +
    `refusals ${JSON.stringify(r.refusals)}`;
}
