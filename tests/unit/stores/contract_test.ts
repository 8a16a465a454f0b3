/**
 * The lock store contract (`tests/_store_contract.ts`) on the memory store,
 * synchronous, and on the same store behind a {@linkcode FaultyStore} that
 * answers every call with a promise a few microtasks later, so each check runs
 * on both paths. Then the fault injection the other tests rely on.
 */
import assert from "node:assert/strict";
import { type Lease, StoreUnavailableError } from "../../../lib/core/store.ts";
import { MemoryLockStore } from "../../../lib/stores/memory.ts";
import { ManualClock } from "../../_clock.ts";
import { type Call, FaultyStore } from "../../_faulty_store.ts";
import { storeContract } from "../../_store_contract.ts";

storeContract("MemoryLockStore", (capacity) => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(capacity, { clock });
  return { store, advance: (ms) => Promise.resolve(clock.advance(ms)) };
});

storeContract("FaultyStore(MemoryLockStore), async with delays,", (capacity) => {
  const clock = new ManualClock();
  // Between 0 and 4 microtask turns per answer, so concurrent calls interleave.
  let state = 7;
  const hops = () => (state = (state * 48271) % 2147483647) % 5;
  const store = new FaultyStore(new MemoryLockStore(capacity, { clock }), { clock, hops });
  return { store, advance: (ms) => Promise.resolve(clock.advance(ms)) };
});

function setup(capacity = 1) {
  const clock = new ManualClock();
  const inner = new MemoryLockStore(capacity, { clock });
  const store = new FaultyStore(inner, { clock, timeoutMs: 2_000 });
  return { clock, inner, store };
}

/** A promise's state, readable at any time without awaiting it. */
function watch<T>(promise: Promise<T>) {
  const state: { done: boolean; value?: T; error?: unknown } = { done: false };
  promise.then(
    (value) => Object.assign(state, { done: true, value }),
    (error) => Object.assign(state, { done: true, error }),
  );
  return state;
}

async function flush() {
  for (let i = 0; i < 10; i++) await null;
}

Deno.test("FaultyStore answers with a promise even when the inner store is synchronous", async () => {
  const { store, inner } = setup();
  const answer = store.acquire({ durationMs: 1_000 });
  assert.ok(answer instanceof Promise);
  assert.equal(inner.held, 0, "not before its turn");
  assert.equal(store.inFlight, 1);
  assert.ok((await answer).granted);
  assert.equal(inner.held, 1);
  assert.equal(store.inFlight, 0);
  await store.close();
});

Deno.test("FaultyStore.failNext() rejects with StoreUnavailableError carrying the cause", async () => {
  const { store, inner } = setup();
  const cause = new Error("ECONNREFUSED");
  store.failNext("acquire", { kind: "reject", error: cause });
  const error = await store.acquire({ durationMs: 1_000 }).then(() => undefined, (e) => e);
  assert.ok(error instanceof StoreUnavailableError);
  assert.equal(error.operation, "acquire");
  assert.equal(error.cause, cause);
  assert.equal(error.message, "the lock store failed to acquire: ECONNREFUSED");
  assert.equal(inner.held, 0, "a refused call has no effect");
  assert.ok((await store.acquire({ durationMs: 1_000 })).granted, "only the next call fails");
  await store.close();
});

Deno.test("FaultyStore.failNext() hits only the operation named, `times` times", async () => {
  const { store } = setup();
  store.failNext("release", "reject", 2);
  assert.deepEqual(await store.leases(), []);
  await assert.rejects(store.release("x"), StoreUnavailableError);
  await assert.rejects(store.release("x"), StoreUnavailableError);
  assert.equal(await store.release("x"), undefined);
  store.failNext("any", "reject", 2);
  await assert.rejects(store.byId("x"), StoreUnavailableError);
  await assert.rejects(store.byToken("x"), StoreUnavailableError);
  assert.equal(await store.byToken("x"), undefined);
  await store.close();
});

Deno.test("FaultyStore.down() fails every call until heal()", async () => {
  const { store } = setup();
  store.down();
  for (let i = 0; i < 3; i++) await assert.rejects(store.leases(), StoreUnavailableError);
  store.heal();
  assert.deepEqual(await store.leases(), []);
  await store.close();
});

