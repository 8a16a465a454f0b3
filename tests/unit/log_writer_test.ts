/**
 * The log writer keeps stderr off the request path: lines gather in a bounded
 * buffer and go out in one write per batch; a stalled reader never blocks a
 * caller, and lines beyond the bound are dropped, counted and reported.
 */
import assert from "node:assert/strict";
import { createLogger, formatLine } from "../../lib/log.ts";
import { DEFAULT_WRITE_INTERVAL_MS, droppedMessage, LogWriter } from "../../lib/log_writer.ts";
import { ManualClock } from "../_clock.ts";

/** A sink whose writes stay pending until `release()`; it records what it got. */
function stalledSink() {
  const batches: string[] = [];
  const pending: (() => void)[] = [];
  const decoder = new TextDecoder();
  return {
    batches,
    get pending() {
      return pending.length;
    },
    sink: (bytes: Uint8Array) =>
      new Promise<number>((resolve) => {
        batches.push(decoder.decode(bytes));
        pending.push(() => resolve(bytes.length));
      }),
    /** Completes every pending write. */
    release() {
      for (const done of pending.splice(0)) done();
    },
    lines: () => batches.join("").split("\n").filter((l) => l !== ""),
  };
}

/** Lets the writer's timer and promise callbacks run. */
const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

Deno.test("LogWriter.write() returns at once and sends a burst of lines in one write", async () => {
  const s = stalledSink();
  const writer = new LogWriter({ sink: s.sink });
  writer.write("one");
  writer.write("two");
  assert.equal(s.batches.length, 0);
  await tick();
  assert.deepEqual(s.batches, ["one\ntwo\n"]);
  s.release();
  await writer.flush();
  assert.equal(writer.dropped, 0);
});

Deno.test("LogWriter with intervalMs writes a line at once, then at most once per interval", async () => {
  const clock = new ManualClock();
  const batches: string[] = [];
  const decoder = new TextDecoder();
  const writer = new LogWriter({
    sink: (bytes) => {
      batches.push(decoder.decode(bytes));
      return Promise.resolve(bytes.length);
    },
    intervalMs: 10,
    clock,
  });
  // Lets the writer's promise callbacks run; the clock only moves by hand.
  const settle = () => new Promise((resolve) => setTimeout(resolve, 0));
  const step = async (ms: number) => {
    clock.advance(ms);
    await settle();
  };
  writer.write("first");
  await step(0);
  assert.deepEqual(batches, ["first\n"], "the first line goes out at once");
  writer.write("a");
  await step(0);
  writer.write("b");
  await step(9);
  assert.equal(batches.length, 1, "not within 10 ms of the last write");
  await step(1);
  assert.deepEqual(batches, ["first\n", "a\nb\n"], "what came in meanwhile goes in one write");
  await step(50);
  writer.write("after a quiet spell");
  await step(0);
  assert.deepEqual(batches.at(-1), "after a quiet spell\n", "goes out at once");
  await writer.flush();
  assert.equal(DEFAULT_WRITE_INTERVAL_MS, 10, "the server's: at most 100 writes a second");
  assert.throws(() => new LogWriter({ intervalMs: -1 }), RangeError);
});

Deno.test("LogWriter keeps accepting lines, in order, while the sink is stalled", async () => {
  const s = stalledSink();
  const writer = new LogWriter({ sink: s.sink });
  writer.write("a");
  await tick();
  assert.equal(s.pending, 1);
  for (let i = 0; i < 100; i++) writer.write(`line ${i}`); // a stalled reader does not block these
  await tick();
  assert.equal(s.batches.length, 1, "nothing more is written while a write is pending");
  s.release();
  await tick();
  s.release();
  await writer.flush();
  assert.deepEqual(s.lines(), ["a", ...Array.from({ length: 100 }, (_, i) => `line ${i}`)]);
});

Deno.test("LogWriter drops lines beyond its bound, counts them, and reports them once it catches up", async () => {
  const s = stalledSink();
  const writer = new LogWriter({ sink: s.sink, maxBufferedBytes: 20 });
  writer.write("first");
  await tick(); // "first" is being written; the buffer is empty again
  writer.write("1234"); // 5 bytes
  writer.write("5678"); // 10
  writer.write("abcd"); // 15
  writer.write("efgh"); // 20: full
  writer.write("dropped 1");
  writer.write("dropped 2");
  assert.equal(writer.dropped, 2);
  s.release();
  await tick();
  writer.write("after");
  s.release();
  await tick();
  s.release();
  await writer.flush();
  assert.deepEqual(s.lines(), [
    "first",
    "1234",
    "5678",
    "abcd",
    "efgh",
    droppedMessage(2),
    "after",
  ]);
  assert.equal(writer.dropped, 2, "the count is kept for metrics");
});

Deno.test("LogWriter reports drops in the log's own format", async () => {
  const s = stalledSink();
  const writer = new LogWriter({
    sink: s.sink,
    maxBufferedBytes: 4,
    droppedLine: (count) => JSON.stringify({ event: "log_dropped", count }),
  });
  writer.write("too long for the bound");
  await tick();
  s.release();
  await writer.flush();
  assert.deepEqual(s.lines(), ['{"event":"log_dropped","count":1}']);
  assert.equal(droppedMessage(1), "1 log line dropped: stderr could not keep up");
  assert.equal(droppedMessage(3), "3 log lines dropped: stderr could not keep up");
});

Deno.test("LogWriter writes what a short write left over", async () => {
  const got: string[] = [];
  const decoder = new TextDecoder();
  const writer = new LogWriter({
    sink: (bytes) => {
      got.push(decoder.decode(bytes.subarray(0, 3)));
      return Promise.resolve(Math.min(3, bytes.length));
    },
  });
  writer.write("abcdefg");
  await writer.flush();
  assert.equal(got.join(""), "abcdefg\n");
});

Deno.test("LogWriter survives a failing sink", async () => {
  const writer = new LogWriter({ sink: () => Promise.reject(new Error("broken pipe")) });
  writer.write("lost");
  await writer.flush();
  writer.write("also lost");
  await writer.flush();
});

Deno.test("LogWriter.close() gives up on a stalled sink after its timeout", async () => {
  const s = stalledSink();
  const writer = new LogWriter({ sink: s.sink });
  writer.write("stuck");
  await writer.close(20);
  assert.equal(s.pending, 1);
  s.release();
  await writer.flush();
});

Deno.test("a logger on a stalled LogWriter answers every call at once", async () => {
  const s = stalledSink();
  const writer = new LogWriter({
    sink: s.sink,
    maxBufferedBytes: 1024,
    droppedLine: (count) =>
      formatLine("json", "warn", droppedMessage(count), { event: "log_dropped", count }),
  });
  const log = createLogger("info", writer.write, { format: "json" });
  for (let i = 0; i < 1000; i++) log.info("Lock granted", { event: "granted", id: `c${i}` });
  assert.ok(writer.dropped > 0);
  await tick();
  s.release();
  await tick();
  s.release();
  await writer.flush();
  const lines = s.lines().map((l) => JSON.parse(l));
  assert.deepEqual(
    { event: lines.at(-1).event, count: lines.at(-1).count },
    { event: "log_dropped", count: writer.dropped },
  );
  assert.equal(lines.length - 1 + writer.dropped, 1000, "every line is written or counted");
});
