/**
 * The Redis lock store: the slots and the waiting line live in Redis, shared
 * by every startup-lock replica that names the same semaphore (`--name`).
 *
 * - Every change is one Lua script (`scripts.ts`), atomic on the server,
 *   timed by the server's clock. An acquire is one round trip.
 * - A release, an expiry or a waiter leaving is published on the semaphore's
 *   channel; every replica hears it on a second connection and serves its
 *   waiters at once.
 * - Waiting clients hold tickets in a line shared by all replicas, in arrival
 *   order. A client with an id has one ticket whichever replica it asks
 *   through (`#ID`): it keeps the place it first took, also while away
 *   between two requests for a short grace, and the replica that holds its
 *   request now takes the slot for it. A replica serves its own waiters in
 *   the line's order, so its first ticket in line is its place. A replica beats every
 *   {@linkcode BEAT_INTERVAL_MS}; the tickets of a replica that stopped beating
 *   for {@linkcode TICKET_TTL_MS} are dropped, so a dead replica holds the line
 *   up for no longer than that. A silence of every replica at once (Redis
 *   stopped, frozen or out of reach) kills none of them.
 * - Redis down or slow: every operation fails within {@linkcode REDIS_TIMEOUT_MS}
 *   with a {@linkcode StoreUnavailableError}; the client reconnects by itself
 *   with growing pauses. A frozen Redis runs what it was sent once it thaws:
 *   the token of an acquire without an id that failed is given back then, so
 *   no slot stays held by a token nobody knows.
 *
 * @module
 */
import { createClient } from "../_redis_client.ts";
import { describeError } from "../../errors.ts";
import { newToken } from "../../token.ts";
import type {
  AcquireRequest,
  AcquireResult,
  Lease,
  LockStore,
  SharedLine,
  SlotsFreed,
} from "../../core/store.ts";
import { ScriptRunner } from "./runner.ts";
import type { RedisLockStoreOptions, RedisTarget, SharedStore } from "../settings.ts";

/** An operation that takes longer than this fails: a stalled Redis is a down Redis. */
export const REDIS_TIMEOUT_MS = 1_000;
/** How often a replica says it is alive. */
export const BEAT_INTERVAL_MS = 1_000;
/** A replica silent this long is dead: its tickets leave the line. */
export const TICKET_TTL_MS = 3_000;
/** The longest pause between two tries to reach Redis again. */
export const MAX_RECONNECT_MS = 2_000;
/** Without waiters here, expiries are swept no more often than this. */
const IDLE_SWEEP_GAP_MS = 20;
/** When a waiter is held up only by another replica's tickets, ask again this soon. */
const LINE_RECHECK_MS = 500;

type RawLease = [string, string | null, number, number];

/** See the module documentation. */
export class RedisLockStore implements LockStore, SharedStore {
  readonly capacity: number;
  readonly line: SharedLine;
  readonly #target: RedisTarget;
  readonly #replica: string;
  readonly #timeoutMs: number;
  readonly #scripts: ScriptRunner;
  readonly #client: ReturnType<typeof createClient>;
  readonly #subscriber: ReturnType<typeof createClient>;
  readonly #listeners = new Set<(freed: SlotsFreed) => void>();
  readonly #options: RedisLockStoreOptions;
  /**
   * Tickets to take out of line, each with the number of the call that asked
   * for it and how long an id's ticket keeps its place.
   */
  readonly #leaving = new Map<string, { call: number; keepMs: number }>();
  #leaveCalls = 0;
  /** Tokens of acquires that failed but that Redis may have run, with when their lease would end. */
  readonly #abandoned = new Map<string, number>();
  /** This replica's tickets in line: while there are any, expiries are watched to serve them. */
  readonly #mine = new Set<string>();
  #leaveTimer: ReturnType<typeof setTimeout> | undefined;
  #beatTimer: ReturnType<typeof setInterval> | undefined;
  #expiryTimer: ReturnType<typeof setTimeout> | undefined;
  #expiryAt = Infinity;
  #sweptAt = -Infinity;
  #recheckTimer: ReturnType<typeof setTimeout> | undefined;
  #lastError: string | undefined;
  #closed = false;

