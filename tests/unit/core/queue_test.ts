/**
 * The waiting queue on its own: arrival order, a newer request with the same
 * id, waits that run out, clients that go away and come back within the
 * grace, a grant whose client is gone, the bound on places, and shutdown.
 * Slots come from a real memory store on a manual clock.
 */
import assert from "node:assert/strict";
import { EventBus, type LockEvent } from "../../../lib/core/events.ts";
import { WaitQueue, type WaitResult } from "../../../lib/core/queue.ts";
import type { Lease } from "../../../lib/core/store.ts";
import { MemoryLockStore } from "../../../lib/stores/memory.ts";
import { ManualClock } from "../../_clock.ts";

const GRACE_MS = 5_000;

function setup(options: { locks?: number; maxWaiters?: number } = {}) {
  const clock = new ManualClock();
  const store = new MemoryLockStore(options.locks ?? 1, { clock });
  const events = new EventBus();
  const seen: LockEvent[] = [];
  events.on((e) => seen.push(e));
  const handedBack: Lease[] = [];
  let open = true;
  const queue = new WaitQueue({
    take: (request) => store.acquire(request),
    isOpen: () => open,
    handBack: (lease) => {
      handedBack.push(lease);
      store.release(lease.token);
    },
    clock,
    events,
    graceMs: GRACE_MS,
    ...(options.maxWaiters === undefined ? {} : { maxWaiters: options.maxWaiters }),
  });
  store.onFree(() => queue.pump());
  /** Takes a slot outside the queue; returns its token. */
  const hold = (durationMs = 60_000) => {
    const result = store.acquire({ durationMs });
    assert.ok(result.granted);
    return result.lease.token;
  };
  const setOpen = (value: boolean) => {
    open = value;
    queue.pump();
  };
  return { clock, store, queue, seen, handedBack, hold, setOpen };
}

/** Lets promise callbacks run. */
async function flush() {
  for (let i = 0; i < 5; i++) await null;
}

/** A wait whose result can be read once it settles. */
function track(promise: Promise<WaitResult>) {
  let result: WaitResult | undefined;
  promise.then((r) => result = r);
  return { promise, result: () => result };
}

Deno.test("WaitQueue serves 50 waiting clients first come, first served", async () => {
  const { clock, store, queue, hold } = setup();
  hold(1_000);
  const order: string[] = [];
  const waits = Array.from(
    { length: 50 },
    (_, i) =>
      queue.wait({ durationMs: 1_000, id: `app-${i}` }, 3_600_000).then((r) => {
        assert.ok(r.granted);
        order.push(r.lease.id!);
      }),
  );
  assert.equal(queue.waiting, 50);
  for (let i = 0; i < 50; i++) {
    clock.advance(1_000); // The holder's lock expires; the first in line gets it.
    await flush();
    assert.equal(store.held, 1);
  }
  await Promise.all(waits);
  assert.deepEqual(order, Array.from({ length: 50 }, (_, i) => `app-${i}`));
  assert.equal(queue.size, 0);
});

Deno.test("WaitQueue grants at once when a slot is free and nobody is ahead", async () => {
  const { queue } = setup();
  const result = await queue.wait({ durationMs: 1_000, id: "a" }, 10_000);
  assert.ok(result.granted);
  assert.equal(result.waitedMs, 0);
  assert.equal(queue.size, 0);
});

Deno.test("WaitQueue grants nothing while the gates are closed, and serves in order once they open", async () => {
  const { queue, setOpen } = setup({ locks: 2 });
  setOpen(false);
  const a = track(queue.wait({ durationMs: 1_000, id: "a" }, 60_000));
  const b = track(queue.wait({ durationMs: 1_000, id: "b" }, 60_000));
  await flush();
  assert.equal(a.result(), undefined);
  setOpen(true);
  await flush();
  assert.ok(a.result()?.granted && b.result()?.granted);
});

Deno.test("WaitQueue gives a newer request with the same id the older one's place", async () => {
  const { queue, store, hold } = setup();
  const holder = hold();
  const older = queue.wait({ durationMs: 1_000, id: "a" }, 60_000);
  const b = track(queue.wait({ durationMs: 1_000, id: "b" }, 60_000));
  const newer = track(queue.wait({ durationMs: 2_000, id: "a" }, 60_000));
  const old = await older;
  assert.ok(!old.granted && old.why === "superseded");
  assert.deepEqual(queue.waitingIds(), ["a", "b"]);
  store.release(holder);
  await flush();
  assert.ok(newer.result()?.granted, "a keeps its place ahead of b");
  assert.equal(b.result(), undefined);
  queue.close();
});

