/**
 * The recovery gate: no grants while locks granted before may still be held
 * somewhere nobody can see them any more. Whatever was held has run out
 * `--maxDuration` after it was lost, so the server stays on the safe side:
 * never more than N holders, at the cost of a pause.
 *
 * - `state_file`: the state file could not be read at start; closed until
 *   `--maxDuration` after it was last written, then it opens by itself.
 * - `store_lost`: the shared store (Redis) lost the semaphore (a restart
 *   without its data, `FLUSHALL`, an eviction, a failover that lost writes).
 * - `clock_jump`: the store's clock jumped against this process's, so every
 *   lease's expiry moved.
 *
 * The last two are held by the store, which opens the gate once it has made
 * the semaphore anew ({@linkcode RecoveryGate.hold}, {@linkcode RecoveryGate.release}).
 *
 * @module
 */
import { type Clock, realClock, type TimerId } from "../clock.ts";
import { type Gate, type GateState, OPEN } from "../core/gates.ts";
import type { RecoveryCause } from "../core/denial.ts";
import { recovering } from "../core/refusals.ts";

/**
 * Retry-After while a held gate waits for the store past its planned end (the
 * store does not answer yet): about as often as the store is asked again.
 */
const OVERDUE_RETRY_MS = 1_000;

/** See the module documentation. */
export class RecoveryGate implements Gate {
  readonly name = "recovery";
  readonly #clock: Clock;
  readonly #listeners = new Set<() => void>();
  /** When it opens (monotonic); `-Infinity`: open. */
  #opensAt = -Infinity;
  /** Held: it opens on {@linkcode release} only, whatever the time. */
  #held = false;
  #cause: RecoveryCause = "state_file";
  #timer: TimerId | undefined;

  /**
   * Open, or closed until `untilWallMs` (wall-clock milliseconds, counted on
   * the monotonic clock) after an unreadable state file.
   */
  constructor(untilWallMs?: number, clock: Clock = realClock) {
    this.#clock = clock;
    if (untilWallMs !== undefined) {
      this.#opensAt = clock.now() + Math.max(0, untilWallMs - clock.wallNow());
    }
  }

  state(): GateState {
    const left = this.#opensAt - this.#clock.now();
    if (this.#held) {
      const retryAfterMs = left > 0 ? left : OVERDUE_RETRY_MS;
      return { open: false, denial: recovering(this.#cause, retryAfterMs) };
    }
    return left > 0 ? { open: false, denial: recovering(this.#cause, left) } : OPEN;
  }

  /**
   * Closes the gate for `cause` until {@linkcode release}, expected in
   * `forMs` (the time `Retry-After` says). A later end than the current one
   * wins.
   */
  hold(cause: RecoveryCause, forMs: number): void {
    this.#held = true;
    this.#cause = cause;
    this.#opensAt = Math.max(this.#opensAt, this.#clock.now() + forMs);
    this.#changed();
  }

  /** Opens a held gate. */
  release(): void {
    if (!this.#held) return;
    this.#held = false;
    this.#opensAt = -Infinity;
    this.#changed();
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Tells the listeners when a gate closed for the state file opens. */
  start(): void {
    const left = this.#opensAt - this.#clock.now();
    if (left <= 0 || this.#held || this.#timer !== undefined) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#changed();
    }, left);
  }

  stop(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #changed(): void {
    for (const listener of this.#listeners) listener();
  }
}
