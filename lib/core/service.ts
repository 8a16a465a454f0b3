/**
 * The lock service: decides whether a request gets a slot, from the gates,
 * the lock store and the waiting queue, and answers with data (a lease, or a
 * denial with its reason and retry time). The HTTP layer renders the answers.
 *
 * Waiting clients are served first come, first served: while anyone waits, a
 * request that does not wait is refused rather than jump ahead (an id that
 * already holds a lock gets it back, renewed to the duration it asks for), and
 * a freed slot goes to the queue.
 *
 * Every store call may fail. A failure is an answer (`store` denial, which
 * the HTTP layer turns into `503`), never an unhandled rejection; the queue
 * keeps its waiters and asks the store again; a grant whose client is gone is
 * given back, and retried until the store takes it or the lease expires.
 *
 * @module
 */
import { type Clock, realClock, type TimerId } from "../clock.ts";
import { tokenPrefix } from "../token.ts";
import type { Denial } from "./denial.ts";
import { EventBus } from "./events.ts";
import { Gates, type GateView } from "./gates.ts";
import { StoreHealth } from "./store_health.ts";
import {
  busy,
  CANCELLED,
  queued,
  queueFull,
  SHUTTING_DOWN,
  storeDown,
  SUPERSEDED,
} from "./refusals.ts";
import { STORE_RETRY_MS, WaitQueue, type WaitResult } from "./queue.ts";
import {
  type AcquireRequest,
  type AcquireResult,
  type Awaitable,
  type Lease,
  type LockStore,
  nextFreeInMs,
  type SlotsFreed,
  StoreUnavailableError,
} from "./store.ts";

/** A granted request. */
export interface Grant {
  granted: true;
  lease: Lease;
  /** The id already held this lease: nothing new was granted. */
  existing: boolean;
  /** How long the lock is held from now. */
  durationMs: number;
  /** Set when the request asked for more than the longest allowed duration, which it got instead. */
  requestedMs: number | undefined;
}

/** The answer to {@linkcode LockService.acquire}. */
export type Outcome = Grant | { granted: false; denial: Denial };

/** The answer to {@linkcode LockService.renew}. */
export type Renewal =
  | { renewed: true; lease: Lease; durationMs: number; requestedMs: number | undefined }
  | { renewed: false };

/** An acquire request, with how long the client is willing to wait. */
export interface AcquireOptions extends AcquireRequest {
  /** Wait in the queue for up to this long; 0 or absent: answer at once. */
  waitMs?: number | undefined;
  /** Aborts when the client goes away; a waiting client then leaves the queue. */
  signal?: AbortSignal | undefined;
}

/** A request as the service hands it to the store and the queue: what was asked, capped. */
interface CappedRequest extends AcquireRequest {
  /** Set when the request asked for more than the longest allowed duration. */
  requestedMs: number | undefined;
}

/** The service's state, as data, for `GET /status`. */
export interface StatusData {
  capacity: number;
  /** Held leases, soonest expiry first; `undefined` when the store cannot say. */
  leases: Lease[] | undefined;
  /** Ids of waiting clients, in order (`undefined` for anonymous ones). */
  waiting: (string | undefined)[];
  /** Ids whose clients are away but keep their place for a short grace, in order. */
  returning: string[];
  gates: GateView[];
  store: { up: boolean; error: string | undefined };
  /** Why a request would be refused now; `undefined` when it would be granted. */
  denial: Denial | undefined;
}

/** Options of {@linkcode LockService}. */
export interface LockServiceOptions {
  store: LockStore;
  /** The longest lock; longer requests are granted this long and told so. */
  maxDurationMs: number;
  /** @default {no gates} */
  gates?: Gates;
  /** At most this many clients hold a place in the queue; beyond, `queue_full`. @default {Infinity} */
  maxWaiters?: number;
  /** How long a waiter's place is kept after its request ended. @default {DEFAULT_TICKET_GRACE_MS} */
  ticketGraceMs?: number;
  /** @default {realClock} */
  clock?: Clock;
  /** Where the service reports what happens. @default {a bus nobody listens to} */
  events?: EventBus;
}

