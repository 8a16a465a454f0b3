import assert from "node:assert/strict";
import { DependencyChecker } from "../lib/checker.ts";
import { MemoryLockStore } from "../lib/lock.ts";
import { parseCheckTarget } from "../lib/probes.ts";
import { LockService, type Outcome } from "../lib/service.ts";
import { ManualClock } from "./_clock.ts";

function setup(locks = 1, maxWaiters = Infinity) {
  const clock = new ManualClock();
  const store = new MemoryLockStore(locks, { clock });
  const service = new LockService({ store, clock, maxWaiters });
  return { clock, store, service };
}

/** Lets promise callbacks run; the in-memory store settles everything synchronously. */
async function flush() {
  for (let i = 0; i < 5; i++) await null;
}

Deno.test("LockService serves 50 waiting clients first come, first served", async () => {
  const { clock, store, service } = setup(1);
  const first = service.acquire({ durationMs: 1_000 });
  assert.ok(!(first instanceof Promise) && first.granted);
  const order: number[] = [];
  const waiting = Array.from(
    { length: 50 },
    (_, i) =>
      Promise.resolve(service.acquire({ durationMs: 1_000, id: `app-${i}`, waitMs: 3_600_000 }))
        .then((o) => {
          assert.ok(o.granted);
          order.push(i);
          return o;
        }),
  );
  assert.equal(service.waiting, 50);
  for (let i = 0; i < 50; i++) {
    clock.advance(1_000); // The holder's lock expires; the head of the queue gets it.
    await flush();
    assert.equal(store.held, 1);
  }
  await Promise.all(waiting);
  assert.deepEqual(order, Array.from({ length: 50 }, (_, i) => i));
  assert.equal(service.waiting, 0);
});

Deno.test("LockService hands a released slot to the head of the queue at once", async () => {
  const { service, store } = setup(1);
  const holder = service.acquire({ durationMs: 60_000 }) as Outcome;
  assert.ok(holder.granted);
  const got: Outcome[] = [];
  Promise.resolve(service.acquire({ durationMs: 60_000, waitMs: 30_000 })).then((o) => got.push(o));
  await flush();
  assert.equal(got.length, 0);
  service.release(holder.lease.token);
  await flush();
  assert.ok(got[0]?.granted);
  assert.equal(store.held, 1);
});

Deno.test("LockService refuses a request that does not wait while others wait", async () => {
  const { service } = setup(1);
  const holder = service.acquire({ durationMs: 60_000 }) as Outcome;
  assert.ok(holder.granted);
  const waiter = service.acquire({ durationMs: 1_000, waitMs: 30_000 });
  const impatient = service.acquire({ durationMs: 1_000 }) as Outcome;
  assert.ok(!impatient.granted);
  assert.equal(impatient.denial.reason, "queued");
  assert.equal(impatient.denial.message, "1 client is waiting ahead");
  service.release(holder.lease.token);
  assert.ok((await waiter).granted);
});

Deno.test("LockService answers a waiter whose wait runs out with the current reason", async () => {
  const { clock, service } = setup(1);
  service.acquire({ durationMs: 10_000 });
  const waiter = service.acquire({ durationMs: 1_000, waitMs: 4_000 });
  clock.advance(4_000);
  const outcome = await waiter;
  assert.ok(!outcome.granted);
  assert.equal(outcome.denial.reason, "busy");
  assert.equal(outcome.denial.message, "the only slot is held; the next frees in 6s");
  assert.equal(service.waiting, 0);
  assert.equal(clock.pending, 1, "only the lock's expiry timer is left");
});

Deno.test("LockService bounds the queue with maxWaiters", async () => {
  const { service } = setup(1, 2);
  service.acquire({ durationMs: 10_000 });
  service.acquire({ durationMs: 1_000, waitMs: 4_000 });
  service.acquire({ durationMs: 1_000, waitMs: 4_000 });
  const third = await service.acquire({ durationMs: 1_000, waitMs: 4_000 });
  assert.ok(!third.granted);
  assert.equal(third.denial.reason, "queue_full");
  assert.equal(service.waiting, 2);
});

