/**
 * A lock store that lives "elsewhere", for tests: it wraps any store, answers
 * every operation with a promise (so the asynchronous path of the service runs),
 * and fails on demand the ways a network store fails:
 *
 * - `reject`: the store refuses at once (connection refused);
 * - `hang`: no answer, until the store's own command timeout rejects it;
 * - `delay`: the answer comes late, on the clock;
 * - any of them `afterEffect`: the operation took effect, but its answer was
 *   lost (a reply dropped on the way back).
 *
 * Failures are {@linkcode StoreUnavailableError}s, with the injected error as
 * their `cause`. Slots freed inside are announced to `onFree` listeners.
 *
 * @module
 */
import { type Clock, realClock, type TimerId } from "../lib/clock.ts";
import {
  type AcquireRequest,
  type AcquireResult,
  type Lease,
  type LockStore,
  type SlotsFreed,
  StoreUnavailableError,
} from "../lib/core/store.ts";

/** The operations a fault can hit. */
export type Operation = "acquire" | "release" | "renew" | "byId" | "byToken" | "leases";

/** How errors name the operations, as the service does. */
const VERBS: Record<Operation, string> = {
  acquire: "acquire",
  release: "release",
  renew: "renew",
  byId: "look up",
  byToken: "look up",
  leases: "list leases",
};

/** How an operation misbehaves. */
export type Fault =
  | { kind: "reject"; error?: unknown; afterEffect?: boolean }
  | { kind: "hang"; afterEffect?: boolean }
  | { kind: "delay"; ms: number };

/** One call to the store, as seen by {@linkcode FaultyStoreOptions.onCall}. */
export interface Call {
  operation: Operation;
  /** The id (acquire, byId) or token (release, renew, byToken) it was about. */
  subject: string | undefined;
  /** The fault injected into it, if any. */
  fault: Fault | undefined;
  /** Set once it settled: `true` if it answered, `false` if it failed. */
  ok?: boolean;
}

/** Options of {@linkcode FaultyStore}. */
export interface FaultyStoreOptions {
  /** Runs delays and the timeout. @default {realClock} */
  clock?: Clock;
  /** The store's own command timeout: a hung operation fails after this long. @default {5_000} */
  timeoutMs?: number;
  /** Microtask turns before each answer, a number or drawn per call. @default {1} */
  hops?: number | (() => number);
  /** Called at every call, and again when it settles. */
  onCall?: (call: Call, phase: "call" | "settle") => void;
}

interface Rule {
  operation: Operation | "any";
  fault: Fault;
  times: number;
}

/** Wraps a store; see the module documentation. */
export class FaultyStore implements LockStore {
  readonly inner: LockStore;
  readonly capacity: number;
  /** The inner store's rule for what clears "store down". */
  readonly upAfter: "any_answer" | "a_change";
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #hops: () => number;
  readonly #onCall: FaultyStoreOptions["onCall"];
  #rules: Rule[] = [];
  /** Operations waiting on the clock (delays, hangs), failed at once by `close()`. */
  readonly #timers = new Map<TimerId, (error: StoreUnavailableError) => void>();
  #inFlight = 0;

  constructor(inner: LockStore, options: FaultyStoreOptions = {}) {
    this.inner = inner;
    this.capacity = inner.capacity;
    this.upAfter = inner.upAfter ?? "any_answer";
    this.#clock = options.clock ?? realClock;
    this.#timeoutMs = options.timeoutMs ?? 5_000;
    const hops = options.hops ?? 1;
    this.#hops = typeof hops === "number" ? () => hops : hops;
    this.#onCall = options.onCall;
  }

  /** The store's command timeout. */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /** Operations not answered yet. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Operations waiting on the clock: delayed or hung. */
  get waitingOnClock(): number {
    return this.#timers.size;
  }

