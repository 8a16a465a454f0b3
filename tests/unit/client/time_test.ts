import assert from "node:assert/strict";
import { jitter, sleep } from "../../../lib/client/_time.ts";
import { ManualClock } from "../../_clock.ts";

Deno.test("jitter() spreads an interval over ±50 %", () => {
  assert.equal(jitter(1_000, () => 0), 500);
  assert.equal(jitter(1_000, () => 0.5), 1_000);
  assert.ok(jitter(1_000, () => 0.999_999) < 1_500);
  for (let i = 0; i < 100; i++) {
    const ms = jitter(1_000);
    assert.ok(ms >= 500 && ms < 1_500, String(ms));
  }
});

Deno.test("sleep() resolves once the clock has advanced by the delay", async () => {
  const clock = new ManualClock();
  let done = false;
  const sleeping = sleep(clock, 1_000).then(() => done = true);
  clock.advance(999);
  await Promise.resolve();
  assert.equal(done, false);
  clock.advance(1);
  await sleeping;
  assert.equal(clock.pending, 0);
});

Deno.test("sleep() ends at once when its signal aborts, leaving no timer", async () => {
  const clock = new ManualClock();
  const controller = new AbortController();
  const sleeping = sleep(clock, 60_000, controller.signal);
  assert.equal(clock.pending, 1);
  controller.abort();
  await sleeping;
  assert.equal(clock.pending, 0);
  await sleep(clock, 1_000, controller.signal);
  assert.equal(clock.pending, 0, "an aborted signal sets no timer");
});
