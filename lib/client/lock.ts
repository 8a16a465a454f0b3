/**
 * The client's lock: getting one (the loop `acquire`, `run` and `hold`
 * share), and releasing or renewing the lock it holds.
 *
 * Against this server the loop long-polls: the first request asks for an
 * answer at once (so the reason to wait shows at once), then each asks the
 * server to hold it up to {@linkcode MAX_WAIT_CHUNK_MS} and grant as soon as it
 * is the client's turn; when such a request ends without a lock, the next one
 * goes out at once, so the client keeps its place in the server's queue. A
 * server that answers at once anyway (the original, which ignores `?wait=`) or
 * cannot be reached is asked again after a jittered `--pollInterval`, counted
 * from the start of the previous request. The same `?id=` on every request
 * makes retries idempotent: the server hands the same lock back.
 *
 * @module
 */
import { type Clock, isoTime, realClock } from "../clock.ts";
import { formatDuration } from "../duration.ts";
import { describeError } from "../errors.ts";
import { jitter, sleep } from "./_time.ts";
import { describeFetchError, type LockAnswer, releaseLock, requestLock } from "./http.ts";
import { note } from "./output.ts";

/** The longest `?wait=` asked for: proxies in between often cut requests idle for 60 s. */
export const MAX_WAIT_CHUNK_MS = 30_000;
/**
 * How long past its `?wait=` a request may stay unanswered before the client
 * drops the connection and asks again: covers a slow network, not a hung one.
 */
export const ANSWER_GRACE_MS = 10_000;
/**
 * How long before the `--wait` deadline the last `?wait=` asks the server to
 * answer: the answer, with the server's latest reason, then arrives before the
 * client gives up instead of racing it. Half a second covers a slow round trip.
 */
export const ANSWER_MARGIN_MS = 500;
/**
 * A `?wait=` answered sooner than this (or than its wait, if shorter) was not
 * held in the server's queue; asking again at once would spin, so the client
 * waits out `--pollInterval` instead.
 */
export const QUEUED_MIN_MS = 100;
/**
 * The shortest `Retry-After` that brings the next try forward: `0` says
 * nothing about when a slot frees (this server never sends less than 1), and
 * taken at its word it makes a client ask thousands of times a second.
 */
export const MIN_RETRY_AFTER_MS = 1_000;
/** How long a release may take: one quick request; a server that takes longer is in trouble. */
export const RELEASE_TIMEOUT_MS = 10_000;

/** The note for a lock that is already gone. */
export const GONE_NOTE = "The lock was already released or expired";

/** What the client needs to get a lock. */
export interface AcquireOptions {
  /** The server's base URL, ending in `/`. */
  server: URL;
  /** `?duration=`; `undefined` lets the server's `--timeout` decide. */
  durationMs: number | undefined;
  /** `?id=`: the same id always gets the same lock back, so retries are idempotent. */
  id: string;
  /** The bound on the whole wait; `undefined` waits forever. */
  waitMs: number | undefined;
  /** Where to write the token, if anywhere. */
  tokenFile: string | undefined;
  /** The mean pause between polls of a server that answers at once. */
  pollIntervalMs: number;
  /** The bearer token sent to the server (`--authToken`). @default {none} */
  authToken?: string | undefined;
  /**
   * The flags as messages name them, in the user's own terms: `--duration 2h`
   * (or `STARTUP_LOCK_DURATION=2h`), `--wait` (or `STARTUP_LOCK_WAIT`), `--tokenFile`.
   * @default {{ duration: "--duration", wait: "--wait", tokenFile: "--tokenFile" }}
   */
  names?: FlagNames;
  /** Warnings about the command line, written before the first try. @default {none} */
  warnings?: readonly string[];
}

/** How messages name the flags of {@linkcode AcquireOptions}. */
export interface FlagNames {
  duration: string;
  wait: string;
  tokenFile: string;
}

const DEFAULT_NAMES: FlagNames = {
  duration: "--duration",
  wait: "--wait",
  tokenFile: "--tokenFile",
};

/** A lock the client holds. */
export interface HeldLock {
  server: URL;
  /** `undefined` when the server issues no tokens (the original): the lock only expires. */
  token: string | undefined;
  /** When it expires, in the clock's monotonic milliseconds; `undefined` when unknown. */
  expiresAt: number | undefined;
  /** The bearer token sent to the server. @default {none} */
  authToken?: string | undefined;
}

/** How acquiring ended. */
export type AcquireResult =
  | { kind: "acquired"; lock: HeldLock }
  /** `--wait` ran out; `reason` is the last reason to wait. */
  | { kind: "timeout"; reason: string }
  /** Asking again cannot help, such as a request the server refused. */
  | { kind: "failed"; message: string }
  /** The caller's signal aborted. */
  | { kind: "aborted" };

/** Injected time, randomness and cancellation of {@linkcode acquireLock}. */
export interface AcquireContext {
  /** @default {realClock} */
  clock?: Clock;
  /** @default {Math.random} */
  random?: () => number;
  /** Stops waiting. */
  signal?: AbortSignal;
}