Deno.test("FaultyStore: a hung call fails with the store's timeout, on the clock", async () => {
  const { clock, store, inner } = setup();
  store.failNext("acquire", "hang");
  const answer = watch(store.acquire({ durationMs: 1_000 }));
  await flush();
  clock.advance(1_999);
  await flush();
  assert.equal(answer.done, false, "no answer before the timeout");
  clock.advance(1);
  await flush();
  assert.ok(answer.error instanceof StoreUnavailableError);
  assert.equal(answer.error.message, "the lock store failed to acquire: timed out after 2000 ms");
  assert.equal(inner.held, 0, "the request never arrived");
  assert.equal(clock.pending, 0);
  await store.close();
});

Deno.test("FaultyStore: a delayed call answers after the delay, and takes effect then", async () => {
  const { clock, store, inner } = setup();
  store.failNext("acquire", { kind: "delay", ms: 500 });
  const answer = watch(store.acquire({ durationMs: 1_000 }));
  await flush();
  clock.advance(499);
  await flush();
  assert.equal(answer.done, false);
  assert.equal(inner.held, 0);
  clock.advance(1);
  await flush();
  assert.equal(answer.value?.granted, true);
  assert.equal(inner.held, 1);
  store.failNext("release", { kind: "delay", ms: 5_000 });
  const late = watch(store.release("x"));
  await flush();
  clock.advance(2_000);
  await flush();
  assert.ok(late.error instanceof StoreUnavailableError, "a delay past the timeout times out");
  await store.close();
});

Deno.test("FaultyStore: a call can fail after it took effect (the answer was lost)", async (t) => {
  await t.step("rejected", async () => {
    const { store, inner } = setup();
    store.failNext("acquire", { kind: "reject", afterEffect: true });
    await assert.rejects(store.acquire({ durationMs: 1_000, id: "pod-a" }), StoreUnavailableError);
    assert.equal(inner.held, 1, "the slot was taken all the same");
    assert.equal((await store.byId("pod-a"))?.id, "pod-a");
    await store.close();
  });
  await t.step("hung until the timeout", async () => {
    const { clock, store, inner } = setup();
    const { lease } = await store.acquire({ durationMs: 10_000 }) as { lease: Lease };
    store.failNext("release", { kind: "hang", afterEffect: true });
    const answer = watch(store.release(lease.token));
    await flush();
    assert.equal(inner.held, 0, "released at once");
    assert.equal(answer.done, false);
    clock.advance(2_000);
    await flush();
    assert.ok(answer.error instanceof StoreUnavailableError);
    await store.close();
  });
});

Deno.test("FaultyStore passes on slots freed inside, by release or expiry", async () => {
  const { clock, store, inner } = setup(2);
  const heard: number[] = [];
  store.onFree((freed) => heard.push(freed.expired.length));
  await store.acquire({ durationMs: 1_000 });
  const direct = inner.acquire({ durationMs: 5_000 });
  assert.ok(direct.granted);
  inner.release(direct.lease.token); // As another replica would.
  assert.deepEqual(heard, [0]);
  clock.advance(1_000);
  assert.deepEqual(heard, [0, 1]);
  await store.close();
});

Deno.test("FaultyStore.close() fails the calls still waiting and leaves no timer", async () => {
  const { clock, store } = setup();
  store.failNext("leases", "hang");
  store.failNext("acquire", { kind: "delay", ms: 1_000 });
  const hung = watch(store.leases());
  const delayed = watch(store.acquire({ durationMs: 1_000 }));
  await flush();
  assert.equal(store.waitingOnClock, 2);
  await store.close();
  await flush();
  assert.ok(hung.error instanceof StoreUnavailableError);
  assert.match(hung.error.message, /closed/);
  assert.ok(delayed.error instanceof StoreUnavailableError);
  assert.equal(clock.pending, 0);
});

Deno.test("FaultyStore reports each call and how it settled", async () => {
  const clock = new ManualClock();
  const seen: string[] = [];
  const onCall = (call: Call, phase: string) =>
    seen.push(`${phase} ${call.operation} ${call.subject} ${call.fault?.kind} ${call.ok}`);
  const store = new FaultyStore(new MemoryLockStore(1, { clock }), { clock, onCall });
  store.failNext("byId", "reject");
  await store.byId("pod-a").catch(() => {});
  await store.acquire({ durationMs: 1_000, id: "pod-a" });
  assert.deepEqual(seen, [
    "call byId pod-a reject undefined",
    "settle byId pod-a reject false",
    "call acquire pod-a undefined undefined",
    "settle acquire pod-a undefined true",
  ]);
  await store.close();
});
