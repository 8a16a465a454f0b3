/**
 * The waiting queue: clients that asked to wait for a slot, served first come,
 * first served. It owns the whole life of a waiter: arrival, a newer request
 * with the same id taking its place, the wait running out, the client going
 * away, and a grant whose client is already gone (handed back).
 *
 * A place in line is a ticket with an arrival number, not the request itself.
 * A ticket with an id outlives its request for a short grace: a client that
 * asks again with the same id (its wait ran out, a proxy cut the connection)
 * gets its old place back, whatever its chunk length. While nobody is waiting
 * on a ticket it holds no slot: a freed slot goes to the first ticket whose
 * client is waiting now, so no slot sits idle for a client that is gone, and a
 * ticket whose client does not come back within the grace is dropped.
 *
 * With a line shared by several processes, a client with an id holds one
 * ticket there (`#ID`) whichever process its request reaches, so it keeps
 * its place when its next request goes elsewhere (a load balancer spreads
 * its connections); while away, the shared ticket keeps the place for the
 * same grace. Each process serves its own waiters in the shared line's
 * order.
 *
 * The queue is fed by signals (`pump()`): slots freed, a gate opened.
 *
 * @module
 */
import { type Clock, realClock, type TimerId } from "../clock.ts";
import type { EventBus, LeaveReason } from "./events.ts";
import type { AcquireRequest, AcquireResult, Awaitable, Lease, SharedLine } from "./store.ts";
import { StoreUnavailableError } from "./store.ts";

/** How a wait ended. */
export type WaitResult =
  | { granted: true; lease: Lease; existing: boolean; waitedMs: number }
  | {
    granted: false;
    why: "timeout" | "cancelled" | "superseded" | "shutdown" | "full";
    /** The last store failure while this client waited, if the store was failing. */
    storeError: StoreUnavailableError | undefined;
  };

/** Options of {@linkcode WaitQueue}. */
export interface WaitQueueOptions<R extends AcquireRequest = AcquireRequest> {
  /**
   * Takes a slot for a waiter, with its ticket in the shared line if there is
   * one; throws or rejects with a {@linkcode StoreUnavailableError}.
   */
  take(request: R, ticket: string | undefined): Awaitable<AcquireResult>;
  /** The line shared with other processes, where every ticket also stands. @default {none} */
  line?: SharedLine | undefined;
  /**
   * Told of each new slot the moment it is handed to its waiting client, before
   * the client's promise settles and before the next slot is handed out.
   */
  onGrant?(request: R, lease: Lease, waitedMs: number): void;
  /** Whether grants are allowed now (every gate is open). */
  isOpen(): boolean;
  /**
   * Gives back a slot granted to a client that is gone. With `kept`, the slot
   * was kept for an id whose client did not come back within its grace: it is
   * given back only if nobody claimed it in the meantime (its id asking again
   * through another process). Must not throw.
   */
  handBack(lease: Lease, kept?: boolean): void;
  /** At most this many tickets; beyond, `wait()` answers `full`. @default {Infinity} */
  maxWaiters?: number;
  /** How long a ticket keeps its place after its request ended. @default {DEFAULT_TICKET_GRACE_MS} */
  graceMs?: number;
  /** Pause before trying the store again after it failed. @default {STORE_RETRY_MS} */
  storeRetryMs?: number;
  /** @default {realClock} */
  clock?: Clock;
  events?: EventBus;
}

/**
 * How long a waiter's place is kept after its request ended. The client asks
 * again at once when its wait runs out, and within about 1.5 s (its jittered
 * poll interval) after a cut connection; 5 s covers both with room to spare.
 */
export const DEFAULT_TICKET_GRACE_MS = 5_000;

/** How soon to ask a store that failed again, to serve waiters once it is back. */
export const STORE_RETRY_MS = 1_000;

interface Waiter {
  resolve(result: WaitResult): void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
  timer: TimerId;
}