/**
 * Asks until a lock is granted, `--wait` runs out, the server refuses the
 * request, or `signal` aborts. Writes one progress line per attempt on stderr
 * and, once acquired, the token to `--tokenFile`.
 */
export async function acquireLock(
  options: AcquireOptions,
  context: AcquireContext = {},
): Promise<AcquireResult> {
  const { clock = realClock, random = Math.random, signal } = context;
  const names = options.names ?? DEFAULT_NAMES;
  for (const warning of options.warnings ?? []) note(warning, "secret_in_flag", "warn");
  const deadline = options.waitMs === undefined ? Infinity : clock.now() + options.waitMs;
  let reason = "no answer from the server yet";
  for (let attempt = 1;; attempt++) {
    const start = clock.now();
    const remaining = deadline - start;
    if (signal?.aborted) return { kind: "aborted" };
    // The first try is always made: a --wait of 0 means one try, as ?wait=0 does.
    if (remaining <= 0 && attempt > 1) return { kind: "timeout", reason };
    // After the first answer, wait in the queue; the last wait ends a margin before the
    // deadline. Too close to it for that, one last request asks for an answer at once.
    const chunk = Math.min(MAX_WAIT_CHUNK_MS, remaining - ANSWER_MARGIN_MS);
    const waitMs = attempt === 1 || chunk <= 0 ? undefined : Math.ceil(chunk);
    const limitMs = remaining <= 0
      ? ANSWER_GRACE_MS
      : Math.min(remaining, (waitMs ?? 0) + ANSWER_GRACE_MS);

    const controller = new AbortController();
    const timer = clock.setTimeout(() => controller.abort(), limitMs);
    const stop = () => controller.abort();
    signal?.addEventListener("abort", stop);
    let answer: LockAnswer | undefined;
    try {
      answer = await requestLock(
        options.server,
        { durationMs: options.durationMs, id: options.id, waitMs },
        controller.signal,
        options.authToken,
      );
    } catch (error) {
      if (signal?.aborted) return { kind: "aborted" };
      // A request cut short by the deadline says nothing new, unless it was the only one.
      const cutByDeadline = controller.signal.aborted && clock.now() >= deadline;
      if (!cutByDeadline || attempt === 1) {
        reason = controller.signal.aborted
          ? `no answer from ${options.server.href} within ${formatDuration(limitMs)}`
          : `cannot reach ${options.server.href}: ${describeFetchError(error)}`;
      }
      if (clock.now() >= deadline) return { kind: "timeout", reason };
    } finally {
      clock.clearTimeout(timer);
      signal?.removeEventListener("abort", stop);
    }

    if (answer?.kind === "acquired") {
      const lock = heldLock(options, answer, clock, holdStart(start, waitMs, clock.now()));
      reportAcquired(options, names, answer, lock);
      return await saveToken(options, names, lock);
    }
    if (answer?.kind === "foreign") {
      const page = answer.message ? ` ("${answer.message}")` : "";
      return {
        kind: "failed",
        message: `${options.server.href} is not a lock server: it answered HTTP ${answer.status} ` +
          `with an HTML page${page} and no lock token; check --server`,
      };
    }
    if (answer?.kind === "badToken") {
      // Nobody could release it with such a token: it expires by its duration.
      return {
        kind: "failed",
        message: `${options.server.href} is not a lock server: it answered HTTP ${answer.status} ` +
          `with a lock token no lock server gives ("${answer.token}"): not printable ASCII ` +
          "without spaces, or too long; check --server",
      };
    }
    if (answer?.kind === "refused" && answer.status === 401) {
      return { kind: "failed", message: answer.message };
    }
    if (answer?.kind === "refused") {
      // The server names the query parameter; the user knows the flag.
      const asked = options.durationMs !== undefined && /duration/i.test(answer.message)
        ? ` (asked with ${names.duration})`
        : "";
      // No lock server answers 404 to GET /: the URL is someone else's, or its path is wrong.
      const check = answer.status === 404 ? "; check --server" : "";
      return {
        kind: "failed",
        message: `The server refused the request (HTTP ${answer.status}): ${answer.message}` +
          `${asked}${check}`,
      };
    }
    if (answer) reason = answer.message;
    if (clock.now() >= deadline) return { kind: "timeout", reason };
    note(`Waiting: ${reason}`, "waiting");

    // A server that speaks this protocol is asked again at once, to wait in its queue (or,
    // after a wait, to keep its place there); every other answer waits out the poll interval,
    // counted from this request's start.
    const ours = answer?.kind === "wait" && answer.json && answer.status === 423;
    const elapsed = clock.now() - start;
    const queued = waitMs === undefined
      ? attempt === 1
      : elapsed >= Math.min(waitMs, QUEUED_MIN_MS);
    if (!(ours && queued)) {
      // The next try is a jittered --pollInterval after this one started, or sooner when the
      // server's Retry-After says a slot may free sooner than that.
      let next = start + jitter(options.pollIntervalMs, random);
      const retryAfter = answer?.kind === "wait" ? answer.retryAfterMs : undefined;
      if (retryAfter !== undefined && retryAfter >= MIN_RETRY_AFTER_MS) {
        next = Math.min(next, clock.now() + retryAfter);
      }
      await sleep(clock, Math.min(next, deadline) - clock.now(), signal);
    }
  }
}

