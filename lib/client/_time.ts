/**
 * Waiting on an injected clock: sleeps that end early on abort, and jitter.
 *
 * @module
 */
import type { Clock } from "../clock.ts";

/** Resolves after `ms` on `clock`, or at once when `signal` aborts. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted || ms <= 0) return resolve();
    const done = () => {
      clock.clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = clock.setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Resolves when `signal` aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

/**
 * `ms` ± 50 %, so that clients started together drift apart instead of
 * asking in lockstep. `random` returns a number in [0, 1) like `Math.random`.
 */
export function jitter(ms: number, random: () => number = Math.random): number {
  return ms * (0.5 + random());
}
