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
