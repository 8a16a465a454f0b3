/**
 * Gates combined in one place: all must be open, the first closed one gives
 * the reason, and a change of a gate's state is reported once.
 */
import assert from "node:assert/strict";
import { EventBus, type LockEvent } from "../../../lib/core/events.ts";
import { Gates, OPEN } from "../../../lib/core/gates.ts";
import { ManualGate } from "../../_gate.ts";

const STARTING = { reason: "starting", retryAfterMs: 1_000 } as const;
const DOWN = {
  reason: "dependencies",
  failing: [{ url: "tcp://db:5432", error: "refused" }],
  retryAfterMs: 12_000,
} as const;

Deno.test("Gates is open with no gate at all", () => {
  assert.deepEqual(new Gates([]).state(), OPEN);
});

Deno.test("Gates is open only when every gate is, and the first closed gate gives the reason", () => {
  const first = new ManualGate("first");
  const second = new ManualGate("second", DOWN);
  const gates = new Gates([first, second]);
  assert.deepEqual(gates.state(), first.state(), "the first gate speaks first");
  first.open();
  assert.deepEqual(gates.state(), { open: false, denial: DOWN });
  second.open();
  assert.deepEqual(gates.state(), OPEN);
  assert.deepEqual(gates.list(), [
    { name: "first", open: true, denial: undefined },
    { name: "second", open: true, denial: undefined },
  ]);
});

Deno.test("Gates tells its listeners when any gate changes, until stopped", () => {
  const a = new ManualGate("a");
  const b = new ManualGate("b");
  const gates = new Gates([a, b]);
  let calls = 0;
  const unsubscribe = gates.onChange(() => calls++);
  a.open();
  b.announce();
  assert.equal(calls, 2);
  unsubscribe();
  a.announce();
  assert.equal(calls, 2);
  gates.onChange(() => calls++);
  gates.stop();
  a.announce();
  assert.equal(calls, 2, "stop() unsubscribes from the gates");
});

Deno.test("Gates reports a gate opening or closing once, not every announcement", () => {
  const events = new EventBus();
  const seen: LockEvent[] = [];
  events.on((e) => seen.push(e));
  const gate = new ManualGate("dependencies", STARTING);
  new Gates([gate], events);
  gate.announce();
  gate.close(DOWN);
  gate.close(DOWN);
  gate.open();
  gate.announce();
  assert.deepEqual(seen, [
    { type: "gate", gate: "dependencies", open: false, reason: "dependencies" },
    { type: "gate", gate: "dependencies", open: true, reason: undefined },
  ]);
});

Deno.test("Gates starts and stops every gate that can be", () => {
  const calls: string[] = [];
  const gate = (name: string) => ({
    name,
    state: () => OPEN,
    onChange: () => () => {},
    start: () => calls.push(`start ${name}`),
    stop: () => calls.push(`stop ${name}`),
  });
  const gates = new Gates([gate("a"), new ManualGate("plain"), gate("b")]);
  gates.start();
  gates.stop();
  assert.deepEqual(calls, ["start a", "start b", "stop a", "stop b"]);
});
