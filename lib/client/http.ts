/**
 * The lock server's HTTP API as seen by the client: one function per call,
 * each answering with a small result type. Both protocols are understood: this
 * server's (JSON, `Lock-Token`, `?wait=`) and the original's (`200` or `423`
 * with any body).
 *
 * @module
 */
import { printable } from "../printable.ts";
import { DURATION_HEADER, REQUESTED_DURATION_HEADER, TOKEN_HEADER } from "../protocol.ts";

/** Longest message taken from a response body, so a stray HTML page cannot flood the log. */
const MAX_MESSAGE_LENGTH = 200;

/**
 * The most of a response body read: far above any answer of a lock server (a
 * few hundred bytes), so that a wrong or hostile `--server` streaming an
 * endless body cannot fill the client's memory (it did, 9 GB in 6 s).
 */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * The longest lock token taken: this server's are 22 characters; a longer one
 * is no token, and would end up in `--tokenFile`, stdout and the command's environment.
 */
const MAX_TOKEN_LENGTH = 1024;

/**
 * A token the client can pass on: printable ASCII without spaces. Anything
 * else (a line break, an escape sequence) would corrupt stdout, `--tokenFile`
 * or the command's environment, or act on the user's terminal.
 */
const PASSABLE_TOKEN = /^[\x21-\x7E]+$/;

/** A request for a lock. */
export interface LockRequest {
  /** `?duration=`; `undefined` lets the server decide. */
  durationMs: number | undefined;
  id: string;
  /** `?wait=`: how long the server may hold the request; `undefined` asks for an answer at once. */
  waitMs: number | undefined;
}

/** The server's answer to a lock request. */
export type LockAnswer =
  | {
    kind: "acquired";
    /** `undefined` from the original server, which issues no tokens. */
    token: string | undefined;
    /** Wall-clock expiry from the answer's `expiresAt`, when given. */
    expiresAt: number | undefined;
    /** The duration granted (`Lock-Duration`, or JSON `duration`), when the server says. */
    durationMs: number | undefined;
    /** The duration asked for, when the server granted less (`Lock-Duration-Requested`). */
    requestedMs: number | undefined;
  }
  | {
    /** Not now: 423, or 503 and the like; worth asking again. */
    kind: "wait";
    status: number;
    message: string;
    /** Whether the answer is this server's JSON (the original answers plain text). */
    json: boolean;
    /** The answer's `Retry-After`, in milliseconds, when it gives one in seconds. */
    retryAfterMs: number | undefined;
  }
  | {
    /** A request the server will never grant (400, 404…): asking again cannot help. */
    kind: "refused";
    status: number;
    message: string;
  }
  | {
    /**
     * A 2xx whose token the client cannot pass on (control characters, spaces,
     * too long): no lock server answers so. `token` is safe to print.
     */
    kind: "badToken";
    status: number;
    token: string;
  }
  | {
    /**
     * A 2xx that grants nothing: an HTML page without a token, as a web server
     * or an app answers `GET /`. No lock server answers so: `--server` is wrong.
     */
    kind: "foreign";
    status: number;
    /** The page's title, or its text. */
    message: string;
  };

/**
 * A `401` from the lock server: it needs a bearer token, or refused the one
 * sent. Asking again cannot help.
 */
export class UnauthorizedError extends Error {
  override name = "UnauthorizedError";
}

/** One line on a `401`, in the user's terms: the flags that set the token. */
export function unauthorizedMessage(sent: boolean): string {
  return sent
    ? "The server refused the token (HTTP 401): check --authToken, --authTokenFile or " +
      "STARTUP_LOCK_AUTH_TOKEN against the server's"
    : "The server needs a bearer token (HTTP 401): give --authToken TOKEN, --authTokenFile PATH " +
      "or STARTUP_LOCK_AUTH_TOKEN";
}

/** The headers of a request to the lock server: JSON answers, and the bearer token if any. */
function apiHeaders(authToken: string | undefined): Record<string, string> {
  return authToken === undefined
    ? { Accept: "application/json" }
    : { Accept: "application/json", Authorization: `Bearer ${authToken}` };
}

/** Statuses that mean "not now" rather than "never". */
const RETRY_STATUSES = new Set([408, 423, 425, 429]);

/** Renders a duration for a query string: whole seconds where possible, which the original understands. */
export function durationParam(ms: number): string {
  return ms % 1000 === 0 ? String(ms / 1000) : `${ms}ms`;
}

