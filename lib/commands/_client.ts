/**
 * Flags and readers shared by the client commands: `--server`, `--tokenFile`,
 * the app's ready URL, and URL and path parsers.
 *
 * @module
 */
import { type FlagSpec, Reader } from "../args.ts";
import { formatDuration, parseDuration } from "../duration.ts";
import { UsageError } from "../errors.ts";
import type { ReadyOptions } from "../client/ready.ts";
import { parseCheckTarget } from "../check_target.ts";

/** How often `run` and `hold` ask the app's ready URL: frees the lock soon after the app is ready, at no real cost. */
export const DEFAULT_READY_INTERVAL_MS = 250;

/** `--server URL`: the lock server. */
export const SERVER_FLAG: FlagSpec = {
  name: "server",
  kind: "value",
  valueName: "URL",
  description: "The lock server, such as http://startup-lock:8888; required",
};

/** `--tokenFile PATH`; each command says what it does with the file. */
export const TOKEN_FILE_FLAG: FlagSpec = {
  name: "tokenFile",
  kind: "value",
  valueName: "PATH",
  description: "File for the lock's token",
};

/** `--readyUrl URL`; each command adds what happens without it. */
export const READY_URL_FLAG: FlagSpec = {
  name: "readyUrl",
  kind: "value",
  valueName: "URL",
  description: "The app's readiness endpoint: the lock is released once it answers 2xx, " +
    "or for tcp://HOST:PORT once it accepts a connection",
};

/** `--readyInterval DURATION`. */
export const READY_INTERVAL_FLAG: FlagSpec = {
  name: "readyInterval",
  kind: "value",
  valueName: "DURATION",
  default: formatDuration(DEFAULT_READY_INTERVAL_MS),
  description: "Pause between requests to --readyUrl",
};

/**
 * The server's base URL from `--server`: query and fragment dropped, ending in
 * `/`, so that `./` and `locks/{token}` resolve against it, also behind a path
 * prefix.
 *
 * @throws {UsageError} when it is missing or not an http(s) URL
 */
export function readServer(read: Reader): URL {
  if (!read.has("server")) {
    throw new UsageError(
      "Missing --server URL (or STARTUP_LOCK_SERVER): the lock server to ask, " +
        "such as http://startup-lock:8888",
    );
  }
  const url = read.value("server", undefined, (t) => parseHttpUrl(t, "http://startup-lock:8888"))!;
  url.search = "";
  url.hash = "";
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return url;
}

/** `--readyUrl` and `--readyInterval`. */
export function readReady(read: Reader): ReadyOptions {
  return {
    readyUrl: read.value("readyUrl", undefined, parseReadyUrl),
    readyIntervalMs: read.value("readyInterval", DEFAULT_READY_INTERVAL_MS, parseDuration),
  };
}

/**
 * A `--readyUrl`: an `http://` or `https://` URL, or `tcp://HOST:PORT` for an
 * app that is ready once it accepts a connection.
 */
export function parseReadyUrl(text: string): URL {
  const examples = "http://localhost:8080/ready or tcp://localhost:5432";
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    // `new URL` already refuses a port above 65535: parseCheckTarget says what a tcp URL looks like.
    if (/^\s*tcp:/i.test(text)) parseCheckTarget(text);
    throw new RangeError(`expected an http://, https:// or tcp:// URL such as ${examples}`);
  }
  if (url.protocol === "http:" || url.protocol === "https:") return url;
  if (url.protocol === "tcp:") return new URL(parseCheckTarget(text).url);
  throw new RangeError(
    `unsupported scheme "${url.protocol.slice(0, -1)}": expected an http://, https:// or ` +
      `tcp:// URL such as ${examples}`,
  );
}

/** A file path: anything but blank. */
export function parsePath(text: string): string {
  if (text.trim() === "") throw new RangeError("expected a file path");
  return text;
}

/** An `http://` or `https://` URL; `example` shows what is expected. */
export function parseHttpUrl(text: string, example: string): URL {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new RangeError(`expected an http:// or https:// URL such as ${example}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new RangeError(
      `unsupported scheme "${url.protocol.slice(0, -1)}": expected an http:// or https:// URL ` +
        `such as ${example}`,
    );
  }
  return url;
}