Deno.test("WaitQueue lets the same id take its place back even when every place is taken", async () => {
  const { queue, hold } = setup({ maxWaiters: 1 });
  hold();
  const older = queue.wait({ durationMs: 1_000, id: "a" }, 60_000);
  const other = await queue.wait({ durationMs: 1_000, id: "b" }, 60_000);
  assert.ok(!other.granted && other.why === "full");
  const newer = queue.wait({ durationMs: 1_000, id: "a" }, 60_000);
  const old = await older;
  assert.ok(!old.granted && old.why === "superseded");
  assert.equal(queue.size, 1);
  queue.close();
  assert.ok(!(await newer).granted);
});

Deno.test("WaitQueue keeps the place of an id whose wait ran out, for the grace", async (t) => {
  const { clock, queue, store, hold, seen } = setup();
  const holder = hold();
  const a = await (async () => {
    const waiting = queue.wait({ durationMs: 1_000, id: "a" }, 2_000);
    clock.advance(2_000);
    return await waiting;
  })();
  assert.ok(!a.granted && a.why === "timeout");
  const b = track(queue.wait({ durationMs: 1_000, id: "b" }, 60_000));

  await t.step("it shows as returning, not waiting", () => {
    assert.deepEqual(queue.waitingIds(), ["b"]);
    assert.deepEqual(queue.returningIds(), ["a"]);
  });

  await t.step("asking again within the grace puts it back ahead of later arrivals", async () => {
    clock.advance(GRACE_MS - 1);
    const again = track(queue.wait({ durationMs: 1_000, id: "a" }, 60_000));
    assert.deepEqual(queue.waitingIds(), ["a", "b"]);
    store.release(holder);
    await flush();
    assert.ok(again.result()?.granted);
    assert.equal(b.result(), undefined);
  });
  assert.ok(!seen.some((e) => e.type === "left_queue" && e.id === "a"));
  queue.close();
});

Deno.test("WaitQueue drops the place of an id that does not come back within the grace", async () => {
  const { clock, queue, hold, seen } = setup();
  hold();
  const waiting = queue.wait({ durationMs: 1_000, id: "a" }, 2_000);
  clock.advance(2_000);
  await waiting;
  clock.advance(GRACE_MS);
  assert.equal(queue.size, 0);
  const left = seen.find((e) => e.type === "left_queue");
  assert.deepEqual(left, {
    type: "left_queue",
    id: "a",
    why: "timeout",
    waitedMs: 2_000 + GRACE_MS,
  });
  // A later request with the id queues at the back.
  const b = queue.wait({ durationMs: 1_000, id: "b" }, 60_000);
  const a = queue.wait({ durationMs: 1_000, id: "a" }, 60_000);
  assert.deepEqual(queue.waitingIds(), ["b", "a"]);
  queue.close();
  await Promise.all([a, b]);
});

Deno.test("WaitQueue gives a freed slot to the first client waiting now, not to one that is away", async () => {
  const { clock, queue, store, hold } = setup();
  const holder = hold();
  const a = queue.wait({ durationMs: 1_000, id: "a" }, 2_000);
  const b = track(queue.wait({ durationMs: 1_000, id: "b" }, 60_000));
  clock.advance(2_000);
  assert.ok(!(await a).granted);
  store.release(holder); // "a" is between two requests: the slot must not sit idle.
  await flush();
  assert.ok(b.result()?.granted);
  assert.deepEqual(queue.returningIds(), ["a"], "a keeps its place for the grace");
  queue.close();
});

Deno.test("WaitQueue takes a client that goes away out of line and keeps its place for the grace", async () => {
  const { queue, store, hold, seen, clock } = setup();
  const holder = hold();
  const gone = new AbortController();
  const leaving = queue.wait({ durationMs: 1_000, id: "leaver" }, 60_000, gone.signal);
  const anonymousGone = new AbortController();
  const anonymous = queue.wait({ durationMs: 1_000 }, 60_000, anonymousGone.signal);
  const staying = track(queue.wait({ durationMs: 1_000, id: "stayer" }, 60_000));
  gone.abort();
  anonymousGone.abort();
  const left = await leaving;
  assert.ok(!left.granted && left.why === "cancelled");
  assert.ok(!(await anonymous).granted);
  assert.deepEqual(queue.waitingIds(), ["stayer"]);
  assert.deepEqual(queue.returningIds(), ["leaver"], "an anonymous client cannot come back");
  assert.equal(queue.size, 2);
  assert.deepEqual(
    seen.filter((e) => e.type === "left_queue").map((e) => e.type === "left_queue" && e.why),
    ["disconnected"],
    "the anonymous one left at once",
  );
  store.release(holder);
  await flush();
  assert.ok(staying.result()?.granted);
  clock.advance(GRACE_MS);
  assert.equal(queue.size, 0);
});