interface Ticket<R> {
  /** Arrival order. */
  readonly seq: number;
  readonly id: string | undefined;
  request: R;
  /** When the ticket was issued (monotonic), for how long its client waited. */
  readonly arrivedAt: number;
  /** The request waiting on this ticket now; `undefined` while its client is away. */
  waiter: Waiter | undefined;
  /** While away: drops the ticket when the grace runs out. */
  graceTimer: TimerId | undefined;
  awayBecause: LeaveReason | undefined;
  /** Its name in the shared line, if there is one. */
  readonly key: string | undefined;
  /** Its place in the shared line, once known: a client coming back gets it back. */
  place: number | undefined;
  /** Whether it stands in the shared line now (not while its client is away). */
  inLine: boolean;
  /**
   * A slot taken for it while its client was away (its wait ran out, or its
   * connection was cut, as the slot was being taken): the lease is the id's,
   * so its next ask, through any process, gets it. Handed back if the client
   * does not come back within the grace.
   */
  kept: Lease | undefined;
}

/** Clients waiting for a slot; see the module documentation. */
export class WaitQueue<R extends AcquireRequest = AcquireRequest> {
  readonly #options: Required<Omit<WaitQueueOptions<R>, "events" | "onGrant" | "line">>;
  readonly #line: SharedLine | undefined;
  readonly #onGrant: WaitQueueOptions<R>["onGrant"];
  readonly #events: EventBus | undefined;
  /** Tickets in arrival order (a `Map` keeps insertion order and deletes in O(1)). */
  readonly #tickets = new Map<number, Ticket<R>>();
  readonly #byId = new Map<string, Ticket<R>>();
  #present = 0;
  #seq = 0;
  #pumping = false;
  #pumpAgain = false;
  #retryTimer: TimerId | undefined;
  #storeError: StoreUnavailableError | undefined;
  #closed = false;

