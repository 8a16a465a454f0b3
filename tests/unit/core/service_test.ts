/**
 * The service's own rules, above the queue and the store: nobody jumps ahead
 * of waiting clients, an id that holds a lock gets it back, durations are cut
 * to the longest allowed, gates hold grants back, denials carry their data,
 * and what happens is reported as events. Queue rules live in queue_test.ts,
 * store failures in service_faults_test.ts.
 *
 * The whole suite runs twice, checking the same things: on the memory store
 * with a manual clock, and on the Redis store (a real redis-server) on the real
 * clock, where a lease runs out on the Redis server's clock, time passes by
 * sleeping, every duration is counted in a shorter unit, and a time in an
 * answer may be off by a tolerance.
 */
import assert from "node:assert/strict";
import { type Clock, realClock } from "../../../lib/clock.ts";
import { EventBus, type LockEvent } from "../../../lib/core/events.ts";
import { Gates } from "../../../lib/core/gates.ts";
import { LockService, UNAVAILABLE_RETRY_MS } from "../../../lib/core/service.ts";
import type { LockStore } from "../../../lib/core/store.ts";
import { MemoryLockStore } from "../../../lib/stores/memory.ts";
import { RedisLockStore } from "../../../lib/stores/redis/store.ts";
import { parseStore } from "../../../lib/stores/settings.ts";
import { ManualClock } from "../../_clock.ts";
import { ManualGate } from "../../_gate.ts";
import { RedisServer, SKIP_REDIS } from "../../_redis.ts";

/** A store for the suite, with the clock the service runs on and how time passes for both. */
interface StoreUnderTest {
  store: LockStore;
  clock: Clock;
  /** Lets `ms` pass for the service and the store: advances a manual clock, or sleeps. */
  advance(ms: number): Promise<void>;
}

