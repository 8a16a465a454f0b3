/**
 * The lock service, and the HTTP answers where they matter, on a store that
 * fails: refusals, hangs ended by the store's timeout, and answers lost after
 * the store acted. A failure is an answer (`503`, reason `store`), never an
 * unhandled rejection; no waiter is stranded while a slot is free; no slot is
 * lost for longer than its lease.
 */
import assert from "node:assert/strict";
import { type LockEvent } from "../../../lib/core/events.ts";
import { STORE_RETRY_MS } from "../../../lib/core/queue.ts";
import { LockService, type Outcome } from "../../../lib/core/service.ts";
import { createHandler, type RequestInfo } from "../../../lib/http/handler.ts";
import { MemoryLockStore } from "../../../lib/stores/memory.ts";
import { ManualClock } from "../../_clock.ts";
import { FaultyStore } from "../../_faulty_store.ts";

/** The store's command timeout in these tests. */
const TIMEOUT_MS = 2_000;

/**
 * A service on a faulty store, with the handler in front. Disposing it closes
 * everything and checks that nothing was left behind: no unhandled rejection,
 * no timer, no unexpected handler error.
 */
function setup(capacity = 1, upAfter?: "a_change") {
  const clock = new ManualClock();
  const inner = new MemoryLockStore(capacity, { clock });
  // The rule of a store that reads from memory and writes a file (the state file).
  if (upAfter) Object.assign(inner, { upAfter });
  const store = new FaultyStore(inner, { clock, timeoutMs: TIMEOUT_MS });
  const service = new LockService({ store, clock, maxDurationMs: 60_000 });
  const errors: string[] = [];
  const handler = createHandler({
    service,
    defaultDurationMs: 10_000,
    maxWaitMs: 60_000,
    onError: (message) => errors.push(message),
  });
  const events: LockEvent[] = [];
  service.events.on((event) => events.push(event));
  const rejections: unknown[] = [];
  const onRejection = (event: PromiseRejectionEvent) => {
    rejections.push(event.reason);
    event.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  return {
    clock,
    inner,
    store,
    service,
    events,
    /** Calls the handler, asking for JSON. */
    request(path: string, init: RequestInit = {}, info?: RequestInfo): Promise<Response> {
      const headers = { Accept: "application/json" };
      return Promise.resolve(
        handler(new Request(`http://localhost${path}`, { ...init, headers }), info),
      );
    },
    /** The `store` events so far, as `down` and `up`. */
    storeEvents(): string[] {
      return events.flatMap((e) => e.type === "store" ? [e.up ? "up" : "down"] : []);
    },
    async [Symbol.asyncDispose]() {
      service.close();
      await store.close();
      await flush();
      // Unhandled rejections are reported once the microtasks have run: give them a turn.
      await new Promise((resolve) => setTimeout(resolve, 0));
      globalThis.removeEventListener("unhandledrejection", onRejection);
      assert.deepEqual(rejections, [], "no unhandled rejection");
      assert.deepEqual(errors, [], "no error reached the handler's onError");
      assert.equal(clock.pending, 0, "no timer is left");
    },
  };
}

/** Lets the store's answers and the service's callbacks run. */
async function flush() {
  for (let i = 0; i < 20; i++) await null;
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

async function granted(outcome: Outcome | Promise<Outcome>) {
  const o = await outcome;
  assert.ok(o.granted, `expected a grant, got ${JSON.stringify(o)}`);
  return o;
}

async function body(response: Response): Promise<Record<string, unknown>> {
  return await response.json();
}

Deno.test("the tests' guard catches an unhandled rejection", async () => {
  const seen: unknown[] = [];
  const listener = (event: PromiseRejectionEvent) => {
    seen.push(event.reason);
    event.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", listener);
  Promise.reject(new Error("deliberate"));
  // The event comes after a turn of the event loop, later on a busy machine: wait up to 2 s.
  for (let i = 0; i < 200 && seen.length === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  globalThis.removeEventListener("unhandledrejection", listener);
  assert.equal(seen.length, 1);
});

Deno.test("handler answers 503 with reason store and Retry-After when the store refuses an acquire", async () => {
  await using t = setup();
  t.store.failNext("acquire", { kind: "reject", error: new Error("ECONNREFUSED") });
  const res = await t.request("/?id=pod-a");
  assert.equal(res.status, 503);
  assert.equal(res.headers.get("Retry-After"), "1");
  const json = await body(res);
  assert.equal(json.reason, "store");
  assert.equal(json.message, "Unavailable: the lock store failed to acquire: ECONNREFUSED");
  assert.equal(t.inner.held, 0);
  assert.equal((await t.request("/?id=pod-a")).status, 200, "the next request is served");
});

Deno.test("LockService answers store when the store hangs, once its timeout runs out", async () => {
  await using t = setup();
  t.store.failNext("acquire", "hang");
  const outcome = watch(Promise.resolve(t.service.acquire({ durationMs: 1_000 })));
  await flush();
  t.clock.advance(TIMEOUT_MS - 1);
  await flush();
  assert.equal(outcome.done, false);
  t.clock.advance(1);
  await flush();
  assert.deepEqual(outcome.value, {
    granted: false,
    denial: {
      reason: "store",
      error: `the lock store failed to acquire: timed out after ${TIMEOUT_MS} ms`,
      retryAfterMs: 1_000,
    },
  });
});

Deno.test("handler answers 503 when a release or renewal fails, and the lock stays held", async () => {
  await using t = setup();
  const token = (await t.request("/?duration=10s")).headers.get("Lock-Token")!;
  t.store.failNext("release");
  const release = await t.request(`/locks/${token}`, { method: "DELETE" });
  assert.equal(release.status, 503);
  assert.equal((await body(release)).reason, "store");
  assert.equal(t.inner.held, 1);
  t.store.failNext("renew", "hang");
  const renewal = t.request(`/locks/${token}?duration=30s`, { method: "PUT" });
  t.clock.advance(TIMEOUT_MS);
  const res = await renewal;
  assert.equal(res.status, 503);
  assert.equal(res.headers.get("Retry-After"), "1");
  assert.equal((await body(res)).reason, "store");
  assert.equal(t.inner.leases()[0]?.remainingMs, 8_000, "the expiry did not move");
  assert.equal((await t.request(`/locks/${token}`, { method: "DELETE" })).status, 204);
  assert.equal(t.inner.held, 0);
});

Deno.test("handler answers 503 when the look-up of a waiting id fails", async () => {
  await using t = setup();
  await t.request("/?duration=10s");
  const waiter = t.request("/?id=pod-b&wait=20s");
  await flush();
  assert.equal(t.service.waiting, 1);
  t.store.failNext("byId");
  const res = await t.request("/?id=pod-c");
  assert.equal(res.status, 503);
  assert.equal((await body(res)).reason, "store");
  t.clock.advance(10_000); // The holder expires: the waiter gets the slot.
  assert.equal((await waiter).status, 200);
});

for (const kind of ["reject", "hang"] as const) {
  Deno.test(`LockService serves a waiter once the store answers again after a ${kind} in the queue`, async () => {
    await using t = setup();
    const holder = await granted(t.service.acquire({ durationMs: 10_000 }));
    const waiter = watch(Promise.resolve(t.service.acquire({ durationMs: 5_000, waitMs: 60_000 })));
    await flush();
    assert.equal(t.service.waiting, 1);
    t.store.failNext("acquire", kind);
    assert.equal((await t.service.release(holder.lease.token))?.token, holder.lease.token);
    await flush();
    assert.equal(t.inner.held, 0, "the slot is free");
    assert.equal(waiter.done, false, "the queue could not take it");
    if (kind === "hang") {
      t.clock.advance(TIMEOUT_MS);
      await flush();
      assert.equal(waiter.done, false, "the store timed out");
    }
    t.clock.advance(STORE_RETRY_MS - 1);
    await flush();
    assert.equal(waiter.done, false);
    t.clock.advance(1); // The queue asks the store again.
    await flush();
    assert.equal(waiter.value?.granted, true, JSON.stringify(waiter.value));
    assert.equal(t.inner.held, 1);
    assert.deepEqual(t.storeEvents(), ["down", "up"]);
  });
}

Deno.test("LockService answers store to a waiter whose wait runs out while the store fails", async () => {
  await using t = setup();
  await t.request("/?duration=2s");
  const waiter = t.request("/?wait=2500ms");
  await flush();
  t.store.down();
  t.clock.advance(2_000); // The holder expires; the queue cannot take the slot.
  await flush();
  t.clock.advance(500);
  const res = await waiter;
  assert.equal(res.status, 503);
  assert.equal(res.headers.get("Retry-After"), "1");
  const json = await body(res);
  assert.equal(json.reason, "store");
  assert.match(String(json.message), /failed to acquire: connection refused/);
  t.store.heal();
  assert.equal((await t.request("/")).status, 200, "the slot was not lost");
});

Deno.test("LockService emits store down and up once per transition", async () => {
  await using t = setup(3);
  t.store.down();
  for (let i = 0; i < 3; i++) await t.service.acquire({ durationMs: 1_000 });
  await t.service.status();
  assert.deepEqual(t.storeEvents(), ["down"]);
  const down = t.events.find((e) => e.type === "store");
  assert.deepEqual(down, {
    type: "store",
    up: false,
    error: "the lock store failed to acquire: connection refused (injected)",
  });
  t.store.heal();
  for (let i = 0; i < 3; i++) await granted(t.service.acquire({ durationMs: 1_000 }));
  assert.deepEqual(t.storeEvents(), ["down", "up"]);
  t.store.failNext("leases", "hang");
  const status = t.service.status();
  t.clock.advance(TIMEOUT_MS);
  await status;
  await granted(t.service.acquire({ durationMs: 1_000, id: "pod-a" }));
  await t.service.renew("unknownTokenAAAAAAAAAA", 1_000);
  assert.deepEqual(t.storeEvents(), ["down", "up", "down", "up"]);
});

Deno.test("LockService: after a failed change, only a change that works says a_change store is back", async () => {
  // A store that reads from memory (the state file) answers lookups while its writes fail.
  await using t = setup(3, "a_change");
  t.store.failNext("acquire", "reject");
  await t.service.acquire({ durationMs: 1_000 });
  await t.service.status();
  await t.service.status();
  assert.deepEqual(t.storeEvents(), ["down"], "lookups that work do not say it is back");
  assert.equal((await t.service.status()).store.up, false);
  await granted(t.service.acquire({ durationMs: 1_000 }));
  assert.deepEqual(t.storeEvents(), ["down", "up"]);
});

Deno.test("handler answers /status with 200, store down and reason store while the store fails", async () => {
  await using t = setup(2);
  await t.request("/?id=pod-a");
  t.store.down();
  const res = await t.request("/status");
  assert.equal(res.status, 200);
  const json = await body(res);
  assert.deepEqual(json.store, {
    up: false,
    error: "the lock store failed to list leases: connection refused (injected)",
  });
  assert.deepEqual(json.slots, { total: 2, held: null, free: null });
  assert.equal((json.locking as { reason: string }).reason, "store");
  t.store.heal();
  const after = await body(await t.request("/status"));
  assert.deepEqual(after.store, { up: true, error: null });
  assert.deepEqual(after.slots, { total: 2, held: 1, free: 1 });
  assert.deepEqual(after.locking, { allowed: true });
});

Deno.test("LockService hands back a waiter's grant while the store fails to release, until it succeeds", async () => {
  await using t = setup();
  const holder = await granted(t.service.acquire({ durationMs: 10_000 }));
  const client = new AbortController();
  const waiter = t.service.acquire({ durationMs: 30_000, waitMs: 60_000, signal: client.signal });
  await flush();
  // The queue's take is slow; the client goes away while it is under way.
  t.store.failNext("acquire", { kind: "delay", ms: 100 });
  t.store.failNext("release", "reject", 3);
  t.store.inner.release(holder.lease.token); // Freed elsewhere: the store says so.
  await flush();
  client.abort();
  t.clock.advance(100);
  await flush();
  assert.equal((await waiter).granted, false);
  assert.equal(t.inner.held, 1, "granted to nobody, being handed back");
  assert.equal(t.events.filter((e) => e.type === "handed_back").length, 1);
  // Tries again after 1 s, 2 s and 4 s: the first two fail.
  for (const pause of [1_000, 2_000]) {
    t.clock.advance(pause);
    await flush();
    assert.equal(t.inner.held, 1);
  }
  t.clock.advance(4_000 - 1);
  await flush();
  assert.equal(t.inner.held, 1);
  t.clock.advance(1);
  await flush();
  assert.equal(t.inner.held, 0, "the slot came back");
  assert.deepEqual(t.storeEvents(), ["down", "up"]);
});

/**
 * A client with an id whose wait (a chunk of `?wait=`) runs out while the
 * slot it is due is being taken: holder frees the only slot, the take for x
 * is slow, x's wait runs out under way. Returns x's answer and y, who waits
 * behind x.
 */
async function grantWhileAway(t: ReturnType<typeof setup>) {
  const holder = await granted(t.service.acquire({ durationMs: 10_000 }));
  const x = watch(
    Promise.resolve(t.service.acquire({ durationMs: 30_000, id: "x", waitMs: 2_000 })),
  );
  await flush();
  const y = watch(
    Promise.resolve(t.service.acquire({ durationMs: 30_000, id: "y", waitMs: 60_000 })),
  );
  await flush();
  t.clock.advance(1_950);
  t.store.failNext("acquire", { kind: "delay", ms: 100 });
  t.inner.release(holder.lease.token); // Freed: the queue takes the slot for x, slowly.
  await flush();
  t.clock.advance(50); // x's wait runs out while the take is under way…
  await flush();
  assert.ok(x.done && x.value && !x.value.granted, "x is answered: its wait ran out");
  t.clock.advance(50); // …and the slot is taken for it.
  await flush();
  return { x: x.value, y };
}

Deno.test("LockService keeps a slot taken for an id whose wait ran out under way for the id's next ask, ahead of later waiters", async () => {
  await using t = setup();
  const { y } = await grantWhileAway(t);
  assert.equal(t.inner.held, 1);
  assert.ok(!y.done, "y, behind x, still waits: the slot is x's turn");
  assert.equal(t.events.filter((e) => e.type === "handed_back").length, 0);
  // x asks again at once, as a client that asks in chunks does: it gets the slot taken for it,
  // for the duration it asks now.
  const again = await granted(t.service.acquire({ durationMs: 20_000, id: "x", waitMs: 2_000 }));
  assert.equal(again.existing, true);
  assert.equal(again.durationMs, 20_000);
  await t.service.release(again.lease.token);
  await flush();
  assert.ok(y.done && y.value?.granted, "then y");
  // x's place was dropped when it got its lock: nothing is handed back when its grace ends.
  t.clock.advance(5_000);
  await flush();
  assert.equal(t.inner.held, 1, "y holds");
  assert.equal(t.events.filter((e) => e.type === "handed_back").length, 0);
  await t.service.release(y.value.lease.token);
});

Deno.test("LockService hands back a slot kept for an id that does not ask again within its grace", async () => {
  await using t = setup();
  const { y } = await grantWhileAway(t);
  t.clock.advance(5_000 - 50 - 1); // x's wait ran out 50 ms ago: its grace is 5 s.
  await flush();
  assert.ok(!y.done, "kept for x until its grace ends");
  t.clock.advance(1);
  await flush();
  assert.equal(t.events.filter((e) => e.type === "handed_back").length, 1);
  assert.ok(y.done && y.value?.granted, "then the slot goes to y");
  await t.service.release(y.value.lease.token);
});

Deno.test("handler hands back a grant whose answer was never delivered, retrying a hung release", async () => {
  await using t = setup();
  let fail = (_: Error) => {};
  const completed = new Promise<void>((_, reject) => (fail = reject));
  const res = await t.request("/?duration=30s", {}, { completed });
  assert.equal(res.status, 200);
  t.store.failNext("release", "hang");
  fail(new Error("connection reset by peer"));
  await flush();
  assert.equal(t.inner.held, 1);
  t.clock.advance(TIMEOUT_MS);
  await flush();
  assert.equal(t.inner.held, 1);
  t.clock.advance(STORE_RETRY_MS - 1);
  await flush();
  assert.equal(t.inner.held, 1);
  t.clock.advance(1);
  await flush();
  assert.equal(t.inner.held, 0, "given back on the second try");
});

Deno.test("LockService stops handing back once the lease has expired anyway", async () => {
  await using t = setup();
  const { lease } = await granted(t.service.acquire({ durationMs: 5_000 }));
  t.store.down();
  t.service.handBack(lease);
  for (let i = 0; i < 10; i++) {
    t.clock.advance(1_000);
    await flush();
  }
  assert.equal(t.inner.held, 0, "expired");
  assert.equal(t.clock.pending, 0, "no retry is left");
});

Deno.test("LockService.close() stops a hand-back whose release is still under way", async () => {
  await using t = setup();
  const { lease } = await granted(t.service.acquire({ durationMs: 30_000 }));
  t.store.failNext("release", "hang");
  t.service.handBack(lease);
  await flush();
  t.service.close();
  t.clock.advance(TIMEOUT_MS); // The release times out after the service closed.
  await flush();
  assert.equal(t.clock.pending, 1, "only the lease's own expiry");
});

Deno.test("a grant lost on its way back from the store is not lost for good", async (t) => {
  await t.step("it expires, and a request after gets the slot", async () => {
    await using s = setup();
    s.store.failNext("acquire", { kind: "reject", afterEffect: true });
    assert.equal((await s.request("/?duration=5s")).status, 503);
    assert.equal(s.inner.held, 1, "held by nobody who knows its token");
    assert.equal((await s.request("/")).status, 423);
    s.clock.advance(5_000);
    assert.equal((await s.request("/")).status, 200);
  });
  await t.step("a client with an id that asks again gets it back", async () => {
    await using s = setup();
    s.store.failNext("acquire", { kind: "hang", afterEffect: true });
    const lost = s.request("/?id=pod-a&duration=5s");
    await flush(); // The store takes the slot; its answer never comes.
    s.clock.advance(TIMEOUT_MS);
    assert.equal((await lost).status, 503);
    const again = await s.request("/?id=pod-a");
    assert.equal(again.status, 200);
    assert.equal(again.headers.get("Lock-Token"), s.inner.byId("pod-a")?.token);
    assert.equal(again.headers.get("Lock-Duration"), "10", "renewed to what it asks now");
    assert.equal(s.inner.byId("pod-a")?.remainingMs, 10_000);
  });
  await t.step("a waiter gets it once it expires", async () => {
    await using s = setup();
    const holder = await granted(s.service.acquire({ durationMs: 10_000 }));
    const waiter = watch(Promise.resolve(s.service.acquire({ durationMs: 5_000, waitMs: 60_000 })));
    await flush();
    s.store.failNext("acquire", { kind: "reject", afterEffect: true });
    await s.service.release(holder.lease.token);
    await flush();
    assert.equal(s.inner.held, 1, "taken for the waiter, but the answer was lost");
    s.clock.advance(STORE_RETRY_MS);
    await flush();
    assert.equal(waiter.done, false, "the retry finds every slot held");
    s.clock.advance(5_000 - STORE_RETRY_MS - 1);
    await flush();
    assert.equal(waiter.done, false);
    s.clock.advance(1); // The lost lease expires.
    await flush();
    assert.equal(waiter.value?.granted, true);
  });
});

Deno.test("LockService answers store when a synchronous store throws", async () => {
  const clock = new ManualClock();
  const inner = new MemoryLockStore(1, { clock });
  let failing = false;
  // The memory store's own answers, but thrown synchronously (and not as StoreUnavailableError).
  const store = new Proxy(inner, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (failing && key !== "onFree" && key !== "close") throw new TypeError("socket is null");
        return value.apply(target, args);
      };
    },
  });
  const service = new LockService({ store, clock, maxDurationMs: 60_000 });
  const handler = createHandler({ service, defaultDurationMs: 10_000, maxWaitMs: 60_000 });
  const holder = handler(new Request("http://localhost/?duration=10s")) as Response;
  const token = holder.headers.get("Lock-Token")!;
  const waiter = watch(Promise.resolve(handler(new Request("http://localhost/?wait=30s"))));
  failing = true;
  const refused = handler(
    new Request("http://localhost/?id=pod-b", { headers: { Accept: "application/json" } }),
  );
  assert.ok(!(refused instanceof Promise), "answered synchronously");
  assert.equal(refused.status, 503);
  assert.equal(
    (await refused.json()).message,
    "Unavailable: the lock store failed to look up: socket is null",
  );
  const release = await handler(
    new Request(`http://localhost/locks/${token}`, { method: "DELETE" }),
  );
  assert.equal(release.status, 503);
  clock.advance(10_000); // The holder expires; the queue's take throws.
  await flush();
  assert.equal(waiter.done, false);
  failing = false;
  clock.advance(STORE_RETRY_MS);
  await flush();
  assert.equal(waiter.value?.status, 200);
  service.close();
  store.close();
  assert.equal(clock.pending, 0);
});
