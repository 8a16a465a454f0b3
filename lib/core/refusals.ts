/**
 * Every refusal the core gives, built in one place, so that the policy of
 * `Retry-After` (how soon a refused client should ask again) lives once:
 *
 * - `busy`: when the next slot frees, if known; else {@linkcode UNAVAILABLE_RETRY_MS};
 * - `queued`, `queue_full`: not before the next slot frees, and not sooner
 *   than {@linkcode UNAVAILABLE_RETRY_MS} (the queue is served first);
 * - `store`, `shutting_down`: {@linkcode UNAVAILABLE_RETRY_MS};
 * - `recovering`: when the recovery gate expects to open;
 * - `cancelled`, `superseded`: at once (the client is gone, or asked again).
 *
 * @module
 */
import type { Denial, RecoveryCause } from "./denial.ts";

/**
 * How soon a client refused for a full queue, a shutdown or a failing store
 * should ask again, when nothing better is known.
 */
export const UNAVAILABLE_RETRY_MS = 1_000;

/** Every slot is held; `nextFreeInMs`: when the first frees, if known. */
export function busy(capacity: number, nextFreeInMs: number | undefined): Denial {
  return {
    reason: "busy",
    capacity,
    nextFreeInMs,
    retryAfterMs: nextFreeInMs ?? UNAVAILABLE_RETRY_MS,
  };
}

/** `waiting` clients wait ahead; the next slot frees in `nextFreeInMs`, if known. */
export function queued(waiting: number, nextFreeInMs: number | undefined): Denial {
  return { reason: "queued", waiting, retryAfterMs: afterTheQueue(nextFreeInMs) };
}

/** The queue holds the most waiters allowed. */
export function queueFull(waiting: number, nextFreeInMs: number | undefined): Denial {
  return { reason: "queue_full", waiting, retryAfterMs: afterTheQueue(nextFreeInMs) };
}

/** The lock store could not answer. */
export function storeDown(error: string): Denial {
  return { reason: "store", error, retryAfterMs: UNAVAILABLE_RETRY_MS };
}

/** Locks granted before may still be held where nobody sees them, for `leftMs` more. */
export function recovering(
  cause: RecoveryCause,
  leftMs: number,
): Denial & { reason: "recovering" } {
  return { reason: "recovering", cause, retryAfterMs: leftMs };
}

/** The server is stopping. */
export const SHUTTING_DOWN: Denial = Object.freeze({
  reason: "shutting_down",
  retryAfterMs: UNAVAILABLE_RETRY_MS,
});
/** The client went away. */
export const CANCELLED: Denial = Object.freeze({ reason: "cancelled", retryAfterMs: 0 });
/** A newer request with the same id took this one's place. */
export const SUPERSEDED: Denial = Object.freeze({ reason: "superseded", retryAfterMs: 0 });

function afterTheQueue(nextFreeInMs: number | undefined): number {
  return Math.max(UNAVAILABLE_RETRY_MS, nextFreeInMs ?? 0);
}
