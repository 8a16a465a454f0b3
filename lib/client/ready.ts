/**
 * Releasing a held lock once the app is ready, for `run` and `hold`: the lock
 * should cover the heavy part of a start-up, not the app's whole life.
 *
 * @module
 */
import { type Clock, realClock } from "../clock.ts";
import { aborted, sleep } from "./_time.ts";
import { isReady } from "./http.ts";
import { type HeldLock, releaseHeldLock } from "./lock.ts";
import { note } from "./output.ts";

/** How long one request to the ready URL may take; an app that hangs counts as not ready. */
export const READY_PROBE_TIMEOUT_MS = 5_000;

/**
 * Whether the app at `readyUrl` is ready: an `http(s)://` URL answers 2xx, a
 * `tcp://HOST:PORT` accepts a connection (as a Kubernetes `tcpSocket` probe),
 * within `timeoutMs`; any failure counts as not ready.
 */
export async function appIsReady(
  readyUrl: URL,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<boolean> {
  if (readyUrl.protocol !== "tcp:") return await isReady(readyUrl, timeoutMs, signal);
  try {
    const conn = await Deno.connect({
      // A tcp: URL keeps an IPv6 address in brackets, which Deno.connect does not take.
      hostname: readyUrl.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: Number(readyUrl.port),
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
    });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** What the app did to count as ready, for the log: `… answered 2xx` or `… accepted a connection`. */
export function readyEvent(readyUrl: URL): string {
  return readyUrl.protocol === "tcp:"
    ? `${readyUrl.href} accepted a connection`
    : `${readyUrl.href} answered 2xx`;
}

/** Watching the app's readiness, for `run` and `hold`. */
export interface ReadyOptions {
  /**
   * The app's ready URL: the lock is released once it answers 2xx, or for
   * `tcp://HOST:PORT` once it accepts a connection.
   */
  readyUrl: URL | undefined;
  /** The pause between requests to `readyUrl`. */
  readyIntervalMs: number;
}

/** How watching ended. */
export type WatchOutcome = "released" | "expired" | "stopped";

/**
 * Asks `readyUrl` every `readyIntervalMs` and releases the lock once it answers
 * 2xx, or accepts a connection for `tcp://` (`released`). Ends without releasing when the lock expires first
 * (`expired`) or `signal` aborts (`stopped`: the caller releases, saying why).
 * Without a ready URL it only waits for expiry or the signal. A lock without a
 * token (from the original server) can only expire: `expired` at once.
 */
export async function releaseWhenReady(
  lock: HeldLock,
  ready: ReadyOptions,
  signal: AbortSignal,
  clock: Clock = realClock,
): Promise<WatchOutcome> {
  const { readyUrl, readyIntervalMs } = ready;
  if (lock.token === undefined) return "expired";
  const expiresIn = () => lock.expiresAt === undefined ? Infinity : lock.expiresAt - clock.now();
  while (!signal.aborted) {
    if (expiresIn() <= 0) {
      if (readyUrl) {
        note(`The lock expired before ${readyEvent(readyUrl)}`, "lock_expired", "warn");
      }
      return "expired";
    }
    if (readyUrl) {
      const timeoutMs = Math.min(READY_PROBE_TIMEOUT_MS, Math.max(1, expiresIn()));
      if (await appIsReady(readyUrl, timeoutMs, signal) && !signal.aborted) {
        await releaseHeldLock(lock, readyEvent(readyUrl));
        return "released";
      }
    }
    const pause = Math.min(readyUrl ? readyIntervalMs : Infinity, expiresIn());
    if (pause === Infinity) await aborted(signal);
    else await sleep(clock, pause, signal);
  }
  return "stopped";
}
