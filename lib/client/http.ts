/**
 * The lock server's HTTP API as seen by the client: one function per call,
 * each answering with a small result type. Both protocols are understood: this
 * server's (JSON, `Lock-Token`, `?wait=`) and the original's (`200` or `423`
 * with any body).
 *
 * @module
 */
import { TOKEN_HEADER } from "../protocol.ts";

/** Longest message taken from a response body, so a stray HTML page cannot flood the log. */
const MAX_MESSAGE_LENGTH = 200;

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
  }
  | {
    /** Not now: 423, or 503 and the like; worth asking again. */
    kind: "wait";
    status: number;
    message: string;
    /** Whether the answer is this server's JSON (the original answers plain text). */
    json: boolean;
  }
  | {
    /** A request the server will never grant (400, 404…): asking again cannot help. */
    kind: "refused";
    status: number;
    message: string;
  };

/** Statuses that mean "not now" rather than "never". */
const RETRY_STATUSES = new Set([408, 423, 425, 429]);

/** Renders a duration for a query string: whole seconds where possible, which the original understands. */
export function durationParam(ms: number): string {
  return ms % 1000 === 0 ? String(ms / 1000) : `${ms}ms`;
}

/**
 * Asks for a lock with `GET /`. Throws what `fetch` throws when the server
 * cannot be reached or `signal` aborts.
 */
export async function requestLock(
  server: URL,
  request: LockRequest,
  signal: AbortSignal,
): Promise<LockAnswer> {
  const url = new URL("./", server);
  if (request.durationMs !== undefined) {
    url.searchParams.set("duration", durationParam(request.durationMs));
  }
  url.searchParams.set("id", request.id);
  if (request.waitMs !== undefined) url.searchParams.set("wait", durationParam(request.waitMs));
  const response = await fetch(url, { headers: { Accept: "application/json" }, signal });
  const body = await readBody(response);
  if (response.status >= 200 && response.status < 300) {
    const token = response.headers.get(TOKEN_HEADER)?.trim() || stringField(body.json, "token");
    const expiresAt = Date.parse(stringField(body.json, "expiresAt") ?? "");
    return {
      kind: "acquired",
      token: token || undefined,
      expiresAt: Number.isNaN(expiresAt) ? undefined : expiresAt,
    };
  }
  const message = body.message || `HTTP ${response.status} ${response.statusText}`.trim();
  if (RETRY_STATUSES.has(response.status) || response.status >= 500) {
    return { kind: "wait", status: response.status, message, json: body.json !== undefined };
  }
  return { kind: "refused", status: response.status, message };
}

/** What became of a release. */
export type ReleaseAnswer = "released" | "gone";

/**
 * Gives a lock back with `DELETE /locks/{token}`: `released` on 204, `gone` on
 * 404 (released before, or expired). Throws on any other answer, and what
 * `fetch` throws when the server cannot be reached.
 */
export async function releaseLock(
  server: URL,
  token: string,
  signal: AbortSignal,
): Promise<ReleaseAnswer> {
  const url = new URL(`locks/${encodeURIComponent(token)}`, server);
  const response = await fetch(url, {
    method: "DELETE",
    headers: { Accept: "application/json" },
    signal,
  });
  const body = await readBody(response);
  if (response.status === 204 || response.status === 200) return "released";
  if (response.status === 404) return "gone";
  throw new Error(
    `HTTP ${response.status}${body.message ? `: ${body.message}` : ` ${response.statusText}`}`,
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
  return (message.split("\n")[0] ?? message)
    .replace(/^error sending request for url \([^)]*\): /, "")
    .replace(/^client error \(Connect\): /, "");
}

interface Body {
  /** The parsed body when it is JSON. */
  json: unknown;
  /** JSON's `message`, else the first line of the text. */
  message: string;
}

async function readBody(response: Response): Promise<Body> {
  const text = await response.text();
  let json: unknown;
  if (response.headers.get("content-type")?.includes("application/json")) {
    try {
      json = JSON.parse(text);
    } catch { /* not JSON after all: use the text */ }
  }
  const firstLine = text.split("\n").map((l) => l.trim()).find((l) => l !== "") ?? "";
  const message = stringField(json, "message") ?? firstLine;
  return { json, message: message.slice(0, MAX_MESSAGE_LENGTH) };
}

function stringField(json: unknown, name: string): string | undefined {
  if (typeof json !== "object" || json === null) return undefined;
  const value = (json as Record<string, unknown>)[name];
  return typeof value === "string" ? value : undefined;
}
