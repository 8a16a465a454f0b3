/**
 * The contract every lock store must pass (see `lib/core/store.ts`), as a
 * suite any store's test file registers with its own factory:
 *
 * ```ts
 * storeContract("MemoryLockStore", (capacity) => {
 *   const clock = new ManualClock();
 *   const store = new MemoryLockStore(capacity, { clock });
 *   return { store, advance: (ms) => Promise.resolve(clock.advance(ms)) };
 * });
 * ```
 *
 * The suite never touches a clock: the factory says how time passes
 * (`advance` moves a manual clock, or sleeps for a store on the real clock,
 * such as Redis), and `toleranceMs` says how late such a store may see a
 * deadline. Every operation is awaited, so sync and async stores pass alike.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { AcquireResult, Awaitable, Lease, LockStore, SlotsFreed } from "../lib/core/store.ts";
import { TOKEN_PATTERN } from "../lib/protocol.ts";

/** A store to check, and how to let time pass for it. */
export interface StoreUnderTest {
  store: LockStore;
  /** Lets `ms` pass as the store measures time: advances a manual clock, or sleeps. */
  advance(ms: number): Promise<void>;
  /** Releases whatever the factory opened besides the store (a server, a connection). */
  dispose?(): Awaitable<void>;
}

/** Options of {@linkcode storeContract}. */
export interface StoreContractOptions {
  /** The time unit of the checks; keep it short for a store on the real clock. @default {1_000} */
  unitMs?: number;
  /** How far the store's times may be off, and its expiry late (0 on a manual clock). @default {0} */
  toleranceMs?: number;
}

/** A token no store hands out (too short to be one of ours, but well-formed). */
const UNKNOWN_TOKEN = "unknownTokenAAAAAAAAAA";

