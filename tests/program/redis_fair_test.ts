/**
 * Fair behind a load balancer (issue 16), black-box: 45 clients on 3
 * replicas of the real program sharing a real redis-server, 3 slots, each
 * request sent to a replica chosen at random (`tests/_fair_run.ts`). From
 * the clients' own records: never more holders than slots, every client
 * served, and the longest wait within 1.5× the time the line needs to drain
 * (45 clients / the grants per second measured in the same run: a ratio of
 * two figures of one run, not a time bound). Then a short run with faults:
 * Redis `kill -9` and restarted, Redis and a replica frozen, pub/sub killed.
 *
 * Seeded: `FAIR_SEED=N` repeats a run's choices; the seed is printed.
 */
import assert from "node:assert/strict";
import { type FairReport, fairRun } from "../_fair_run.ts";
import { SKIP_REDIS } from "../_redis.ts";

/** The seed of this run's random choices. */
const SEED = Number(Deno.env.get("FAIR_SEED") ?? 16);
/** The longest wait may be this many times the drain time: one drain, and room for chance. */
export const WAIT_TO_DRAIN_BOUND = 1.5;
/**
 * Whether the fairness assertion is on. It was off while the shared line
 * kept a place per replica ticket rather than per id (a client that moved
 * went to the back: the longest wait was 2.2× the drain time); the run then
 * printed the figure instead of failing.
 */
const IDS_KEEP_THEIR_PLACE_ACROSS_REPLICAS = true;

const SLOTS = 3;

function figures(what: string, r: FairReport): string {
  return `${what} (seed ${r.seed}): longest wait ${(r.longestWaitMs / 1000).toFixed(1)} s ` +
    `(${r.longestWaitClient}) against a drain of ${(r.drainMs / 1000).toFixed(1)} s ` +
    `(${r.grantsPerSecond.toFixed(2)} grants/s), ratio ${
      (r.longestWaitMs / r.drainMs).toFixed(2)
    }; ` +
    `${r.grants} grants, most holders ${r.maxHolders} (clients) ${r.serverMaxHolders} (Redis), ` +
    `${r.shortGrants} grants shorter than asked, unserved ${r.unserved.length}` +
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
    const report = await fairRun({ seed: SEED, runMs: 30_000, hop: true });
    console.log(figures("hopping clients", report));
    assertSafeAndServed(report);
    const ratio = report.longestWaitMs / report.drainMs;
    if (IDS_KEEP_THEIR_PLACE_ACROSS_REPLICAS) {
      assert.ok(ratio <= WAIT_TO_DRAIN_BOUND, `longest wait ${ratio.toFixed(2)}× the drain time`);
    } else if (ratio > WAIT_TO_DRAIN_BOUND) {
      console.log(`KNOWN DEFECT (issue 16): longest wait ${ratio.toFixed(2)}× the drain time`);
    }
  },
);

redisTest(
  "45 clients hopping between 3 replicas through faults (Redis kill -9 and SIGSTOP, a replica frozen, pub/sub killed): at most 3 holders, all served",
  async () => {
    const report = await fairRun({
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
