/**
 * The Redis lock store: the slots and the waiting line live in Redis, shared
 * by every startup-lock replica that names the same semaphore (`--name`).
 *
 * - Every change is one Lua script (`scripts.ts`), atomic on the server,
 *   timed by the server's clock. An acquire is one round trip.
 * - A release, an expiry or a waiter leaving hands the freed slot, in the
 *   same script, to the first ticket in line that can take it, and the
 *   replica of that ticket hears it on the semaphore's channel (a second
 *   connection) and answers its client at once, without another call; a
 *   slot that stays free is published too, and every replica's waiters ask.
 *   A replica that missed the message learns it at its next beat.
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
 *   the token of an acquire that failed is given back then, so no slot stays
 *   held by a token nobody knows.
 * - Redis losing the semaphore (its epoch gone or changed), a jump of its
 *   clock: grants pause for the longest lease (`onRecovery`), then resume.
 *
 * Its parts: the scripts (`scripts.ts`) and their runner (`runner.ts`), the
 * shared line (`line.ts`), the watch on Redis's clock (`clock_watch.ts`) and
 * the settings of Redis it checks (`server_settings.ts`).
 *
 * @module
 */
import { createClient } from "../_redis_client.ts";
import { describeError } from "../../errors.ts";
import { newToken } from "../../token.ts";
import { StoreUnavailableError } from "../../core/store.ts";
import type {
  AcquireRequest,
  AcquireResult,
  Lease,
  LockStore,
  SharedLine,
  SlotsFreed,
} from "../../core/store.ts";
import { DEFAULT_MAX_DURATION_MS } from "../../config.ts";
import { ClockWatch } from "./clock_watch.ts";
import { RedisLine } from "./line.ts";
import { HANDOFF_PREFIX, REWOUND } from "./scripts.ts";
import { SETTING_NAMES, settingProblems } from "./server_settings.ts";
import { type RawLease, ScriptRunner, SemaphoreLostError } from "./runner.ts";
import type { RedisLockStoreOptions, RedisTarget, SharedStore } from "../settings.ts";

/** An operation that takes longer than this fails: a stalled Redis is a down Redis. */
export const REDIS_TIMEOUT_MS = 1_000;
/** How often a replica says it is alive. */
export const BEAT_INTERVAL_MS = 1_000;
/** A replica silent this long is dead: its tickets leave the line. */
export const TICKET_TTL_MS = 3_000;
/**
 * The longest pause between two tries to reach Redis again. With its jitter
 * it stays below the silence after which the scripts excuse every replica
 * (`SILENCE_MS`, 2 s): a replica back within a beat of Redis keeps its
 * waiters' places.
 */
export const MAX_RECONNECT_MS = 1_000;
/** Up to this much is added to each pause, so that replicas do not all knock at once. */
export const RECONNECT_JITTER_MS = 50;
/** Without waiters here, expiries are swept no more often than this. */
const IDLE_SWEEP_GAP_MS = 20;
/** How the acquire script says that it answers with the slot a release handed to the ticket. */
const HANDED = 2;
/** When a waiter is held up only by another replica's tickets, ask again this soon. */
const LINE_RECHECK_MS = 500;

/** A handoff message on the channel, after {@linkcode HANDOFF_PREFIX}. */
interface HandoffMessage {
  to: string;
  ticket: string;
  /** `false` in place of an anonymous lease's id (Lua's JSON). */
  lease: [string, string | false, number, number, number];
  now: number;
}