Deno.test("LockService takes a waiter that goes away out of the queue", async () => {
  const { service, store } = setup(1);
  const holder = service.acquire({ durationMs: 10_000 }) as Outcome;
  assert.ok(holder.granted);
  const gone = new AbortController();
  const leaving = service.acquire({ durationMs: 1_000, waitMs: 4_000, signal: gone.signal });
  const staying = service.acquire({ durationMs: 1_000, waitMs: 4_000 });
  gone.abort();
  const left = await leaving;
  assert.ok(!left.granted && left.denial.reason === "cancelled");
  assert.equal(service.waiting, 1);
  service.release(holder.lease.token);
  assert.ok((await staying).granted);
  assert.equal(store.held, 1);
});

Deno.test("LockService returns a slot granted as its waiter went away to the pool", async () => {
  const { service, store } = setup(1);
  const holder = service.acquire({ durationMs: 10_000 }) as Outcome;
  assert.ok(holder.granted);
  const gone = new AbortController();
  // The abort lands while the grant is being made: the signal is already aborted
  // when the slot frees, but its abort event has not been handled yet.
  const leaving = service.acquire({ durationMs: 1_000, waitMs: 4_000, signal: gone.signal });
  const staying = service.acquire({ durationMs: 1_000, waitMs: 4_000 });
  Object.defineProperty(gone.signal, "aborted", { value: true });
  service.release(holder.lease.token);
  const left = await leaving;
  assert.ok(!left.granted && left.denial.reason === "cancelled", "the waiter is answered");
  assert.ok((await staying).granted, "the slot went on to the next waiter");
  assert.equal(store.held, 1);
});

Deno.test("LockService gives a waiting id that asks again the same place in the queue", async () => {
  const { service } = setup(1);
  const holder = service.acquire({ durationMs: 10_000 }) as Outcome;
  assert.ok(holder.granted);
  const a1 = service.acquire({ durationMs: 1_000, id: "a", waitMs: 60_000 });
  const b = service.acquire({ durationMs: 1_000, id: "b", waitMs: 60_000 });
  const a2 = service.acquire({ durationMs: 1_000, id: "a", waitMs: 60_000 });
  const old = await a1;
  assert.ok(!old.granted && old.denial.reason === "superseded");
  assert.equal(service.waiting, 2);
  service.release(holder.lease.token);
  const granted = await a2;
  assert.ok(granted.granted && granted.lease.id === "a", "a keeps its place ahead of b");
  assert.equal(service.waiting, 1);
  void b;
  service.close();
});

Deno.test("LockService lets waiters in when a dependency comes back", async () => {
  let status = 503;
  await using endpoint = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(null, { status }),
  );
  const clock = new ManualClock();
  const checker = new DependencyChecker({
    targets: [parseCheckTarget(`http://127.0.0.1:${endpoint.addr.port}/`)],
    passIntervalMs: 60_000,
    failIntervalMs: 10_000,
    timeoutMs: 2_000,
    clock,
  });
  const store = new MemoryLockStore(1, { clock });
  const service = new LockService({ store, clock, gate: checker });
  checker.start();
  await checker.settled();
  const waiter = service.acquire({ durationMs: 1_000, waitMs: 60_000 });
  assert.equal(service.waiting, 1);
  status = 200;
  clock.advance(10_000);
  await checker.settled();
  assert.ok((await waiter).granted);
  checker.stop();
});

Deno.test("LockService.close() answers every waiter and refuses new requests", async () => {
  const { service } = setup(1);
  service.acquire({ durationMs: 10_000 });
  const waiters = [1, 2, 3].map(() => service.acquire({ durationMs: 1_000, waitMs: 60_000 }));
  service.close();
  for (const w of await Promise.all(waiters)) {
    assert.ok(!w.granted && w.denial.reason === "shutting_down");
  }
  const late = await service.acquire({ durationMs: 1_000 });
  assert.ok(!late.granted && late.denial.reason === "shutting_down");
});

Deno.test("LockService.status() lists holders and waiters without tokens", async () => {
  const { service } = setup(2);
  const a = service.acquire({ durationMs: 10_000, id: "a" }) as Outcome;
  service.acquire({ durationMs: 20_000 });
  service.acquire({ durationMs: 1_000, id: "w1", waitMs: 60_000 });
  service.acquire({ durationMs: 1_000, waitMs: 60_000 });
  const status = await service.status();
  assert.deepEqual(status.slots, { total: 2, held: 2, free: 0 });
  assert.deepEqual(status.holders.map((h) => h.id), ["a", null]);
  assert.deepEqual(status.waiters, { count: 2, ids: ["w1", null] });
  assert.equal(status.locking.allowed, false);
  assert.ok(a.granted && !JSON.stringify(status).includes(a.lease.token));
  service.close();
});