  constructor(options: WaitQueueOptions<R>) {
    this.#options = {
      take: options.take,
      isOpen: options.isOpen,
      handBack: options.handBack,
      maxWaiters: options.maxWaiters ?? Infinity,
      graceMs: options.graceMs ?? DEFAULT_TICKET_GRACE_MS,
      storeRetryMs: options.storeRetryMs ?? STORE_RETRY_MS,
      clock: options.clock ?? realClock,
    };
    this.#events = options.events;
    this.#onGrant = options.onGrant;
    this.#line = options.line;
  }

  /** How many clients wait now. */
  get waiting(): number {
    return this.#present;
  }

  /** How many places are held: waiting clients and those away within their grace. */
  get size(): number {
    return this.#tickets.size;
  }

  /** The ids of the waiting clients, in order (`undefined` for anonymous ones). */
  waitingIds(): (string | undefined)[] {
    const ids: (string | undefined)[] = [];
    for (const t of this.#tickets.values()) if (t.waiter) ids.push(t.id);
    return ids;
  }

  /** The ids whose clients are away but keep their place for the grace, in order. */
  returningIds(): string[] {
    const ids: string[] = [];
    for (const t of this.#tickets.values()) if (!t.waiter && t.id !== undefined) ids.push(t.id);
    return ids;
  }

  /**
   * Waits up to `waitMs` for a slot, in arrival order. An id that already holds
   * a place takes it back; the request that waited on it until now is answered
   * `superseded`.
   */
  wait(request: R, waitMs: number, signal?: AbortSignal): Promise<WaitResult> {
    if (this.#closed) return Promise.resolve(this.#refusal("shutdown"));
    if (signal?.aborted) return Promise.resolve(this.#refusal("cancelled"));
    let ticket = request.id === undefined ? undefined : this.#byId.get(request.id);
    if (!ticket && this.#tickets.size >= this.#options.maxWaiters) {
      return Promise.resolve(this.#refusal("full"));
    }
    return new Promise<WaitResult>((resolve) => {
      const clock = this.#options.clock;
      if (ticket) {
        if (ticket.waiter) this.#detach(ticket, ticket.waiter, this.#refusal("superseded"));
        if (ticket.graceTimer !== undefined) clock.clearTimeout(ticket.graceTimer);
        ticket.graceTimer = undefined;
        ticket.awayBecause = undefined;
        const offered = ticket.request.durationMs;
        ticket.request = request;
        // A slot kept for it is the id's lease: the take finds it as such, if it is still held.
        ticket.kept = undefined;
        if (!ticket.inLine) {
          // The shared line knows an id's place now: it may have been served elsewhere since.
          if (ticket.id !== undefined) ticket.place = undefined;
          this.#join(ticket);
        } else if (request.durationMs !== offered) {
          // Its place stays; what a release may hand it at once is what it asks now.
          this.#join(ticket);
        }
      } else {
        const seq = ++this.#seq;
        ticket = {
          seq,
          id: request.id,
          request,
          arrivedAt: clock.now(),
          waiter: undefined,
          graceTimer: undefined,
          awayBecause: undefined,
          key: this.#line &&
            (request.id === undefined ? `${this.#line.replica}/${seq}` : `#${request.id}`),
          place: undefined,
          inLine: false,
          kept: undefined,
        };
        this.#tickets.set(ticket.seq, ticket);
        if (request.id !== undefined) this.#byId.set(request.id, ticket);
        this.#join(ticket);
      }
      const t = ticket;
      const isLast = t.seq === this.#seq;
      const waiter: Waiter = {
        resolve,
        signal,
        onAbort: () => this.#leave(t, waiter, "disconnected", this.#refusal("cancelled")),
        timer: clock.setTimeout(
          () => this.#leave(t, waiter, "timeout", this.#refusal("timeout")),
          waitMs,
        ),
      };
      t.waiter = waiter;
      this.#present++;
      signal?.addEventListener("abort", waiter.onAbort, { once: true });
      if (this.#events?.wants("queued")) {
        this.#events.emit({
          type: "queued",
          id: request.id,
          // The last ticket's place is the number of waiting clients: no need to count.
          position: isLast ? this.#present : this.#positionOf(t),
          waiting: this.#present,
        });
      }
      // Behind other waiting clients, nothing can be granted before they are: the signal that
      // serves them (a slot freed, a gate opened, a store retry) serves this one in turn.
      if (this.#present === 1 || !isLast) this.pump();
    });
  }

  /**
   * A slot the store handed to one of this queue's tickets in the shared line
   * by itself (`key`: the ticket's name there), its lease written already: it
   * goes to the waiting client, or is kept for an id whose client is away,
   * or is given back when the ticket is gone. Returns `false` when it was
   * not passed on: the lease is shorter than what the waiting client asks
   * now (the offer in line was older), and a take with the ticket claims it
   * for that duration; or a gate closed since this process last told the
   * line, and the slot is given back (the ticket takes its place in line
   * again at its next take, once the gates open).
   */
  handed(key: string, lease: Lease): boolean {
    const ticket = this.#byKey(key);
    if (!ticket) {
      this.#options.handBack(lease);
      return true;
    }
    if (!this.#options.isOpen()) {
      this.#options.handBack(lease);
      return false;
    }
    const waiter = ticket.waiter;
    const grantedMs = lease.expiresAt - lease.acquiredAt;
    if (waiter && !waiter.signal?.aborted && grantedMs < Math.round(ticket.request.durationMs)) {
      this.pump();
      return false;
    }
    this.#handOver(ticket, { granted: true, lease, existing: false });
    return true;
  }

  /** Drops the place `id` holds, if its client is away: it got a lock another way. */
  forget(id: string): void {
    const ticket = this.#byId.get(id);
    if (ticket && !ticket.waiter) this.#remove(ticket);
  }

  /** Hands free slots to waiting clients, first ticket first, while grants are allowed. */
  pump(): void {
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    const done = () => {
      this.#pumping = false;
      if (this.#pumpAgain) {
        this.#pumpAgain = false;
        this.pump();
      }
    };
    const failed = (error: unknown) => {
      this.#storeError = error instanceof StoreUnavailableError
        ? error
        : new StoreUnavailableError("acquire", String(error), { cause: error });
      this.#retryLater();
      done();
    };
    const step = (): void => {
      for (;;) {
        this.#pumpAgain = false;
        const head = this.#firstWaiting();
        if (!head || this.#closed || !this.#options.isOpen()) return done();
        let result: Awaitable<AcquireResult>;
        try {
          result = this.#options.take(head.request, head.key);
        } catch (error) {
          return failed(error);
        }
        if (result instanceof Promise) {
          result.then((r) => this.#handOver(head, r) ? step() : done(), failed);
          return;
        }
        if (!this.#handOver(head, result)) return done();
      }
    };
    step();
  }

  /** Answers every waiting client `shutdown` and drops every place. */
  close(): void {
    this.#closed = true;
    const clock = this.#options.clock;
    if (this.#retryTimer !== undefined) clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    for (const ticket of [...this.#tickets.values()]) {
      if (ticket.waiter) this.#detach(ticket, ticket.waiter, this.#refusal("shutdown"));
      const kept = ticket.kept;
      this.#remove(ticket, "shutdown");
      if (kept) this.#options.handBack(kept, true);
    }
  }

  /** Gives a slot taken for `ticket` to its waiting client; false when no slot was free. */
  #handOver(ticket: Ticket<R>, result: AcquireResult): boolean {
    this.#storeError = undefined;
    if (!result.granted) return false;
    // A new grant took the ticket out of the shared line with it; an existing lease did not.
    if (!result.existing) ticket.inLine = false;
    const waiter = ticket.waiter;
    if (!waiter || this.#tickets.get(ticket.seq) !== ticket || waiter.signal?.aborted) {
      if (waiter?.signal?.aborted) {
        this.#leave(ticket, waiter, "disconnected", this.#refusal("cancelled"));
      }
      if (result.existing) return true;
      if (this.#tickets.get(ticket.seq) === ticket && ticket.graceTimer !== undefined) {
        // The client of an id went away as the slot was being taken: its wait ran out at that
        // moment (a client that asks in chunks asks again at once), or its connection was cut.
        // The slot is its turn: kept for it, as its place is, through whichever process it asks
        // next; handing it back would send it behind everyone who came after it.
        ticket.kept = result.lease;
        this.#onGrant?.(ticket.request, result.lease, this.#options.clock.now() - ticket.arrivedAt);
        return true;
      }
      // An anonymous client that went away while the slot was being taken: the slot returns to
      // the pool.
      this.#options.handBack(result.lease);
      return true;
    }
    const waitedMs = this.#options.clock.now() - ticket.arrivedAt;
    if (!result.existing) this.#onGrant?.(ticket.request, result.lease, waitedMs);
    this.#detach(ticket, waiter, {
      granted: true,
      lease: result.lease,
      existing: result.existing,
      waitedMs,
    });
    this.#remove(ticket);
    return true;
  }

  /** A waiter's request ended without a lock: its ticket stays for the grace, if it has an id. */
  #leave(ticket: Ticket<R>, waiter: Waiter, why: LeaveReason, result: WaitResult): void {
    if (ticket.waiter !== waiter) return;
    this.#detach(ticket, waiter, result);
    if (ticket.id === undefined || this.#closed) {
      this.#remove(ticket, why);
      return;
    }
    ticket.awayBecause = why;
    // While away, it holds up nobody in the other processes either; it gets its place back,
    // through whichever process its client asks next.
    this.#leaveLine(ticket, this.#options.graceMs);
    ticket.graceTimer = this.#options.clock.setTimeout(() => {
      ticket.graceTimer = undefined;
      const kept = ticket.kept;
      this.#remove(ticket, why);
      if (kept) this.#options.handBack(kept, true);
    }, this.#options.graceMs);
  }

  /** Answers the request waiting on `ticket` and takes it off the ticket. */
  #detach(ticket: Ticket<R>, waiter: Waiter, result: WaitResult): void {
    ticket.waiter = undefined;
    this.#present--;
    this.#options.clock.clearTimeout(waiter.timer);
    waiter.signal?.removeEventListener("abort", waiter.onAbort);
    waiter.resolve(result);
  }

  /** Drops a ticket; `why` set: it left without a lock, which is reported. */
  #remove(ticket: Ticket<R>, why?: LeaveReason): void {
    if (this.#tickets.get(ticket.seq) !== ticket) return;
    this.#tickets.delete(ticket.seq);
    if (ticket.id !== undefined && this.#byId.get(ticket.id) === ticket) {
      this.#byId.delete(ticket.id);
    }
    if (ticket.graceTimer !== undefined) this.#options.clock.clearTimeout(ticket.graceTimer);
    ticket.graceTimer = undefined;
    // A slot kept for it was claimed (its client got its lock), or is handed back by the caller.
    ticket.kept = undefined;
    this.#leaveLine(ticket);
    if (why && this.#events?.wants("left_queue")) {
      this.#events.emit({
        type: "left_queue",
        id: ticket.id,
        why,
        waitedMs: this.#options.clock.now() - ticket.arrivedAt,
      });
    }
  }

  /** The ticket named `key` in the shared line, if it is still here. */
  #byKey(key: string): Ticket<R> | undefined {
    const ticket = key.startsWith("#")
      ? this.#byId.get(key.slice(1))
      : this.#tickets.get(Number(key.slice(key.lastIndexOf("/") + 1)));
    return ticket?.key === key ? ticket : undefined;
  }

  /** Puts a ticket in the shared line (at its old place, if it had one), with its offer. */
  #join(ticket: Ticket<R>): void {
    if (!this.#line || ticket.key === undefined) return;
    ticket.inLine = true;
    this.#line.join(ticket.key, ticket.id, ticket.place, ticket.request.durationMs).then(
      (place) => ticket.place = place,
      // The store is down: the next take puts the ticket in line, at the end if it was not yet.
      () => {},
    );
  }

  #leaveLine(ticket: Ticket<R>, keepMs = 0): void {
    if (!this.#line || ticket.key === undefined || !ticket.inLine) return;
    ticket.inLine = false;
    this.#line.leave(ticket.key, keepMs);
  }

  /**
   * The waiting ticket to serve next: the first to arrive here, or with a
   * shared line, the first in that line (an id may have taken its place
   * through another process before it came here); one whose place is not
   * known yet comes after those whose place is.
   */
  #firstWaiting(): Ticket<R> | undefined {
    let first: Ticket<R> | undefined;
    for (const ticket of this.#tickets.values()) {
      if (!ticket.waiter) continue;
      if (!this.#line) return ticket;
      if (!first || (ticket.place ?? Infinity) < (first.place ?? Infinity)) first = ticket;
    }
    return first;
  }

  /** 1-based place among the waiting clients. */
  #positionOf(ticket: Ticket<R>): number {
    let position = 0;
    for (const t of this.#tickets.values()) {
      if (t.waiter) position++;
      if (t === ticket) break;
    }
    return position;
  }

  #refusal(why: Extract<WaitResult, { granted: false }>["why"]): WaitResult {
    return { granted: false, why, storeError: this.#storeError };
  }

  /** After a store failure: ask again later, so waiters are served once it is back. */
  #retryLater(): void {
    if (this.#retryTimer !== undefined || this.#closed) return;
    this.#retryTimer = this.#options.clock.setTimeout(() => {
      this.#retryTimer = undefined;
      this.pump();
    }, this.#options.storeRetryMs);
  }
}
