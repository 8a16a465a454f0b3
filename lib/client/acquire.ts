/**
 * `startup-lock acquire`: asks until it holds a lock. The loop is shared by
 * `run` and `hold`.
 *
 * Against this server it long-polls: the first request asks for an answer at
 * once (so the reason to wait shows at once), then each asks the server to hold
 * it up to {@linkcode MAX_WAIT_CHUNK_MS} and grant as soon as it is the
 * client's turn. A server that answers at once anyway (the original, which
 * ignores `?wait=`) or cannot be reached is asked again after a jittered
 * `--pollInterval`, counted from the start of the previous request. The same
 * `?id=` on every request makes retries idempotent: the server hands the same
 * lock back.
 *
 * @module
 */
import { type Clock, realClock } from "../clock.ts";
import { formatDuration } from "../duration.ts";
import { describeError } from "../errors.ts";
import { jitter, sleep } from "./_time.ts";
import type { AcquireOptions } from "./flags.ts";
import { describeFetchError, type LockAnswer, releaseLock, requestLock } from "./http.ts";
import { EXIT, note } from "./output.ts";

/** The longest `?wait=` asked for: proxies in between often cut requests idle for 60 s. */
export const MAX_WAIT_CHUNK_MS = 30_000;
/**
 * How long past its `?wait=` a request may stay unanswered before the client
 * drops the connection and asks again: covers a slow network, not a hung one.
 */
export const ANSWER_GRACE_MS = 10_000;
/** How long releasing a lock after a failed token-file write may take. */
const RELEASE_TIMEOUT_MS = 10_000;

/** A lock the client holds. */
export interface HeldLock {
  server: URL;
  /** `undefined` when the server issues no tokens (the original): the lock only expires. */
  token: string | undefined;
  /** When it expires, in the clock's monotonic milliseconds; `undefined` when unknown. */
  expiresAt: number | undefined;
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
  const deadline = options.waitMs === undefined ? Infinity : clock.now() + options.waitMs;
  let reason = "no answer from the server yet";
  for (let attempt = 1;; attempt++) {
    const start = clock.now();
    const remaining = deadline - start;
    if (signal?.aborted) return { kind: "aborted" };
    if (remaining <= 0) return { kind: "timeout", reason };
    const waitMs = attempt === 1 ? undefined : Math.ceil(Math.min(MAX_WAIT_CHUNK_MS, remaining));
    const limitMs = Math.min(remaining, (waitMs ?? 0) + ANSWER_GRACE_MS);

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
      );
    } catch (error) {
      if (signal?.aborted) return { kind: "aborted" };
      if (clock.now() >= deadline) return { kind: "timeout", reason };
      reason = controller.signal.aborted
        ? `no answer from ${options.server.href} within ${formatDuration(limitMs)}`
        : `cannot reach ${options.server.href}: ${describeFetchError(error)}`;
    } finally {
      clock.clearTimeout(timer);
      signal?.removeEventListener("abort", stop);
    }

    if (answer?.kind === "acquired") {
      const { token, expiresAt } = answer;
      const receivedAt = clock.now();
      const lock: HeldLock = {
        server: options.server,
        token,
        expiresAt: options.durationMs !== undefined
          ? receivedAt + options.durationMs
          : expiresAt !== undefined
          ? receivedAt + (expiresAt - clock.wallNow())
          : undefined,
      };
      reportAcquired(options, lock, expiresAt);
      return await saveToken(options, lock);
    }
    if (answer?.kind === "refused") {
      return {
        kind: "failed",
        message: `The server refused the request (HTTP ${answer.status}): ${answer.message}`,
      };
    }
    if (answer) reason = answer.message;
    note(`Waiting: ${reason}`);

    // A server that speaks this protocol is asked again at once, to wait in its queue;
    // every other answer waits out the poll interval, counted from this request's start.
    const joinQueue = answer?.kind === "wait" && answer.json && answer.status === 423 &&
      waitMs === undefined;
    if (!joinQueue) {
      const next = Math.min(start + jitter(options.pollIntervalMs, random), deadline);
      await sleep(clock, next - clock.now(), signal);
    }
  }
}

function reportAcquired(options: AcquireOptions, lock: HeldLock, expiresAt: number | undefined) {
  if (lock.token === undefined) {
    note(
      "Acquired a lock, but the server gave no token (as the original server does): " +
        "it will expire by its duration; there is nothing to release",
    );
    return;
  }
  const until = expiresAt !== undefined ? ` until ${new Date(expiresAt).toISOString()}` : "";
  note(`Acquired the lock as ${options.id}${until}`);
}

/**
 * Writes the token to `--tokenFile` (an empty file when the server gave none, so
 * that no stale token lingers). If that fails, gives the lock back: nobody could
 * release it otherwise.
 */
async function saveToken(options: AcquireOptions, lock: HeldLock): Promise<AcquireResult> {
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
        await releaseLock(lock.server, lock.token, AbortSignal.timeout(RELEASE_TIMEOUT_MS));
        released = "; released the lock";
      } catch (releaseError) {
        released = `; could not release the lock either (${describeFetchError(releaseError)})`;
      }
    }
    return {
      kind: "failed",
      message: `Cannot write --tokenFile "${path}": ${describeError(error)}${released}`,
    };
  }
}

/** Tells the user why acquiring ended without a lock and returns the exit code. */
export function reportFailure(
  result: Extract<AcquireResult, { kind: "timeout" | "failed" }>,
  options: AcquireOptions,
): number {
  if (result.kind === "failed") {
    note(result.message);
    return EXIT.FAILURE;
  }
  note(
    `Gave up: no lock within ${formatDuration(options.waitMs ?? 0)} (--wait); ` +
      `last reason: ${result.reason}`,
  );
  return EXIT.TIMEOUT;
}

/** `startup-lock acquire`: prints the token on stdout; returns the exit code. */
export async function acquireCommand(options: AcquireOptions): Promise<number> {
  const result = await acquireLock(options);
  if (result.kind === "acquired") {
    if (result.lock.token !== undefined) console.log(result.lock.token);
    return EXIT.OK;
  }
  if (result.kind === "aborted") return EXIT.FAILURE;
  return reportFailure(result, options);
}
