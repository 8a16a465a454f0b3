/**
 * `--store`: where the locks live. `memory` (this process), or a Redis URL,
 * `redis://[user:password@]host:port[/db]` (`rediss://` for TLS). The
 * password never leaves this module except to the Redis client: the URL
 * kept, used for the connection and in logs, `/status` and errors, has none.
 *
 * @module
 */

import type { RecoveryCause } from "../core/denial.ts";
import type { LockStore } from "../core/store.ts";

/** A Redis server to keep the locks in. */
export interface RedisTarget {
  /**
   * `redis://host:port/db`, without user or password (they are passed apart):
   * what the client connects to, and what logs, `/status` and errors show.
   */
  url: string;
  username: string | undefined;
  password: string | undefined;
  tls: boolean;
}

/** Options of the Redis store (`redis/store.ts`). */
export interface RedisLockStoreOptions {
  /** The semaphore's name; several pools share one Redis under different names. @default {"default"} */
  name?: string;
  /** This process's name in the line. @default {a random one} */
  replica?: string;
  /** How long an operation may take before it fails. @default {REDIS_TIMEOUT_MS} */
  timeoutMs?: number;
  /** Called when Redis says the semaphore has another capacity than ours: this replica must stop. */
  onConflict?: (stored: number) => void;
  /**
   * How long a lost semaphore stays lost before it is made anew: the longest
   * a lease may last (`--maxDuration`), so every lease granted before the loss
   * has run out by then. @default {DEFAULT_MAX_DURATION_MS}
   */
  recoveryMs?: number;
  /**
   * This process's monotonic clock in milliseconds, which Redis's clock is
   * compared with at every beat. @default {performance.now}
   */
  now?: () => number;
  /** Called when grants must pause for a while: Redis lost the semaphore, or its clock jumped. */
  onRecovery?: (recovery: StoreRecovery) => void;
  /** Called when grants may resume after {@linkcode RedisLockStoreOptions.onRecovery}. */
  onRecovered?: () => void;
  /**
   * Called with what the operator must fix: a setting of Redis that breaks a
   * guarantee (or cannot be read), or a missing right to the channel.
   */
  onProblem?: (problem: "setting" | "channel", message: string) => void;
  /** Called when the connection goes down or comes back. */
  onConnection?: (up: boolean, error: string | undefined) => void;
}

/** Why and for how long a shared store stops granting. */
export interface StoreRecovery {
  cause: RecoveryCause;
  /** How long grants pause, at least. */
  forMs: number;
  /** What happened, in words, for the log. */
  detail: string;
}

/** What the Redis store adds to a lock store. */
export interface SharedStore extends LockStore {
  /** Connects; resolves once Redis answered and the capacity is checked, or after `waitMs`. */
  connect(waitMs: number): Promise<void>;
}

/**
 * The shape of `redis/store.ts`, which the server loads only for a Redis store
 * (its import of the Redis client would otherwise load with every server).
 */
export interface RedisStoreModule {
  RedisLockStore: new (
    capacity: number,
    target: RedisTarget,
    options?: RedisLockStoreOptions,
  ) => SharedStore;
}

/** The store setting. */
export type StoreSetting = { kind: "memory" } | { kind: "redis"; target: RedisTarget };

/** The default store. */
export const MEMORY_STORE: StoreSetting = { kind: "memory" };

const EXPECTED = "expected memory, or redis://[USER:PASSWORD@]HOST:PORT[/DB] (rediss:// for TLS)";

/** Parses `--store`; a RangeError says what is wrong, never with the password in it. */
export function parseStore(text: string): StoreSetting {
  const value = text.trim();
  if (value === "memory") return MEMORY_STORE;
  if (!/^rediss?:\/\//i.test(value)) throw new RangeError(EXPECTED);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new RangeError(`not a valid URL; ${EXPECTED}`);
  }
  if (!url.hostname) throw new RangeError(`no host; ${EXPECTED}`);
  if (url.search || url.hash) throw new RangeError(`no ?query or #fragment allowed; ${EXPECTED}`);
  const db = url.pathname.replace(/^\//, "");
  if (db !== "" && !/^\d{1,5}$/.test(db)) {
    throw new RangeError(`the database must be a number such as /0; ${EXPECTED}`);
  }
  if (url.port === "0") throw new RangeError(`port 0 is not a port to connect to; ${EXPECTED}`);
  const tls = url.protocol.toLowerCase() === "rediss:";
  const port = url.port || "6379";
  const host = url.hostname;
  const base = `${tls ? "rediss" : "redis"}://${host}:${port}${db === "" ? "" : `/${db}`}`;
  return {
    kind: "redis",
    target: {
      url: base,
      username: url.username ? decodeCredential(url.username) : undefined,
      password: url.password ? decodeCredential(url.password) : undefined,
      tls,
    },
  };
}

/** A user name or password of the URL, `%XX` decoded; a `%` that starts no escape is refused. */
function decodeCredential(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new RangeError(
      `the user or password has a % that is no %XX escape (write % as %25); ${EXPECTED}`,
    );
  }
}
