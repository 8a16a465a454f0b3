/**
 * Lock slots. {@linkcode LockStore} is the small interface the rest of the
 * program uses, so that a store shared by several replicas (Redis) can stand in
 * for {@linkcode MemoryLockStore} later; the in-memory store keeps N slots,
 * each expiring at a deadline on the monotonic clock.
 *
 * @module
 */
import { type Clock, realClock, type TimerId, toWallTime } from "./clock.ts";
import { formatDuration } from "./duration.ts";
import { type Logger, silentLogger } from "./log.ts";

/** A held slot, as callers see it. Times are wall-clock milliseconds, for display. */
export interface Lease {
  /** Unguessable: whoever holds it may release or renew the lock. */
  token: string;
  /** Who holds it (a pod or host name), when the client said. */
  id: string | undefined;
  acquiredAt: number;
  expiresAt: number;
  /** Milliseconds until it expires, on the monotonic clock. */
  remainingMs: number;
}

/** What a client asks for. */
export interface AcquireRequest {
  durationMs: number;
  id?: string | undefined;
}

/** The answer to {@linkcode LockStore.acquire}. */
export type AcquireResult =
  | { granted: true; lease: Lease; /** The id already held this lease. */ existing: boolean }
  | { granted: false; /** When the first slot frees, at the latest. */ nextFreeInMs: number };

/** The lock state, behind an interface a shared store can implement. */
export interface LockStore {
  /** How many slots there are. */
  readonly capacity: number;
  /** Takes a free slot, or returns the one `id` already holds. */
  acquire(request: AcquireRequest): Promise<AcquireResult>;
  /** Frees the slot now; `undefined` when the token is unknown or expired. */
  release(token: string): Promise<Lease | undefined>;
  /** Moves the expiry to `durationMs` from now; `undefined` when the token is unknown or expired. */
  renew(token: string, durationMs: number): Promise<Lease | undefined>;
  /** Every held slot, soonest expiry first. */
  leases(): Promise<Lease[]>;
  /** Calls `listener` whenever a slot frees (release or expiry). Returns an unsubscribe function. */
  onFree(listener: () => void): () => void;
  /** Cancels timers. */
  close(): void;
}

/** Options of {@linkcode MemoryLockStore}. */
export interface MemoryLockStoreOptions {
  /** @default {realClock} */
  clock?: Clock;
  /** @default {silentLogger} */
  log?: Logger;
}

interface Slot {
  token: string;
  id: string | undefined;
  acquiredAt: number;
  deadline: number;
  timer: TimerId;
}

/** 128 random bits, base64url: long enough that tokens cannot be guessed. */
export function newToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
}

/** N slots in this process, each expiring on the monotonic clock. */
export class MemoryLockStore implements LockStore {
  readonly capacity: number;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #slots = new Map<string, Slot>();
  readonly #byId = new Map<string, Slot>();
  readonly #listeners = new Set<() => void>();

  constructor(capacity: number, options: MemoryLockStoreOptions = {}) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`Invalid capacity ${capacity}: expected a positive integer`);
    }
    this.capacity = capacity;
    this.#clock = options.clock ?? realClock;
    this.#log = options.log ?? silentLogger;
  }

  acquire(request: AcquireRequest): Promise<AcquireResult> {
    return Promise.resolve(this.acquireNow(request));
  }

  /** {@linkcode acquire} without the promise, for callers in this process. */
  acquireNow({ durationMs, id }: AcquireRequest): AcquireResult {
    if (id !== undefined) {
      const held = this.#byId.get(id);
      if (held) return { granted: true, lease: this.#view(held), existing: true };
    }
    if (this.#slots.size >= this.capacity) {
      return { granted: false, nextFreeInMs: this.#nextFreeInMs() };
    }
    const now = this.#clock.now();
    const slot: Slot = {
      token: newToken(),
      id,
      acquiredAt: this.#clock.wallNow(),
      deadline: now + durationMs,
      timer: 0,
    };
    slot.timer = this.#schedule(slot, durationMs);
    this.#slots.set(slot.token, slot);
    if (id !== undefined) this.#byId.set(id, slot);
    return { granted: true, lease: this.#view(slot), existing: false };
  }

  release(token: string): Promise<Lease | undefined> {
    return Promise.resolve(this.releaseNow(token));
  }

  /** {@linkcode release} without the promise. */
  releaseNow(token: string): Lease | undefined {
    const slot = this.#slots.get(token);
    if (!slot) return undefined;
    const lease = this.#view(slot);
    this.#free(slot);
    return lease;
  }

  renew(token: string, durationMs: number): Promise<Lease | undefined> {
    const slot = this.#slots.get(token);
    if (!slot) return Promise.resolve(undefined);
    this.#clock.clearTimeout(slot.timer);
    slot.deadline = this.#clock.now() + durationMs;
    slot.timer = this.#schedule(slot, durationMs);
    return Promise.resolve(this.#view(slot));
  }

  leases(): Promise<Lease[]> {
    return Promise.resolve(this.leasesNow());
  }

  /** {@linkcode leases} without the promise. */
  leasesNow(): Lease[] {
    return [...this.#slots.values()].sort((a, b) => a.deadline - b.deadline).map((s) =>
      this.#view(s)
    );
  }

  /** How many slots are held now. */
  get held(): number {
    return this.#slots.size;
  }

  onFree(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    for (const slot of this.#slots.values()) this.#clock.clearTimeout(slot.timer);
    this.#slots.clear();
    this.#byId.clear();
  }

  #schedule(slot: Slot, delayMs: number): TimerId {
    return this.#clock.setTimeout(() => this.#expire(slot), Math.max(0, delayMs));
  }

  #expire(slot: Slot): void {
    if (this.#slots.get(slot.token) !== slot) return;
    const left = slot.deadline - this.#clock.now();
    // Timers may fire a little early; the monotonic deadline decides.
    if (left > 0) {
      slot.timer = this.#schedule(slot, left);
      return;
    }
    const held = this.#clock.wallNow() - slot.acquiredAt;
    this.#log.info(`Lock${slot.id ? ` of ${slot.id}` : ""} expired after ${formatDuration(held)}`);
    this.#free(slot);
  }

  #free(slot: Slot): void {
    this.#clock.clearTimeout(slot.timer);
    this.#slots.delete(slot.token);
    if (slot.id !== undefined && this.#byId.get(slot.id) === slot) this.#byId.delete(slot.id);
    for (const listener of this.#listeners) listener();
  }

  #nextFreeInMs(): number {
    const now = this.#clock.now();
    let soonest = Infinity;
    for (const slot of this.#slots.values()) soonest = Math.min(soonest, slot.deadline);
    return Math.max(0, soonest - now);
  }

  #view(slot: Slot): Lease {
    return {
      token: slot.token,
      id: slot.id,
      acquiredAt: slot.acquiredAt,
      expiresAt: Math.round(toWallTime(this.#clock, slot.deadline)),
      remainingMs: Math.max(0, slot.deadline - this.#clock.now()),
    };
  }
}
