/**
 * The server's settings and their defaults. Every timing default is named here
 * with the reason for its value.
 *
 * @module
 */
import type { LogFormat, LogLevel } from "./log.ts";
import type { CheckTarget } from "./probes.ts";
import type { StoreSetting } from "./stores/settings.ts";

/** Listen on every interface, as the original does: clients are pods and units on the node. */
export const DEFAULT_HOST = "0.0.0.0";
/** The original's port. */
export const DEFAULT_PORT = 8888;
/** One application starting at a time, as in the original. */
export const DEFAULT_LOCKS = 1;
/** The original's default lock duration: long enough for a typical app to get past its heavy start. */
export const DEFAULT_LOCK_MS = 10_000;
/** The original's pause after a failed check round: a dependency coming up is noticed within 10 s. */
export const DEFAULT_FAIL_INTERVAL_MS = 10_000;
/** The original's pause after a passing round: cheap on the dependency, still notices an outage within a minute. */
export const DEFAULT_PASS_INTERVAL_MS = 60_000;
/** A probe that takes longer than this counts as down, so a hung endpoint never stalls a round. */
export const DEFAULT_CHECK_TIMEOUT_MS = 5_000;
/**
 * The longest lock a client may ask for. An hour covers the slowest real start-ups
 * while a mistyped `?duration=86400` cannot block a node for a day.
 */
export const DEFAULT_MAX_DURATION_MS = 3_600_000;
/**
 * The longest a request may wait in the queue (`?wait=`). Five minutes outlasts
 * a long rollout step; clients wait longer by asking again, keeping their place
 * through `?id=`. Proxies in between often cut idle requests at 60 s, which is
 * why the client asks in 30 s chunks.
 */
export const DEFAULT_MAX_WAIT_MS = 300_000;
/** At most this many waiting clients: each holds an open connection and a little memory. */
export const DEFAULT_MAX_WAITERS = 10_000;
/** Grants, expiries and dependency changes, not every request. */
export const DEFAULT_LOG_LEVEL: LogLevel = "info";
/** The log format of the server and of the client's notes (kept with the formats, which the client loads). */
export { DEFAULT_LOG_FORMAT } from "./log.ts";
/** The most slots a server may have: far above any node's real need, small enough to stay cheap. */
export const MAX_LOCKS = 1_000_000;

/** The semaphore of a shared store when `--name` is not given. */
export const DEFAULT_STORE_NAME = "default";

/** The highest --maxLoad accepted: no node's load average comes near it. */
export const MAX_LOAD = 100_000;

/** The most waiting clients a server may allow: each holds an open connection. */
export const MAX_WAITERS = 1_000_000;

/** Where the server's bearer token comes from: given once, or a file read again when it changes. */
export type AuthSetting = { token: string } | { tokenFile: string };

/** Where `--locksPerCore` got its slots from, for the start-up line, `/status` and metrics. */
export interface PerCoreSlots {
  /** The `--locksPerCore` value. */
  locksPerCore: number;
  /** The CPUs this process may run on, counted at start. */
  cores: number;
}

/** Everything the server needs to run, validated. */
export interface ServerConfig {
  host: string;
  port: number;
  /** The slots: `--locks`, or `max(1, floor(--locksPerCore × cores))`. */
  locks: number;
  /** Set when `--locksPerCore` gave `locks`. */
  perCore?: PerCoreSlots;
  timeoutMs: number;
  checks: CheckTarget[];
  failHcMs: number;
  passHcMs: number;
  checkTimeoutMs: number;
  maxDurationMs: number;
  maxWaitMs: number;
  maxWaiters: number;
  /** The least time between two grants; `undefined`: no pause. */
  cooldownMs: number | undefined;
  /** No grants while the one-minute load average is above this; `undefined`: no limit. */
  maxLoad: number | undefined;
  /** No grants while a pressure stall share is above this percentage; `undefined`: no limit. */
  maxPressure: number | undefined;
  /** Where held locks are kept across restarts; `undefined`: in memory only. */
  stateFile: string | undefined;
  /** Where the slots live: this process's memory, or Redis, shared with other replicas. */
  store: StoreSetting;
  /** The semaphore's name in a shared store: replicas with one name share its slots. */
  storeName: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
  /** The bearer token that acquire, release, renew and `/status` need; absent, they are open. */
  auth?: AuthSetting;
}
