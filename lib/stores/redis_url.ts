/**
 * `--store`: where the locks live. `memory` (this process), or a Redis URL,
 * `redis://[user:password@]host:port[/db]` (`rediss://` for TLS). The
 * password never leaves this module except to the Redis client: the display
 * form, used in logs, `/status` and errors, has none.
 *
 * @module
 */

/** A Redis server to keep the locks in. */
export interface RedisTarget {
  /** The URL for the client, without user or password (they are passed apart). */
  url: string;
  /** `redis://host:port/db`, for people: no credentials. */
  display: string;
  username: string | undefined;
  password: string | undefined;
  tls: boolean;
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
  const tls = url.protocol.toLowerCase() === "rediss:";
  const port = url.port || "6379";
  const host = url.hostname;
  const base = `${tls ? "rediss" : "redis"}://${host}:${port}${db === "" ? "" : `/${db}`}`;
  return {
    kind: "redis",
    target: {
      url: base,
      display: base,
      username: url.username ? decodeURIComponent(url.username) : undefined,
      password: url.password ? decodeURIComponent(url.password) : undefined,
      tls,
    },
  };
}

/** Replaces a password in `text` (a URL typed by the user) with `***`, for error messages. */
export function redactUrl(text: string): string {
  return text.replace(/^(rediss?:\/\/[^:@/]*:)[^@/]*@/i, "$1***@");
}
