import assert from "node:assert/strict";
import {
  DURATION_HINT,
  DurationTooLongError,
  formatDuration,
  MAX_TIMER_MS,
  MAX_TIMER_SECONDS,
  parseDuration,
  parseWait,
  retryAfterSeconds,
} from "../../lib/duration.ts";

Deno.test("parseDuration() accepts seconds and numbers with a unit", async (t) => {
  const cases: [string, number][] = [
    ["60", 60_000],
    ["1", 1_000],
    ["1500ms", 1_500],
    ["0.5s", 500],
    ["500ms", 500],
    ["1ms", 1],
    ["90s", 90_000],
    ["2.5s", 2_500],
    ["2m", 120_000],
    ["1.5m", 90_000],
    ["1h", 3_600_000],
    ["0.5h", 1_800_000],
  ];
  for (const [text, ms] of cases) {
    await t.step(`"${text}" is ${ms} ms`, () => {
      assert.equal(parseDuration(text), ms);
    });
  }
});

Deno.test("parseDuration() ignores surrounding whitespace", () => {
  assert.equal(parseDuration("  60 "), 60_000);
  assert.equal(parseDuration("\t2m\n"), 120_000);
});

Deno.test("parseDuration() rounds to whole milliseconds", () => {
  assert.equal(parseDuration("1.0004s"), 1_000);
  assert.equal(parseDuration("1.5ms"), 2);
});

Deno.test("parseDuration() refuses a bare number with a fraction, suggesting a unit", () => {
  assert.throws(() => parseDuration("1.5"), {
    name: "RangeError",
    message: 'a number without a unit is whole seconds: write "1.5s" or "1500ms"',
  });
  assert.throws(() => parseDuration(" 0.5 "), {
    message: 'a number without a unit is whole seconds: write "0.5s" or "500ms"',
  });
  assert.equal(parseDuration("1.5s"), 1_500);
});

Deno.test("parseDuration() accepts exactly MAX_TIMER_MS and refuses one more", () => {
  assert.equal(parseDuration(`${MAX_TIMER_MS}ms`), MAX_TIMER_MS);
  assert.throws(() => parseDuration(`${MAX_TIMER_MS + 1}ms`), {
    name: "DurationTooLongError",
    message: `expected at most ${MAX_TIMER_SECONDS}s (about 24 days)`,
  });
  assert.equal(parseDuration("596h"), 596 * 3_600_000);
  assert.throws(() => parseDuration("597h"), DurationTooLongError);
  assert.ok(new DurationTooLongError("x", 1) instanceof RangeError);
  assert.throws(() => parseDuration("99999999999999999999"), RangeError);
});

Deno.test("parseDuration() rejects text that is not a duration, saying what is allowed", async (t) => {
  for (
    const text of ["", "   ", "abc", "-1", "-1s", "1d", "1 s", "1e3", ".5", "5.", "+5", "1s2", "s"]
  ) {
    await t.step(JSON.stringify(text), () => {
      assert.throws(() => parseDuration(text), {
        name: "RangeError",
        message: `expected ${DURATION_HINT}`,
      });
    });
  }
});

Deno.test("parseDuration() rejects durations that are zero or round to zero", async (t) => {
  for (const text of ["0", "0s", "0ms", "0.0s", "0.4ms", "0.0001s", "0.000001m"]) {
    await t.step(JSON.stringify(text), () => {
      assert.throws(() => parseDuration(text), {
        name: "RangeError",
        message: "expected a duration greater than zero",
      });
    });
  }
});

Deno.test("DURATION_HINT names every accepted form", () => {
  for (const example of ['"60"', '"500ms"', '"90s"', '"2m"', '"1h"']) {
    assert.ok(DURATION_HINT.includes(example), example);
  }
});

Deno.test("formatDuration() writes durations for people", async (t) => {
  const cases: [number, string][] = [
    [0, "0ms"],
    [-5, "0ms"],
    [0.4, "0ms"],
    [1, "1ms"],
    [750, "750ms"],
    [1_000, "1s"],
    [1_500, "1.5s"],
    [10_000, "10s"],
    [59_900, "59.9s"],
    [59_999, "1m"],
    [60_000, "1m"],
    [90_000, "1m30s"],
    [3_600_000, "1h"],
    [5_400_000, "1h30m"],
    [3_661_000, "1h1m1s"],
    [MAX_TIMER_MS, "596h31m24s"],
  ];
  for (const [ms, text] of cases) {
    await t.step(`${ms} ms is "${text}"`, () => {
      assert.equal(formatDuration(ms), text);
    });
  }
});

Deno.test("formatDuration() output of a single unit parses back to the same duration", () => {
  for (const ms of [1, 500, 1_000, 1_500, 60_000, 120_000, 3_600_000]) {
    assert.equal(parseDuration(formatDuration(ms)), ms);
  }
});

Deno.test("retryAfterSeconds() rounds up to whole seconds, at least 1", async (t) => {
  const cases: [number, number][] = [
    [-1_000, 1],
    [0, 1],
    [1, 1],
    [999, 1],
    [1_000, 1],
    [1_001, 2],
    [1_500, 2],
    [60_000, 60],
    [60_001, 61],
  ];
  for (const [ms, seconds] of cases) {
    await t.step(`${ms} ms is ${seconds} s`, () => {
      assert.equal(retryAfterSeconds(ms), seconds);
    });
  }
});

Deno.test("parseWait() takes 0 for one try, and its refusals say so", () => {
  assert.equal(parseWait("0"), 0);
  assert.equal(parseWait("0s"), 0);
  assert.throws(() => parseWait("-1"), /^RangeError: expected a positive .*; or 0 for one try$/);
  assert.throws(() => parseWait("soon"), /; or 0 for one try$/);
});
