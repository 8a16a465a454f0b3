/**
 * The event bus: subscribers take every event or only the types they name,
 * emitters can ask whether an event is wanted before building it, and a
 * subscriber that throws stops neither the core nor the other subscribers.
 */
import assert from "node:assert/strict";
import { EventBus, type LockEvent } from "../../../lib/core/events.ts";

const STORE_DOWN: LockEvent = { type: "store", up: false, error: "down" };
const DENIED: LockEvent = { type: "denied", id: "a", reason: "busy", retryAfterMs: 1_000 };

Deno.test("EventBus delivers each event to the subscribers that take its type", () => {
  const bus = new EventBus();
  const all: string[] = [];
  const some: string[] = [];
  bus.on((e) => all.push(e.type));
  bus.on((e) => some.push(e.type), ["store"]);
  bus.emit(STORE_DOWN);
  bus.emit(DENIED);
  assert.deepEqual(all, ["store", "denied"]);
  assert.deepEqual(some, ["store"]);
});

Deno.test("EventBus.wants() says whether anybody takes a type, as subscribers come and go", () => {
  const bus = new EventBus();
  assert.equal(bus.wants("denied"), false);
  const offStore = bus.on(() => {}, ["store", "gate"]);
  assert.equal(bus.wants("store"), true);
  assert.equal(bus.wants("denied"), false);
  const offAll = bus.on(() => {});
  assert.equal(bus.wants("denied"), true);
  offAll();
  offAll();
  assert.equal(bus.wants("denied"), false, "unsubscribing twice counts once");
  offStore();
  assert.equal(bus.wants("store"), false);
});

Deno.test("EventBus keeps delivering when a subscriber throws, and reports the failure", async () => {
  const bus = new EventBus();
  const seen: string[] = [];
  const errors: unknown[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => errors.push(args.join(" "));
  try {
    bus.on(() => {
      throw new Error("broken subscriber");
    });
    bus.on((e) => seen.push(e.type));
    bus.emit(STORE_DOWN);
    await null;
  } finally {
    console.error = original;
  }
  assert.deepEqual(seen, ["store"]);
  assert.match(String(errors[0]), /an event subscriber failed on store: Error: broken subscriber/);
});
