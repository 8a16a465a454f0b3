/**
 * A clock that only moves when a test says so (the stand-in for `FakeTime`
 * from `@std/testing/time` while JSR is out of reach).
 *
 * @module
 */
import type { Clock, TimerId } from "../lib/clock.ts";

interface Timer {
  id: number;
  at: number;
  fn: () => void;
}

/** A manual clock: timers fire only inside {@linkcode ManualClock.advance}. */
export class ManualClock implements Clock {
  #now: number;
  #wallOffset: number;
  #nextId = 1;
  #timers = new Map<number, Timer>();

  constructor(start = 1_000, wallStart = Date.UTC(2026, 0, 1)) {
    this.#now = start;
    this.#wallOffset = wallStart - start;
  }

  now(): number {
    return this.#now;
  }

  wallNow(): number {
    return this.#now + this.#wallOffset;
  }

  /** Moves wall time only, as an NTP step or a suspended VM would. */
  jumpWall(ms: number): void {
    this.#wallOffset += ms;
  }

  setTimeout(fn: () => void, ms: number): TimerId {
    const id = this.#nextId++;
    this.#timers.set(id, { id, at: this.#now + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(id: TimerId): void {
    this.#timers.delete(id as number);
  }

  /** How many timers are pending. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Advances time by `ms`, firing due timers in order (each at its own instant). */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      let next: Timer | undefined;
      for (const t of this.#timers.values()) {
        if (t.at <= target && (!next || t.at < next.at || (t.at === next.at && t.id < next.id))) {
          next = t;
        }
      }
      if (!next) break;
      this.#timers.delete(next.id);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
    }
    this.#now = target;
  }
}
