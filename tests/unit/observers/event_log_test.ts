/**
 * The server's text log as a subscriber of the core's events: one line per
 * event at a fitting level, with flag names, and never a whole token.
 */
import assert from "node:assert/strict";
import type { LockEvent } from "../../../lib/core/events.ts";
import { createLogger, type LogLevel } from "../../../lib/log.ts";
import { writeEvent } from "../../../lib/observers/event_log.ts";

function render(event: LockEvent, level: LogLevel = "debug"): string[] {
  const lines: string[] = [];
  writeEvent(event, createLogger(level, (line) => lines.push(line.replace(/^\S+ /, ""))));
  return lines;
}

Deno.test("writeEvent() renders each event as one line at its level", async (t) => {
  const cases: [LockEvent, string][] = [
    [
      {
        type: "granted",
        id: "web-1",
        token: "abcdef",
        durationMs: 60_000,
        requestedMs: undefined,
        waitedMs: 0,
      },
      "INFO  Lock granted to web-1 for 1m",
    ],
    [
      {
        type: "granted",
        id: undefined,
        token: "abcdef",
        durationMs: 5_000,
        requestedMs: undefined,
        waitedMs: 2_500,
      },
      "INFO  Lock granted for 5s after waiting 2.5s",
    ],
    [
      {
        type: "granted",
        id: "go",
        token: "abcdef",
        durationMs: 3_600_000,
        requestedMs: 7_200_000,
        waitedMs: 0,
      },
      "WARN  Lock granted to go for 1h: it asked for 2h, longer than --maxDuration",
    ],
    [
      { type: "released", id: "web-1", token: "abcdef", heldMs: 1_200 },
      "INFO  Lock of web-1 released after 1.2s",
    ],
    [
      { type: "expired", id: undefined, token: "abcdef", heldMs: 10_000 },
      "INFO  Lock expired after 10s",
    ],
    [
      { type: "renewed", id: "a", token: "abcdef", durationMs: 30_000, requestedMs: undefined },
      "DEBUG Lock of a renewed for 30s",
    ],
    [{ type: "denied", id: "a", reason: "busy", retryAfterMs: 1_000 }, "DEBUG Refused a: busy"],
    [{ type: "queued", id: "a", position: 2, waiting: 3 }, "DEBUG a waits at place 2 (3 waiting)"],
    [
      { type: "left_queue", id: "a", why: "timeout", waitedMs: 1 },
      "DEBUG a left the queue: its wait ran out and it did not ask again",
    ],
    [
      {
        type: "dependency",
        endpoint: "tcp://db:5432",
        up: false,
        was: true,
        error: "refused",
        previousError: undefined,
        durationMs: 1,
      },
      "WARN  Dependency tcp://db:5432 is down: refused",
    ],
    [
      { type: "gate", gate: "dependencies", open: true, reason: undefined },
      "INFO  All dependencies are up: locking is allowed",
    ],
    [
      { type: "gate", gate: "load", open: false, reason: "load" },
      "WARN  The load gate is closed (load): locking is paused",
    ],
    [
      { type: "gate", gate: "cooldown", open: false, reason: "cooldown" },
      "DEBUG Cooldown after a grant: locking is paused",
    ],
    [
      { type: "gate", gate: "cooldown", open: true, reason: undefined },
      "DEBUG The cooldown is over: locking is allowed",
    ],
    [
      { type: "store", up: false, error: "the lock store failed to acquire: timed out" },
      "ERROR the lock store failed to acquire: timed out: refusing locks until it answers",
    ],
  ];
  for (const [event, line] of cases) {
    await t.step(event.type, () => assert.deepEqual(render(event), [line]));
  }
});

Deno.test("writeEvent() logs a dependency's state changes, not every probe", () => {
  const probe = (up: boolean, was: boolean | undefined, error?: string, previousError?: string) =>
    render({
      type: "dependency",
      endpoint: "http://es:9200/",
      up,
      was,
      error,
      previousError,
      durationMs: 3,
    });
  assert.deepEqual(probe(true, true), []);
  assert.deepEqual(probe(false, false, "HTTP 503", "HTTP 503"), []);
  assert.deepEqual(probe(false, false, "timeout", "HTTP 503"), [
    "DEBUG Dependency http://es:9200/ is still down: timeout",
  ]);
  assert.deepEqual(probe(true, undefined), ["INFO  Dependency http://es:9200/ is up"]);
});

Deno.test("writeEvent() leaves out what the level hides", () => {
  assert.deepEqual(
    render({
      type: "granted",
      id: "a",
      token: "x",
      durationMs: 1,
      requestedMs: undefined,
      waitedMs: 0,
    }, "warn"),
    [],
  );
  assert.deepEqual(render({ type: "queued", id: "a", position: 1, waiting: 1 }, "info"), []);
});

/** Writes `events` through a JSON logger; the lines parsed. */
function jsonLines(...events: LockEvent[]): Record<string, unknown>[] {
  const lines: string[] = [];
  const log = createLogger("debug", (line) => lines.push(line), { format: "json" });
  for (const event of events) writeEvent(event, log);
  return lines.map((line) => JSON.parse(line));
}

Deno.test("writeEvent() gives JSON lines the event's fields, with the short token prefix", () => {
  const [granted, denied] = jsonLines({
    type: "granted",
    id: "web-1",
    token: "abcdef",
    durationMs: 60_000,
    requestedMs: undefined,
    waitedMs: 1_500,
  }, { type: "denied", id: undefined, reason: "busy", retryAfterMs: 2_000 });
  assert.match(String(granted!.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual({ ...granted, time: "" }, {
    time: "",
    level: "info",
    msg: "Lock granted to web-1 for 1m after waiting 1.5s",
    event: "granted",
    id: "web-1",
    token: "abcdef",
    durationMs: 60_000,
    waitedMs: 1_500,
  });
  assert.deepEqual({ ...denied, time: "" }, {
    time: "",
    level: "debug",
    msg: "Refused a client: busy",
    event: "denied",
    reason: "busy",
    retryAfterMs: 2_000,
  });
});

Deno.test("writeEvent() gives JSON lines whole milliseconds, not the monotonic clock's fractions", () => {
  const [granted] = jsonLines({
    type: "granted",
    id: "web-1",
    token: "abcdef",
    durationMs: 60_000,
    requestedMs: undefined,
    waitedMs: 1503.2710000000006,
  });
  assert.equal(granted!.waitedMs, 1503);
  assert.equal(granted!.durationMs, 60_000);
});
