/**
 * The clock the lock and the checker run on. Injected so that tests advance
 * time by hand instead of sleeping.
 *
 * @module
 */

/** An opaque timer handle. */
export type TimerId = ReturnType<typeof setTimeout> | number;

/** Time and timers. */
export interface Clock {
  /** Monotonic milliseconds: expiry is computed on this, so a wall-clock jump cannot free or freeze a slot. */
  now(): number;
  /** Wall-clock milliseconds since the epoch, only for display. */
  wallNow(): number;
  /** Calls `fn` after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): TimerId;
  /** Cancels a timer; unknown ids are ignored. */
  clearTimeout(id: TimerId): void;
}

/** The real clock: `performance.now()` and the runtime's timers. */
export const realClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/** Converts a monotonic instant on `clock` into wall-clock milliseconds, for display. */
export function toWallTime(clock: Clock, monotonicMs: number): number {
  return clock.wallNow() + (monotonicMs - clock.now());
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/**
 * Wall-clock milliseconds as RFC 3339 in UTC with milliseconds, as
 * `Date.prototype.toISOString` gives for the years 0 to 9999. Built from the
 * `getUTC*` parts because `toISOString` makes the runtime touch about 1.4 MB
 * more of its own code, which then stays resident: a tenth of what the idle
 * `hold` sidecar may cost above a bare program.
 */
export function isoTime(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.` +
    `${pad(d.getUTCMilliseconds(), 3)}Z`;
}
