/**
 * Reading a request: its target (path and query, never the `Host` header),
 * the query parameters of the lock API, and what its `Accept` asks for (JSON,
 * or the status page). Bad input is an
 * {@linkcode HttpError} with the reason, which the handler answers with `400`.
 *
 * @module
 */
import { DurationTooLongError, isZeroDuration, parseDuration, parseWait } from "../duration.ts";
import { describeError, HttpError } from "../errors.ts";
import { printable } from "../printable.ts";
import { ID_HINT, isValidId, MAX_ID_LENGTH } from "../protocol.ts";

const NO_QUERY = new URLSearchParams();

/** The longest request target (path and query) served: far above any real one, and the common server limit. */
export const MAX_TARGET_LENGTH = 8 * 1024;
/** The most query parameters a request may have: the API reads three; more is a mistake or an attack. */
export const MAX_QUERY_PARAMS = 32;
/** The largest body an acquire request may carry: the API reads none, so any large one is refused unread. */
export const MAX_ACQUIRE_BODY_BYTES = 64 * 1024;

/**
 * A `Host` header: a host name, an IPv4 address or a bracketed IPv6 address,
 * and an optional port (RFC 9110 §7.2, RFC 3986 §3.2.2). Nothing that could
 * end the authority part of a URL (`/`, `?`, `#`, `@`, `\`, spaces).
 */
const HOST_PATTERN = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::\d{0,5})?$/;

/** The last `Host` found valid: clients of one server send the same one, so most checks are a compare. */
let lastValidHost = "";

function isValidHost(host: string): boolean {
  if (!HOST_PATTERN.test(host)) return false;
  lastValidHost = host;
  return true;
}

/**
 * The path and query a client asked for.
 *
 * Deno builds `request.url` from the `Host` header and the request target, so
 * a `Host` such as `x/?duration=5` would turn `GET /healthz` into a lock
 * request. The header is checked first: once it is a valid host[:port], the
 * path starts at the first `/` after the scheme and authority. (An
 * absolute-form target, `GET http://host/path`, is its own URL: its path is
 * the one asked for.) Cheaper than `new URL()`, which showed in the
 * throughput benchmark.
 *
 * @throws {HttpError} 400 for a `Host` header that is not a valid host[:port],
 *   more than {@linkcode MAX_QUERY_PARAMS} query parameters or a repeated one;
 *   414 for a target longer than {@linkcode MAX_TARGET_LENGTH}
 */
export function requestTarget(request: Request): { path: string; query: URLSearchParams } {
  const host = request.headers.get("host");
  if (host !== null && host !== lastValidHost && host !== "" && !isValidHost(host)) {
    throw new HttpError(
      400,
      `Invalid Host header "${echo(host)}": expected a host name or address and an optional port`,
    );
  }
  const url = request.url;
  // The authority ends at the first "/" or "?" after the scheme (Deno leaves out any "#").
  const authority = url.indexOf("://") + 3;
  const slash = url.indexOf("/", authority);
  const q = url.indexOf("?", authority);
  const start = slash === -1 ? q : q === -1 ? slash : Math.min(slash, q);
  if (start !== -1 && url.length - start > MAX_TARGET_LENGTH) {
    throw new HttpError(
      414,
      `URI too long: ${url.length - start} characters, more than ${MAX_TARGET_LENGTH}`,
    );
  }
  if (q === -1) return { path: slash === -1 ? "/" : url.slice(slash), query: NO_QUERY };
  const path = slash === -1 || slash > q ? "/" : url.slice(slash, q);
  const query = new URLSearchParams(url.slice(q + 1));
  checkQuery(query);
  return { path, query };
}

/**
 * Refuses more than {@linkcode MAX_QUERY_PARAMS} parameters, and a repeated
 * one: `?duration=5&duration=3600` has no single meaning.
 */
function checkQuery(query: URLSearchParams): void {
  const names: string[] = [];
  for (const name of query.keys()) {
    if (names.length === MAX_QUERY_PARAMS) {
      throw new HttpError(400, `Too many query parameters: more than ${MAX_QUERY_PARAMS}`);
    }
    if (names.includes(name)) {
      throw new HttpError(400, `Repeated query parameter "${name.slice(0, 100)}": give it once`);
    }
    names.push(name);
  }
}

/**
 * Refuses a request body over `maxBytes` with `413`, reading no more of it
 * than that: at once from `Content-Length`, else by counting the stream (and
 * then only asynchronously). `undefined` when there is no body or it is small
 * enough by its `Content-Length`.
 *
 * @throws {HttpError} 413 for a body that is too large
 */
