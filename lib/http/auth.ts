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
import { createHash } from "node:crypto";
import { type Clock, realClock } from "../clock.ts";
import { describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { logEvent } from "../log_events.ts";
import { text } from "./render.ts";

/** How often a token file is looked at: a rotated secret works within a second, at one `stat` a second. */
export const TOKEN_FILE_CHECK_MS = 1_000;

/** The realm of `WWW-Authenticate`. */
export const AUTH_REALM = "startup-lock";

const WHITESPACE = /\s/;

/**
 * Checks a token's form, without ever putting it in the message.
 *
 * @throws {RangeError} when it is empty or contains whitespace
 */
export function checkAuthToken(token: string): string {
  if (token === "") throw new RangeError("the token is empty");
  if (WHITESPACE.test(token)) throw new RangeError("the token must not contain whitespace");
  return token;
}

/**
 * The token in a file, as Kubernetes Secrets and systemd credentials hold it:
 * the whole file, without the line break at its end.
 *
 * @throws {Error} when the file cannot be read; {RangeError} when the token is empty or has whitespace
 */
export function readAuthTokenFile(path: string): string {
  return checkAuthToken(Deno.readTextFileSync(path).replace(/\r?\n$/, ""));
}

/** The SHA-256 digest of a token. */
export function digest(token: string): Uint8Array {
  return createHash("sha256").update(token).digest();
}

/**
 * Whether two byte arrays are equal, in a time that depends only on their
 * lengths: every byte is compared, with no early exit. Callers compare digests,
 * which all have the same length.
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/** Where the expected token comes from: its digest, as of now. */
export interface TokenSource {
  /** The digest of the token requests must present. */
  digest(): Uint8Array;
}

/** A token given once, on the command line or in the environment. */
export function staticToken(token: string): TokenSource {
  const expected = digest(checkAuthToken(token));
  return { digest: () => expected };
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

/** Why a request was refused: it sent no bearer token, or a wrong one. */
export type AuthFailure = "missing" | "wrong";

/**
 * Checks a request's `Authorization: Bearer …` against `source`: `undefined`
 * when it may pass, else why not.
 */
export function checkRequest(request: Request, source: TokenSource): AuthFailure | undefined {
  const header = request.headers.get("authorization");
  const match = header === null ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (!match) return "missing";
  return constantTimeEqual(digest(match[1]!), source.digest()) ? undefined : "wrong";
}

/** `401` with `WWW-Authenticate: Bearer`, saying what was missing or wrong, never the token. */
export function unauthorized(failure: AuthFailure, json: boolean): Response {
  const message = failure === "missing"
    ? "Unauthorized: this server needs an Authorization: Bearer <token> header"
    : "Unauthorized: the bearer token is wrong";
  const headers = {
    "WWW-Authenticate": `Bearer realm="${AUTH_REALM}"${
      failure === "wrong" ? ', error="invalid_token"' : ""
    }`,
  };
  return json
    ? Response.json({ status: "unauthorized", message }, { status: 401, headers })
    : text(401, `${message}\n`, headers);
}

/** Says why a token file cannot be used, for a one-line error at start. */
export function explainTokenFileError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  return describeError(error);
}
