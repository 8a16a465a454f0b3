/**
 * The cooldown gate (`--cooldown`): at least a set time between two grants,
 * to pace start-ups even while slots are free. It closes the moment a lock is
 * granted (it listens to the core's `granted` events, which the queue reports
 * as it hands a slot over) and opens again once the pause has passed.
 *
 * @module
 */
import { type Clock, realClock, type TimerId } from "../clock.ts";
import type { EventBus } from "../core/events.ts";
import { type Gate, type GateState, OPEN } from "../core/gates.ts";

/** Options of {@linkcode CooldownGate}. */
export interface CooldownGateOptions {
  /** The least time between two grants. */
  cooldownMs: number;
  /** Where grants are reported. */
  events: EventBus;
  /** @default {realClock} */
  clock?: Clock;
}

/** Closed for `cooldownMs` after every grant; see the module documentation. */
export class CooldownGate implements Gate {
  readonly name = "cooldown";
  readonly #cooldownMs: number;
  readonly #clock: Clock;
  readonly #listeners = new Set<() => void>();
  readonly #unsubscribe: () => void;
  /** When the gate opens again, on the monotonic clock. */
  #opensAt = -Infinity;
  #timer: TimerId | undefined;

  constructor(options: CooldownGateOptions) {
    if (!(options.cooldownMs > 0)) {
      throw new RangeError(`Invalid cooldown ${options.cooldownMs}: expected a positive duration`);
    }
    this.#cooldownMs = options.cooldownMs;
    this.#clock = options.clock ?? realClock;
    this.#unsubscribe = options.events.on(() => this.#granted(), ["granted"]);
  }

  state(): GateState {
    const left = this.#opensAt - this.#clock.now();
    if (left <= 0) return OPEN;
    return {
      open: false,
      denial: { reason: "cooldown", cooldownMs: this.#cooldownMs, retryAfterMs: left },
    };
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops listening to grants and cancels the timer. */
  stop(): void {
    this.#unsubscribe();
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #granted(): void {
    this.#opensAt = this.#clock.now() + this.#cooldownMs;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#announce();
    }, this.#cooldownMs);
    this.#announce();
  }

  #announce(): void {
    for (const listener of this.#listeners) listener();
  }
}
