/**
 * The lock service: decides whether a request gets a slot, from the dependency
 * gate, the lock store and the queue of waiting clients. The HTTP handler only
 * translates.
 *
 * Waiting clients are served first come, first served: while anyone waits, a
 * request that does not wait is refused rather than jump ahead, and a freed
 * slot goes straight to the head of the queue.
 *
 * @module
 */
import type { DependencyState, Gate } from "./checker.ts";
import { type Clock, realClock, type TimerId } from "./clock.ts";
import { formatDuration } from "./duration.ts";
import type { AcquireRequest, AcquireResult, Awaitable, Lease, LockStore } from "./lock.ts";
import { type Logger, silentLogger } from "./log.ts";

/** Why a request was not granted. */
export type DenialReason =
  | "starting"
  | "dependencies"
  | "busy"
  | "queued"
  | "queue_full"
  | "shutting_down"
  | "superseded"
  | "cancelled";

/** A refused request: why, in words, and when to try again. */
export interface Denial {
  reason: DenialReason;
  /** One sentence for people, without the leading "Locked". */
  message: string;
  retryAfterMs: number;
}

/** The answer to {@linkcode LockService.acquire}. */
export type Outcome =
  | { granted: true; lease: Lease; existing: boolean }
  | { granted: false; denial: Denial };

/** What the service needs of the dependency checker. */
export interface GateSource {
  readonly gate: Gate;
  readonly dependencies?: DependencyState[];
  onChange?(listener: () => void): () => void;
}

/** An acquire request, with how long the client is willing to wait. */
export interface AcquireOptions extends AcquireRequest {
  /** Wait in the queue for up to this long; 0 or absent: answer at once. */
  waitMs?: number | undefined;
  /** Aborts when the client goes away; a waiting client then leaves the queue. */
  signal?: AbortSignal | undefined;
}

/** What `GET /status` shows. */
export interface Status {
  slots: { total: number; held: number; free: number };
  holders: { id: string | null; acquiredAt: string; expiresAt: string }[];
  waiters: { count: number; ids: (string | null)[] };
  dependencies: {
    url: string;
    up: boolean | null;
    lastCheckedAt: string | null;
    lastError: string | null;
    latencyMs: number | null;
  }[];
  locking: { allowed: true } | { allowed: false; reason: DenialReason; message: string };
}

/** Options of {@linkcode LockService}. */
export interface LockServiceOptions {
  store: LockStore;
  /** @default {always open} */
  gate?: GateSource;
  /** At most this many clients wait at once; beyond, requests get `queue_full`. @default {Infinity} */
  maxWaiters?: number;
  /** @default {realClock} */
  clock?: Clock;
  /** @default {silentLogger} */
  log?: Logger;
}

interface Waiter {
  request: AcquireRequest;
  resolve: (outcome: Outcome) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
  timer: TimerId;
}

const OPEN_GATE: GateSource = { gate: { open: true } };

/** How soon a client refused for a full queue or a shutdown should try again. */
const UNAVAILABLE_RETRY_MS = 1_000;

/** Grants and refuses locks, and queues waiting clients; see the module documentation. */
export class LockService {
  readonly store: LockStore;
  readonly #gate: GateSource;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #maxWaiters: number;
  /** Waiting clients in arrival order (a `Set` keeps insertion order and deletes in O(1)). */
  readonly #queue = new Set<Waiter>();
  readonly #waitingIds = new Map<string, Waiter>();
  readonly #unsubscribe: (() => void)[] = [];
  #pumping = false;
  #pumpAgain = false;
  #closed = false;

