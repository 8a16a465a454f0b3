/**
 * Store health: a guard around any lock store that says when the store goes
 * down and when it is up again (`store` events, read by the log, `/status`
 * and metrics), and turns every failure into a
 * {@linkcode StoreUnavailableError}.
 *
 * What clears "down" is the store's own rule ({@linkcode LockStore.upAfter}):
 * - `any_answer` (Redis): any call that works, the store's own heartbeat
 *   included ({@linkcode LockStore.onHeartbeat}), so "down" ends within a
 *   beat of the store answering again, without waiting for a client;
 * - `a_change` (the state file): after a failed change, only a change that
 *   works, as a store that reads from memory may answer lookups while its
 *   writes still fail.
 *
 * @module
 */
import { describeError } from "../errors.ts";
import type { EventBus } from "./events.ts";
import { type Awaitable, type LockStore, StoreUnavailableError } from "./store.ts";

/** The store operations that change the slots; the others only look. */
const CHANGES: ReadonlySet<string> = new Set(["acquire", "release", "renew"]);

/** See the module documentation. */
export class StoreHealth {
  readonly #store: LockStore;
  readonly #events: EventBus;
  readonly #unsubscribe: () => void;
  #error: string | undefined;
  /** Whether a change (not a lookup) failed since the store last answered one. */
  #failedChange = false;

  constructor(store: LockStore, events: EventBus) {
    this.#store = store;
    this.#events = events;
    this.#unsubscribe = store.onHeartbeat?.((failure) => {
      if (failure) this.failure("beat", failure);
      else this.answered("beat");
    }) ?? (() => {});
  }

  /** Whether the store answered its last call (by its rule). */
  get up(): boolean {
    return this.#error === undefined;
  }

  /** Why the store is down, when it is. */
  get error(): string | undefined {
    return this.#error;
  }

  /**
   * Calls the store, turning any failure into a {@linkcode StoreUnavailableError}
   * (thrown, or the promise rejects with it) and noting whether it answered.
   */
  call<T>(operation: string, run: () => Awaitable<T>): Awaitable<T> {
    let value: Awaitable<T>;
    try {
      value = run();
    } catch (error) {
      throw this.failure(operation, error);
    }
    if (value instanceof Promise) {
      return value.then((v) => {
        this.answered(operation);
        return v;
      }, (error) => {
        throw this.failure(operation, error);
      });
    }
    if (this.#error !== undefined) this.answered(operation);
    return value;
  }

  /** Notes that the store answered `operation`; says it is up if its rule lets that clear "down". */
  answered(operation: string): void {
    if (this.#error === undefined) return;
    const rule = this.#store.upAfter ?? "any_answer";
    if (rule === "a_change" && this.#failedChange && !CHANGES.has(operation)) return;
    this.#error = undefined;
    this.#failedChange = false;
    this.#events.emit({ type: "store", up: true, error: undefined });
  }

  /** Notes that the store failed; returns the failure as a {@linkcode StoreUnavailableError}. */
  failure(operation: string, error: unknown): StoreUnavailableError {
    const failure = error instanceof StoreUnavailableError
      ? error
      : new StoreUnavailableError(operation, describeError(error), { cause: error });
    if (this.#error === undefined) {
      this.#events.emit({ type: "store", up: false, error: failure.message });
    }
    this.#error = failure.message;
    this.#failedChange ||= CHANGES.has(operation);
    return failure;
  }

  /** Stops listening to the store's heartbeat. */
  close(): void {
    this.#unsubscribe();
  }
}