export function checkBodySize(request: Request, maxBytes: number): Promise<void> | undefined {
  const tooLarge = () =>
    new HttpError(413, `Request body too large: more than ${maxBytes} bytes (the API reads none)`);
  // Checked before the body: Deno gives a GET's body to no one (`request.body` is null), but a
  // GET / with a 10 MB body is as much an acquire request with a body too large as a POST.
  const length = request.headers.get("content-length");
  if (length !== null && /^\d+$/.test(length)) {
    if (Number(length) > maxBytes) throw tooLarge();
    return undefined;
  }
  if (request.body === null) return undefined;
  return (async () => {
    const reader = request.body!.getReader();
    let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw tooLarge();
      }
    }
  })();
}

/** The longest part of a bad value an error message repeats. */
const MAX_ECHO_LENGTH = 100;

/**
 * A client's bad value, safe to repeat in a one-line message: cut short, with
 * control and invisible characters (a line break, a NUL, a bidi override)
 * written as escapes ({@linkcode printable}).
 */
export function echo(value: string, max = MAX_ECHO_LENGTH): string {
  return printable(value.slice(0, max));
}

/** A parameter's value; an empty one (a template whose variable was unset) counts as not given. */
function param(query: URLSearchParams, name: string): string | undefined {
  const value = query.get(name);
  return value === null || value === "" ? undefined : value;
}

/**
 * Reads a duration parameter (`?duration=`): `undefined` when absent or empty.
 * A well-formed duration of any length is returned as asked; the service cuts
 * it to the longest allowed and says so.
 *
 * @throws {HttpError} 400 for a malformed duration
 */
export function readDuration(
  query: URLSearchParams,
  name = "duration",
  parse: (text: string) => number = parseDuration,
): number | undefined {
  const raw = param(query, name);
  if (raw === undefined) return undefined;
  try {
    return parse(raw);
  } catch (error) {
    if (error instanceof DurationTooLongError) return error.ms;
    throw new HttpError(400, `Invalid ${name} "${echo(raw)}": ${describeError(error)}`);
  }
}

/**
 * Reads `?wait=`: 0 when absent, empty or zero; cut to `maxMs` rather than
 * refused when longer.
 *
 * @throws {HttpError} 400 for a malformed wait
 */
export function readWait(query: URLSearchParams, maxMs: number): number {
  const raw = param(query, "wait");
  if (raw === undefined || isZeroDuration(raw)) return 0;
  // parseWait: its refusal says that 0 (one try) is allowed too.
  return Math.min(readDuration(query, "wait", parseWait) ?? 0, maxMs);
}

/**
 * Reads `?id=`, a holder's name: `undefined` when absent or empty.
 *
 * @throws {HttpError} 400 for an id that is not 1 to 128 printable characters
 */
export function readId(query: URLSearchParams): string | undefined {
  const id = param(query, "id");
  if (id === undefined) return undefined;
  if (!isValidId(id)) {
    throw new HttpError(400, `Invalid id "${echo(id, MAX_ID_LENGTH)}": ${ID_HINT}`);
  }
  return id;
}

/** Whether the client asked for JSON. */
export function wantsJson(request: Request): boolean {
  return request.headers.get("accept")?.includes("application/json") ?? false;
}

/** The `q` of the first media range of `accept` that `matches` (0 when none does). */
function quality(accept: string, matches: (type: string) => boolean): number {
  for (const part of accept.split(",")) {
    const [type = "", ...params] = part.split(";").map((s) => s.trim().toLowerCase());
    if (!matches(type)) continue;
    const q = params.find((p) => p.startsWith("q="));
    const value = q ? Number(q.slice(2)) : 1;
    return Number.isFinite(value) ? value : 0;
  }
  return 0;
}

const HTML = /text\/html/i;

/**
 * Whether a request asks for the status page: its `Accept` names `text/html`
 * and does not prefer JSON. `curl`'s `*∕*` and no header at all get JSON, as
 * before.
 */
export function wantsStatusPage(request: Request): boolean {
  const accept = request.headers.get("accept");
  // Checked on every GET /: most clients never name HTML, and need no parsing.
  if (!accept || !HTML.test(accept)) return false;
  const html = quality(accept, (t) => t === "text/html");
  const json = quality(accept, (t) => t === "application/json");
  return html > 0 && html >= json;
}
