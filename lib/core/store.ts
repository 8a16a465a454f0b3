/**
 * The lock store contract: what the service needs of the place where the slots
 * live. The memory store keeps them in this process; a store shared by several
 * replicas (Redis) keeps them elsewhere. Every operation is atomic, may answer
 * with a promise, and may fail: a store that cannot answer throws (or rejects
 * with) a {@linkcode StoreUnavailableError}, and every operation settles within
 * the store's own timeout, so a hung store is a failure, never a hang.
 *
 * `tests/_store_contract.ts` is the suite every store must pass.
 *
 * @module
 */

/** A held slot. Times are wall-clock milliseconds, for display. */
export interface Lease {
  /** Unguessable: whoever holds it may release or renew the lock. */
  token: string;
  /** Who holds it (a pod or host name), when the client said. */
  id: string | undefined;
  acquiredAt: number;
  expiresAt: number;
  /** Milliseconds until it expires, as the store measures time. */
  remainingMs: number;
  /**
   * How many times the lease was handed out again since it was taken: to its
   * id asking again, or renewed by its token (0 for a new grant). Whoever
   * claimed it knows its token, so a hand-back must not free it
   * ({@linkcode LockStore.release}'s `claims`).
   */
  claims: number;
}

/** What a client asks the store for. */
export interface AcquireRequest {
  durationMs: number;
  id?: string | undefined;
  /**
   * The waiter's place in a {@linkcode SharedLine}, when the store has one:
   * the store grants only while fewer clients wait ahead than slots are free.
   */
  ticket?: string | undefined;
}

/** The answer to {@linkcode LockStore.acquire}. */
export type AcquireResult =
  | {
    granted: true;
    lease: Lease;
    /** The id already held this lease: it was renewed to the duration asked, not taken anew. */
    existing: boolean;
  }
  | {
    granted: false;
    /** When the first slot frees, at the latest. */
    nextFreeInMs: number;
    /** Set when slots are free but clients of other processes wait ahead in the shared line. */
    waiting?: number;
  };

/** What a store says when slots free. */
export interface SlotsFreed {
  /**
   * The leases this store saw run out. Empty when slots freed by a release, or
   * elsewhere (another replica), where the store may not know which.
   */
  expired: readonly Lease[];
}

/**
 * A value or a promise of it. The memory store answers synchronously, which
 * keeps promises off the hot path (measured: a few microseconds a request).
 */
export type Awaitable<T> = T | Promise<T>;

/**
 * A waiting line shared by every process that uses the store (Redis), so a
 * client waiting through one replica is served before a later one waiting
 * through another. A store of one process has none: the queue alone decides.
 * Tickets are named `REPLICA/N`, or `#ID` for a client that gave its id: that
 * place belongs to the id, whichever process its next request reaches.
 */
export interface SharedLine {
  /** This process's name in the line. */
  readonly replica: string;
  /**
   * Puts a ticket at the end of the line, or back at `place`; resolves to its
   * place. With `durationMs` (what its client asks), a slot freed elsewhere
   * may be handed to it at once ({@linkcode LockStore.onHandoff}).
   */
  join(
    ticket: string,
    id: string | undefined,
    place?: number,
    durationMs?: number,
  ): Promise<number>;
  /**
   * Takes a ticket out of line. Never fails: it retries until the store takes
   * it. With `keepMs`, an id's ticket keeps its place that long, holding up
   * nobody, for its client to come back through any process.
   */
  leave(ticket: string, keepMs?: number): void;
  /**
   * The ids of the clients waiting in every process that can grant now, in
   * order (`undefined` when anonymous): those that a request waits behind.
   */
  waiting(): Promise<(string | undefined)[]>;
  /**
   * Says whether this process can grant now (every gate open). The tickets of
   * a process that cannot hold nobody up in the others: a free slot never
   * waits for a client that cannot take it.
   */
  eligible(canGrant: boolean): void;
}

/** The lock state, behind an interface any store implements. */
export interface LockStore {
  /** How many slots there are. */
  readonly capacity: number;
  /** The line shared with other processes, if the store has one. */
  readonly line?: SharedLine;
  /**
   * Takes a free slot; or, when `id` already holds a lease, renews it to
   * `durationMs` from now in the same atomic step and returns it (`existing`).
   */
  acquire(request: AcquireRequest): Awaitable<AcquireResult>;
  /**
   * Frees the slot now; `undefined` when the token is unknown or expired.
   * With `claims` (a hand-back: the grant's answer never reached its client),
   * only if the lease was claimed that many times, checked in the same atomic
   * step: a lease that a client asked for again by its id, or renewed, since
   * the grant is held by that client, and stays (`undefined`).
   */
  release(token: string, claims?: number): Awaitable<Lease | undefined>;
  /** Moves the expiry to `durationMs` from now; `undefined` when the token is unknown or expired. */
  renew(token: string, durationMs: number): Awaitable<Lease | undefined>;
  /** The lease `id` holds, if any. */
  byId(id: string): Awaitable<Lease | undefined>;
  /** The lease of `token`, if it is held. */
  byToken(token: string): Awaitable<Lease | undefined>;
  /** Every held slot, soonest expiry first. */
  leases(): Awaitable<Lease[]>;
  /**
   * Calls `listener` whenever slots free, by release or expiry, here or in
   * another process sharing the store. Returns an unsubscribe function.
   */
  onFree(listener: (freed: SlotsFreed) => void): () => void;
  /**
   * With a shared line: calls `listener` when the store handed a freed slot to
   * a ticket of this process by itself (its lease is written already). The
   * listener returns `true` when it took care of the lease (passed it to its
   * client, kept it for an id, or gave it back because the ticket is gone),
   * `false` when it did not pass it on: the ticket keeps its place for its
   * next acquire, which answers with that lease if it is still held for it.
   * One listener; returns a function that removes it.
   */
  onHandoff?(listener: (ticket: string, lease: Lease) => boolean): () => void;
  /**
   * What clears "store down" after a failure (`lib/core/store_health.ts`):
   * any call that works (`any_answer`, the default), or, after a failed
   * change, only a change that works (`a_change`: a store that reads from
   * memory may answer lookups while its writes fail).
   */
  readonly upAfter?: "any_answer" | "a_change";
  /**
   * Calls `listener` after each call the store makes by itself to keep in
   * touch (a heartbeat): with nothing when it worked, with the failure when
   * not. Returns an unsubscribe function.
   */
  onHeartbeat?(listener: (failure: StoreUnavailableError | undefined) => void): () => void;
  /** Stops timers and connections; the store answers nothing after. */
  close(): Awaitable<void>;
}

/** The store could not answer: down, timed out, or refused. The service answers `503`. */
export class StoreUnavailableError extends Error {
  override name = "StoreUnavailableError";
  /** The operation that failed, such as `acquire`. */
  readonly operation: string;

  constructor(operation: string, reason: string, options: { cause?: unknown } = {}) {
    super(`the lock store failed to ${operation}: ${reason}`, options);
    this.operation = operation;
  }
}

/**
 * When a slot will be free for a new grant, from `leases` (soonest expiry
 * first); `undefined` when one is free now. With more holders than slots (the
 * limit was lowered), as many must expire as there are too many.
 */
export function nextFreeInMs(leases: readonly Lease[], capacity: number): number | undefined {
  if (leases.length < capacity) return undefined;
  return leases[leases.length - capacity]?.remainingMs;
}