/** Re-exported for the HTTP layer; the policy lives in `refusals.ts`. */
export { UNAVAILABLE_RETRY_MS } from "./refusals.ts";

/** The longest pause between tries to give back a slot while the store fails. */
const MAX_HAND_BACK_RETRY_MS = 10_000;

/** Grants and refuses locks; see the module documentation. */
export class LockService {
  readonly store: LockStore;
  readonly events: EventBus;
  readonly #gates: Gates;
  readonly #queue: WaitQueue<CappedRequest>;
  readonly #clock: Clock;
  readonly #maxDurationMs: number;
  readonly #unsubscribe: (() => void)[] = [];
  readonly #handBacks = new Set<TimerId>();
  readonly #health: StoreHealth;
  #closed = false;

  constructor(options: LockServiceOptions) {
    this.store = options.store;
    this.events = options.events ?? new EventBus();
    this.#gates = options.gates ?? new Gates([]);
    this.#clock = options.clock ?? realClock;
    this.#maxDurationMs = options.maxDurationMs;
    this.#health = new StoreHealth(this.store, this.events);
    this.#queue = new WaitQueue<CappedRequest>({
      take: (request, ticket) =>
        this.#health.call(
          "acquire",
          () => this.store.acquire(ticket ? { ...request, ticket } : request),
        ),
      line: this.store.line,
      // Reported as the slot is handed over, before anything else runs: a pacing gate
      // closes before the queue hands out the next slot.
      onGrant: (request, lease, waitedMs) => this.#reportGrant(lease, request, waitedMs),
      isOpen: () => this.#gates.state().open,
      handBack: (lease, kept) => kept ? this.#handBackKept(lease) : this.handBack(lease),
      clock: this.#clock,
      events: this.events,
      ...(options.maxWaiters === undefined ? {} : { maxWaiters: options.maxWaiters }),
      ...(options.ticketGraceMs === undefined ? {} : { graceMs: options.ticketGraceMs }),
    });
    if (this.store.onHandoff) {
      this.#unsubscribe.push(
        this.store.onHandoff((ticket, lease) => this.#queue.handed(ticket, lease)),
      );
    }
    this.#unsubscribe.push(
      this.store.onFree((freed) => this.#onFree(freed)),
      this.#gates.onChange(() => {
        this.store.line?.eligible(this.#gates.state().open);
        this.#queue.pump();
      }),
    );
    this.store.line?.eligible(this.#gates.state().open);
  }

  /** How many clients wait now. */
  get waiting(): number {
    return this.#queue.waiting;
  }

  /**
   * Takes a slot if every gate is open, one is free and nobody waits ahead;
   * otherwise waits up to `waitMs` for one in arrival order.
   */
  acquire(options: AcquireOptions): Awaitable<Outcome> {
    if (this.#closed) return this.#deny(options.id, SHUTTING_DOWN);
    const durationMs = Math.min(options.durationMs, this.#maxDurationMs);
    const requestedMs = options.durationMs > durationMs ? options.durationMs : undefined;
    const request: CappedRequest = { durationMs, id: options.id, requestedMs };
    const id = options.id;
    if (this.#gates.state().open && this.#queue.waiting === 0) {
      // The hot path: with the memory store, no promise and no closure.
      let result: Awaitable<AcquireResult>;
      try {
        result = this.store.acquire(request);
      } catch (error) {
        return this.#storeDenial(this.#health.failure("acquire", error), id);
      }
      if (result instanceof Promise) {
        return result.then((r) => {
          this.#health.answered("acquire");
          return this.#afterTry(r, options, request);
        }, (error) => this.#storeDenial(this.#health.failure("acquire", error), id));
      }
      if (!this.#health.up) this.#health.answered("acquire");
      return this.#afterTry(result, options, request);
    }
    // Someone waits ahead, or a gate is closed: only an id that already holds a lock gets in.
    if (id === undefined) return this.#waitOrDeny(options, request);
    const failed = (error: unknown) => this.#storeDenial(error, id);
    // Renewed by its token, in one step: a lease that ran out or was released since the
    // lookup is not renewed, and the request waits like any other.
    const renewed = (lease: Lease | undefined): Awaitable<Outcome> =>
      lease ? this.#regranted(lease, request) : this.#waitOrDeny(options, request);
    const then = (held: Lease | undefined): Awaitable<Outcome> => {
      if (!held) return this.#waitOrDeny(options, request);
      try {
        const lease = this.#health.call("renew", () => this.store.renew(held.token, durationMs));
        return lease instanceof Promise ? lease.then(renewed, failed) : renewed(lease);
      } catch (error) {
        return failed(error);
      }
    };
    try {
      const held = this.#health.call("look up", () => this.store.byId(id));
      return held instanceof Promise ? held.then(then, failed) : then(held);
    } catch (error) {
      return failed(error);
    }
  }

  /** Frees a lock now; `undefined` when the token is unknown or expired. */
  release(token: string): Awaitable<Lease | undefined> {
    const released = (lease: Lease | undefined) => {
      if (lease && this.events.wants("released")) {
        this.events.emit({
          type: "released",
          id: lease.id,
          token: tokenPrefix(lease.token),
          // Wall-clock times: a clock set back under the lock must not make it negative.
          heldMs: Math.max(0, this.#clock.wallNow() - lease.acquiredAt),
        });
      }
      return lease;
    };
    const lease = this.#health.call("release", () => this.store.release(token));
    return lease instanceof Promise ? lease.then(released) : released(lease);
  }

  /** Moves a lock's expiry to `durationMs` from now, at most the longest allowed duration. */
  renew(token: string, durationMs: number): Awaitable<Renewal> {
    const capped = Math.min(durationMs, this.#maxDurationMs);
    const requestedMs = durationMs > capped ? durationMs : undefined;
    const renewed = (lease: Lease | undefined): Renewal => {
      if (!lease) return { renewed: false };
      this.#reportRenewal(lease, capped, requestedMs);
      return { renewed: true, lease, durationMs: capped, requestedMs };
    };
    const lease = this.#health.call("renew", () => this.store.renew(token, capped));
    return lease instanceof Promise ? lease.then(renewed) : renewed(lease);
  }

  /**
   * Gives back a slot whose client never learned of it, unless a client
   * claimed it since (its id asked again and was answered with it, or its
   * token renewed it: {@linkcode Lease.claims}). Never throws: while the
   * store fails, it tries again with growing pauses until the lease has
   * expired anyway.
   */
  handBack(lease: Lease): void {
    this.events.emit({ type: "handed_back", id: lease.id, token: tokenPrefix(lease.token) });
    // On the monotonic clock: a wall-clock jump must not end the retries early.
    const expiresAt = this.#clock.now() + lease.remainingMs;
    const attempt = (pauseMs: number) => {
      const retry = () => {
        // A release that fails after close() must not start a timer nobody will stop.
        if (this.#closed || this.#clock.now() >= expiresAt) return;
        const timer = this.#clock.setTimeout(() => {
          this.#handBacks.delete(timer);
          attempt(Math.min(pauseMs * 2, MAX_HAND_BACK_RETRY_MS));
        }, pauseMs);
        this.#handBacks.add(timer);
      };
      try {
        // Only if nobody claimed it since: a client that asked again with its id, or renewed it,
        // was answered with it and holds it now.
        const released = this.#health.call(
          "release",
          () => this.store.release(lease.token, lease.claims),
        );
        if (released instanceof Promise) released.catch(retry);
      } catch {
        retry();
      }
    };
    attempt(STORE_RETRY_MS);
  }

  /**
   * Gives back a slot kept for an id whose client did not come back within
   * its grace, unless the id claimed it through another process meanwhile:
   * then it is that client's lock, and nothing is handed back (nor said to be).
   * The release checks the claims again, in the store's own step.
   */
  #handBackKept(lease: Lease): void {
    const then = (now: Lease | undefined) => {
      if (now && now.claims === lease.claims) this.handBack(lease);
    };
    try {
      const now = this.#health.call("look up", () => this.store.byToken(lease.token));
      if (now instanceof Promise) now.then(then, () => this.handBack(lease));
      else then(now);
    } catch {
      this.handBack(lease);
    }
  }

  /** The state for `GET /status`. Asks the store for its leases; never rejects. */
  async status(): Promise<StatusData> {
    let leases: Lease[] | undefined;
    try {
      leases = await this.#health.call("list leases", () => this.store.leases());
    } catch {
      leases = undefined;
    }
    let waiting = this.#queue.waitingIds();
    if (this.store.line) {
      // Every replica's waiting clients; this one's alone while the store cannot say.
      waiting = await this.store.line.waiting().catch(() => waiting);
    }
    return {
      capacity: this.store.capacity,
      leases,
      waiting,
      returning: this.#queue.returningIds(),
      gates: this.#gates.list(),
      store: { up: this.#health.up, error: this.#health.error },
      denial: this.#currentDenial(leases, this.store.line ? waiting.length : undefined),
    };
  }

  /** Answers every waiting client `shutting_down`, refuses new requests and stops retries. */
  close(): void {
    this.#closed = true;
    this.#queue.close();
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    this.#health.close();
    for (const timer of this.#handBacks) this.#clock.clearTimeout(timer);
    this.#handBacks.clear();
  }

  #onFree(freed: SlotsFreed): void {
    if (this.events.wants("expired")) {
      for (const lease of freed.expired) {
        this.events.emit({
          type: "expired",
          id: lease.id,
          token: tokenPrefix(lease.token),
          heldMs: Math.max(0, lease.expiresAt - lease.acquiredAt),
        });
      }
    }
    this.#queue.pump();
  }

  #afterTry(
    result: AcquireResult,
    options: AcquireOptions,
    request: CappedRequest,
  ): Awaitable<Outcome> {
    if (result.granted) {
      if (result.existing) return this.#regranted(result.lease, request);
      this.#reportGrant(result.lease, request, 0);
      return this.#granted(result.lease, false, request);
    }
    return this.#waitOrDeny(options, request, result.nextFreeInMs, result.waiting);
  }

  /**
   * The answer to a granted request; reported already (`granted`) when it is
   * new. Either way the lease runs for the duration asked now: an id's lease
   * asked for again was renewed to it.
   */
  #granted(lease: Lease, existing: boolean, request: CappedRequest): Grant {
    if (request.id !== undefined) this.#queue.forget(request.id);
    const { durationMs, requestedMs } = request;
    return { granted: true, lease, existing, durationMs, requestedMs };
  }

  /** The answer to an id that asked again for the lease it holds: renewed, and reported so. */
  #regranted(lease: Lease, request: CappedRequest): Grant {
    this.#reportRenewal(lease, request.durationMs, request.requestedMs);
    return this.#granted(lease, true, request);
  }

  #reportRenewal(lease: Lease, durationMs: number, requestedMs: number | undefined): void {
    if (!this.events.wants("renewed")) return;
    this.events.emit({
      type: "renewed",
      id: lease.id,
      token: tokenPrefix(lease.token),
      durationMs,
      requestedMs,
    });
  }

  #reportGrant(lease: Lease, request: CappedRequest, waitedMs: number): void {
    if (!this.events.wants("granted")) return;
    this.events.emit({
      type: "granted",
      id: lease.id,
      token: tokenPrefix(lease.token),
      durationMs: request.durationMs,
      requestedMs: request.requestedMs,
      waitedMs,
    });
  }

  #waitOrDeny(
    options: AcquireOptions,
    request: CappedRequest,
    nextFree?: number,
    waitingElsewhere?: number,
  ): Awaitable<Outcome> {
    if (!options.waitMs || options.waitMs <= 0) {
      if (waitingElsewhere) {
        return this.#deny(options.id, queued(waitingElsewhere, nextFree));
      }
      return this.#refuseNow(options.id, nextFree);
    }
    return this.#queue.wait(request, options.waitMs, options.signal).then((result) =>
      this.#afterWait(result, options, request)
    );
  }

  #afterWait(
    result: WaitResult,
    options: AcquireOptions,
    request: CappedRequest,
  ): Awaitable<Outcome> {
    if (result.granted) {
      if (!result.existing && options.signal?.aborted) {
        this.handBack(result.lease); // Its client is gone: it would never learn its token.
        return this.#deny(options.id, CANCELLED);
      }
      if (result.existing) return this.#regranted(result.lease, request);
      return this.#granted(result.lease, false, request);
    }
    switch (result.why) {
      case "cancelled":
        return this.#deny(options.id, CANCELLED);
      case "superseded":
        return this.#deny(options.id, SUPERSEDED);
      case "shutdown":
        return this.#deny(options.id, SHUTTING_DOWN);
      case "full":
        return this.#fullQueue(options.id);
      case "timeout":
        if (result.storeError) return this.#storeDenial(result.storeError, options.id);
        return this.#refuseNow(options.id, undefined);
    }
  }

  /** The denial for a request that does not wait (or whose wait ran out), with the current reason. */
  #refuseNow(id: string | undefined, nextFree: number | undefined): Awaitable<Outcome> {
    const gate = this.#gates.state();
    if (!gate.open) return this.#deny(id, gate.denial);
    if (nextFree !== undefined && this.#queue.waiting === 0) {
      return this.#deny(id, this.#busy(nextFree));
    }
    // The slots' expiries say when to try again.
    return this.#withLeases((leases) => {
      const next = leases && nextFreeInMs(leases, this.store.capacity);
      const waiting = this.#queue.waiting;
      if (waiting > 0) return this.#deny(id, queued(waiting, next));
      return this.#deny(id, this.#busy(next));
    });
  }

  #fullQueue(id: string | undefined): Awaitable<Outcome> {
    return this.#withLeases((leases) =>
      this.#deny(
        id,
        queueFull(this.#queue.size, leases && nextFreeInMs(leases, this.store.capacity)),
      )
    );
  }

  #busy(next: number | undefined): Denial {
    return busy(this.store.capacity, next);
  }

  /** Runs `then` with the store's leases, or `undefined` when the store cannot say. */
  #withLeases<T>(then: (leases: Lease[] | undefined) => Awaitable<T>): Awaitable<T> {
    try {
      const leases = this.#health.call("list leases", () => this.store.leases());
      return leases instanceof Promise ? leases.then(then, () => then(undefined)) : then(leases);
    } catch {
      return then(undefined);
    }
  }

  /**
   * Why a request would be refused now, or `undefined` if it would be
   * granted. `inLine`: the clients waiting in the shared line, in every
   * process, when the store has one: as there, they hold a request up only
   * while they are at least as many as the free slots.
   */
  #currentDenial(leases: Lease[] | undefined, inLine: number | undefined): Denial | undefined {
    const gate = this.#gates.state();
    if (!gate.open) return gate.denial;
    if (this.#closed) return SHUTTING_DOWN;
    if (!this.#health.up || leases === undefined) return storeDown(this.#health.error ?? "unknown");
    const next = nextFreeInMs(leases, this.store.capacity);
    const free = this.store.capacity - leases.length;
    const waiting = inLine === undefined
      ? this.#queue.waiting
      : Math.max(inLine, this.#queue.waiting);
    if (waiting > 0 && (inLine === undefined || free <= 0 || waiting >= free)) {
      return queued(waiting, next);
    }
    return next === undefined ? undefined : this.#busy(next);
  }

  #deny(id: string | undefined, denial: Denial): Outcome {
    if (this.events.wants("denied")) {
      this.events.emit({
        type: "denied",
        id,
        reason: denial.reason,
        retryAfterMs: denial.retryAfterMs,
      });
    }
    return { granted: false, denial };
  }

  /** A store failure as an answer: `503` with the reason, never a rejection. */
  #storeDenial(error: unknown, id: string | undefined): Outcome {
    if (!(error instanceof StoreUnavailableError)) throw error;
    return this.#deny(id, storeDown(error.message));
  }
}