/**
 * Asks for a lock with `GET /`, sending `authToken` as a bearer token when
 * given. Throws what `fetch` throws when the server cannot be reached or
 * `signal` aborts.
 */
export async function requestLock(
  server: URL,
  request: LockRequest,
  signal: AbortSignal,
  authToken?: string,
): Promise<LockAnswer> {
  const url = new URL("./", server);
  if (request.durationMs !== undefined) {
    url.searchParams.set("duration", durationParam(request.durationMs));
  }
  url.searchParams.set("id", request.id);
  if (request.waitMs !== undefined) url.searchParams.set("wait", durationParam(request.waitMs));
  const response = await fetch(url, { headers: apiHeaders(authToken), signal });
  const body = await readBody(response);
  if (response.status === 401) {
    return { kind: "refused", status: 401, message: unauthorizedMessage(authToken !== undefined) };
  }
  if (response.status >= 200 && response.status < 300) {
    const token = response.headers.get(TOKEN_HEADER)?.trim() || stringField(body.json, "token");
    if (!token && body.html) {
      return { kind: "foreign", status: response.status, message: body.message };
    }
    if (token && (token.length > MAX_TOKEN_LENGTH || !PASSABLE_TOKEN.test(token))) {
      return { kind: "badToken", status: response.status, token: printable(token.slice(0, 40)) };
    }
    const expiresAt = Date.parse(stringField(body.json, "expiresAt") ?? "");
    return {
      kind: "acquired",
      token: token || undefined,
      expiresAt: Number.isNaN(expiresAt) ? undefined : expiresAt,
      durationMs: secondsMs(response.headers.get(DURATION_HEADER)) ??
        secondsMs(numberField(body.json, "duration")),
      requestedMs: secondsMs(response.headers.get(REQUESTED_DURATION_HEADER)) ??
        secondsMs(numberField(body.json, "requestedDuration")),
    };
  }
  const message = body.message ||
    printable(`HTTP ${response.status} ${response.statusText}`.trim());
  if (RETRY_STATUSES.has(response.status) || response.status >= 500) {
    return {
      kind: "wait",
      status: response.status,
      message,
      json: body.json !== undefined,
      retryAfterMs: retryAfterMs(response.headers.get("retry-after")),
    };
  }
  return { kind: "refused", status: response.status, message };
}

/**
 * A `Retry-After` in seconds, as milliseconds; `undefined` when absent or not
 * a number of seconds (an HTTP date is not worth trusting across clocks).
 */
export function retryAfterMs(header: string | null): number | undefined {
  if (header === null || !/^\s*\d{1,9}\s*$/.test(header)) return undefined;
  return Number(header) * 1000;
}

/** What became of a release. */
export type ReleaseAnswer = "released" | "gone";

/**
 * An answer no startup-lock server gives, such as the original's `200 Lock
 * acquired` to a `DELETE`: the URL points at another kind of server.
 */
export class ForeignServerError extends Error {
  override name = "ForeignServerError";
}

/**
 * Gives a lock back with `DELETE /locks/{token}`: `released` on 204, `gone` on
 * this server's 404 (released before, or expired).
 *
 * @throws {ForeignServerError} for an answer only another kind of server gives
 *   (the original answers every request as a lock request)
 * @throws {UnauthorizedError} for a `401`: `authToken` is missing or wrong
 * @throws {Error} for any other answer, and what `fetch` throws when the server
 *   cannot be reached
 */
export async function releaseLock(
  server: URL,
  token: string,
  signal: AbortSignal,
  authToken?: string,
): Promise<ReleaseAnswer> {
  const url = new URL(`locks/${encodeURIComponent(token)}`, server);
  const response = await fetch(url, { method: "DELETE", headers: apiHeaders(authToken), signal });
  const body = await readBody(response);
  if (response.status === 401) throw new UnauthorizedError(unauthorizedMessage(!!authToken));
  const ours = body.json !== undefined;
  if (response.status === 204 || (response.ok && ours)) return "released";
  if (response.status === 404 && ours) return "gone";
  if (response.ok || response.status === 423 || response.status === 404) {
    throw new ForeignServerError(
      `answered ${response.status} "${
        body.message || printable(response.statusText)
      }" to DELETE: ` +
        "not a startup-lock server (the original server has no release; its locks expire)",
    );
  }
  throw httpError(response, body);
}

