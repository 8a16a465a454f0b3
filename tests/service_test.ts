/**
 * The service's own rules, above the queue and the store: nobody jumps ahead
 * of waiting clients, an id that holds a lock gets it back, durations are cut
 * to the longest allowed, gates hold grants back, denials carry their data,
 * and what happens is reported as events. Queue rules live in queue_test.ts,
 * store failures in service_faults_test.ts.
 */
import assert from "node:assert/strict";
import { EventBus, type LockEvent } from "../lib/core/events.ts";
import { Gates } from "../lib/core/gates.ts";
import { LockService, type Outcome } from "../lib/core/service.ts";
import { MemoryLockStore } from "../lib/stores/memory.ts";
import { ManualClock } from "./_clock.ts";
import { ManualGate } from "./_gate.ts";

const MAX_DURATION_MS = 60_000;

function setup(options: { locks?: number; maxWaiters?: number; gate?: ManualGate } = {}) {
  const clock = new ManualClock();
  const store = new MemoryLockStore(options.locks ?? 1, { clock });
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
  /** Takes a lock at once; returns the grant. */
  const take = (durationMs = 10_000, id?: string) => {
    const outcome = service.acquire({ durationMs, id }) as Outcome;
    assert.ok(outcome.granted, JSON.stringify(outcome));
    return outcome;
  };
  return {
    clock,
    store,
    service,
    seen,
    take,
    [Symbol.dispose]() {
      service.close();
      store.close();
    },
  };
}

/** Lets promise callbacks run; the memory store settles everything synchronously. */
async function flush() {
  for (let i = 0; i < 5; i++) await null;
}

Deno.test("LockService refuses a request that does not wait while others wait, until the next slot frees", async () => {
  using s = setup();
  const holder = s.take(20_000);
  const waiter = s.service.acquire({ durationMs: 1_000, waitMs: 30_000 });
  const impatient = await s.service.acquire({ durationMs: 1_000 });
  assert.deepEqual(impatient, {
    granted: false,
    denial: { reason: "queued", waiting: 1, retryAfterMs: 20_000 },
  });
  s.service.release(holder.lease.token);
  assert.ok((await waiter).granted);
});

Deno.test("LockService names a closed gate before the waiting queue", async () => {
  using s = setup({ locks: 2, gate: new ManualGate() });
  const waiter = s.service.acquire({ durationMs: 1_000, waitMs: 30_000 });
  const impatient = await s.service.acquire({ durationMs: 1_000 });
  assert.ok(!impatient.granted);
  assert.equal(impatient.denial.reason, "starting", "the closed gate speaks first");
  s.service.close();
  await waiter;
});

Deno.test("LockService gives an id that holds a lock the same lease back, ahead of waiters and past closed gates", async (t) => {
  const gate = new ManualGate();
  gate.open();
  using s = setup({ gate });
  const holder = s.take(10_000, "web-1");
  const waiter = s.service.acquire({ durationMs: 1_000, id: "web-2", waitMs: 30_000 });
  await t.step("while another client waits", async () => {
    const again = await s.service.acquire({ durationMs: 5_000, id: "web-1" });
    assert.ok(again.granted && again.existing);
    assert.equal(again.lease.token, holder.lease.token);
    assert.equal(s.store.held, 1);
  });
  await t.step("while a gate is closed", async () => {
    gate.close({ reason: "starting", retryAfterMs: 1_000 });
    const again = await s.service.acquire({ durationMs: 5_000, id: "web-1" });
    assert.ok(again.granted && again.existing);
    const other = await s.service.acquire({ durationMs: 5_000, id: "web-3" });
    assert.ok(!other.granted && other.denial.reason === "starting");
  });
  s.service.close();
  await waiter;
});

Deno.test("LockService grants a duration over the longest allowed, cut to it, and says what was asked", async () => {
  using s = setup();
  const outcome = s.take(2 * MAX_DURATION_MS, "long");
  assert.equal(outcome.durationMs, MAX_DURATION_MS);
  assert.equal(outcome.requestedMs, 2 * MAX_DURATION_MS);
  assert.equal(outcome.lease.remainingMs, MAX_DURATION_MS);
  const renewal = await s.service.renew(outcome.lease.token, 3 * MAX_DURATION_MS);
  assert.ok(renewal.renewed);
  assert.equal(renewal.durationMs, MAX_DURATION_MS);
  assert.equal(renewal.requestedMs, 3 * MAX_DURATION_MS);
  const fits = await s.service.renew(outcome.lease.token, 1_000);
  assert.ok(fits.renewed && fits.requestedMs === undefined && fits.durationMs === 1_000);
  const granted = s.seen.find((e) => e.type === "granted");
  assert.ok(granted?.type === "granted");
  assert.equal(granted.requestedMs, 2 * MAX_DURATION_MS);
  assert.equal(granted.durationMs, MAX_DURATION_MS);
});

Deno.test("LockService answers a waiter whose wait runs out with the current reason", async () => {
  using s = setup();
  s.take(10_000);
  const waiter = s.service.acquire({ durationMs: 1_000, waitMs: 4_000 });
  s.clock.advance(4_000);
  assert.deepEqual(await waiter, {
    granted: false,
    denial: { reason: "busy", capacity: 1, nextFreeInMs: 6_000, retryAfterMs: 6_000 },
  });
  assert.equal(s.service.waiting, 0);
});

Deno.test("LockService refuses a full queue with 503 data and the next free slot as the retry time", async () => {
  using s = setup({ maxWaiters: 1 });
  s.take(30_000);
  const first = s.service.acquire({ durationMs: 1_000, waitMs: 60_000 });
  const second = await s.service.acquire({ durationMs: 1_000, waitMs: 60_000 });
  assert.deepEqual(second, {
    granted: false,
    denial: { reason: "queue_full", waiting: 1, retryAfterMs: 30_000 },
  });
  s.service.close();
  await first;
});

