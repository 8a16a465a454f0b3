/**
 * StoreHealth against stores with each rule for what clears "store down":
 * any answer, the store's own heartbeat included (Redis), or only a change
 * that works (the state file).
 */
import assert from "node:assert/strict";
import { EventBus } from "../../../lib/core/events.ts";
import { StoreHealth } from "../../../lib/core/store_health.ts";
import { type LockStore, StoreUnavailableError } from "../../../lib/core/store.ts";
import { MemoryLockStore } from "../../../lib/stores/memory.ts";

/** A memory store with a rule and a heartbeat the test drives by hand. */
function storeWith(upAfter: "any_answer" | "a_change") {
  const listeners = new Set<(failure: StoreUnavailableError | undefined) => void>();
  const store: LockStore = Object.assign(new MemoryLockStore(1), {
    upAfter,
    onHeartbeat(listener: (failure: StoreUnavailableError | undefined) => void) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
  });
  const beat = (failure?: StoreUnavailableError) => {
    for (const listener of listeners) listener(failure);
  };
  return { store, beat };
}

function recordStoreEvents(events: EventBus): string[] {
  const seen: string[] = [];
  events.on((event) => {
    if (event.type === "store") seen.push(event.up ? "up" : `down: ${event.error}`);
  }, ["store"]);
  return seen;
}

const DOWN = new StoreUnavailableError("release", "Redis is away");

Deno.test("StoreHealth: with any_answer, the store's heartbeat clears down without any request", () => {
  const { store, beat } = storeWith("any_answer");
  const events = new EventBus();
  const seen = recordStoreEvents(events);
  const health = new StoreHealth(store, events);
  health.failure("release", DOWN);
  assert.equal(health.up, false);
  beat(DOWN);
  assert.equal(health.up, false);
  beat();
  assert.equal(health.up, true);
  assert.deepEqual(seen, [`down: ${DOWN.message}`, "up"]);
  health.close();
  health.failure("release", DOWN);
  beat();
  assert.equal(health.up, false, "closed: the heartbeat is no longer heard");
});

Deno.test("StoreHealth: with a_change, only a change that works clears a failed change", () => {
  const { store, beat } = storeWith("a_change");
  const health = new StoreHealth(store, new EventBus());
  health.failure("release", DOWN);
  health.answered("look up");
  beat();
  assert.equal(health.up, false, "lookups and beats read memory; the writes may still fail");
  health.answered("acquire");
  assert.equal(health.up, true);
});

Deno.test("StoreHealth.call() turns a failure into a StoreUnavailableError and notes it", async () => {
  const { store } = storeWith("any_answer");
  const health = new StoreHealth(store, new EventBus());
  assert.throws(() =>
    health.call("look up", () => {
      throw new Error("boom");
    }), StoreUnavailableError);
  assert.equal(health.error, "the lock store failed to look up: boom");
  assert.equal(await health.call("list leases", () => Promise.resolve(1)), 1);
  assert.equal(health.up, true);
});