function httpError(response: Response, body: Body): Error {
  return new Error(
    `HTTP ${response.status}${
      body.message ? `: ${body.message}` : printable(` ${response.statusText}`)
    }`,
  );
}

/** Whether `url` answers 2xx within `timeoutMs`; any failure counts as not ready. */
export async function isReady(url: URL, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
  try {
    const response = await fetch(url, {
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
    });
    await response.body?.cancel();
    return response.ok;
  } catch {
    return false;
  }
}

/**
 * One line for a failed `fetch`: the innermost cause (`fetch failed` alone says
 * nothing), without the URL that the cause repeats.
 */
export function describeFetchError(error: unknown): string {
  let inner = error;
  while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
  const message = inner instanceof Error ? inner.message : String(inner);
  const line = (message.split("\n")[0] ?? message)
    .replace(/^error sending request for url \([^)]*\): /, "")
    .replace(/^client error \(Connect\): /, "");
  // Deno's own hint (on the lines dropped) names a flag the program's fixed permissions cannot take.
  return /invalid peer certificate: UnknownIssuer/.test(line)
    ? `${line}: the server's certificate is not signed by a trusted CA: give the CA's ` +
      "certificate in DENO_CERT=PATH"
    : line;
}

interface Body {
  /** The parsed body when it is JSON. */
  json: unknown;
  /** Whether the body is an HTML page (a web server's or a proxy's, never a lock server's). */
  html: boolean;
  /** JSON's `message`, an HTML page's title (else its text), else the first line of the text. */
  message: string;
}

async function readBody(response: Response): Promise<Body> {
  const text = await readText(response);
  const type = response.headers.get("content-type")?.toLowerCase() ?? "";
  let json: unknown;
  if (type.includes("application/json")) {
    try {
      json = JSON.parse(text);
    } catch { /* not JSON after all: use the text */ }
  }
  const html = type.includes("text/html");
  const firstLine = text.split("\n").map((l) => l.trim()).find((l) => l !== "") ?? "";
  const message = stringField(json, "message") ?? (html ? htmlMessage(text) : firstLine);
  return { json, html, message: printable(message.slice(0, MAX_MESSAGE_LENGTH)) };
}

/**
 * A response body as text, read up to {@linkcode MAX_BODY_BYTES}: the rest
 * is cancelled unread. A body cut short is no JSON: its text is the message.
 */
async function readText(response: Response): Promise<string> {
  if (response.body === null) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const room = MAX_BODY_BYTES - total;
    chunks.push(value.byteLength > room ? value.subarray(0, room) : value);
    total += Math.min(value.byteLength, room);
    if (total === MAX_BODY_BYTES) {
      await reader.cancel().catch(() => {});
      break;
    }
  }
  return await new Blob(chunks).text();
}

const HTML_ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  nbsp: " ",
  "#39": "'",
};

/**
 * What an HTML page says in one line: its title (`502 Bad Gateway`), else its
 * text without the markup. Its first line would be `<!DOCTYPE html>`.
 */
export function htmlMessage(html: string): string {
  const title = /<title[^>]*>([\s\S]*?)<\/title>/i.exec(html)?.[1]?.trim();
  const text = title ||
    html.replace(/<(script|style)\b[\s\S]*?<\/\1\s*>/gi, " ").replace(/<[^>]*>/g, " ");
  return text.replace(
    /&(#39|[a-z]+);/gi,
    (entity, name: string) => HTML_ENTITIES[name.toLowerCase()] ?? entity,
  ).replace(/\s+/g, " ").trim();
}

/** Seconds from a header or a JSON field, in milliseconds; `undefined` unless a positive number. */
function secondsMs(value: string | number | null | undefined): number | undefined {
  if (value === null || value === undefined || value === "") return undefined;
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds > 0 ? Math.round(seconds * 1000) : undefined;
}

function numberField(json: unknown, name: string): number | undefined {
  if (typeof json !== "object" || json === null) return undefined;
  const value = (json as Record<string, unknown>)[name];
  return typeof value === "number" ? value : undefined;
}

function stringField(json: unknown, name: string): string | undefined {
  if (typeof json !== "object" || json === null) return undefined;
  const value = (json as Record<string, unknown>)[name];
  return typeof value === "string" ? value : undefined;
}
