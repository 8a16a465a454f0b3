/**
 * What is particular to the memory store; the contract every store passes is
 * in `tests/store_contract_test.ts`.
 */
import assert from "node:assert/strict";
import { MemoryLockStore } from "../../../lib/stores/memory.ts";
import { newToken } from "../../../lib/token.ts";
import { ManualClock } from "../../_clock.ts";

Deno.test("MemoryLockStore answers synchronously, with no promise", () => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(1, { clock });
  const result = store.acquire({ durationMs: 1_000 });
  assert.ok(!(result instanceof Promise) && result.granted);
  assert.ok(!(store.leases() instanceof Promise));
  assert.equal(store.release(result.lease.token)?.token, result.lease.token);
});

Deno.test("MemoryLockStore ignores wall-clock jumps", async (t) => {
  await t.step("a jump forward does not free a slot", () => {
    const clock = new ManualClock();
    const store = new MemoryLockStore(1, { clock });
    store.acquire({ durationMs: 10_000 });
    clock.jumpWall(3_600_000);
    clock.advance(1);
    assert.equal(store.acquire({ durationMs: 10_000 }).granted, false);
    assert.equal(store.leases()[0]?.remainingMs, 9_999);
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

Deno.test("MemoryLockStore reports times in wall-clock milliseconds for display", () => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(1, { clock });
  const result = store.acquire({ durationMs: 10_000 });
  assert.ok(result.granted);
  assert.equal(result.lease.acquiredAt, clock.wallNow());
  assert.equal(result.lease.expiresAt, clock.wallNow() + 10_000);
  assert.equal(result.lease.remainingMs, 10_000);
  clock.jumpWall(60_000);
  assert.equal(
    store.leases()[0]?.expiresAt,
    clock.wallNow() + 10_000,
    "shown in the new wall time",
  );
});

Deno.test("MemoryLockStore keeps one timer, and none once nothing is held", () => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(3, { clock });
  const tokens = [1_000, 2_000, 3_000].map((durationMs) => {
    const result = store.acquire({ durationMs });
    assert.ok(result.granted);
    return result.lease.token;
  });
  assert.equal(clock.pending, 1);
  clock.advance(1_000);
  assert.equal(clock.pending, 1, "set again for the next deadline");
  for (const token of tokens) store.release(token);
  assert.equal(clock.pending, 0);
});

Deno.test("MemoryLockStore stays correct through many renewals and early releases", () => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(2, { clock });
  const kept = store.acquire({ durationMs: 1_000 });
  assert.ok(kept.granted);
  for (let i = 0; i < 1_000; i++) {
    // Each leaves a stale deadline behind, which the store must skip or drop.
    store.renew(kept.lease.token, 1_000 + i);
    const brief = store.acquire({ durationMs: 500 });
    assert.ok(brief.granted);
    store.release(brief.lease.token);
  }
  assert.equal(store.held, 1);
  clock.advance(1_998);
  assert.equal(store.held, 1);
  clock.advance(1);
  assert.equal(store.held, 0);
  assert.equal(clock.pending, 0);
});

Deno.test("MemoryLockStore.close() cancels every timer and forgets every lease", () => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(3, { clock });
  store.acquire({ durationMs: 1_000 });
  store.acquire({ durationMs: 2_000 });
  store.close();
  assert.equal(clock.pending, 0);
  assert.equal(store.held, 0);
});

Deno.test("MemoryLockStore rejects a capacity that is not a positive integer", () => {
  for (const capacity of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => new MemoryLockStore(capacity), {
      name: "RangeError",
      message: `Invalid capacity ${capacity}: expected a positive integer`,
    });
  }
});

Deno.test("newToken() returns distinct 128-bit base64url tokens", () => {
  const tokens = new Set(Array.from({ length: 3_000 }, newToken)); // Crosses a refill of the pool.
  assert.equal(tokens.size, 3_000);
  for (const token of tokens) assert.match(token, /^[A-Za-z0-9_-]{22}$/);
});