Deno.test("WaitQueue refuses a request whose client is already gone", async () => {
  const { queue, hold } = setup();
  hold();
  const result = await queue.wait({ durationMs: 1_000, id: "a" }, 60_000, AbortSignal.abort());
  assert.ok(!result.granted && result.why === "cancelled");
  assert.equal(queue.size, 0);
});

Deno.test("WaitQueue hands back a slot granted as its anonymous client went away", async () => {
  const { queue, store, hold, handedBack } = setup();
  const holder = hold();
  const gone = new AbortController();
  const leaving = queue.wait({ durationMs: 1_000 }, 60_000, gone.signal);
  const staying = track(queue.wait({ durationMs: 1_000, id: "stayer" }, 60_000));
  // The abort lands as the slot frees: the signal says aborted, its event is not handled yet.
  Object.defineProperty(gone.signal, "aborted", { value: true });
  store.release(holder);
  await flush();
  assert.equal(handedBack.length, 1);
  assert.equal(handedBack[0]!.id, undefined);
  assert.ok(staying.result()?.granted, "the slot went on to the next client");
  assert.equal(store.held, 1);
  queue.close();
  assert.ok(!(await leaving).granted);
});

Deno.test("WaitQueue keeps a slot granted as an id's client went away for the id, for its grace", async (t) => {
  for (const comesBack of [true, false]) {
    await t.step(comesBack ? "it comes back: the lease is its own" : "it does not", async () => {
      const { clock, queue, store, hold, handedBack } = setup();
      const holder = hold();
      const gone = new AbortController();
      const leaving = queue.wait({ durationMs: 1_000, id: "leaver" }, 60_000, gone.signal);
      const staying = track(queue.wait({ durationMs: 1_000, id: "stayer" }, 60_000));
      Object.defineProperty(gone.signal, "aborted", { value: true });
      store.release(holder);
      await flush();
      assert.ok(!(await leaving).granted);
      assert.equal(store.byId("leaver")?.claims, 0, "the slot is the leaver's, unclaimed");
      assert.equal(staying.result(), undefined, "the next client still waits");
      if (comesBack) {
        // Its id asks again, here or elsewhere: the store gives it its lease.
        const again = store.acquire({ durationMs: 1_000, id: "leaver" });
        assert.ok(again.granted && again.existing);
        queue.forget("leaver");
        clock.advance(GRACE_MS);
        assert.equal(handedBack.length, 0, "nothing is handed back");
      } else {
        clock.advance(GRACE_MS - 1);
        assert.equal(handedBack.length, 0);
        clock.advance(1);
        assert.deepEqual(handedBack.map((l) => [l.id, l.claims]), [["leaver", 0]]);
        await flush();
        assert.ok(staying.result()?.granted, "then the slot goes on to the next client");
      }
      queue.close();
    });
  }
});

Deno.test("WaitQueue bounds the places with maxWaiters", async () => {
  const { queue, hold } = setup({ maxWaiters: 2 });
  hold();
  const waits = [queue.wait({ durationMs: 1 }, 4_000), queue.wait({ durationMs: 1 }, 4_000)];
  const third = await queue.wait({ durationMs: 1 }, 4_000);
  assert.ok(!third.granted && third.why === "full");
  assert.equal(queue.waiting, 2);
  queue.close();
  await Promise.all(waits);
});

Deno.test("WaitQueue.close() answers every waiting client, drops every place and leaves no timer", async () => {
  const { clock, queue, hold, store } = setup();
  hold();
  const waiting = [1, 2, 3].map((i) => queue.wait({ durationMs: 1_000, id: `w${i}` }, 60_000));
  const away = queue.wait({ durationMs: 1_000, id: "away" }, 1_000);
  clock.advance(1_000);
  await away;
  queue.close();
  for (const result of await Promise.all(waiting)) {
    assert.ok(!result.granted && result.why === "shutdown");
  }
  assert.equal(queue.size, 0);
  const late = await queue.wait({ durationMs: 1_000 }, 60_000);
  assert.ok(!late.granted && late.why === "shutdown");
  store.close();
  assert.equal(clock.pending, 0);
});

Deno.test("WaitQueue reports each arrival with its place", async () => {
  const { queue, hold, seen } = setup();
  hold();
  const waits = ["a", "b"].map((id) => queue.wait({ durationMs: 1_000, id }, 60_000));
  const again = queue.wait({ durationMs: 1_000, id: "a" }, 60_000);
  assert.deepEqual(seen.filter((e) => e.type === "queued"), [
    { type: "queued", id: "a", position: 1, waiting: 1 },
    { type: "queued", id: "b", position: 2, waiting: 2 },
    { type: "queued", id: "a", position: 1, waiting: 2 },
  ]);
  queue.close();
  await Promise.all([...waits, again]);
});
