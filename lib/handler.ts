/**
 * The HTTP API as a plain `(Request) => Response` function. `Deno.serve` is
 * called in `server.ts` only; tests call the handler directly.
 *
 * The handler answers synchronously whenever the service does (the in-memory
 * store always can), which keeps promises off the hot path.
 *
 * @module
 */
import { DurationTooLongError, parseDuration, retryAfterSeconds } from "./duration.ts";
import { describeError, HttpError } from "./errors.ts";
import type { Awaitable, Lease } from "./lock.ts";
import { type Logger, silentLogger } from "./log.ts";
import { ID_HINT, isValidId, MAX_ID_LENGTH, TOKEN_HEADER, TOKEN_PATTERN } from "./protocol.ts";
import type { Denial, LockService, Outcome } from "./service.ts";

/** Options of {@linkcode createHandler}. */
export interface HandlerOptions {
  service: LockService;
  /** The lock duration when a request names none. */
  defaultDurationMs: number;
  /** The longest duration a request may ask for. */
  maxDurationMs: number;
  /** The longest a request may wait in the queue; longer `?wait=` values are cut to this. @default {0} */
  maxWaitMs?: number;
  /** @default {silentLogger} */
  log?: Logger;
}

/** What `Deno.serve` tells the handler besides the request. */
export interface RequestInfo {
  /** Settles when the response has been delivered; rejects when it could not be. */
  completed?: Promise<void>;
}

/** An HTTP request handler; synchronous where it can be. */
export type Handler = (request: Request, info?: RequestInfo) => Awaitable<Response>;

const LOCK_PATH = new RegExp(`^/locks/(${TOKEN_PATTERN.source.slice(1, -1)})$`);

type RouteHandler = (
  request: Request,
  query: URLSearchParams,
  info: RequestInfo | undefined,
  token: string,
) => Awaitable<Response>;

interface Route {
  methods: Record<string, RouteHandler>;
  allow: string;
}

function route(methods: Record<string, RouteHandler>): Route {
  return { methods, allow: Object.keys(methods).join(", ") };
}

/** Builds the handler of the lock API. */
export function createHandler(options: HandlerOptions): Handler {
  const { service, defaultDurationMs, maxDurationMs } = options;
  const maxWaitMs = options.maxWaitMs ?? 0;
  const log = options.log ?? silentLogger;
  const debug = log.enabled("debug");

  const acquire: RouteHandler = (request, query, info) => {
    const durationMs = readDuration(query, defaultDurationMs, maxDurationMs);
    const id = readId(query);
    const waitMs = readWait(query, maxWaitMs);
    const json = wantsJson(request);
    if (waitMs === 0) {
      // The hot path: answered synchronously, with no closure or promise.
      const outcome = service.acquire({ durationMs, id });
      if (!(outcome instanceof Promise)) return answerAcquire(outcome, json, info);
      return outcome.then((o) => answerAcquire(o, json, info));
    }
    const waited = service.acquire({ durationMs, id, waitMs, signal: request.signal });
    return Promise.resolve(waited).then((outcome) => {
      // A client that went away while its slot was being granted never learns its token.
      if (outcome.granted && !outcome.existing && request.signal.aborted) {
        service.release(outcome.lease.token);
        return refused(CLIENT_GONE, json);
      }
      return answerAcquire(outcome, json, info);
    });
  };

  /** The answer to an acquire request once the service has decided. */
  const answerAcquire = (outcome: Outcome, json: boolean, info: RequestInfo | undefined) => {
    if (!outcome.granted) return refused(outcome.denial, json);
    const { lease } = outcome;
    // If the answer never reaches the client, it never learns its token: give the slot back
    // rather than leak it until expiry.
    if (!outcome.existing) info?.completed?.catch(() => service.release(lease.token));
    return granted(lease, json);
  };

  const release: RouteHandler = (request, _query, _info, token) => {
    const respond = (lease: Lease | undefined) =>
      lease ? new Response(null, { status: 204 }) : lockNotFound(wantsJson(request));
    const lease = service.release(token);
    return lease instanceof Promise ? lease.then(respond) : respond(lease);
  };

  const renew: RouteHandler = (request, query, _info, token) => {
    // Renewal is capped at --maxDuration rather than refused: the answer says the expiry granted.
    const durationMs = readCapped(query, "duration", maxDurationMs) ?? defaultDurationMs;
    const json = wantsJson(request);
    const respond = (lease: Lease | undefined) => lease ? renewed(lease, json) : lockNotFound(json);
    const lease = service.renew(token, durationMs);
    return lease instanceof Promise ? lease.then(respond) : respond(lease);
  };

  const status: RouteHandler = async () => Response.json(await service.status());
  const healthz: RouteHandler = () => text(200, "OK\n");

  const routes: Record<string, Route> = {
    "/": route({ GET: acquire, POST: acquire }),
    "/healthz": route({ GET: healthz, HEAD: healthz }),
    "/status": route({ GET: status }),
  };
  const lockRoute = route({ DELETE: release, PUT: renew });

  const fail = (error: unknown, request: Request, path: string): Response => {
    if (error instanceof HttpError) {
      return wantsJson(request)
        ? Response.json({ status: "error", message: error.message }, {
          status: error.status,
          headers: error.headers,
        })
        : text(error.status, `${error.message}\n`, error.headers);
    }
    log.error(`Unexpected error on ${request.method} ${path}: ${describeError(error)}`);
    return text(500, "Internal error\n");
  };

  return (request, info) => {
    const { path, query } = splitUrl(request.url);
    const method = request.method;
    if (debug) log.debug(`${method} ${request.url}`);
    try {
      let token = "";
      let target = routes[path];
      if (!target) {
        const match = LOCK_PATH.exec(path);
        if (!match) throw new HttpError(404, `Not found: ${path}`);
        target = lockRoute;
        token = match[1]!;
      }
      const handle = target.methods[method];
      if (!handle) {
        throw new HttpError(405, `Method ${method} is not allowed on ${path}`, {
          headers: { Allow: target.allow },
        });
      }
      const response = handle(request, query, info, token);
      return response instanceof Promise
        ? response.catch((error) => fail(error, request, path))
        : response;
    } catch (error) {
      return fail(error, request, path);
    }
  };
}

