import assert from "node:assert/strict";
import { MemoryLockStore, newToken } from "../lib/lock.ts";
import { ManualClock } from "./_clock.ts";

Deno.test("MemoryLockStore grants up to capacity and denies the next request", () => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(2, { clock });
  assert.equal(store.acquire({ durationMs: 10_000 }).granted, true);
  clock.advance(3_000);
  assert.equal(store.acquire({ durationMs: 10_000 }).granted, true);
  const denied = store.acquire({ durationMs: 10_000 });
  assert.deepEqual(denied, { granted: false, nextFreeInMs: 7_000 });
  assert.equal(store.held, 2);
});

Deno.test("MemoryLockStore frees a slot when its duration runs out, not before", () => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(1, { clock });
  let freed = 0;
  store.onFree(() => freed++);
  assert.equal(store.acquire({ durationMs: 5_000 }).granted, true);
  clock.advance(4_999);
  assert.equal(store.held, 1);
  assert.equal(store.acquire({ durationMs: 5_000 }).granted, false);
  clock.advance(1);
  assert.equal(store.held, 0);
  assert.equal(freed, 1);
  assert.equal(store.acquire({ durationMs: 5_000 }).granted, true);
});

Deno.test("MemoryLockStore ignores wall-clock jumps", async (t) => {
  await t.step("a jump forward does not free a slot", () => {
    const clock = new ManualClock();
    const store = new MemoryLockStore(1, { clock });
    store.acquire({ durationMs: 10_000 });
    clock.jumpWall(3_600_000);
    clock.advance(1);
    assert.equal(store.acquire({ durationMs: 10_000 }).granted, false);
  });
  await t.step("a jump backward does not freeze a slot", () => {
    const clock = new ManualClock();
    const store = new MemoryLockStore(1, { clock });
    store.acquire({ durationMs: 10_000 });
    clock.jumpWall(-3_600_000);
    clock.advance(10_000);
    assert.equal(store.acquire({ durationMs: 10_000 }).granted, true);
  });
});

Deno.test("MemoryLockStore reports expiry in wall time for display", () => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(1, { clock });
  const result = store.acquire({ durationMs: 10_000 });
  assert.ok(result.granted);
  assert.equal(result.lease.acquiredAt, clock.wallNow());
  assert.equal(result.lease.expiresAt, clock.wallNow() + 10_000);
  assert.equal(result.lease.remainingMs, 10_000);
});

Deno.test("MemoryLockStore.release() frees the slot at once and only once", () => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(1, { clock });
  const result = store.acquire({ durationMs: 10_000 });
  assert.ok(result.granted);
  assert.equal(store.release(result.lease.token)?.token, result.lease.token);
  assert.equal(store.release(result.lease.token), undefined);
  assert.equal(store.release("unknown"), undefined);
  assert.equal(store.held, 0);
  assert.equal(clock.pending, 0, "the expiry timer is cancelled");
});

Deno.test("MemoryLockStore.renew() moves the expiry to the new duration from now", () => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(1, { clock });
  const result = store.acquire({ durationMs: 10_000 });
  assert.ok(result.granted);
  clock.advance(8_000);
  const renewed = store.renew(result.lease.token, 10_000);
  assert.equal(renewed?.remainingMs, 10_000);
  clock.advance(9_999);
  assert.equal(store.held, 1);
  clock.advance(1);
  assert.equal(store.held, 0);
  assert.equal(store.renew(result.lease.token, 10_000), undefined);
});

Deno.test("MemoryLockStore gives an id that already holds a slot the same lease", () => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(2, { clock });
  const first = store.acquire({ durationMs: 10_000, id: "pod-a" });
  clock.advance(1_000);
  const again = store.acquire({ durationMs: 10_000, id: "pod-a" });
  assert.ok(first.granted && again.granted);
  assert.equal(again.lease.token, first.lease.token);
  assert.equal(again.existing, true);
  assert.equal(store.held, 1);
  assert.equal(store.leases()[0]?.id, "pod-a");
});

Deno.test("MemoryLockStore lists leases soonest expiry first", () => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(3, { clock });
  store.acquire({ durationMs: 30_000, id: "c" });
  store.acquire({ durationMs: 10_000, id: "a" });
  store.acquire({ durationMs: 20_000, id: "b" });
  assert.deepEqual(store.leases().map((l) => l.id), ["a", "b", "c"]);
});

Deno.test("MemoryLockStore.close() cancels every timer", () => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(3, { clock });
  store.acquire({ durationMs: 1_000 });
  store.acquire({ durationMs: 2_000 });
  store.close();
  assert.equal(clock.pending, 0);
});

Deno.test("MemoryLockStore rejects a capacity that is not a positive integer", () => {
  assert.throws(() => new MemoryLockStore(0), RangeError);
  assert.throws(() => new MemoryLockStore(1.5), RangeError);
});

Deno.test("newToken() returns distinct 128-bit base64url tokens", () => {
  const tokens = new Set(Array.from({ length: 1000 }, newToken));
  assert.equal(tokens.size, 1000);
  for (const token of tokens) assert.match(token, /^[A-Za-z0-9_-]{22}$/);
});