/** See the module documentation. */
export class RedisLockStore implements LockStore, SharedStore {
  readonly capacity: number;
  readonly line: SharedLine;
  readonly #line: RedisLine;
  readonly #target: RedisTarget;
  readonly #replica: string;
  readonly #timeoutMs: number;
  readonly #scripts: ScriptRunner;
  readonly #client: ReturnType<typeof createClient>;
  readonly #subscriber: ReturnType<typeof createClient>;
  readonly #listeners = new Set<(freed: SlotsFreed) => void>();
  #handoffListener: ((ticket: string, lease: Lease) => boolean) | undefined;
  /**
   * The tokens of slots handed to tickets here that were passed on, with when
   * their lease ends (this process's clock): the message, the beat and a take
   * may each bring the same one, and it is passed on once.
   */
  readonly #passedOn = new Map<string, number>();
  readonly #heartbeatListeners = new Set<(failure: StoreUnavailableError | undefined) => void>();
  readonly #options: RedisLockStoreOptions;
  /** Tokens of acquires that failed but that Redis may have run, with when their lease would end. */
  readonly #abandoned = new Map<string, number>();
  #giveBackTimer: ReturnType<typeof setTimeout> | undefined;
  #beatTimer: ReturnType<typeof setInterval> | undefined;
  #expiryTimer: ReturnType<typeof setTimeout> | undefined;
  #expiryAt = Infinity;
  #sweptAt = -Infinity;
  #recheckTimer: ReturnType<typeof setTimeout> | undefined;
  #recreateTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set while the first check of the semaphore waits to be tried again. */
  #initTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set while grants pause after a jump of Redis's clock. */
  #clockTimer: ReturnType<typeof setTimeout> | undefined;
  /** Redis's clock against ours, beat by beat. */
  readonly #redisClock = new ClockWatch();
  /** How long a lost semaphore stays lost: the longest lease (`--maxDuration`). */
  readonly #recoveryMs: number;
  /** This process's monotonic clock, which Redis's is compared with. */
  readonly #now: () => number;
  #lastError: string | undefined;
  #closed = false;
  /** Set once the service stopped listening for handoffs, or the store closed. */
  #stopping = false;