const CLIENT_GONE: Denial = {
  reason: "cancelled",
  message: "the client went away",
  retryAfterMs: 0,
};

const NO_QUERY = new URLSearchParams();

/**
 * The path and query of a request URL. Cheaper than `new URL()`, which showed
 * in the throughput benchmark; the server always gives an absolute URL.
 */
function splitUrl(url: string): { path: string; query: URLSearchParams } {
  const start = url.indexOf("/", url.indexOf("://") + 3);
  if (start === -1) return { path: "/", query: NO_QUERY };
  const q = url.indexOf("?", start);
  if (q === -1) return { path: url.slice(start), query: NO_QUERY };
  return { path: url.slice(start, q), query: new URLSearchParams(url.slice(q + 1)) };
}

/** Reads `?duration=`, or the default; refuses what is malformed or above `maxMs`. */
function readDuration(query: URLSearchParams, defaultMs: number, maxMs: number): number {
  const raw = query.get("duration");
  if (raw === null) return defaultMs;
  let ms: number;
  try {
    ms = parseDuration(raw);
  } catch (error) {
    throw new HttpError(400, `Invalid duration "${raw}": ${describeError(error)}`);
  }
  if (ms > maxMs) {
    throw new HttpError(
      400,
      `Invalid duration "${raw}": expected at most ${maxMs / 1000} seconds (--maxDuration)`,
    );
  }
  return ms;
}

/** Reads `?wait=`: 0 when absent or zero, cut to `maxMs`. */
function readWait(query: URLSearchParams, maxMs: number): number {
  const raw = query.get("wait");
  if (raw === null || ZERO_DURATION.test(raw)) return 0;
  return readCapped(query, "wait", maxMs) ?? 0;
}

const ZERO_DURATION = /^\s*0+(\.0+)?(ms|s|m|h)?\s*$/;

/** Reads a duration parameter that is cut to `maxMs` rather than refused when longer. */
function readCapped(query: URLSearchParams, name: string, maxMs: number): number | undefined {
  const raw = query.get(name);
  if (raw === null) return undefined;
  try {
    return Math.min(parseDuration(raw), maxMs);
  } catch (error) {
    if (error instanceof DurationTooLongError) return maxMs;
    throw new HttpError(400, `Invalid ${name} "${raw}": ${describeError(error)}`);
  }
}

/** Reads `?id=`, a holder's name. */
function readId(query: URLSearchParams): string | undefined {
  const id = query.get("id");
  if (id === null) return undefined;
  if (!isValidId(id)) {
    throw new HttpError(400, `Invalid id "${id.slice(0, MAX_ID_LENGTH)}": ${ID_HINT}`);
  }
  return id;
}

function wantsJson(request: Request): boolean {
  return request.headers.get("accept")?.includes("application/json") ?? false;
}

function granted(lease: Lease, json: boolean): Response {
  const headers = { [TOKEN_HEADER]: lease.token };
  if (!json) return text(200, "Lock acquired\n", headers);
  return Response.json({
    status: "acquired",
    message: "Lock acquired",
    token: lease.token,
    id: lease.id ?? null,
    expiresAt: new Date(lease.expiresAt).toISOString(),
  }, { headers });
}

function renewed(lease: Lease, json: boolean): Response {
  const expiresAt = new Date(lease.expiresAt).toISOString();
  if (!json) return text(200, `Lock renewed until ${expiresAt}\n`);
  return Response.json({ status: "renewed", message: "Lock renewed", expiresAt });
}

function lockNotFound(json: boolean): Response {
  const message = "No such lock: it was released or has expired";
  return json
    ? Response.json({ status: "error", message }, { status: 404 })
    : text(404, `${message}\n`);
}

/** 423 for a lock that is not free; 503 when the server cannot queue the request. */
function refused(denial: Denial, json: boolean): Response {
  const unavailable = denial.reason === "queue_full" || denial.reason === "shutting_down";
  const status = unavailable ? 503 : 423;
  const retryAfter = retryAfterSeconds(denial.retryAfterMs);
  const headers = { "Retry-After": String(retryAfter) };
  const message = unavailable ? `Unavailable: ${denial.message}` : `Locked: ${denial.message}`;
  if (!json) return text(status, `${message}\n`, headers);
  return Response.json(
    {
      status: unavailable ? "unavailable" : "locked",
      reason: denial.reason,
      message,
      retryAfter,
    },
    { status, headers },
  );
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", ...headers },
  });
}
