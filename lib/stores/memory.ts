/**
 * The in-memory lock store: N slots in this process, each expiring at a
 * deadline on the monotonic clock. Deadlines wait in a heap under one timer set
 * for the earliest. It answers synchronously, so the hot path has no promise.
 *
 * @module
 */
import { DeadlineHeap } from "../_deadline_heap.ts";
import { type Clock, realClock, type TimerId, toWallTime } from "../clock.ts";
import type { AcquireRequest, AcquireResult, Lease, LockStore, SlotsFreed } from "../core/store.ts";
import { MAX_TIMER_MS } from "../duration.ts";
import { newToken } from "../token.ts";

/** Options of {@linkcode MemoryLockStore}. */
export interface MemoryLockStoreOptions {
  /** @default {realClock} */
  clock?: Clock;
}

interface Slot {
  token: string;
  id: string | undefined;
  acquiredAt: number;
  deadline: number;
  /** See {@linkcode Lease.claims}. */
  claims: number;
}

/** An entry of the expiry queue; stale once its slot is freed or renewed. */
interface Expiry {
  at: number;
  slot: Slot;
}

/** How many queued deadlines per held slot before the queue is rebuilt without stale ones. */
const STALE_EXPIRY_FACTOR = 4;

const NOTHING_EXPIRED: SlotsFreed = Object.freeze({ expired: Object.freeze([]) });

/** N slots in this process; see the module documentation. */
export class MemoryLockStore implements LockStore {
  readonly capacity: number;
  readonly #clock: Clock;
  readonly #slots = new Map<string, Slot>();
  readonly #byId = new Map<string, Slot>();
  readonly #listeners = new Set<(freed: SlotsFreed) => void>();
  readonly #expiries = new DeadlineHeap<Expiry>();
  #timer: TimerId | undefined;
  #timerAt = Infinity;

  constructor(capacity: number, options: MemoryLockStoreOptions = {}) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`Invalid capacity ${capacity}: expected a positive integer`);
    }
    this.capacity = capacity;
    this.#clock = options.clock ?? realClock;
  }

  acquire({ durationMs, id }: AcquireRequest): AcquireResult {
    if (id !== undefined) {
      const held = this.#byId.get(id);
      if (held) {
        // Asking again starts the lock afresh: a grant for what is asked now, never the rest of
        // an older one that may be about to run out.
        held.deadline = this.#clock.now() + durationMs;
        held.claims++;
        this.#schedule(held);
        return { granted: true, lease: this.#view(held), existing: true };
      }
    }
    if (this.#slots.size >= this.capacity) {
      return { granted: false, nextFreeInMs: this.#nextFreeInMs() };
    }
    const slot: Slot = {
      token: newToken(),
      id,
      acquiredAt: this.#clock.wallNow(),
      deadline: this.#clock.now() + durationMs,
      claims: 0,
    };
    this.#schedule(slot);
    this.#slots.set(slot.token, slot);
    if (id !== undefined) this.#byId.set(id, slot);
    return { granted: true, lease: this.#view(slot), existing: false };
  }

  /**
   * Holds a lock read back from the state file, with its token, until its
   * wall-clock expiry (counted from now on the monotonic clock). Beyond
   * capacity too: a lowered `--locks` keeps the surviving holders.
   */
  restore(lock: { token: string; id: string | undefined; acquiredAt: number; expiresAt: number }) {
    const remaining = lock.expiresAt - this.#clock.wallNow();
    if (remaining <= 0 || this.#slots.has(lock.token)) return;
    if (lock.id !== undefined && this.#byId.has(lock.id)) return;
    const slot: Slot = {
      token: lock.token,
      id: lock.id,
      acquiredAt: lock.acquiredAt,
      deadline: this.#clock.now() + remaining,
      // Read back after a restart: nothing of this process can hand it back.
      claims: 0,
    };
    this.#schedule(slot);
    this.#slots.set(slot.token, slot);
    if (lock.id !== undefined) this.#byId.set(lock.id, slot);
  }

  release(token: string, claims?: number): Lease | undefined {
    const slot = this.#slots.get(token);
    if (!slot || (claims !== undefined && slot.claims !== claims)) return undefined;
    const lease = this.#view(slot);
    this.#free(slot);
    this.#notify(NOTHING_EXPIRED);
    return lease;
  }

  renew(token: string, durationMs: number): Lease | undefined {
    const slot = this.#slots.get(token);
    if (!slot) return undefined;
    slot.deadline = this.#clock.now() + durationMs;
    slot.claims++;
    this.#schedule(slot);
    return this.#view(slot);
  }

  byId(id: string): Lease | undefined {
    const slot = this.#byId.get(id);
    return slot && this.#view(slot);
  }

  byToken(token: string): Lease | undefined {
    const slot = this.#slots.get(token);
    return slot && this.#view(slot);
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

  onFree(listener: (freed: SlotsFreed) => void): () => void {
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
    this.#listeners.clear();
  }

  /** Queues the slot's deadline and makes sure the timer fires by then. */
  #schedule(slot: Slot): void {
    this.#expiries.push({ at: slot.deadline, slot });
    if (slot.deadline < this.#timerAt) this.#arm(slot.deadline);
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timerAt = at;
    // A deadline beyond what setTimeout can run (a lock read back from a state file edited by
    // hand) would fire at once, again and again: wake at the longest delay and set it again.
    this.#timer = this.#clock.setTimeout(
      () => this.#expireDue(),
      Math.min(MAX_TIMER_MS, Math.max(0, at - this.#clock.now())),
    );
  }

  /** Frees every slot whose deadline has passed, then sets the timer for the next. */
  #expireDue(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#clock.now();
    const expired: Lease[] = [];
    for (let next = this.#expiries.peek(); next; next = this.#expiries.peek()) {
      if (!this.#isLive(next)) {
        this.#expiries.pop(); // Released or renewed since it was queued.
        continue;
      }
      // Timers may fire a little early; the monotonic deadline decides.
      if (next.at > now) {
        this.#arm(next.at);
        break;
      }
      this.#expiries.pop();
      expired.push(this.#view(next.slot));
      this.#free(next.slot);
    }
    if (expired.length > 0) this.#notify({ expired });
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
  }

  #notify(freed: SlotsFreed): void {
    for (const listener of this.#listeners) listener(freed);
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
      claims: slot.claims,
    };
  }
}
