/**
 * Gates: conditions that must all hold before any lock is granted (the
 * dependencies are up, the node's load and memory pressure are low enough, a
 * pause between grants has passed, the server has recovered from an
 * unreadable state file). Each gate is its own module implementing {@linkcode Gate};
 * {@linkcode Gates} combines them in one place: all must be open, and the
 * first closed one gives the reason and the retry time.
 *
 * @module
 */
import type { GateDenial } from "./denial.ts";
import type { EventBus } from "./events.ts";

/** Whether a gate lets grants through, and if not, why and until when. */
export type GateState = { open: true } | { open: false; denial: GateDenial };

/** The open state; one object, since gates are read on every request. */
export const OPEN: GateState = Object.freeze({ open: true });

/** One condition on granting. */
export interface Gate {
  /** Names the gate in events, `/status` and metrics, such as `dependencies`. */
  readonly name: string;
  /** Whether it is open now. Read on every request, so it must be cheap. */
  state(): GateState;
  /** Calls `listener` whenever the state may have changed. Returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
  /** Starts whatever the gate watches. */
  start?(): void;
  /** Stops it. */
  stop?(): void;
}

/** A gate's state for `/status`. */
export interface GateView {
  name: string;
  open: boolean;
  denial: GateDenial | undefined;
}

/** Every gate at once: open only when each is; see the module documentation. */
export class Gates {
  readonly #gates: readonly Gate[];
  readonly #listeners = new Set<() => void>();
  readonly #unsubscribe: (() => void)[] = [];
  /** Each gate's last reported reason (`undefined`: open), to emit events on changes only. */
  readonly #last: (string | undefined)[];

  constructor(gates: readonly Gate[], events?: EventBus) {
    this.#gates = gates;
    this.#last = gates.map((g) => reasonOf(g.state()));
    gates.forEach((gate, i) => {
      this.#unsubscribe.push(gate.onChange(() => {
        const reason = reasonOf(gate.state());
        if (reason !== this.#last[i]) {
          this.#last[i] = reason;
          events?.emit({ type: "gate", gate: gate.name, open: reason === undefined, reason });
        }
        for (const listener of this.#listeners) listener();
      }));
    });
  }

  /** Open when every gate is; otherwise the first closed gate's state. */
  state(): GateState {
    for (const gate of this.#gates) {
      const state = gate.state();
      if (!state.open) return state;
    }
    return OPEN;
  }

  /** Every gate's state, in order. */
  list(): GateView[] {
    return this.#gates.map((gate) => {
      const state = gate.state();
      return { name: gate.name, open: state.open, denial: state.open ? undefined : state.denial };
    });
  }

  /** Calls `listener` whenever any gate may have opened or closed. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Starts every gate. */
  start(): void {
    for (const gate of this.#gates) gate.start?.();
  }

  /** Stops every gate and unsubscribes from them. */
  stop(): void {
    for (const gate of this.#gates) gate.stop?.();
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
  }
}

function reasonOf(state: GateState): string | undefined {
  return state.open ? undefined : state.denial.reason;
}
