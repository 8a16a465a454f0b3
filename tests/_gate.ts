/**
 * A gate a test opens and closes by hand, announcing changes only when told.
 *
 * @module
 */
import type { GateDenial } from "../lib/core/denial.ts";
import { type Gate, type GateState, OPEN } from "../lib/core/gates.ts";

/** A gate under the test's control; closed with `starting` until opened. */
export class ManualGate implements Gate {
  readonly name: string;
  #state: GateState;
  readonly #listeners = new Set<() => void>();

  constructor(name = "manual", denial: GateDenial = { reason: "starting", retryAfterMs: 2_000 }) {
    this.name = name;
    this.#state = { open: false, denial };
  }

  state(): GateState {
    return this.#state;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Opens the gate and tells the listeners. */
  open(): void {
    this.#state = OPEN;
    this.announce();
  }

  /** Opens the gate without telling the listeners yet, as a round that has not announced itself. */
  openQuietly(): void {
    this.#state = OPEN;
  }

  /** Closes the gate with `denial` and tells the listeners. */
  close(denial: GateDenial): void {
    this.#state = { open: false, denial };
    this.announce();
  }

  /** Tells the listeners that the state may have changed. */
  announce(): void {
    for (const listener of this.#listeners) listener();
  }
}