  constructor(options: LockServiceOptions) {
    this.store = options.store;
    this.#gate = options.gate ?? OPEN_GATE;
    this.#log = options.log ?? silentLogger;
    this.#clock = options.clock ?? realClock;
    this.#maxWaiters = options.maxWaiters ?? Infinity;
    this.#unsubscribe.push(this.store.onFree(() => this.#pump()));
    if (this.#gate.onChange) this.#unsubscribe.push(this.#gate.onChange(() => this.#pump()));
  }

  /** How many clients wait. */
  get waiting(): number {
    return this.#queue.size;
  }

  /**
   * Takes a slot if every dependency passes, one is free and nobody waits
   * ahead; otherwise waits up to `waitMs` for one in arrival order.
   */
  acquire(options: AcquireOptions): Awaitable<Outcome> {
    if (this.#closed) return { granted: false, denial: SHUTTING_DOWN };
    const request: AcquireRequest = { durationMs: options.durationMs, id: options.id };
    const gate = this.#gate.gate;
    if (gate.open && this.#queue.size === 0) {
      const result = this.store.acquire(request);
      return result instanceof Promise
        ? result.then((r) => this.#afterTry(r, options))
        : this.#afterTry(result, options);
    }
    // Someone waits ahead, or the gate is closed: only an id that already holds a lock gets in.
    if (options.id !== undefined) {
      const held = this.#heldBy(options.id);
      if (held instanceof Promise) {
        return held.then((lease) =>
          lease ? { granted: true, lease, existing: true } : this.#waitOrDeny(options)
        );
      }
      if (held) return { granted: true, lease: held, existing: true };
    }
    return this.#waitOrDeny(options);
  }

  /** Frees a lock now. */
  release(token: string): Awaitable<Lease | undefined> {
    const lease = this.store.release(token);
    const log = (l: Lease | undefined) => {
      if (l && this.#log.enabled("info")) {
        this.#log.info(
          `Lock${l.id ? ` of ${l.id}` : ""} released after ${
            formatDuration(this.#clock.wallNow() - l.acquiredAt)
          }`,
        );
      }
      return l;
    };
    return lease instanceof Promise ? lease.then(log) : log(lease);
  }

  /** Moves a lock's expiry to `durationMs` from now. */
  renew(token: string, durationMs: number): Awaitable<Lease | undefined> {
    return this.store.renew(token, durationMs);
  }

  /** A snapshot for `GET /status`. Never shows tokens. */
  async status(): Promise<Status> {
    const leases = await this.store.leases();
    const iso = (ms: number) => new Date(ms).toISOString();
    const denial = this.#currentDenial(leases);
    return {
      slots: {
        total: this.store.capacity,
        held: leases.length,
        free: this.store.capacity - leases.length,
      },
      holders: leases.map((l) => ({
        id: l.id ?? null,
        acquiredAt: iso(l.acquiredAt),
        expiresAt: iso(l.expiresAt),
      })),
      waiters: {
        count: this.#queue.size,
        ids: [...this.#queue].map((w) => w.request.id ?? null),
      },
      dependencies: (this.#gate.dependencies ?? []).map((d) => ({
        url: d.url,
        up: d.up ?? null,
        lastCheckedAt: d.lastCheckedAt === undefined ? null : iso(d.lastCheckedAt),
        lastError: d.lastError ?? null,
        latencyMs: d.latencyMs ?? null,
      })),
      locking: denial
        ? { allowed: false, reason: denial.reason, message: denial.message }
        : { allowed: true },
    };
  }

  /** Answers every waiting client `shutting_down` and refuses new requests. */
  close(): void {
    this.#closed = true;
    for (const waiter of [...this.#queue]) {
      this.#settle(waiter, { granted: false, denial: SHUTTING_DOWN });
    }
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
  }

  #afterTry(result: AcquireResult, options: AcquireOptions): Awaitable<Outcome> {
    if (result.granted) {
      if (!result.existing) this.#logGrant(options);
      return result;
    }
    return this.#waitOrDeny(options, result.nextFreeInMs);
  }

  #logGrant(request: AcquireRequest): void {
    if (this.#log.enabled("info")) {
      this.#log.info(
        `Lock granted${request.id ? ` to ${request.id}` : ""} for ${
          formatDuration(request.durationMs)
        }`,
      );
    }
  }

  #heldBy(id: string): Awaitable<Lease | undefined> {
    const leases = this.store.leases();
    const find = (all: Lease[]) => all.find((l) => l.id === id);
    return leases instanceof Promise ? leases.then(find) : find(leases);
  }

  #waitOrDeny(options: AcquireOptions, nextFreeInMs?: number): Awaitable<Outcome> {
    if (!options.waitMs || options.waitMs <= 0) {
      return { granted: false, denial: this.#denial(nextFreeInMs) };
    }
    if (options.signal?.aborted) return { granted: false, denial: CANCELLED };
    const sameId = options.id === undefined ? undefined : this.#waitingIds.get(options.id);
    if (!sameId && this.#queue.size >= this.#maxWaiters) {
      return {
        granted: false,
        denial: {
          reason: "queue_full",
          message:
            `${this.#queue.size} clients are already waiting, the most allowed (--maxWaiters)`,
          retryAfterMs: Math.max(UNAVAILABLE_RETRY_MS, nextFreeInMs ?? 0),
        },
      };
    }
    return new Promise<Outcome>((resolve) => {
      const request: AcquireRequest = { durationMs: options.durationMs, id: options.id };
      const timer = this.#clock.setTimeout(() => this.#timeOut(waiter), options.waitMs!);
      const waiter: Waiter = {
        request,
        resolve,
        signal: options.signal,
        onAbort: () => this.#settle(waiter, { granted: false, denial: CANCELLED }),
        timer,
      };
      if (sameId) {
        // The same client asks again (its earlier request timed out on its side):
        // it keeps its place in the queue, and the earlier request is answered.
        this.#replace(sameId, waiter);
      } else {
        this.#queue.add(waiter);
        if (options.id !== undefined) this.#waitingIds.set(options.id, waiter);
      }
      options.signal?.addEventListener("abort", waiter.onAbort, { once: true });
      if (this.#log.enabled("debug")) {
        this.#log.debug(`${options.id ?? "A client"} waits (${this.#queue.size} waiting)`);
      }
      this.#pump();
    });
  }

  #replace(old: Waiter, waiter: Waiter): void {
    const order = [...this.#queue];
    this.#queue.clear();
    for (const w of order) this.#queue.add(w === old ? waiter : w);
    this.#waitingIds.set(waiter.request.id!, waiter);
    this.#clock.clearTimeout(old.timer);
    old.signal?.removeEventListener("abort", old.onAbort);
    old.resolve({
      granted: false,
      denial: {
        reason: "superseded",
        message: "a newer request with the same id took this one's place in the queue",
        retryAfterMs: 0,
      },
    });
  }

  #timeOut(waiter: Waiter): void {
    if (!this.#queue.has(waiter)) return;
    this.#queue.delete(waiter);
    const leases = this.store.leases();
    const answer = (all: Lease[]) =>
      this.#settle(waiter, { granted: false, denial: this.#denial(this.#nextFreeInMs(all)) });
    if (leases instanceof Promise) leases.then(answer, () => answer([]));
    else answer(leases);
  }

  /** When the first of `leases` frees, if every slot is held. */
  #nextFreeInMs(leases: Lease[]): number | undefined {
    if (leases.length < this.store.capacity) return undefined;
    return leases[0]?.remainingMs; // Soonest expiry first, as LockStore.leases() promises.
  }

  /** Removes a waiter from the queue and answers it. */
  #settle(waiter: Waiter, outcome: Outcome): void {
    this.#queue.delete(waiter);
    const id = waiter.request.id;
    if (id !== undefined && this.#waitingIds.get(id) === waiter) this.#waitingIds.delete(id);
    this.#clock.clearTimeout(waiter.timer);
    waiter.signal?.removeEventListener("abort", waiter.onAbort);
    waiter.resolve(outcome);
    // A cancelled head may have been what held the queue up.
    if (!outcome.granted && this.#queue.size > 0) this.#pump();
  }

  /** Hands free slots to waiting clients, head first, while the gate is open. */
  #pump(): void {
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    const done = () => {
      this.#pumping = false;
      if (this.#pumpAgain) {
        this.#pumpAgain = false;
        this.#pump();
      }
    };
    const step = (): void => {
      for (;;) {
        this.#pumpAgain = false;
        const head = this.#queue.values().next().value as Waiter | undefined;
        if (!head || this.#closed || !this.#gate.gate.open) return done();
        const result = this.store.acquire(head.request);
        if (result instanceof Promise) {
          result.then((r) => this.#handOver(head, r) ? step() : done(), done);
          return;
        }
        if (!this.#handOver(head, result)) return done();
      }
    };
    step();
  }

  /** Gives a granted slot to `waiter`; false when no slot was free. */
  #handOver(waiter: Waiter, result: AcquireResult): boolean {
    if (!result.granted) return false;
    if (!this.#queue.has(waiter) || waiter.signal?.aborted) {
      // The client went away while the slot was being taken: the slot returns to the pool.
      if (!result.existing) this.store.release(result.lease.token);
      if (this.#queue.has(waiter)) this.#settle(waiter, { granted: false, denial: CANCELLED });
      return true;
    }
    if (!result.existing) this.#logGrant(waiter.request);
    this.#settle(waiter, result);
    return true;
  }

  /** Why a request would be refused now, or `undefined` if it would be granted. */
  #currentDenial(leases: Lease[]): Denial | undefined {
    const gate = this.#gate.gate;
    if (!gate.open) return describeClosedGate(gate);
    if (this.#queue.size > 0) return this.#denial(undefined);
    if (leases.length >= this.store.capacity) return this.#denial(this.#nextFreeInMs(leases));
    return undefined;
  }

  /** The reason a request is refused right now. */
  #denial(nextFreeInMs: number | undefined): Denial {
    const gate = this.#gate.gate;
    if (!gate.open) return describeClosedGate(gate);
    if (this.#queue.size > 0 && nextFreeInMs === undefined) {
      const n = this.#queue.size;
      return {
        reason: "queued",
        message: `${n} ${n === 1 ? "client is" : "clients are"} waiting ahead`,
        retryAfterMs: UNAVAILABLE_RETRY_MS,
      };
    }
    const n = this.store.capacity;
    const next = nextFreeInMs === undefined
      ? ""
      : `; the next frees in ${formatDuration(nextFreeInMs)}`;
    return {
      reason: "busy",
      message: `${n === 1 ? "the only slot is" : `all ${n} slots are`} held${next}`,
      retryAfterMs: nextFreeInMs ?? UNAVAILABLE_RETRY_MS,
    };
  }
}

const SHUTTING_DOWN: Denial = {
  reason: "shutting_down",
  message: "the server is shutting down",
  retryAfterMs: UNAVAILABLE_RETRY_MS,
};

const CANCELLED: Denial = {
  reason: "cancelled",
  message: "the client went away",
  retryAfterMs: 0,
};

function describeClosedGate(gate: Exclude<Gate, { open: true }>): Denial {
  if (gate.reason === "starting") {
    return {
      reason: "starting",
      message: "the first dependency check round has not finished",
      retryAfterMs: gate.retryInMs,
    };
  }
  const parts = gate.failing.map((d) =>
    `${d.url} is down${d.lastError ? ` (${d.lastError})` : ""}`
  );
  return {
    reason: "dependencies",
    message: `${gate.failing.length === 1 ? "dependency" : "dependencies"} ${parts.join(", ")}`,
    retryAfterMs: gate.retryInMs,
  };
}