/**
 * How long before its answer a grant made while the request waited in the
 * server's queue may have been made: the longest a store call takes (the
 * Redis store's timeout, `REDIS_TIMEOUT_MS`), as the store counts the lease
 * from its own clock when the call runs.
 */
export const GRANT_BEFORE_ANSWER_MS = 1_000;

/**
 * When the hold counts from, on the monotonic clock: when the request was
 * sent, since the server may have granted it any time between then and the
 * answer and counts the lease from then; for a request that waited in the
 * queue, at most {@linkcode GRANT_BEFORE_ANSWER_MS} before the answer.
 */
function holdStart(sentAt: number, waitMs: number | undefined, receivedAt: number): number {
  return waitMs === undefined ? sentAt : Math.max(sentAt, receivedAt - GRANT_BEFORE_ANSWER_MS);
}

/**
 * The lock as granted: it expires after the duration the server granted (which
 * may be less than asked), else at the `expiresAt` it names, else after the
 * duration asked for (the original says neither), counted from `from`.
 */
function heldLock(
  options: AcquireOptions,
  answer: Extract<LockAnswer, { kind: "acquired" }>,
  clock: Clock,
  from: number,
): HeldLock {
  const expiresAt = answer.durationMs !== undefined
    ? from + answer.durationMs
    : answer.expiresAt !== undefined
    ? clock.now() + (answer.expiresAt - clock.wallNow())
    : options.durationMs !== undefined
    ? from + options.durationMs
    : undefined;
  const lock: HeldLock = { server: options.server, token: answer.token, expiresAt };
  if (options.authToken !== undefined) lock.authToken = options.authToken;
  return lock;
}

function reportAcquired(
  options: AcquireOptions,
  names: FlagNames,
  answer: Extract<LockAnswer, { kind: "acquired" }>,
  lock: HeldLock,
): void {
  if (lock.token === undefined) {
    note(
      "Acquired a lock, but the server gave no token (as the original server does): " +
        "it will expire by its duration; there is nothing to release",
      "acquired",
    );
    return;
  }
  const until = answer.expiresAt !== undefined ? ` until ${isoTime(answer.expiresAt)}` : "";
  note(`Acquired the lock as ${options.id}${until}`, "acquired");
  const { durationMs, requestedMs } = answer;
  if (durationMs !== undefined && requestedMs !== undefined && durationMs < requestedMs) {
    note(
      `The server granted ${formatDuration(durationMs)}, less than ${names.duration}: ` +
        "the most it allows (its --maxDuration)",
      "duration_cut",
      "warn",
    );
  }
}

/**
 * Writes the token to `--tokenFile` (an empty file when the server gave none, so
 * that no stale token lingers). If that fails, gives the lock back: nobody could
 * release it otherwise.
 */
async function saveToken(
  options: AcquireOptions,
  names: FlagNames,
  lock: HeldLock,
): Promise<AcquireResult> {
  const path = options.tokenFile;
  if (path === undefined) return { kind: "acquired", lock };
  try {
    await Deno.writeTextFile(path, lock.token === undefined ? "" : `${lock.token}\n`, {
      mode: 0o600,
    });
    return { kind: "acquired", lock };
  } catch (error) {
    let released = "";
    if (lock.token !== undefined) {
      try {
        await releaseLock(
          lock.server,
          lock.token,
          AbortSignal.timeout(RELEASE_TIMEOUT_MS),
          lock.authToken,
        );
        released = "; released the lock";
      } catch (releaseError) {
        released = `; could not release the lock either (${describeFetchError(releaseError)})`;
      }
    }
    return {
      kind: "failed",
      message: `Cannot write ${names.tokenFile} "${path}": ${describeError(error)}${released}`,
    };
  }
}

/**
 * Gives back a lock that `run` or `hold` holds, saying why on stderr. Never
 * throws: a lock that cannot be released still expires by its duration.
 */
export async function releaseHeldLock(lock: HeldLock, because: string): Promise<void> {
  if (lock.token === undefined) return;
  try {
    const answer = await releaseLock(
      lock.server,
      lock.token,
      AbortSignal.timeout(RELEASE_TIMEOUT_MS),
      lock.authToken,
    );
    if (answer === "released") note(`Released the lock: ${because}`, "released");
    else note(`${GONE_NOTE} (${because})`, "already_gone");
  } catch (error) {
    note(
      `Cannot release the lock (${because}): ${describeFetchError(error)}; ` +
        "it expires by its duration",
      "release_failed",
      "warn",
    );
  }
}
