/**
 * Fair behind a load balancer (issue 16), black-box: 45 clients on 3
 * replicas of the real program sharing a real redis-server, 3 slots, each
 * request sent to a replica chosen at random (`bench/_fair_run.ts`). From
 * the clients' own records: never more holders than slots, every client
 * served, and the longest wait within 1.5× the time the line needs to drain.
 * Both are counted on the line's own clock, in grants: a turn waited as long
 * as the grants to other clients made meanwhile, and the line drains in one
 * grant per client. In a line served in order, a turn waits for at most every
 * other client once (44 grants, 0.98×), however slow the machine; a place
 * lost sends a client behind everyone again (about 1.6×). The same ratio in
 * seconds (the longest wait / 45 clients ÷ the grants per second of the run)
 * is printed beside it: a shared machine that stalls stretches it. Then a
 * short run with faults:
 * Redis `kill -9` and restarted, Redis and a replica frozen, pub/sub killed.
 *
 * Seeded: `FAIR_SEED=N` repeats a run's choices; the seed is printed. A run
 * whose longest wait breaks the bound prints that turn's requests;
 * `FAIR_HISTORY=1` adds what the replicas logged of that client (debug).
 */
import assert from "node:assert/strict";
import { type FairReport, fairRun } from "../../bench/_fair_run.ts";
import { programCommand } from "../_program.ts";
import { SKIP_REDIS } from "../_redis.ts";

/** The seed of this run's random choices. */
const SEED = Number(Deno.env.get("FAIR_SEED") ?? 16);
/** Whether the replicas log at debug level, to show what they did with the longest turn. */
const HISTORY = Deno.env.get("FAIR_HISTORY") === "1";
/** Each request's `?wait=` (`FAIR_CHUNK`, 2 s by default, as the clients). */
const CHUNK = Deno.env.get("FAIR_CHUNK") || undefined;
/** The longest wait may be this many times the drain time: one drain, and room for chance. */
export const WAIT_TO_DRAIN_BOUND = 1.5;
const SLOTS = 3;
/** The run's clients (`fairRun`'s default). */
const CLIENTS = 45;

function figures(what: string, r: FairReport): string {
  return `${what} (seed ${r.seed}): longest wait ${(r.longestWaitMs / 1000).toFixed(1)} s ` +
    `(${r.longestWaitClient}) against a drain of ${(r.drainMs / 1000).toFixed(1)} s ` +
    `(${r.grantsPerSecond.toFixed(2)} grants/s), ratio ${
      (r.longestWaitMs / r.drainMs).toFixed(2)
    }; in grants: at most ${r.mostGrantsBefore} to others while one turn waited, ratio ${
      (r.mostGrantsBefore / CLIENTS).toFixed(2)
    }; ` +
    `${r.grants} grants, most holders ${r.maxHolders} (clients) ${r.serverMaxHolders} (Redis), ` +
    `${r.shortGrants} grants shorter than asked, unserved ${r.unserved.length}, ` +
    `${r.handBacks.length} handed back` +
    (r.faults.length > 0 ? `; faults: ${r.faults.join(", ")}` : "");
}

function assertSafeAndServed(r: FairReport): void {
  assert.ok(r.maxHolders <= SLOTS, `the clients believed ${r.maxHolders} held ${SLOTS} slots`);
  assert.ok(r.serverMaxHolders <= SLOTS, `Redis held ${r.serverMaxHolders} leases`);
  assert.deepEqual(r.unserved, [], "every client is served");
  assert.equal(r.shortGrants, 0, "every grant is for the duration asked");
}

const redisTest = (name: string, fn: () => Promise<void>) =>
  SKIP_REDIS
    ? Deno.test.ignore(`${name} (skipped: redis-server is not installed)`, () => {})
    : Deno.test(name, fn);

redisTest(
  "45 clients hopping between 3 replicas at random: at most 3 holders, all served, the longest wait within 1.5× the drain time",
  async () => {
    const report = await fairRun({
      program: programCommand(),
      seed: SEED,
      runMs: 30_000,
      hop: true,
      history: HISTORY,
      ...(CHUNK === undefined ? {} : { chunk: CHUNK }),
    });
    console.log(figures("hopping clients", report));
    assertSafeAndServed(report);
    const ratio = report.mostGrantsBefore / CLIENTS;
    if (ratio > WAIT_TO_DRAIN_BOUND || HISTORY) {
      console.log(`the turn that waited for the most grants (${report.worstTurnClient}):`);
      for (const line of [...report.worstTurn, ...report.worstTurnLog, ...report.handBacks]) {
        console.log(`  ${line}`);
      }
    }
    assert.ok(
      ratio <= WAIT_TO_DRAIN_BOUND,
      `a turn waited for ${report.mostGrantsBefore} grants to others: ${ratio.toFixed(2)}× ` +
        `the line's ${CLIENTS}`,
    );
  },
);

redisTest(
  "45 clients hopping between 3 replicas through faults (Redis kill -9 and SIGSTOP, a replica frozen, pub/sub killed): at most 3 holders, all served",
  async () => {
    const report = await fairRun({
      program: programCommand(),
      seed: SEED,
      runMs: 20_000,
      hop: true,
      faults: true,
      log: (line) => console.log(`  fault at ${line}`),
    });
    console.log(figures("hopping clients, faults", report));
    assert.ok(report.faults.length >= 3, "faults were thrown in");
    assertSafeAndServed(report);
  },
);