  /** Makes the next `times` calls of `operation` (`any`: of every operation) misbehave. */
  failNext(
    operation: Operation | "any",
    fault: Fault | "reject" | "hang" = "reject",
    times = 1,
  ): void {
    this.#rules.push({
      operation,
      fault: typeof fault === "string" ? { kind: fault } : fault,
      times,
    });
  }

  /** Makes every call fail (`reject`, or `hang`) until {@linkcode heal}. */
  down(kind: "reject" | "hang" = "reject"): void {
    this.failNext("any", { kind }, Infinity);
  }

  /** Drops every pending fault: the store answers again. */
  heal(): void {
    this.#rules = [];
  }

  acquire(request: AcquireRequest): Promise<AcquireResult> {
    return this.#run("acquire", request.id, () => this.inner.acquire(request));
  }

  release(token: string, claims?: number): Promise<Lease | undefined> {
    return this.#run("release", token, () => this.inner.release(token, claims));
  }

  renew(token: string, durationMs: number): Promise<Lease | undefined> {
    return this.#run("renew", token, () => this.inner.renew(token, durationMs));
  }

  byId(id: string): Promise<Lease | undefined> {
    return this.#run("byId", id, () => this.inner.byId(id));
  }

  byToken(token: string): Promise<Lease | undefined> {
    return this.#run("byToken", token, () => this.inner.byToken(token));
  }

  leases(): Promise<Lease[]> {
    return this.#run("leases", undefined, () => this.inner.leases());
  }

  onFree(listener: (freed: SlotsFreed) => void): () => void {
    return this.inner.onFree(listener);
  }

  /** Closes the inner store; operations still waiting fail, as on a closed connection. */
  async close(): Promise<void> {
    for (const [timer, fail] of this.#timers) {
      this.#clock.clearTimeout(timer);
      fail(new StoreUnavailableError("answer", "the store was closed"));
    }
    this.#timers.clear();
    await this.inner.close();
  }

  async #run<T>(
    operation: Operation,
    subject: string | undefined,
    effect: () => T | Promise<T>,
  ): Promise<T> {
    const call: Call = { operation, subject, fault: this.#take(operation) };
    this.#onCall?.(call, "call");
    this.#inFlight++;
    try {
      const value = await this.#answer(operation, call.fault, effect);
      call.ok = true;
      return value;
    } catch (error) {
      call.ok = false;
      throw error;
    } finally {
      this.#inFlight--;
      this.#onCall?.(call, "settle");
    }
  }

  async #answer<T>(
    operation: Operation,
    fault: Fault | undefined,
    effect: () => T | Promise<T>,
  ): Promise<T> {
    // The clock starts at the call, as a network client's command timeout does.
    const late = fault?.kind === "delay"
      ? this.#sleep(operation, fault.ms)
      : fault?.kind === "hang"
      ? this.#sleep(operation, Infinity)
      : undefined;
    late?.catch(() => {}); // Awaited below; until then, not an unhandled rejection.
    for (let i = this.#hops(); i > 0; i--) await null;
    if (!fault || fault.kind === "delay") {
      await late;
      return await effect();
    }
    if (fault.afterEffect) await effect();
    if (fault.kind === "reject") {
      const cause = fault.error ?? new Error("connection refused (injected)");
      const reason = cause instanceof Error ? cause.message : String(cause);
      throw new StoreUnavailableError(VERBS[operation], reason, { cause });
    }
    await late;
    throw new Error("unreachable: a hang ends with the timeout");
  }

  /** Waits `ms` on the clock, or fails when the store's timeout runs out first. */
  #sleep(operation: Operation, ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timedOut = ms >= this.#timeoutMs;
      const timer = this.#clock.setTimeout(() => {
        this.#timers.delete(timer);
        if (!timedOut) return resolve();
        reject(
          new StoreUnavailableError(VERBS[operation], `timed out after ${this.#timeoutMs} ms`),
        );
      }, Math.min(ms, this.#timeoutMs));
      this.#timers.set(timer, reject);
    });
  }

  #take(operation: Operation): Fault | undefined {
    const rule = this.#rules.find((r) => r.operation === operation || r.operation === "any");
    if (!rule) return undefined;
    if (--rule.times <= 0) this.#rules.splice(this.#rules.indexOf(rule), 1);
    return rule.fault;
  }
}