Deno.test("LockService lets waiters in, in order, when its gates open", async () => {
  const gate = new ManualGate();
  using s = setup({ locks: 2, gate });
  const a = s.service.acquire({ durationMs: 1_000, id: "a", waitMs: 60_000 });
  const b = s.service.acquire({ durationMs: 1_000, id: "b", waitMs: 60_000 });
  const refused = await s.service.acquire({ durationMs: 1_000, id: "c" });
  assert.ok(!refused.granted && refused.denial.reason === "starting");
  gate.open();
  await flush();
  assert.ok((await a).granted && (await b).granted);
});

Deno.test("LockService reports grants, releases, expiries, renewals and denials as events without tokens", async () => {
  using s = setup();
  const a = s.take(5_000, "a");
  const waiting = s.service.acquire({ durationMs: 2_000, id: "b", waitMs: 60_000 });
  await s.service.acquire({ durationMs: 1_000, id: "c" });
  s.clock.advance(1_000);
  await s.service.renew(a.lease.token, 3_000);
  s.clock.advance(3_000); // a expires; b gets the slot after waiting 4 s.
  const b = await waiting;
  assert.ok(b.granted);
  s.clock.advance(500);
  await s.service.release(b.lease.token);
  const token = (t: string) => t.slice(0, 6);
  assert.deepEqual(s.seen.filter((e) => e.type !== "queued"), [
    {
      type: "granted",
      id: "a",
      token: token(a.lease.token),
      durationMs: 5_000,
      requestedMs: undefined,
      waitedMs: 0,
    },
    { type: "denied", id: "c", reason: "queued", retryAfterMs: 5_000 },
    {
      type: "renewed",
      id: "a",
      token: token(a.lease.token),
      durationMs: 3_000,
      requestedMs: undefined,
    },
    { type: "expired", id: "a", token: token(a.lease.token), heldMs: 4_000 },
    {
      type: "granted",
      id: "b",
      token: token(b.lease.token),
      durationMs: 2_000,
      requestedMs: undefined,
      waitedMs: 4_000,
    },
    { type: "released", id: "b", token: token(b.lease.token), heldMs: 500 },
  ]);
  for (const event of s.seen) {
    assert.ok(!JSON.stringify(event).includes(a.lease.token), "no whole token in an event");
  }
});

Deno.test("LockService.status() gives holders, waiters, returning clients, gates and the reason as data", async () => {
  const gate = new ManualGate("manual");
  gate.open();
  using s = setup({ locks: 2, gate });
  s.take(10_000, "a");
  s.take(20_000);
  const w1 = s.service.acquire({ durationMs: 1_000, id: "w1", waitMs: 60_000 });
  const away = s.service.acquire({ durationMs: 1_000, id: "away", waitMs: 1_000 });
  const anonymous = s.service.acquire({ durationMs: 1_000, waitMs: 60_000 });
  s.clock.advance(1_000);
  await away;
  const status = await s.service.status();
  assert.equal(status.capacity, 2);
  assert.deepEqual(status.leases?.map((l) => l.id), ["a", undefined]);
  assert.deepEqual(status.waiting, ["w1", undefined]);
  assert.deepEqual(status.returning, ["away"]);
  assert.deepEqual(status.gates, [{ name: "manual", open: true, denial: undefined }]);
  assert.deepEqual(status.store, { up: true, error: undefined });
  assert.deepEqual(status.denial, { reason: "queued", waiting: 2, retryAfterMs: 9_000 });
  s.service.close();
  await Promise.all([w1, anonymous]);
});

Deno.test("LockService.close() answers every waiter and refuses new requests", async () => {
  using s = setup();
  s.take();
  const waiters = [1, 2, 3].map(() => s.service.acquire({ durationMs: 1_000, waitMs: 60_000 }));
  s.service.close();
  for (const w of await Promise.all(waiters)) {
    assert.ok(!w.granted && w.denial.reason === "shutting_down");
  }
  const late = await s.service.acquire({ durationMs: 1_000 });
  assert.ok(!late.granted && late.denial.reason === "shutting_down");
});

Deno.test("LockService refuses a request that does not wait while a client waits, even when a slot is free at that instant", async () => {
  // The gate has opened but not yet said so (a check round finishing): the slot is free
  // and a client waits for it.
  const gate = new ManualGate();
  using s = setup({ gate });
  const waiter = s.service.acquire({ durationMs: 1_000, id: "first", waitMs: 30_000 });
  gate.openQuietly();
  const impatient = await s.service.acquire({ durationMs: 1_000, id: "impatient" });
  assert.deepEqual(impatient, {
    granted: false,
    denial: { reason: "queued", waiting: 1, retryAfterMs: 1_000 },
  });
  assert.equal(s.store.held, 0, "the slot is free");
  gate.announce();
  const granted = await waiter;
  assert.ok(granted.granted && granted.lease.id === "first");
});

Deno.test("LockService drops the returning place of an id that got its lock without waiting", async () => {
  using s = setup();
  const holder = s.take(60_000);
  const waiting = s.service.acquire({ durationMs: 1_000, id: "web-1", waitMs: 1_000 });
  s.clock.advance(1_000);
  assert.ok(!(await waiting).granted);
  assert.deepEqual((await s.service.status()).returning, ["web-1"]);
  s.service.release(holder.lease.token);
  const direct = await s.service.acquire({ durationMs: 1_000, id: "web-1" });
  assert.ok(direct.granted);
  assert.deepEqual((await s.service.status()).returning, [], "no stale place is left behind");
});
