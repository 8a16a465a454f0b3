/**
 * Why a request is not granted, as data: a reason code, what the edges need
 * to explain it, and when to try again. The HTTP layer turns a denial into a
 * status, a sentence and `Retry-After`.
 *
 * @module
 */

/** A dependency that failed its last check. */
export interface FailingDependency {
  url: string;
  error: string | undefined;
}

/** A denial that a gate gives while it is closed. */
export type GateDenial =
  /** The first dependency check round has not finished. */
  | { reason: "starting"; retryAfterMs: number }
  /** A dependency failed its last check. */
  | { reason: "dependencies"; failing: readonly FailingDependency[]; retryAfterMs: number }
  /**
   * Locks granted before may still be held where nobody sees them (the state
   * file could not be read at start, the shared store lost the semaphore, or
   * its clock jumped), so nothing is granted until the longest lock granted
   * then has run out.
   */
  | { reason: "recovering"; cause: RecoveryCause; retryAfterMs: number }
  /** Too little time has passed since the last grant. */
  | { reason: "cooldown"; cooldownMs: number; retryAfterMs: number }
  /** The node's one-minute load average is above the limit. */
  | { reason: "load"; load: number; max: number; retryAfterMs: number }
  /** A resource's pressure stall share (`some avg10`, in percent) is above the limit. */
  | {
    reason: "pressure";
    resource: PressureResource;
    percent: number;
    max: number;
    retryAfterMs: number;
  };

/** Why the recovery gate is closed; see `lib/gates/recovery.ts`. */
export type RecoveryCause = "state_file" | "store_lost" | "clock_jump";

/** The resources Linux reports pressure stall information for. */
export type PressureResource = "cpu" | "io" | "memory";

/** Why a request was not granted, and when to try again. */
export type Denial =
  | GateDenial
  /** Every slot is held. `nextFreeInMs`: when the first frees, if known. */
  | { reason: "busy"; capacity: number; nextFreeInMs: number | undefined; retryAfterMs: number }
  /** Clients wait ahead, and a request that does not wait never jumps ahead of them. */
  | { reason: "queued"; waiting: number; retryAfterMs: number }
  /** The queue holds the most waiters allowed. */
  | { reason: "queue_full"; waiting: number; retryAfterMs: number }
  | { reason: "shutting_down"; retryAfterMs: number }
  /** A newer request with the same id took this one's place in the queue. */
  | { reason: "superseded"; retryAfterMs: number }
  /** The client went away. */
  | { reason: "cancelled"; retryAfterMs: number }
  /** The lock store could not answer. */
  | { reason: "store"; error: string; retryAfterMs: number };

/** A denial's reason code. */
export type DenialReason = Denial["reason"];

/** Reasons that mean the server cannot serve the request now (HTTP 503), not that the lock is taken. */
export const UNAVAILABLE_REASONS: ReadonlySet<DenialReason> = new Set([
  "queue_full",
  "shutting_down",
  "store",
]);