  constructor(capacity: number, target: RedisTarget, options: RedisLockStoreOptions = {}) {
    this.capacity = capacity;
    this.#target = target;
    this.#options = options;
    // No "/" (a ticket is REPLICA/N) and no leading "#" (an id's ticket is #ID).
    this.#replica = (options.replica ?? `${Deno.pid}-${newToken().slice(0, 8)}`)
      .replaceAll("/", "_").replace(/^#/, "_");
    this.#timeoutMs = options.timeoutMs ?? REDIS_TIMEOUT_MS;
    this.#client = createClient({
      url: target.url,
      ...(target.password === undefined ? {} : { password: target.password }),
      ...(target.username === undefined ? {} : { username: target.username }),
      // Fail at once while disconnected, instead of queueing requests for a Redis that is gone.
      disableOfflineQueue: true,
      socket: {
        connectTimeout: this.#timeoutMs,
        reconnectStrategy: (retries: number) =>
          Math.min(50 * 2 ** retries, MAX_RECONNECT_MS) + Math.floor(Math.random() * 50),
        ...(target.tls ? { tls: true } : {}),
      },
    });
    this.#scripts = new ScriptRunner(this.#client, {
      name: options.name ?? "default",
      replica: this.#replica,
      url: target.url,
      timeoutMs: this.#timeoutMs,
      lastError: () => this.#lastError,
    });
    this.#subscriber = this.#client.duplicate();
    for (const client of [this.#client, this.#subscriber]) {
      // Without a listener, node-redis would throw connection errors as uncaught.
      client.on("error", (error: unknown) => this.#down(describeError(error)));
    }
    this.#client.on("ready", () => this.#ready());
    this.#subscriber.on("ready", () => this.#notify({ expired: [] }));
    this.line = {
      replica: this.#replica,
      join: (ticket, id, place) => this.#join(ticket, id, place),
      leave: (ticket, keepMs) => this.#leave(ticket, keepMs ?? 0),
      waiting: () => this.#waiting(),
    };
  }

  /**
   * Connects both connections. Resolves once Redis answered and the
   * semaphore's capacity is checked, or after `waitMs` if Redis is not there
   * yet: the store then keeps trying in the background.
   */
  async connect(waitMs: number): Promise<void> {
    const subscribed = this.#subscriber.connect().then(() =>
      this.#subscriber.subscribe(this.#scripts.channel, (message: string) => {
        if (message !== this.#replica) this.#notify({ expired: [] });
      })
    );
    const ready = this.#client.connect().then(() => this.#checkCapacity());
    // Connection failures are retried by the client; its errors go to the "error" listener.
    subscribed.catch(() => {});
    ready.catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled([ready, subscribed]),
      new Promise((resolve) => timer = setTimeout(resolve, waitMs)),
    ]);
    clearTimeout(timer);
    this.#beatTimer = setInterval(() => this.#beat(), BEAT_INTERVAL_MS);
  }

  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    this.#sendLeaves();
    const token = newToken();
    const durationMs = Math.max(1, Math.round(request.durationMs));
    const sent = this.#client.isReady && !this.#closed;
    let reply: [number, number, number, RawLease | number, number, RawLease[]];
    try {
      reply = await this.#scripts.run("acquire", "acquire", [
        String(this.capacity),
        String(durationMs),
        request.id ?? "",
        request.ticket ?? "",
        token,
      ]) as typeof reply;
    } catch (error) {
      // Redis may run it late (it was frozen, or the answer was lost): a lease with an id is
      // found again when its client asks again, but nobody would ever learn this token.
      if (sent && request.id === undefined) this.#abandon(token, durationMs);
      throw error;
    }
    const [granted, now, soonest, lease, extra, expired] = reply;
    if (granted === 1 && request.ticket !== undefined && extra !== 1) {
      this.#mine.delete(request.ticket); // The grant took it out of line.
    }
    this.#afterReply(now, soonest, expired);
    if (granted === 1) {
      return { granted: true, lease: toLease(lease as RawLease, now), existing: extra === 1 };
    }
    if (extra > 0) {
      // Held up by tickets of other replicas while slots are free: one may have died.
      this.#recheckSoon();
      return { granted: false, nextFreeInMs: lease as number, waiting: extra };
    }
    return { granted: false, nextFreeInMs: lease as number };
  }

  async release(token: string): Promise<Lease | undefined> {
    const [now, soonest, lease, expired] = await this.#scripts.run("release", "release", [
      token,
    ]) as [
      number,
      number,
      RawLease | null,
      RawLease[],
    ];
    this.#afterReply(now, soonest, expired);
    if (!lease) return undefined;
    this.#notify({ expired: [] });
    return toLease(lease, now);
  }

  async renew(token: string, durationMs: number): Promise<Lease | undefined> {
    const [now, soonest, lease, expired] = await this.#scripts.run("renew", "renew", [
      token,
      String(Math.max(1, Math.round(durationMs))),
    ]) as [number, number, RawLease | null, RawLease[]];
    this.#afterReply(now, soonest, expired);
    return lease ? toLease(lease, now) : undefined;
  }

  async byId(id: string): Promise<Lease | undefined> {
    return (await this.#read("look up", "id", id))[0];
  }

  async byToken(token: string): Promise<Lease | undefined> {
    return (await this.#read("look up", "token", token))[0];
  }

  leases(): Promise<Lease[]> {
    return this.#read("list leases", "all", "");
  }

  onFree(listener: (freed: SlotsFreed) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#scripts.close();
    this.#listeners.clear();
    clearInterval(this.#beatTimer);
    clearTimeout(this.#expiryTimer);
    clearTimeout(this.#recheckTimer);
    clearTimeout(this.#leaveTimer);
    if (this.#client.isReady && this.#leaving.size > 0) {
      await this.#scripts.call("leave", "leave", leaveArgs(this.#leaving)).catch(() => {});
    }
    if (this.#client.isReady && this.#abandoned.size > 0) {
      await this.#scripts.call("give back", "abandon", [...this.#abandoned.keys()]).catch(() => {});
    }
    await Promise.allSettled([this.#client, this.#subscriber].map((client) => client.destroy()));
  }

  async #read(operation: string, what: string, arg: string): Promise<Lease[]> {
    const [now, soonest, leases, expired] = await this.#scripts.run(operation, "read", [
      what,
      arg,
    ]) as [
      number,
      number,
      (RawLease | null)[],
      RawLease[],
    ];
    this.#afterReply(now, soonest, expired);
    return leases.filter((l): l is RawLease => Array.isArray(l)).map((l) => toLease(l, now));
  }

  async #join(ticket: string, id: string | undefined, place: number | undefined): Promise<number> {
    this.#leaving.delete(ticket);
    this.#mine.add(ticket);
    return await this.#scripts.run("join the line", "join", [
      ticket,
      id ?? "",
      place?.toString() ?? "",
    ]) as number;
  }

  /** Takes a ticket out of line; retried until Redis takes it, so no ticket of ours is left behind. */
  #leave(ticket: string, keepMs: number): void {
    this.#mine.delete(ticket);
    this.#leaving.set(ticket, {
      call: ++this.#leaveCalls,
      keepMs: Math.max(0, Math.round(keepMs)),
    });
    this.#flushSoon();
  }

  /**
   * Sends the leaves still waiting for their batch now, ahead of a command
   * that reads the line (one connection keeps the order): a ticket that left
   * must not count as waiting ahead, nor be listed.
   */
  #sendLeaves(): void {
    if (this.#leaveTimer === undefined || this.#leaving.size === 0) return;
    clearTimeout(this.#leaveTimer);
    this.#flushLeaves();
  }

  /** Drops the lease of `token`, if Redis runs the acquire that took it; retried like a leave. */
  #abandon(token: string, durationMs: number): void {
    this.#abandoned.set(token, performance.now() + durationMs);
    this.#flushSoon();
  }

  #flushSoon(): void {
    if (this.#leaveTimer === undefined) this.#leaveTimer = setTimeout(() => this.#flushLeaves(), 0);
  }

  /** Sends the pending leaves and give-backs; what fails is sent again a beat later. */
  #flushLeaves(): void {
    this.#leaveTimer = undefined;
    if (this.#closed) return;
    const retry = () => {
      if (!this.#closed && this.#leaveTimer === undefined) {
        this.#leaveTimer = setTimeout(() => this.#flushLeaves(), BEAT_INTERVAL_MS);
      }
    };
    if (this.#leaving.size > 0) {
      const batch = [...this.#leaving];
      this.#scripts.call("leave the line", "leave", leaveArgs(batch)).then(() => {
        // A ticket that joined and left again since has a newer leave of its own to send.
        for (const [ticket, { call }] of batch) {
          if (this.#leaving.get(ticket)?.call === call) this.#leaving.delete(ticket);
        }
      }, retry);
    }
    const now = performance.now();
    for (const [token, until] of this.#abandoned) if (until <= now) this.#abandoned.delete(token);
    if (this.#abandoned.size > 0) {
      const tokens = [...this.#abandoned.keys()];
      this.#scripts.call("give back", "abandon", tokens).then((dropped) => {
        for (const token of tokens) this.#abandoned.delete(token);
        // Our own message on the channel does not come back to us.
        if (Number(dropped) > 0) this.#notify({ expired: [] });
      }, retry);
    }
  }

  async #waiting(): Promise<(string | undefined)[]> {
    this.#sendLeaves();
    const pairs = await this.#scripts.run("list the line", "line", []) as [string, string][];
    return pairs.map(([, id]) => id === "" ? undefined : id);
  }

  #beat(): void {
    if (this.#closed || !this.#client.isReady) return;
    this.#scripts.call("beat", "beat", [String(TICKET_TTL_MS)]).then(
      (reply) => {
        const [now, soonest, expired] = reply as [number, number, RawLease[]];
        this.#afterReply(now, soonest, expired);
      },
      () => {},
    );
    if ((this.#leaving.size > 0 || this.#abandoned.size > 0) && this.#leaveTimer === undefined) {
      this.#flushLeaves();
    }
  }

  /**
   * Reports the leases a script found run out, and runs a sweep when the
   * soonest lease runs out: at once while clients of this replica wait, so
   * they are served at its expiry; otherwise at most every
   * {@linkcode IDLE_SWEEP_GAP_MS}, so that a stream of expiries costs a few
   * calls a second rather than one per lease.
   */
  #afterReply(now: number, soonest: number, expired: RawLease[]): void {
    if (expired.length > 0) this.#notify({ expired: expired.map((l) => toLease(l, now)) });
    if (soonest < 0 || this.#closed || this.#listeners.size === 0) return;
    const earliest = this.#mine.size > 0 ? 0 : this.#sweptAt + IDLE_SWEEP_GAP_MS;
    const at = Math.max(performance.now() + soonest + 1, earliest);
    if (at >= this.#expiryAt) return;
    clearTimeout(this.#expiryTimer);
    this.#expiryAt = at;
    this.#expiryTimer = setTimeout(() => {
      this.#expiryTimer = undefined;
      this.#expiryAt = Infinity;
      this.#sweptAt = performance.now();
      this.#beat();
    }, Math.max(0, at - performance.now()));
  }

  #recheckSoon(): void {
    if (this.#recheckTimer !== undefined || this.#closed) return;
    this.#recheckTimer = setTimeout(() => {
      this.#recheckTimer = undefined;
      this.#notify({ expired: [] });
    }, LINE_RECHECK_MS);
  }

  #notify(freed: SlotsFreed): void {
    for (const listener of this.#listeners) listener(freed);
  }

  #ready(): void {
    if (this.#lastError !== undefined) {
      this.#lastError = undefined;
      this.#options.onConnection?.(true, undefined);
    }
    this.#checkCapacity().catch(() => {});
    this.#beat();
    this.#notify({ expired: [] });
  }

  #down(error: string): void {
    if (this.#closed) return;
    const changed = this.#lastError === undefined;
    this.#lastError = error;
    if (changed) this.#options.onConnection?.(false, error);
  }

  async #checkCapacity(): Promise<void> {
    const stored = await this.#scripts.call("check the capacity", "init", [String(this.capacity)]);
    if (stored !== this.capacity) this.#options.onConflict?.(Number(stored));
  }
}

/** The leave script's arguments: each ticket, then how long an id's ticket keeps its place. */
function leaveArgs(leaving: Iterable<[string, { keepMs: number }]>): string[] {
  return [...leaving].flatMap(([ticket, { keepMs }]) => [ticket, String(keepMs)]);
}

function toLease([token, id, acquiredAt, expiresAt]: RawLease, now: number): Lease {
  return {
    token,
    id: id ?? undefined,
    acquiredAt: Number(acquiredAt),
    expiresAt: Number(expiresAt),
    remainingMs: Math.max(0, Number(expiresAt) - now),
  };
}