/** Registers the contract's tests for the store that `open` makes with `capacity` slots. */
export function storeContract(
  name: string,
  open: (capacity: number) => Awaitable<StoreUnderTest>,
  options: StoreContractOptions = {},
): void {
  const U = options.unitMs ?? 1_000;
  const tolerance = options.toleranceMs ?? 0;
  /** How early before a deadline the lease must still be held. */
  const margin = Math.max(1, tolerance);

  /** `actual` is `expected`, give or take the tolerance. */
  const near = (actual: number | undefined, expected: number, what: string) => {
    assert.ok(
      actual !== undefined && Math.abs(actual - expected) <= tolerance,
      `${what}: expected ${expected} ms (±${tolerance}), got ${actual}`,
    );
  };

  /** Waits for `condition`, letting time pass up to the tolerance. */
  const eventually = async (
    s: StoreUnderTest,
    condition: () => Awaitable<boolean>,
    message: string,
  ) => {
    const step = Math.max(1, Math.ceil(tolerance / 10));
    for (let waited = 0;; waited += step) {
      if (await condition()) return;
      if (waited >= tolerance) assert.fail(message);
      await s.advance(step);
    }
  };

  const check = (
    behaviour: string,
    capacity: number,
    body: (s: StoreUnderTest, store: LockStore) => Promise<void>,
    closesItself = false,
  ) => {
    Deno.test(`${name} ${behaviour}`, async () => {
      const s = await open(capacity);
      try {
        await body(s, s.store);
      } finally {
        if (!closesItself) await s.store.close();
        await s.dispose?.();
      }
    });
  };

  check("has the capacity it was made with", 3, async (_s, store) => {
    assert.equal(store.capacity, 3);
    await Promise.resolve();
  });

  check("grants up to capacity, then says when the first slot frees", 2, async (s, store) => {
    const first = granted(await store.acquire({ durationMs: 10 * U, id: "pod-a" }));
    assert.equal(first.existing, false);
    assert.match(first.lease.token, TOKEN_PATTERN);
    assert.equal(first.lease.id, "pod-a");
    near(first.lease.remainingMs, 10 * U, "remainingMs of a new lease");
    near(first.lease.expiresAt - first.lease.acquiredAt, 10 * U, "expiresAt - acquiredAt");
    await s.advance(3 * U);
    const second = granted(await store.acquire({ durationMs: 10 * U }));
    assert.equal(second.lease.id, undefined);
    assert.notEqual(second.lease.token, first.lease.token);
    const denied = await store.acquire({ durationMs: 10 * U, id: "pod-c" });
    assert.equal(denied.granted, false);
    assert.deepEqual(Object.keys(denied).sort(), ["granted", "nextFreeInMs"]);
    near(denied.nextFreeInMs, 7 * U, "nextFreeInMs");
    assert.equal((await store.leases()).length, 2);
  });

  check(
    "gives an id that holds a lease the same lease, even when full, and no second slot",
    2,
    async (s, store) => {
      const first = granted(await store.acquire({ durationMs: 10 * U, id: "pod-a" }));
      await s.advance(U);
      const again = granted(await store.acquire({ durationMs: 10 * U, id: "pod-a" }));
      assert.equal(again.existing, true);
      assert.equal(again.lease.token, first.lease.token);
      assert.equal((await store.leases()).length, 1);
      granted(await store.acquire({ durationMs: 10 * U, id: "pod-b" }));
      assert.equal((await store.acquire({ durationMs: 10 * U, id: "pod-c" })).granted, false);
      const full = granted(await store.acquire({ durationMs: 10 * U, id: "pod-a" }));
      assert.equal(full.existing, true);
      assert.equal(full.lease.token, first.lease.token);
      assert.equal((await store.leases()).length, 2);
    },
  );

  check(
    "renews the lease an id holds to the duration it asks again for, in the same step",
    1,
    async (s, store) => {
      const first = granted(await store.acquire({ durationMs: 3 * U, id: "pod-a" }));
      await s.advance(2.8 * U);
      // Asked again just before it runs out: the lease starts afresh, for what is asked now.
      const again = granted(await store.acquire({ durationMs: 60 * U, id: "pod-a" }));
      assert.equal(again.existing, true);
      assert.equal(again.lease.token, first.lease.token);
      assert.equal(again.lease.acquiredAt, first.lease.acquiredAt, "the same lease");
      near(again.lease.remainingMs, 60 * U, "remainingMs of the renewed lease");
      near(again.lease.expiresAt - first.lease.expiresAt, 59.8 * U, "the expiry moved");
      assert.equal((await store.byId("pod-a"))?.expiresAt, again.lease.expiresAt);
      await s.advance(U); // Past the first expiry: still held, no slot for anyone else.
      assert.equal((await store.acquire({ durationMs: U, id: "pod-b" })).granted, false);
      // A shorter duration asked again shortens it: the lease is what was asked last.
      const shorter = granted(await store.acquire({ durationMs: 2 * U, id: "pod-a" }));
      near(shorter.lease.remainingMs, 2 * U, "remainingMs after asking for less");
      assert.equal(shorter.lease.token, first.lease.token);
    },
  );

  check("never grants more than capacity to concurrent requests", 2, async (_s, store) => {
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => store.acquire({ durationMs: 10 * U, id: `pod-${i}` })),
    );
    const grants = results.filter((r) => r.granted);
    assert.equal(grants.length, 2);
    assert.equal(new Set(grants.map((g) => g.lease.token)).size, 2);
    assert.equal((await store.leases()).length, 2);
  });

  check("gives concurrent requests of one id one lease", 3, async (_s, store) => {
    const results = await Promise.all(
      Array.from({ length: 4 }, () => store.acquire({ durationMs: 10 * U, id: "pod-a" })),
    );
    const grants = results.map(granted);
    assert.equal(new Set(grants.map((g) => g.lease.token)).size, 1);
    assert.equal(grants.filter((g) => !g.existing).length, 1);
    assert.equal((await store.leases()).length, 1);
  });

  check("release() frees the slot at once and only once", 1, async (_s, store) => {
    const { lease } = granted(await store.acquire({ durationMs: 10 * U, id: "pod-a" }));
    const released = await store.release(lease.token);
    assert.equal(released?.token, lease.token);
    assert.equal(released.id, "pod-a");
    assert.equal(await store.release(lease.token), undefined);
    assert.equal(await store.release(UNKNOWN_TOKEN), undefined);
    assert.equal(await store.byToken(lease.token), undefined);
    assert.equal(await store.byId("pod-a"), undefined);
    assert.deepEqual(await store.leases(), []);
    const next = granted(await store.acquire({ durationMs: 10 * U, id: "pod-a" }));
    assert.equal(next.existing, false, "the id gets a new lease");
    assert.notEqual(next.lease.token, lease.token);
  });

  check(
    "release() with a hand-back's claims frees only a lease nobody claimed since, in one step",
    2,
    async (_s, store) => {
      const fresh = granted(await store.acquire({ durationMs: 10 * U, id: "pod-a" }));
      assert.equal(fresh.lease.claims, 0, "a new grant is unclaimed");
      // Its id asks again (its client never saw the first answer): the client holds it now.
      const again = granted(await store.acquire({ durationMs: 10 * U, id: "pod-a" }));
      assert.equal(again.lease.claims, 1);
      assert.equal(await store.release(fresh.lease.token, fresh.lease.claims), undefined);
      assert.equal((await store.byId("pod-a"))?.token, fresh.lease.token, "still held");
      // Renewed by its token: claimed again.
      const renewed = await store.renew(fresh.lease.token, 10 * U);
      assert.equal(renewed?.claims, 2);
      assert.equal(await store.release(fresh.lease.token, 1), undefined);
      assert.equal((await store.leases()).length, 1);
      // With the claims it has now, or without any, it is freed.
      assert.equal((await store.release(fresh.lease.token, 2))?.token, fresh.lease.token);
      assert.equal(await store.byId("pod-a"), undefined);
      const unclaimed = granted(await store.acquire({ durationMs: 10 * U, id: "pod-b" }));
      assert.equal(
        (await store.release(unclaimed.lease.token, 0))?.token,
        unclaimed.lease.token,
        "an unclaimed lease is handed back",
      );
      assert.deepEqual(await store.leases(), []);
    },
  );

  check("renew() moves the expiry to the new duration from now", 1, async (s, store) => {
    const { lease } = granted(await store.acquire({ durationMs: 4 * U, id: "pod-a" }));
    await s.advance(3 * U);
    const renewed = await store.renew(lease.token, 4 * U);
    assert.equal(renewed?.token, lease.token);
    assert.equal(renewed.id, "pod-a");
    near(renewed.remainingMs, 4 * U, "remainingMs after renew");
    near(renewed.expiresAt - lease.expiresAt, 3 * U, "expiresAt moved by");
    await s.advance(3 * U);
    assert.equal(
      (await store.byToken(lease.token))?.token,
      lease.token,
      "held past the old expiry",
    );
    await s.advance(U);
    await eventually(s, async () => (await store.byToken(lease.token)) === undefined, "expired");
    assert.equal(await store.renew(lease.token, 4 * U), undefined, "an expired token");
    assert.equal(await store.renew(UNKNOWN_TOKEN, 4 * U), undefined, "an unknown token");
  });

  check("renew() can shorten a lease, and not revive a released one", 1, async (s, store) => {
    const { lease } = granted(await store.acquire({ durationMs: 10 * U }));
    near((await store.renew(lease.token, U))?.remainingMs, U, "remainingMs after renew");
    await s.advance(U);
    await eventually(s, async () => (await store.leases()).length === 0, "expired after 1 unit");
    const other = granted(await store.acquire({ durationMs: 10 * U }));
    await store.release(other.lease.token);
    assert.equal(await store.renew(other.lease.token, 10 * U), undefined);
    assert.deepEqual(await store.leases(), []);
  });

  check("byId() and byToken() find a held lease", 2, async (_s, store) => {
    const named = granted(await store.acquire({ durationMs: 10 * U, id: "pod-a" }));
    const anonymous = granted(await store.acquire({ durationMs: 20 * U }));
    assert.equal((await store.byId("pod-a"))?.token, named.lease.token);
    assert.equal((await store.byToken(named.lease.token))?.id, "pod-a");
    const found = await store.byToken(anonymous.lease.token);
    assert.equal(found?.token, anonymous.lease.token);
    assert.equal(found.id, undefined);
    near(found.remainingMs, 20 * U, "remainingMs by token");
    assert.equal(await store.byId("pod-b"), undefined);
    assert.equal(await store.byToken(UNKNOWN_TOKEN), undefined);
  });

  check("leases() lists every held slot, soonest expiry first", 3, async (_s, store) => {
    assert.deepEqual(await store.leases(), []);
    await store.acquire({ durationMs: 30 * U, id: "c" });
    const a = granted(await store.acquire({ durationMs: 10 * U, id: "a" }));
    const b = granted(await store.acquire({ durationMs: 20 * U, id: "b" }));
    const ids = async () => (await store.leases()).map((l) => l.id);
    assert.deepEqual(await ids(), ["a", "b", "c"]);
    const remaining = (await store.leases()).map((l) => l.remainingMs);
    assert.deepEqual(remaining, [...remaining].sort((x, y) => x - y));
    await store.renew(a.lease.token, 40 * U);
    assert.deepEqual(await ids(), ["b", "c", "a"]);
    await store.release(b.lease.token);
    assert.deepEqual(await ids(), ["c", "a"]);
  });

  check(
    "onFree() tells every listener of a release, until it unsubscribes",
    2,
    async (_s, store) => {
      const heard: SlotsFreed[] = [];
      const other: SlotsFreed[] = [];
      const unsubscribe = store.onFree((freed) => heard.push(freed));
      store.onFree((freed) => other.push(freed));
      const first = granted(await store.acquire({ durationMs: 10 * U }));
      const second = granted(await store.acquire({ durationMs: 10 * U }));
      assert.equal(heard.length, 0, "a grant frees nothing");
      await store.release(first.lease.token);
      assert.equal(heard.length, 1);
      assert.deepEqual(heard[0]?.expired, [], "a release lists no expired lease");
      assert.equal(other.length, 1);
      unsubscribe();
      await store.release(second.lease.token);
      assert.equal(heard.length, 1, "not told after unsubscribing");
      assert.equal(other.length, 2);
    },
  );

  check("onFree() tells of expiries, listing the expired leases", 2, async (s, store) => {
    const expired: Lease[] = [];
    store.onFree((freed) => expired.push(...freed.expired));
    const a = granted(await store.acquire({ durationMs: 2 * U, id: "pod-a" }));
    const b = granted(await store.acquire({ durationMs: 4 * U }));
    await s.advance(2 * U);
    await eventually(s, () => expired.length === 1, `pod-a expired: ${expired.length} told`);
    assert.equal(expired[0]?.token, a.lease.token);
    assert.equal(expired[0].id, "pod-a");
    await s.advance(2 * U);
    await eventually(s, () => expired.length === 2, `both expired: ${expired.length} told`);
    assert.equal(expired[1]?.token, b.lease.token);
    assert.equal(expired[1].id, undefined);
  });

  check("a lease expires at its deadline, not before", 2, async (s, store) => {
    const { lease } = granted(await store.acquire({ durationMs: 2 * U, id: "pod-a" }));
    // A neighbour whose deadline is just after: it must outlive the first.
    const next = granted(await store.acquire({ durationMs: 2 * U + margin + 2 * tolerance }));
    await s.advance(2 * U - margin);
    assert.equal((await store.byToken(lease.token))?.token, lease.token, "held until the deadline");
    const denied = await store.acquire({ durationMs: 2 * U });
    assert.equal(denied.granted, false);
    assert.ok(denied.nextFreeInMs <= margin + tolerance, `nextFreeInMs ${denied.nextFreeInMs}`);
    await s.advance(margin);
    await eventually(s, async () => (await store.byToken(lease.token)) === undefined, "expired");
    assert.equal(await store.byId("pod-a"), undefined);
    assert.equal((await store.byToken(next.lease.token))?.token, next.lease.token, "not yet");
    assert.equal(granted(await store.acquire({ durationMs: 2 * U })).existing, false);
  });

  check("close() ends expiry notifications", 1, async (s, store) => {
    let told = 0;
    store.onFree(() => told++);
    granted(await store.acquire({ durationMs: U }));
    await store.close();
    await s.advance(2 * U);
    assert.equal(told, 0);
  }, true);
}

/** The grant, or a failed assertion. */
function granted(result: AcquireResult): Extract<AcquireResult, { granted: true }> {
  assert.ok(result.granted, `expected a grant, got ${JSON.stringify(result)}`);
  return result;
}