/** One run of the suite. */
interface Variant {
  /** Appended to every test name, in parentheses. */
  name: string;
  /** The time unit: every duration of the suite is a multiple of it. */
  unitMs: number;
  /** How far a time in an answer or an event may be off (0 on a manual clock). */
  toleranceMs: number;
  /** Why the variant cannot run here, if it cannot: its tests are then listed as ignored. */
  skip?: string | undefined;
  open(locks: number): Promise<StoreUnderTest>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * `actual`, with each `…Ms` number that is within `tolerance` of the one at the
 * same place in `expected` replaced by it: `deepEqual` then checks the rest
 * exactly, and shows the times that are too far off.
 */
function snapTimes(actual: unknown, expected: unknown, tolerance: number): unknown {
  if (Array.isArray(actual) && Array.isArray(expected)) {
    return actual.map((a, i) => snapTimes(a, expected[i], tolerance));
  }
  if (isRecord(actual) && isRecord(expected)) {
    return Object.fromEntries(
      Object.entries(actual).map(([key, value]) => {
        const want = expected[key];
        const close = key.endsWith("Ms") && typeof value === "number" &&
          typeof want === "number" && Math.abs(value - want) <= tolerance;
        return [key, close ? want : snapTimes(value, want, tolerance)];
      }),
    );
  }
  return actual;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function serviceSuite(variant: Variant): void {
  const U = variant.unitMs;
  const tolerance = variant.toleranceMs;
  const MAX_DURATION_MS = 60 * U;

  async function setup(
    options: { locks?: number; maxWaiters?: number; gate?: ManualGate } = {},
  ) {
    const { store, clock, advance } = await variant.open(options.locks ?? 1);
    const events = new EventBus();
    const seen: LockEvent[] = [];
    events.on((e) => seen.push(e));
    const service = new LockService({
      store,
      clock,
      events,
      maxDurationMs: MAX_DURATION_MS,
      ...(options.gate ? { gates: new Gates([options.gate]) } : {}),
      ...(options.maxWaiters === undefined ? {} : { maxWaiters: options.maxWaiters }),
    });
    return {
      store,
      service,
      seen,
      advance,
      /** Takes a lock at once; returns the grant. */
      async take(durationMs = 10 * U, id?: string) {
        const outcome = await service.acquire({ durationMs, id });
        assert.ok(outcome.granted, JSON.stringify(outcome));
        return outcome;
      },
      /** How many slots the store holds. */
      async held() {
        return (await store.leases()).length;
      },
      /**
       * Waits until `n` clients wait in the queue. The memory store answers at
       * once, so a waiting request is in the queue when `acquire()` returns;
       * with Redis it gets there after the store's first answer.
       */
      async queued(n: number) {
        for (const deadline = Date.now() + 2_000; service.waiting !== n;) {
          assert.ok(Date.now() < deadline, `${service.waiting} waiting, expected ${n}`);
          await sleep(1);
        }
      },
      /** `assert.deepEqual`, with every `…Ms` time allowed the tolerance. */
      same(actual: unknown, expected: unknown, message?: string) {
        assert.deepEqual(snapTimes(actual, expected, tolerance), expected, message);
      },
      /** `actual` is `expected` milliseconds, give or take the tolerance. */
      near(actual: number, expected: number, what: string) {
        assert.ok(
          Math.abs(actual - expected) <= tolerance,
          `${what}: expected ${expected} ms (±${tolerance}), got ${actual}`,
        );
      },
      async [Symbol.asyncDispose]() {
        service.close();
        await store.close();
      },
    };
  }

  const test = (name: string, fn: (t: Deno.TestContext) => Promise<void>) =>
    Deno.test({ name: `${name} (${variant.name})`, ignore: variant.skip !== undefined, fn });

  test("LockService refuses a request that does not wait while others wait, until the next slot frees", async () => {
    await using s = await setup();
    const holder = await s.take(20 * U);
    const waiter = s.service.acquire({ durationMs: U, waitMs: 30 * U });
    await s.queued(1);
    const impatient = await s.service.acquire({ durationMs: U });
    s.same(impatient, {
      granted: false,
      denial: { reason: "queued", waiting: 1, retryAfterMs: 20 * U },
    });
    await s.service.release(holder.lease.token);
    assert.ok((await waiter).granted);
  });

  test("LockService names a closed gate before the waiting queue", async () => {
    await using s = await setup({ locks: 2, gate: new ManualGate() });
    const waiter = s.service.acquire({ durationMs: U, waitMs: 30 * U });
    await s.queued(1);
    const impatient = await s.service.acquire({ durationMs: U });
    assert.ok(!impatient.granted);
    assert.equal(impatient.denial.reason, "starting", "the closed gate speaks first");
    s.service.close();
    await waiter;
  });

  test("LockService gives an id that holds a lock the same lease back, ahead of waiters and past closed gates", async (t) => {
    const gate = new ManualGate();
    gate.open();
    await using s = await setup({ gate });
    const holder = await s.take(10 * U, "web-1");
    const waiter = s.service.acquire({ durationMs: U, id: "web-2", waitMs: 30 * U });
    await s.queued(1);
    await t.step("while another client waits, renewed to the duration asked", async () => {
      const again = await s.service.acquire({ durationMs: 5 * U, id: "web-1" });
      assert.ok(again.granted && again.existing);
      assert.equal(again.lease.token, holder.lease.token);
      assert.equal(again.durationMs, 5 * U);
      s.near(again.lease.remainingMs, 5 * U, "remainingMs of the renewed lease");
      assert.equal(await s.held(), 1);
    });
    await t.step("while a gate is closed", async () => {
      gate.close({ reason: "starting", retryAfterMs: 1_000 });
      const again = await s.service.acquire({ durationMs: 20 * U, id: "web-1" });
      assert.ok(again.granted && again.existing);
      assert.equal(again.durationMs, 20 * U);
      s.near(again.lease.remainingMs, 20 * U, "remainingMs of the renewed lease");
      const other = await s.service.acquire({ durationMs: 5 * U, id: "web-3" });
      assert.ok(!other.granted && other.denial.reason === "starting");
    });
    s.service.close();
    await waiter;
  });

  test("LockService grants a duration over the longest allowed, cut to it, and says what was asked", async () => {
    await using s = await setup();
    const outcome = await s.take(2 * MAX_DURATION_MS, "long");
    assert.equal(outcome.durationMs, MAX_DURATION_MS);
    assert.equal(outcome.requestedMs, 2 * MAX_DURATION_MS);
    s.near(outcome.lease.remainingMs, MAX_DURATION_MS, "remainingMs");
    const renewal = await s.service.renew(outcome.lease.token, 3 * MAX_DURATION_MS);
    assert.ok(renewal.renewed);
    assert.equal(renewal.durationMs, MAX_DURATION_MS);
    assert.equal(renewal.requestedMs, 3 * MAX_DURATION_MS);
    const fits = await s.service.renew(outcome.lease.token, U);
    assert.ok(fits.renewed && fits.requestedMs === undefined && fits.durationMs === U);
    const granted = s.seen.find((e) => e.type === "granted");
    assert.ok(granted?.type === "granted");
    assert.equal(granted.requestedMs, 2 * MAX_DURATION_MS);
    assert.equal(granted.durationMs, MAX_DURATION_MS);
  });

  test("LockService answers a waiter whose wait runs out with the current reason", async () => {
    await using s = await setup();
    await s.take(10 * U);
    const waiter = s.service.acquire({ durationMs: U, waitMs: 4 * U });
    await s.advance(4 * U);
    s.same(await waiter, {
      granted: false,
      denial: { reason: "busy", capacity: 1, nextFreeInMs: 6 * U, retryAfterMs: 6 * U },
    });
    assert.equal(s.service.waiting, 0);
  });

  test("LockService refuses a full queue with 503 data and the next free slot as the retry time", async () => {
    await using s = await setup({ maxWaiters: 1 });
    await s.take(30 * U);
    const first = s.service.acquire({ durationMs: U, waitMs: 60 * U });
    await s.queued(1);
    const second = await s.service.acquire({ durationMs: U, waitMs: 60 * U });
    s.same(second, {
      granted: false,
      denial: { reason: "queue_full", waiting: 1, retryAfterMs: 30 * U },
    });
    s.service.close();
    await first;
  });

  test("LockService lets waiters in, in order, when its gates open", async () => {
    const gate = new ManualGate();
    await using s = await setup({ locks: 2, gate });
    const a = s.service.acquire({ durationMs: U, id: "a", waitMs: 60 * U });
    await s.queued(1);
    const b = s.service.acquire({ durationMs: U, id: "b", waitMs: 60 * U });
    await s.queued(2);
    const refused = await s.service.acquire({ durationMs: U, id: "c" });
    assert.ok(!refused.granted && refused.denial.reason === "starting");
    gate.open();
    const [first, second] = [await a, await b];
    assert.ok(first.granted && second.granted);
    assert.deepEqual(
      s.seen.filter((e) => e.type === "granted").map((e) => e.id),
      ["a", "b"],
      "in order",
    );
  });

  test("LockService reports grants, releases, expiries, renewals and denials as events without tokens", async () => {
    await using s = await setup();
    const a = await s.take(5 * U, "a");
    const waiting = s.service.acquire({ durationMs: 2 * U, id: "b", waitMs: 60 * U });
    await s.queued(1);
    await s.service.acquire({ durationMs: U, id: "c" });
    await s.advance(U);
    await s.service.renew(a.lease.token, 3 * U);
    await s.advance(3 * U); // a expires; b gets the slot after waiting 4 units.
    const b = await waiting;
    assert.ok(b.granted);
    await s.advance(U / 2);
    await s.service.release(b.lease.token);
    const token = (t: string) => t.slice(0, 6);
    s.same(s.seen.filter((e) => e.type !== "queued"), [
      {
        type: "granted",
        id: "a",
        token: token(a.lease.token),
        durationMs: 5 * U,
        requestedMs: undefined,
        waitedMs: 0,
      },
      {
        type: "denied",
        id: "c",
        reason: "queued",
        retryAfterMs: Math.max(UNAVAILABLE_RETRY_MS, 5 * U),
      },
      {
        type: "renewed",
        id: "a",
        token: token(a.lease.token),
        durationMs: 3 * U,
        requestedMs: undefined,
      },
      { type: "expired", id: "a", token: token(a.lease.token), heldMs: 4 * U },
      {
        type: "granted",
        id: "b",
        token: token(b.lease.token),
        durationMs: 2 * U,
        requestedMs: undefined,
        waitedMs: 4 * U,
      },
      { type: "released", id: "b", token: token(b.lease.token), heldMs: U / 2 },
    ]);
    for (const event of s.seen) {
      assert.ok(!JSON.stringify(event).includes(a.lease.token), "no whole token in an event");
    }
  });

  test("LockService.status() gives holders, waiters, returning clients, gates and the reason as data", async () => {
    const gate = new ManualGate("manual");
    gate.open();
    await using s = await setup({ locks: 2, gate });
    await s.take(10 * U, "a");
    await s.take(20 * U);
    const w1 = s.service.acquire({ durationMs: U, id: "w1", waitMs: 60 * U });
    await s.queued(1);
    const away = s.service.acquire({ durationMs: U, id: "away", waitMs: U });
    await s.queued(2);
    const anonymous = s.service.acquire({ durationMs: U, waitMs: 60 * U });
    await s.queued(3);
    await s.advance(U);
    await away;
    const status = await s.service.status();
    assert.equal(status.capacity, 2);
    assert.deepEqual(status.leases?.map((l) => l.id), ["a", undefined]);
    assert.deepEqual(status.waiting, ["w1", undefined]);
    assert.deepEqual(status.returning, ["away"]);
    assert.deepEqual(status.gates, [{ name: "manual", open: true, denial: undefined }]);
    assert.deepEqual(status.store, { up: true, error: undefined });
    s.same(status.denial, {
      reason: "queued",
      waiting: 2,
      retryAfterMs: Math.max(UNAVAILABLE_RETRY_MS, 9 * U),
    });
    s.service.close();
    await Promise.all([w1, anonymous]);
  });

  test("LockService.close() answers every waiter and refuses new requests", async () => {
    await using s = await setup();
    await s.take();
    const waiters = [1, 2, 3].map(() => s.service.acquire({ durationMs: U, waitMs: 60 * U }));
    await s.queued(3);
    s.service.close();
    for (const w of await Promise.all(waiters)) {
      assert.ok(!w.granted && w.denial.reason === "shutting_down");
    }
    const late = await s.service.acquire({ durationMs: U });
    assert.ok(!late.granted && late.denial.reason === "shutting_down");
  });

  test("LockService refuses a request that does not wait while a client waits, even when a slot is free at that instant", async () => {
    // The gate has opened but not yet said so (a check round finishing): the slot is free
    // and a client waits for it.
    const gate = new ManualGate();
    await using s = await setup({ gate });
    const waiter = s.service.acquire({ durationMs: U, id: "first", waitMs: 30 * U });
    await s.queued(1);
    gate.openQuietly();
    const impatient = await s.service.acquire({ durationMs: U, id: "impatient" });
    assert.ok(!impatient.granted, "the impatient client never jumps the line");
    if (impatient.denial.reason === "busy") {
      // The Redis store's beat (every second while a client waits) found the open gate first
      // and served the waiter: the impatient client is refused all the same.
      assert.equal(variant.name, "Redis store", "only a store with its own beat serves early");
    } else {
      assert.deepEqual(impatient.denial, {
        reason: "queued",
        waiting: 1,
        retryAfterMs: UNAVAILABLE_RETRY_MS,
      });
      assert.equal(await s.held(), 0, "the slot is free");
    }
    gate.announce();
    const granted = await waiter;
    assert.ok(granted.granted && granted.lease.id === "first");
  });

  test("LockService drops the returning place of an id that got its lock without waiting", async () => {
    await using s = await setup();
    const holder = await s.take(60 * U);
    const waiting = s.service.acquire({ durationMs: U, id: "web-1", waitMs: U });
    await s.advance(U);
    assert.ok(!(await waiting).granted);
    assert.deepEqual((await s.service.status()).returning, ["web-1"]);
    await s.service.release(holder.lease.token);
    const direct = await s.service.acquire({ durationMs: U, id: "web-1" });
    assert.ok(direct.granted);
    assert.deepEqual((await s.service.status()).returning, [], "no stale place is left behind");
  });

  test("LockService's hand-back never frees a lease claimed since its grant: by its id asking again, or by its token", async (t) => {
    await using s = await setup({ locks: 2 });
    // Each grant's answer is taken never to have reached its client (its chunk ran out, its
    // connection broke): the service hands the lease back. The store runs the calls of one
    // replica in order, so the lookups below see the hand-back done.
    await t.step("unclaimed: the slot returns to the pool", async () => {
      const lost = await s.take(10 * U, "web-1");
      s.service.handBack(lost.lease);
      assert.equal(await s.store.byToken(lost.lease.token), undefined);
    });
    await t.step("its id asked again and was answered with it: it stays", async () => {
      const lost = await s.take(10 * U, "web-2");
      const again = await s.service.acquire({ durationMs: 10 * U, id: "web-2" });
      assert.ok(again.granted && again.existing && again.lease.token === lost.lease.token);
      s.service.handBack(lost.lease);
      assert.equal((await s.store.byId("web-2"))?.token, lost.lease.token, "still held");
    });
    await t.step("its id asked again while others wait: it stays", async () => {
      const lost = await s.take(10 * U, "web-3");
      const waiter = s.service.acquire({ durationMs: U, id: "web-4", waitMs: 30 * U });
      await s.queued(1);
      const again = await s.service.acquire({ durationMs: 10 * U, id: "web-3" });
      assert.ok(again.granted && again.existing && again.lease.token === lost.lease.token);
      s.service.handBack(lost.lease);
      assert.equal((await s.store.byId("web-3"))?.token, lost.lease.token, "still held");
      assert.equal(await s.held(), 2, "nobody else got its slot");
      await s.service.release(lost.lease.token);
      assert.ok((await waiter).granted);
    });
    await t.step("renewed by its token: it stays", async () => {
      const lost = (await s.store.byId("web-2"))!;
      await s.service.release(lost.token);
      const fresh = await s.take(10 * U, "web-5");
      assert.ok((await s.service.renew(fresh.lease.token, 10 * U)).renewed);
      s.service.handBack(fresh.lease);
      assert.equal((await s.store.byId("web-5"))?.token, fresh.lease.token, "still held");
    });
  });
}

serviceSuite({
  name: "memory store",
  unitMs: 1_000,
  toleranceMs: 0,
  open(locks) {
    const clock = new ManualClock();
    const store = new MemoryLockStore(locks, { clock });
    return Promise.resolve({
      store,
      clock,
      advance: (ms) => Promise.resolve(clock.advance(ms)),
    });
  },
});

const redis = SKIP_REDIS ? undefined : await RedisServer.start();
addEventListener("unload", () => redis?.killSync());
let semaphores = 0;

serviceSuite({
  name: "Redis store",
  // The suite sleeps about 5 s in all. The tolerance covers the time the test's own steps take
  // on a busy machine (measured: up to 180 ms between taking a lock and reading its remaining
  // time, with the tests running three times over beside other work on two cores).
  unitMs: 500,
  toleranceMs: 200,
  skip: redis ? undefined : "redis-server is not installed",
  async open(locks) {
    const setting = parseStore(redis!.url);
    assert.equal(setting.kind, "redis");
    // A semaphore of its own for each test.
    const store = new RedisLockStore(locks, setting.target, { name: `service-${++semaphores}` });
    await store.connect(5_000);
    return { store, clock: realClock, advance: sleep };
  },
});
