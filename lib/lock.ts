/**
 * Lock slots. {@linkcode LockStore} is the small interface the rest of the
 * program uses, so that a store shared by several replicas (Redis) can stand in
 * for {@linkcode MemoryLockStore} later; the in-memory store keeps N slots,
 * each expiring at a deadline on the monotonic clock.
 *
 * @module
 */
import { DeadlineHeap } from "./_deadline_heap.ts";
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

/**
 * A value or a promise of it. The in-memory store answers synchronously, which
 * keeps promises off the hot path (measured: a few microseconds a request); a
 * shared store answers with promises.
 */
export type Awaitable<T> = T | Promise<T>;

/** The lock state, behind an interface a shared store can implement. */
export interface LockStore {
  /** How many slots there are. */
  readonly capacity: number;
  /** Takes a free slot, or returns the one `id` already holds. */
  acquire(request: AcquireRequest): Awaitable<AcquireResult>;
  /** Frees the slot now; `undefined` when the token is unknown or expired. */
  release(token: string): Awaitable<Lease | undefined>;
  /** Moves the expiry to `durationMs` from now; `undefined` when the token is unknown or expired. */
  renew(token: string, durationMs: number): Awaitable<Lease | undefined>;
  /** Every held slot, soonest expiry first. */
  leases(): Awaitable<Lease[]>;
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
}

/** An entry of the expiry queue; stale once its slot is freed or renewed. */
interface Expiry {
  at: number;
  slot: Slot;
}

/** How many queued deadlines per held slot before the queue is rebuilt without stale ones. */
const STALE_EXPIRY_FACTOR = 4;

const TOKEN_BYTES = 16;
const randomPool = new Uint8Array(TOKEN_BYTES * 1024);
let poolOffset = randomPool.length;

/**
 * 128 random bits, base64url (22 characters): long enough that tokens cannot be
 * guessed. Random bytes are drawn 16 KiB at a time, which is cheaper per token.
 */
export function newToken(): string {
  if (poolOffset === randomPool.length) {
    crypto.getRandomValues(randomPool);
    poolOffset = 0;
  }
  const bytes = randomPool.subarray(poolOffset, poolOffset + TOKEN_BYTES);
  poolOffset += TOKEN_BYTES;
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

/**
 * N slots in this process, each expiring at a deadline on the monotonic clock.
 * Deadlines wait in a heap under one timer set for the earliest.
 */
export class MemoryLockStore implements LockStore {
  readonly capacity: number;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #slots = new Map<string, Slot>();
  readonly #byId = new Map<string, Slot>();
  readonly #listeners = new Set<() => void>();
  readonly #expiries = new DeadlineHeap<Expiry>();
  #timer: TimerId | undefined;
  #timerAt = Infinity;

  constructor(capacity: number, options: MemoryLockStoreOptions = {}) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`Invalid capacity ${capacity}: expected a positive integer`);
    }
    this.capacity = capacity;
    this.#clock = options.clock ?? realClock;
    this.#log = options.log ?? silentLogger;
  }

  acquire({ durationMs, id }: AcquireRequest): AcquireResult {
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
    };
    this.#schedule(slot);
    this.#slots.set(slot.token, slot);
    if (id !== undefined) this.#byId.set(id, slot);
    return { granted: true, lease: this.#view(slot), existing: false };
  }

  release(token: string): Lease | undefined {
    const slot = this.#slots.get(token);
    if (!slot) return undefined;
    const lease = this.#view(slot);
    this.#free(slot);
    return lease;
  }

  renew(token: string, durationMs: number): Lease | undefined {
    const slot = this.#slots.get(token);
    if (!slot) return undefined;
    slot.deadline = this.#clock.now() + durationMs;
    this.#schedule(slot);
    return this.#view(slot);
  }

  leases(): Lease[] {
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
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    this.#expiries.clear();
    this.#slots.clear();
    this.#byId.clear();
  }

  /** Queues the slot's deadline and makes sure the timer fires by then. */
  #schedule(slot: Slot): void {
    this.#expiries.push({ at: slot.deadline, slot });
    if (slot.deadline < this.#timerAt) this.#arm(slot.deadline);
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = this.#clock.setTimeout(
      () => this.#expireDue(),
      Math.max(0, at - this.#clock.now()),
    );
  }

  /** Frees every slot whose deadline has passed, then sets the timer for the next. */
  #expireDue(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#clock.now();
    for (let next = this.#expiries.peek(); next; next = this.#expiries.peek()) {
      const { slot } = next;
      if (!this.#isLive(next)) {
        this.#expiries.pop(); // Released or renewed since it was queued.
        continue;
      }
      // Timers may fire a little early; the monotonic deadline decides.
      if (next.at > now) {
        this.#arm(next.at);
        return;
      }
      this.#expiries.pop();
      const held = this.#clock.wallNow() - slot.acquiredAt;
      this.#log.info(
        `Lock${slot.id ? ` of ${slot.id}` : ""} expired after ${formatDuration(held)}`,
      );
      this.#free(slot);
    }
  }

  #free(slot: Slot): void {
    this.#slots.delete(slot.token);
    if (slot.id !== undefined && this.#byId.get(slot.id) === slot) this.#byId.delete(slot.id);
    if (this.#slots.size === 0 && this.#timer !== undefined) {
      // Nothing left to expire: drop the stale queue and the timer.
      this.#clock.clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.#expiries.clear();
    } else if (this.#expiries.size > STALE_EXPIRY_FACTOR * this.#slots.size + 64) {
      // Early releases leave stale entries behind; rebuild before they pile up.
      this.#expiries.clear();
      for (const live of this.#slots.values()) {
        this.#expiries.push({ at: live.deadline, slot: live });
      }
    }
    for (const listener of this.#listeners) listener();
  }

  /** Whether a queued deadline is still its slot's: not released or renewed since. */
  #isLive({ at, slot }: Expiry): boolean {
    return this.#slots.get(slot.token) === slot && slot.deadline === at;
  }

  /** Milliseconds until the soonest deadline, from the top of the expiry queue. */
  #nextFreeInMs(): number {
    for (let next = this.#expiries.peek(); next; next = this.#expiries.peek()) {
      if (this.#isLive(next)) return Math.max(0, next.at - this.#clock.now());
      this.#expiries.pop(); // Released or renewed since it was queued.
    }
    return 0;
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