  constructor(capacity: number, target: RedisTarget, options: RedisLockStoreOptions = {}) {
    this.capacity = capacity;
    this.#target = target;
    this.#options = options;
    // No "/" (a ticket is REPLICA/N) and no leading "#" (an id's ticket is #ID).
    this.#replica = (options.replica ?? `${Deno.pid}-${newToken().slice(0, 8)}`)
      .replaceAll("/", "_").replace(/^#/, "_");
    this.#timeoutMs = options.timeoutMs ?? REDIS_TIMEOUT_MS;
    this.#recoveryMs = options.recoveryMs ?? DEFAULT_MAX_DURATION_MS;
    this.#now = options.now ?? (() => performance.now());
    this.#client = createClient({
      url: target.url,
      ...(target.password === undefined ? {} : { password: target.password }),
      ...(target.username === undefined ? {} : { username: target.username }),
      // Fail at once while disconnected, instead of queueing requests for a Redis that is gone.
      disableOfflineQueue: true,
      socket: {
        connectTimeout: this.#timeoutMs,
        reconnectStrategy: (retries: number) =>
          Math.min(50 * 2 ** retries, MAX_RECONNECT_MS) +
          Math.floor(Math.random() * RECONNECT_JITTER_MS),
        ...(target.tls ? { tls: true } : {}),
      },
    });
    this.#scripts = new ScriptRunner(this.#client, {
      name: options.name ?? "default",
      replica: this.#replica,
      url: target.url,
      timeoutMs: this.#timeoutMs,
      capacity,
      lastError: () => this.#lastError,
      onLost: (error) => this.#lost(error),
      onConflict: (stored) => this.#options.onConflict?.(stored),
      onHanded: (ticket, lease, now) => this.#handedOver(ticket, toLease(lease, now)),
    });
    this.#subscriber = this.#client.duplicate();
    for (const client of [this.#client, this.#subscriber]) {
      // Without a listener, node-redis would throw connection errors as uncaught.
      client.on("error", (error: unknown) => this.#down(describeError(error)));
    }
    this.#client.on("ready", () => this.#ready());
    this.#subscriber.on("ready", () => this.#notify({ expired: [] }));
    this.#line = new RedisLine(this.#scripts, this.#replica, {
      retryMs: BEAT_INTERVAL_MS,
      // At once: the other replicas must not wait for tickets this one cannot serve.
      onEligibility: () => this.#beat(),
    });
    this.line = this.#line;
  }

  /**
   * Connects both connections. Resolves once Redis answered and the
   * semaphore's capacity is checked, or after `waitMs` if Redis is not there
   * yet: the store then keeps trying in the background.
   */
  async connect(waitMs: number): Promise<void> {
    const subscribed = this.#subscriber.connect().then(() =>
      this.#subscriber.subscribe(this.#scripts.channel, (message: string) => {
        if (message.startsWith(HANDOFF_PREFIX)) this.#handoffMessage(message);
        else if (message !== this.#replica) this.#notify({ expired: [] });
      }).catch((error: unknown) => this.#cannotSubscribe(error))
    );
    const ready = this.#client.connect().then(() => this.#init());
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
    this.#line.sendLeaves();
    const token = newToken();
    const durationMs = Math.max(1, Math.round(request.durationMs));
    const sent = this.#scripts.ready;
    const { ticket } = request;
    let reply: [number, number, number, RawLease | number, number, RawLease[]];
    try {
      reply = await this.#scripts.run("acquire", "acquire", [
        String(durationMs),
        request.id ?? "",
        request.ticket ?? "",
        token,
        // A ticket of ours dropped from the line (this replica was paused past TICKET_TTL_MS)
        // joins again at its old place, not behind those who came after it.
        (ticket === undefined ? undefined : this.#line.placeOf(ticket))?.toString() ?? "",
        // Another token than the take's: a take that timed out gives its token back, and a slot
        // handed over must never be given back by that.
        ticket === undefined ? "" : newToken(),
      ]) as typeof reply;
    } catch (error) {
      // Nothing is granted until the semaphore is made anew: the recovery gate says when.
      if (error instanceof SemaphoreLostError) {
        return { granted: false, nextFreeInMs: this.#recoveryMs };
      }
      // Redis may run it late (it was frozen, or the answer was lost): the slot it took would be
      // held by nobody who knows it, with or without an id (the client may never ask again). The
      // token is new, so a lease its id held before is not this token's, and stays.
      if (sent) this.#abandon(token, durationMs);
      throw error;
    }
    const [granted, now, soonest, lease, extra, expired] = reply;
    if (granted === 1 && ticket !== undefined && extra !== 1) this.#line.granted(ticket);
    this.#afterReply(now, soonest, expired);
    if (granted === 1) {
      const held = toLease(lease as RawLease, now);
      if (extra === HANDED) {
        // A release handed the slot to this ticket: passed on by its message already, or now.
        if (this.#passedOn.has(held.token)) return { granted: true, lease: held, existing: true };
        this.#remember(held);
      }
      return { granted: true, lease: held, existing: extra === 1 };
    }
    if (extra > 0) {
      // Held up by tickets of other replicas while slots are free: one may have died.
      this.#recheckSoon();
      return { granted: false, nextFreeInMs: lease as number, waiting: extra };
    }
    return { granted: false, nextFreeInMs: lease as number };
  }

  async release(token: string, claims?: number): Promise<Lease | undefined> {
    const reply = await lostAs(
      this.#scripts.run("release", "release", [token, claims?.toString() ?? ""]),
      undefined,
    );
    if (reply === undefined) return undefined; // The semaphore was lost, and the lease with it.
    const [now, soonest, lease, expired] = reply as [number, number, RawLease | null, RawLease[]];
    this.#afterReply(now, soonest, expired);
    if (!lease) return undefined;
    this.#notify({ expired: [] });
    return toLease(lease, now);
  }

  async renew(token: string, durationMs: number): Promise<Lease | undefined> {
    const reply = await lostAs(
      this.#scripts.run("renew", "renew", [token, String(Math.max(1, Math.round(durationMs)))]),
      undefined,
    );
    if (reply === undefined) return undefined; // The semaphore was lost, and the lease with it.
    const [now, soonest, lease, expired] = reply as [number, number, RawLease | null, RawLease[]];
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

  onHeartbeat(listener: (failure: StoreUnavailableError | undefined) => void): () => void {
    this.#heartbeatListeners.add(listener);
    return () => this.#heartbeatListeners.delete(listener);
  }

  onFree(listener: (freed: SlotsFreed) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  onHandoff(listener: (ticket: string, lease: Lease) => boolean): () => void {
    this.#handoffListener = listener;
    return () => {
      if (this.#handoffListener !== listener) return;
      this.#handoffListener = undefined;
      // The service stopped: a slot handed to one of its tickets from now on is given back.
      this.#stopping = true;
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopping = true;
    this.#scripts.close();
    this.#listeners.clear();
    this.#handoffListener = undefined;
    this.#heartbeatListeners.clear();
    clearInterval(this.#beatTimer);
    clearTimeout(this.#expiryTimer);
    clearTimeout(this.#recheckTimer);
    clearTimeout(this.#giveBackTimer);
    clearTimeout(this.#recreateTimer);
    clearTimeout(this.#initTimer);
    clearTimeout(this.#clockTimer);
    await this.#line.close(this.#client.isReady);
    if (this.#client.isReady && this.#abandoned.size > 0) {
      await this.#scripts.call("give back", "abandon", [...this.#abandoned.keys()]).catch(() => {});
    }
    await Promise.allSettled([this.#client, this.#subscriber].map((client) => client.destroy()));
  }

  async #read(operation: string, what: string, arg: string): Promise<Lease[]> {
    const reply = await lostAs(this.#scripts.run(operation, "read", [what, arg]), undefined);
    if (reply === undefined) return []; // The semaphore was lost: nothing is held in it.
    const [now, soonest, leases, expired] = reply as [
      number,
      number,
      (RawLease | null)[],
      RawLease[],
    ];
    this.#afterReply(now, soonest, expired);
    return leases.filter((l): l is RawLease => Array.isArray(l)).map((l) => toLease(l, now));
  }

  /** Drops the lease of `token`, if Redis runs the acquire that took it; retried every beat. */
  #abandon(token: string, durationMs: number): void {
    this.#abandoned.set(token, performance.now() + durationMs);
    this.#giveBackTimer ??= setTimeout(() => this.#giveBack(), 0);
  }

  /** Sends the pending give-backs; what fails is sent again a beat later. */
  #giveBack(): void {
    this.#giveBackTimer = undefined;
    if (this.#closed) return;
    const now = performance.now();
    for (const [token, until] of this.#abandoned) if (until <= now) this.#abandoned.delete(token);
    if (this.#abandoned.size === 0) return;
    const tokens = [...this.#abandoned.keys()];
    this.#scripts.call("give back", "abandon", tokens).then((dropped) => {
      for (const token of tokens) this.#abandoned.delete(token);
      // Our own message on the channel does not come back to us.
      if (Number(dropped) > 0) this.#notify({ expired: [] });
    }, () => {
      if (!this.#closed) {
        this.#giveBackTimer ??= setTimeout(() => this.#giveBack(), BEAT_INTERVAL_MS);
      }
    });
  }

  #beat(): void {
    if (!this.#scripts.ready) return;
    const sentAt = this.#now();
    this.#scripts.call("beat", "beat", [String(TICKET_TTL_MS), this.#line.canGrant ? "1" : "0"])
      .then(
        (reply) => {
          const [now, soonest, expired, free, mine] = reply as [
            number,
            number,
            RawLease[],
            number,
            [string, RawLease][],
          ];
          const jump = this.#redisClock.observe({
            sentAt,
            answeredAt: this.#now(),
            redisNow: now,
          });
          if (jump !== 0) this.#clockJumped(jump);
          this.#afterReply(now, soonest, expired);
          // A message on the channel may have been lost (the subscriber reconnecting, no channel
          // right, a killed connection): while this replica has waiters, a free slot is asked for
          // at least every beat anyway.
          if (free > 0 && this.#line.hasWaiters && expired.length === 0) {
            this.#notify({ expired: [] });
          }
          // Slots handed to tickets here whose message was lost.
          for (const [ticket, lease] of mine) this.#handedOver(ticket, toLease(lease, now));
          for (const listener of this.#heartbeatListeners) listener(undefined);
        },
        (error) => {
          // A lost semaphore is an answer too: Redis is up.
          const failure = error instanceof StoreUnavailableError ? error : undefined;
          for (const listener of this.#heartbeatListeners) listener(failure);
        },
      );
    this.#line.retry();
    if (this.#abandoned.size > 0 && this.#giveBackTimer === undefined) this.#giveBack();
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
    const earliest = this.#line.hasWaiters ? 0 : this.#sweptAt + IDLE_SWEEP_GAP_MS;
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

  /** A message that a script handed a slot to a ticket: passed on if the ticket is ours. */
  #handoffMessage(message: string): void {
    let handoff: unknown;
    try {
      handoff = JSON.parse(message.slice(HANDOFF_PREFIX.length));
    } catch {
      return; // Not ours: the scripts write nothing else after the prefix.
    }
    // Anyone with the channel right can publish on it: only a well-formed handoff is read.
    if (!isHandoff(handoff) || handoff.to !== this.#replica) return;
    const [token, id, acquiredAt, expiresAt, claims] = handoff.lease;
    this.#handedOver(
      handoff.ticket,
      toLease([token, id === false ? null : id, acquiredAt, expiresAt, claims], handoff.now),
    );
  }

  /**
   * Passes a slot that a script handed to a ticket of ours on to the service,
   * once. Without a service listening, or when it did not pass it on, the
   * ticket keeps its place for its next take (which answers with the slot,
   * if it is still held for it).
   */
  #handedOver(ticket: string, lease: Lease): void {
    if (this.#passedOn.has(lease.token)) return;
    if (this.#stopping) {
      // Handed over as this replica stops (its tickets' leaves not in yet): nobody here takes it.
      this.#remember(lease);
      this.#scripts.call("give back", "release", [lease.token, String(lease.claims)])
        .catch(() => {});
      return;
    }
    // The subscriber may be back before the commands' connection (each reconnects on its own):
    // a client answered now would get 503 for its release. The next beat, once this replica can
    // call Redis again, brings the slot back (`mine`), and it is passed on then.
    if (!this.#scripts.ready) return;
    if (!this.#handoffListener?.(ticket, lease)) return;
    this.#line.granted(ticket);
    this.#remember(lease);
  }

  /** Records a handed slot as passed on, until its lease ends; forgets those that ended. */
  #remember(lease: Lease): void {
    const now = performance.now();
    for (const [token, until] of this.#passedOn) if (until <= now) this.#passedOn.delete(token);
    this.#passedOn.set(lease.token, now + lease.remainingMs + BEAT_INTERVAL_MS);
  }

  #ready(): void {
    if (this.#lastError !== undefined) {
      this.#lastError = undefined;
      this.#options.onConnection?.(true, undefined);
    }
    this.#checkSettings();
    // The semaphore is checked once, at the first connection: after that, every script checks it.
    if (this.#scripts.epoch === undefined) {
      this.#firstInit();
      return;
    }
    this.#beat();
    this.#notify({ expired: [] });
  }

  /**
   * Checks the semaphore at the first connection, and again every beat while
   * Redis refuses it: a user without the rights to the keys or the scripts,
   * a Redis loading its data or slower than the timeout may answer later, and
   * nothing else would ask again before a reconnect. The refusal is logged
   * as the reason for no grants, and its end as the connection coming back.
   */
  #firstInit(): void {
    clearTimeout(this.#initTimer);
    this.#initTimer = undefined;
    if (this.#closed || this.#scripts.epoch !== undefined) return;
    this.#init().then(() => {
      if (this.#lastError !== undefined) {
        this.#lastError = undefined;
        this.#options.onConnection?.(true, undefined);
      }
      // Clients that waited while Redis was away are served now.
      if (this.#line.hasWaiters) this.#notify({ expired: [] });
    }, (error: unknown) => {
      if (this.#closed || this.#scripts.epoch !== undefined) return;
      // Redis's own words (NOPERM …), as for a refused password, rather than the operation's.
      const cause = error instanceof Error ? error.cause : undefined;
      this.#down(describeError(cause ?? error));
      // Once disconnected, the next connection's "ready" asks again.
      if (this.#client.isReady) {
        this.#initTimer = setTimeout(() => this.#firstInit(), BEAT_INTERVAL_MS);
      }
    });
  }

  #down(error: string): void {
    if (this.#closed) return;
    const changed = this.#lastError === undefined;
    this.#lastError = error;
    if (changed) this.#options.onConnection?.(false, error);
  }

  /**
   * Without the channel, this replica hears of slots freed elsewhere only at
   * its next beat: it still serves its waiters, a second later. Redis 7 gives
   * a new ACL user no channel (`acl-pubsub-default resetchannels`).
   */
  #cannotSubscribe(error: unknown): void {
    // Closing (or a connection that dropped, which the client retries) is no missing right.
    if (this.#closed) return;
    const user = this.#target.username ?? "default";
    const noRight = /NOPERM/.test(describeError(error));
    this.#options.onProblem?.(
      "channel",
      `Cannot subscribe to ${this.#scripts.channel} on ${this.#target.url} ` +
        `(${describeError(error)}): waiters here learn of slots freed elsewhere only once a ` +
        (noRight
          ? `second; give user ${user} the channel: ACL SETUSER ${user} &startup-lock:*`
          : "second"),
    );
  }

  /**
   * Reads the settings of Redis that the guarantees rest on, at every
   * connection (a failover may have brought another Redis), and warns once
   * a connection for each one that breaks one.
   */
  #checkSettings(): void {
    this.#client.sendCommand(["CONFIG", "GET", ...SETTING_NAMES]).then(
      (reply) => {
        // The client answers a map as an object; a flat list of pairs is read as well.
        const values = new Map<string, string>();
        if (Array.isArray(reply)) {
          for (let i = 0; i + 1 < reply.length; i += 2) {
            values.set(String(reply[i]), String(reply[i + 1]));
          }
        } else if (reply && typeof reply === "object") {
          for (const [name, value] of Object.entries(reply)) values.set(name, String(value));
        }
        for (const message of settingProblems(values)) {
          this.#options.onProblem?.("setting", `${this.#target.url}: ${message}`);
        }
      },
      (error: unknown) => {
        if (this.#closed) return;
        this.#options.onProblem?.(
          "setting",
          `Cannot read the settings of ${this.#target.url} (CONFIG GET: ${
            describeError(error)
          }): ` +
            "make sure yourself that it has appendonly yes, appendfsync always and " +
            "maxmemory-policy noeviction, which the guarantees of the Redis store rest on",
        );
      },
    );
  }

  /** Adopts the semaphore Redis holds, or makes it; another capacity is a conflict. */
  async #init(): Promise<void> {
    const stored = await this.#scripts.init();
    if (stored !== this.capacity) this.#options.onConflict?.(stored);
    this.#beat();
  }

  /**
   * The semaphore is gone from Redis, or was made anew: the leases this
   * replica granted may still be held by clients that Redis no longer knows.
   * Nothing is granted here until the longest of them has run out, then the
   * semaphore is made anew (or the one another replica made is adopted).
   */
  #lost(error: SemaphoreLostError): void {
    if (this.#closed) return;
    // What was to be taken out of Redis is gone from it already.
    this.#line.forget();
    this.#abandoned.clear();
    this.#options.onRecovery?.({
      cause: "store_lost",
      forMs: this.#recoveryMs,
      detail: error.stored === undefined
        ? "Redis no longer holds the semaphore"
        : error.stored === REWOUND
        ? "Redis went back in time: it holds fewer changes than a replica saw (a failover to a " +
          "replica that missed writes, or a crash with appendfsync everysec)"
        : `Redis holds another semaphore (epoch ${error.stored}) than this replica knew`,
    });
    clearTimeout(this.#recreateTimer);
    this.#recreateTimer = setTimeout(() => this.#recreate(), this.#recoveryMs);
  }

  /**
   * Redis's clock jumped: every lease's expiry moved with it, so a lease may
   * have ended (forwards) while its holder still runs. Nothing is granted
   * here until every lease granted before has run out by any clock.
   */
  #clockJumped(jumpMs: number): void {
    const direction = jumpMs > 0 ? "forwards" : "backwards";
    this.#options.onRecovery?.({
      cause: "clock_jump",
      forMs: this.#recoveryMs,
      detail: `The clock of Redis jumped about ${
        Math.round(Math.abs(jumpMs) / 1_000)
      } s ${direction} against this replica's between two beats`,
    });
    clearTimeout(this.#clockTimer);
    this.#clockTimer = setTimeout(() => {
      this.#clockTimer = undefined;
      if (!this.#scripts.lost) this.#options.onRecovered?.();
      this.#notify({ expired: [] });
    }, this.#recoveryMs);
  }

  /** Makes the semaphore anew after a loss; tried again every beat until Redis answers. */
  #recreate(): void {
    this.#recreateTimer = undefined;
    if (this.#closed) return;
    this.#init().then(() => {
      if (this.#clockTimer === undefined) this.#options.onRecovered?.();
      this.#notify({ expired: [] });
    }, () => {
      if (!this.#closed) this.#recreateTimer = setTimeout(() => this.#recreate(), BEAT_INTERVAL_MS);
    });
  }
}

/** The value of `promise`, or `lost` when the semaphore was found lost. */
function lostAs<T, L>(promise: Promise<T>, lost: L): Promise<T | L> {
  return promise.catch((error) => {
    if (error instanceof SemaphoreLostError) return lost;
    throw error;
  });
}

/** Whether `value` has the shape of a {@linkcode HandoffMessage}, as the scripts write it. */
function isHandoff(value: unknown): value is HandoffMessage {
  const m = value as Partial<HandoffMessage> | null;
  const lease = m?.lease;
  return typeof m?.to === "string" && typeof m.ticket === "string" &&
    Number.isFinite(m.now) && Array.isArray(lease) && lease.length === 5 &&
    typeof lease[0] === "string" && (lease[1] === false || typeof lease[1] === "string") &&
    lease.slice(2).every(Number.isFinite);
}

function toLease([token, id, acquiredAt, expiresAt, claims]: RawLease, now: number): Lease {
  return {
    token,
    id: id ?? undefined,
    acquiredAt: Number(acquiredAt),
    expiresAt: Number(expiresAt),
    remainingMs: Math.max(0, Number(expiresAt) - now),
    claims: Number(claims ?? 0),
  };
}
