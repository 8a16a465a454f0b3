/**
 * Access control at the HTTP edge: the bearer token a server asks for
 * (`--authToken`, `--authTokenFile`, `STARTUP_LOCK_AUTH_TOKEN`), where it comes
 * from, and the check of a request's `Authorization` header. The core never
 * sees a refused request.
 *
 * Tokens are compared through their SHA-256 digests in constant time, so
 * neither the content nor the length of the expected token leaks through the
 * time a refusal takes. The token itself is never logged or echoed.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { type Clock, realClock } from "../clock.ts";
import { checkAuthToken, readAuthTokenFile } from "../auth_token.ts";
import { describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { logEvent } from "../log_events.ts";
import type { AuthFailure } from "./render.ts";

/** How often a token file is looked at: a rotated secret works within a second, at one `stat` a second. */
export const TOKEN_FILE_CHECK_MS = 1_000;

/** The SHA-256 digest of a token. */
export function digest(token: string): Uint8Array {
  return createHash("sha256").update(token).digest();
}

/** Where the expected token comes from: its digest, as of now. */
export interface TokenSource {
  /** The digest of the token requests must present. */
  digest(): Uint8Array;
  /** Checks a request's `Authorization: Bearer …`: `undefined` when it may pass, else why not. */
  check(request: Request): AuthFailure | undefined;
}

/** A token given once, on the command line or in the environment. */
export function staticToken(token: string): TokenSource {
  const expected = digest(checkAuthToken(token));
  const source: TokenSource = {
    digest: () => expected,
    check: (request) => checkRequest(request, source),
  };
  return source;
}

/** Options of {@linkcode FileToken}. */
export interface FileTokenOptions {
  /** Monotonic time, for how often the file is looked at. @default {realClock} */
  clock?: Clock;
  /**
   * Told when the token was reloaded (`info`) and when the file cannot be read
   * (`warn`, once until it can again). @default {console.error for both}
   */
  log?: Pick<Logger, "info" | "warn">;
  /** How the file is named in notes. @default {"--authTokenFile"} */
  name?: string;
}

/**
 * A token in a file, read again when the file changes (its size, mtime or
 * inode), looked at no more than once per {@linkcode TOKEN_FILE_CHECK_MS}: a
 * rotated Kubernetes Secret or systemd credential works without a restart. When
 * the file becomes unreadable or invalid, the last good token stays in force.
 */
export class FileToken implements TokenSource {
  readonly #path: string;
  readonly #clock: Clock;
  readonly #log: Pick<Logger, "info" | "warn">;
  readonly #name: string;
  #digest: Uint8Array;
  #stamp: string;
  #checkedAt: number;
  #failing = false;

  /**
   * Reads the file at once.
   *
   * @throws {Error} when it cannot be read or holds no valid token
   */
  constructor(path: string, options: FileTokenOptions = {}) {
    this.#path = path;
    this.#clock = options.clock ?? realClock;
    this.#log = options.log ?? { info: console.error, warn: console.error };
    this.#name = options.name ?? "--authTokenFile";
    this.#stamp = stamp(Deno.statSync(path));
    this.#digest = digest(readAuthTokenFile(path));
    this.#checkedAt = this.#clock.now();
  }

  /** The digest of the token in force, after a look at the file if one is due. */
  digest(): Uint8Array {
    const now = this.#clock.now();
    if (now - this.#checkedAt >= TOKEN_FILE_CHECK_MS) {
      this.#checkedAt = now;
      this.#refresh();
    }
    return this.#digest;
  }

  /** Checks a request against the token in force. */
  check(request: Request): AuthFailure | undefined {
    return checkRequest(request, this);
  }

  #refresh(): void {
    const where = `${this.#name} "${this.#path}"`;
    try {
      const current = stamp(Deno.statSync(this.#path));
      if (current === this.#stamp && !this.#failing) return;
      const token = readAuthTokenFile(this.#path);
      this.#stamp = current;
      this.#digest = digest(token);
      this.#failing = false;
      this.#log.info(`Reloaded the auth token from ${where}`, logEvent("auth_token_reloaded"));
    } catch (error) {
      if (this.#failing) return;
      this.#failing = true;
      this.#log.warn(
        `Cannot read ${where}: ${describeError(error)}; keeping the last good token`,
        logEvent("auth_token_unreadable"),
      );
    }
  }
}

/** What identifies a version of a file without reading it. */
function stamp(info: Deno.FileInfo): string {
  return `${info.size}:${info.mtime?.getTime()}:${info.ino}`;
}

/**
 * Checks a request's `Authorization: Bearer …` against `source`: `undefined`
 * when it may pass, else why not.
 */
export function checkRequest(request: Request, source: TokenSource): AuthFailure | undefined {
  const header = request.headers.get("authorization");
  const match = header === null ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (!match) return "missing";
  // Digests all have the same length, which timingSafeEqual needs: the expected token's length
  // does not show either.
  return timingSafeEqual(digest(match[1]!), source.digest()) ? undefined : "wrong";
}
