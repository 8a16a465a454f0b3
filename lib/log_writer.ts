/**
 * Log lines off the request path: `write()` only appends to a bounded buffer;
 * the buffer goes to stderr in one asynchronous write per batch. While a write
 * is pending, new lines gather; when the reader of stderr cannot keep up and
 * the buffer is full, lines are dropped and counted, never waited for, and one
 * line saying how many follows once the writer catches up.
 *
 * Under a steady stream of lines, writes can also be spaced out
 * (`intervalMs`): each write wakes this process, the reader of stderr and
 * both of their event loops, so one write of everything that came in 10 ms
 * costs far less than one per turn of the event loop. The first line after a
 * quiet spell still goes out at once.
 *
 * @module
 */

import { type Clock, realClock } from "./clock.ts";

/** 1 MiB of lines: minutes of grants at the default level, yet little memory. */
export const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024;

/**
 * The server's least time between the starts of two writes: lines reach
 * stderr at most this much later, and a busy server writes at most 100 times
 * a second instead of once per turn of its event loop.
 */
export const DEFAULT_WRITE_INTERVAL_MS = 10;

/** How long a shutdown waits for buffered lines to reach a slow stderr before exiting anyway. */
export const DEFAULT_CLOSE_TIMEOUT_MS = 2_000;

/** Where batches go: writes some of `bytes`, resolving to how many, like `Deno.stderr.write`. */
export type LogSink = (bytes: Uint8Array) => Promise<number>;

/** Options of {@link LogWriter}. */
export interface LogWriterOptions {
  /** Where batches are written. @default {Deno.stderr.write} */
  sink?: LogSink;
  /** The most bytes (UTF-16 code units) buffered; beyond, lines are dropped. @default {DEFAULT_MAX_BUFFERED_BYTES} */
  maxBufferedBytes?: number;
  /** The line that reports `count` dropped lines, in the log's format. */
  droppedLine?: (count: number) => string;
  /**
   * The least time between the starts of two writes while lines keep coming;
   * 0 writes as soon as the previous write is done. The server passes
   * {@linkcode DEFAULT_WRITE_INTERVAL_MS}.
   * @default {0}
   */
  intervalMs?: number;
  /** The clock that spaces writes (`now`, `setTimeout`). @default {realClock} */
  clock?: Clock;
}

/** The words of the line that reports dropped lines. */
export function droppedMessage(count: number): string {
  return `${count} log line${count === 1 ? "" : "s"} dropped: stderr could not keep up`;
}

const encoder = new TextEncoder();

/** A buffered, never blocking writer of log lines; see the module documentation. */
export class LogWriter {
  readonly #sink: LogSink;
  readonly #max: number;
  readonly #droppedLine: (count: number) => string;
  readonly #intervalMs: number;
  readonly #clock: Clock;
  #lines: string[] = [];
  #size = 0;
  /** Dropped since the last report. */
  #unreported = 0;
  #dropped = 0;
  /** When the last write started, on the clock. */
  #lastWriteAt = -Infinity;
  /** The running drain, from the first buffered line until the buffer is empty. */
  #draining: Promise<void> | undefined;

  constructor(options: LogWriterOptions = {}) {
    this.#sink = options.sink ?? ((bytes) => Deno.stderr.write(bytes));
    this.#max = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    if (!(this.#max > 0)) {
      throw new RangeError(`Invalid maxBufferedBytes "${this.#max}": expected a positive number`);
    }
    this.#droppedLine = options.droppedLine ?? droppedMessage;
    this.#intervalMs = options.intervalMs ?? 0;
    this.#clock = options.clock ?? realClock;
    if (!(this.#intervalMs >= 0)) {
      throw new RangeError(
        `Invalid intervalMs "${this.#intervalMs}": expected a number of at least 0`,
      );
    }
  }

  /** Lines dropped since start because stderr could not keep up. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Buffers `line` (without its newline) and returns at once; drops it when the buffer is full. */
  readonly write = (line: string): void => {
    const size = line.length + 1;
    if (this.#size + size > this.#max) {
      this.#unreported++;
      this.#dropped++;
      this.#draining ??= this.#drain();
      return;
    }
    this.#lines.push(line);
    this.#size += size;
    this.#draining ??= this.#drain();
  };

  /** Resolves once every buffered line is written (or failed to be). */
  async flush(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  /** Flushes, waiting at most `timeoutMs`; for shutdown. */
  async close(timeoutMs: number = DEFAULT_CLOSE_TIMEOUT_MS): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    try {
      await Promise.race([this.flush(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #drain(): Promise<void> {
    try {
      for (let first = true; this.#lines.length > 0 || this.#unreported > 0; first = false) {
        // Any write waits while the last one started less than the interval ago. The first after
        // a quiet spell waits only for the code that wrote it to finish, so that the lines it
        // wrote together go out together; not for a timer: a process's first timer makes the
        // runtime touch about 3.5 MB more of itself, which a server that only starts and
        // answers probes need not hold.
        const wait = this.#lastWriteAt + this.#intervalMs - this.#clock.now();
        if (wait > 0) {
          await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, wait));
        } else if (first) await Promise.resolve();
        this.#lastWriteAt = this.#clock.now();
        const lines = this.#lines;
        // Dropped lines came after the buffered ones and before any taken later.
        if (this.#unreported > 0) lines.push(this.#droppedLine(this.#unreported));
        this.#lines = [];
        this.#size = 0;
        this.#unreported = 0;
        await this.#writeAll(encoder.encode(lines.join("\n") + "\n"));
      }
    } finally {
      this.#draining = undefined;
    }
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    try {
      for (let done = 0; done < bytes.length;) {
        const n = await this.#sink(bytes.subarray(done));
        if (!(n > 0)) return; // A sink that takes nothing would spin forever.
        done += n;
      }
    } catch {
      // stderr is gone (closed pipe): nobody can read the lines; keep serving.
    }
  }
}
