/**
 * Slots per core: the count of cores, the product rounded down to at least one
 * slot, and the `--locksPerCore` values accepted and refused.
 */
import assert from "node:assert/strict";
import { MAX_LOCKS } from "../../lib/config.ts";
import {
  availableCores,
  MAX_LOCKS_PER_CORE,
  parseLocksPerCore,
  slotsPerCore,
} from "../../lib/cores.ts";

Deno.test("slotsPerCore() is max(1, floor(X × cores))", async (t) => {
  const rows: [locksPerCore: number, cores: number, slots: number][] = [
    [1, 8, 8],
    [0.5, 8, 4],
    [0.67, 3, 2],
    [0.67, 64, 42],
    [2, 1, 2],
    [1.5, 3, 4],
    [0.5, 1, 1], // floor(0.5) is 0: one slot still, or nothing could ever start
    [0.01, 16, 1],
  ];
  for (const [x, cores, slots] of rows) {
    await t.step(`${x} × ${cores} cores → ${slots}`, () => {
      assert.equal(slotsPerCore(x, cores), slots);
    });
  }
});

Deno.test("slotsPerCore() is not fooled by binary fractions: 0.29 × 100 is 29, not 28", () => {
  assert.equal(0.29 * 100 < 29, true, "the float product falls just short");
  assert.equal(slotsPerCore(0.29, 100), 29);
  assert.equal(slotsPerCore(0.7, 10), 7);
  assert.equal(slotsPerCore(1.15, 20), 23);
});

Deno.test("slotsPerCore() stays within MAX_LOCKS on the largest machines", () => {
  assert.equal(slotsPerCore(MAX_LOCKS_PER_CORE, 4096), MAX_LOCKS);
});

Deno.test("slotsPerCore() refuses what parseLocksPerCore() would never give", () => {
  for (const [x, cores] of [[0, 4], [-1, 4], [NaN, 4], [Infinity, 4], [1, 0], [1, 1.5]]) {
    assert.throws(() => slotsPerCore(x!, cores!), RangeError, `${x} × ${cores}`);
  }
});

Deno.test("parseLocksPerCore() takes a positive decimal number up to MAX_LOCKS_PER_CORE", () => {
  assert.equal(parseLocksPerCore("1"), 1);
  assert.equal(parseLocksPerCore("0.67"), 0.67);
  assert.equal(parseLocksPerCore(".5"), 0.5);
  assert.equal(parseLocksPerCore(" 2 "), 2);
  assert.equal(parseLocksPerCore(String(MAX_LOCKS_PER_CORE)), MAX_LOCKS_PER_CORE);
});

Deno.test("parseLocksPerCore() refuses zero, negatives, non-numbers and too much, saying what is allowed", () => {
  const bad = ["0", "0.0", "-1", "-0.5", "abc", "", "1e3", "0x10", "Infinity", "NaN", "1.", "1001"];
  for (const text of bad) {
    assert.throws(
      () => parseLocksPerCore(text),
      (e: Error) =>
        e instanceof RangeError &&
        e.message === "expected a number above 0 and at most 1000, such as 0.5 or 2 " +
            "(slots per CPU core)",
      JSON.stringify(text),
    );
  }
});

Deno.test("availableCores() is the count Deno gives navigator.hardwareConcurrency, at least 1", () => {
  assert.equal(availableCores(), Math.max(1, navigator.hardwareConcurrency));
  assert.ok(Number.isSafeInteger(availableCores()) && availableCores() >= 1);
});
