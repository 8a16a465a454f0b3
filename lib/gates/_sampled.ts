/**
 * A gate that samples a reading of the node on a timer (the load average,
 * pressure stall information) and is closed while the last sample is over a
 * limit. Reading on every request would cost a system call each; the kernel
 * updates these figures every few seconds anyway.
 *
 * @module
 */
import { type Clock, realClock, type TimerId } from "../clock.ts";
import type { GateDenial } from "../core/denial.ts";
import { type Gate, type GateState, OPEN } from "../core/gates.ts";

/** Options of {@linkcode SampledGate}. */
export interface SampledGateOptions<T> {
  name: string;
  /** Takes one sample. A sample that throws counts as open: a gate never locks a node by failing. */
  read(): T;
  /** The denial for a sample over the limit, else `undefined`. */
  judge(sample: T, retryAfterMs: number): GateDenial | undefined;
  /** How often to sample. */
  intervalMs: number;
  /** @default {realClock} */
  clock?: Clock;
}

/** Samples a reading on a timer; closed while the last sample is over its limit. */
export class SampledGate<T> implements Gate {
  readonly name: string;
  readonly #options: SampledGateOptions<T>;
  readonly #clock: Clock;
  readonly #listeners = new Set<() => void>();
  #state: GateState = OPEN;
  #timer: TimerId | undefined;

  constructor(options: SampledGateOptions<T>) {
    this.name = options.name;
    this.#options = options;
    this.#clock = options.clock ?? realClock;
  }

  state(): GateState {
    return this.#state;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Takes the first sample now, then one every interval. */
  start(): void {
    if (this.#timer === undefined) this.sample();
  }

  /** Stops sampling. */
  stop(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Takes a sample now and schedules the next; tells the listeners when the state changes. */
  sample(): void {
    const { read, judge, intervalMs } = this.#options;
    let denial: GateDenial | undefined;
    try {
      denial = judge(read(), intervalMs);
    } catch {
      denial = undefined;
    }
    const was = this.#state;
    this.#state = denial ? { open: false, denial } : OPEN;
    if (was.open !== this.#state.open || denial) {
      for (const listener of this.#listeners) listener();
    }
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = this.#clock.setTimeout(() => this.sample(), intervalMs);
  }
}
