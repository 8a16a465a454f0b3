/**
 * The recovery gate: after a state file that could not be read, no grants
 * until `--maxDuration` after the file was last written. Whatever it held has
 * run out by then, so the server stays on the safe side: never more than N
 * holders, at the cost of a pause.
 *
 * @module
 */
import { type Clock, realClock, type TimerId } from "../clock.ts";
import { type Gate, type GateState, OPEN } from "../core/gates.ts";

/** Closed until a wall-clock instant; see the module documentation. */
export class RecoveryGate implements Gate {
  readonly name = "recovery";
  readonly #clock: Clock;
  readonly #opensAt: number;
  readonly #listeners = new Set<() => void>();
  #timer: TimerId | undefined;

  /** Closed until `untilWallMs` (wall-clock milliseconds), counted on the monotonic clock. */
  constructor(untilWallMs: number, clock: Clock = realClock) {
    this.#clock = clock;
    this.#opensAt = clock.now() + Math.max(0, untilWallMs - clock.wallNow());
  }

  state(): GateState {
    const left = this.#opensAt - this.#clock.now();
    return left > 0 ? { open: false, denial: { reason: "recovering", retryAfterMs: left } } : OPEN;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Tells the listeners when it opens. */
  start(): void {
    const left = this.#opensAt - this.#clock.now();
    if (left <= 0 || this.#timer !== undefined) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      for (const listener of this.#listeners) listener();
    }, left);
  }

  stop(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
