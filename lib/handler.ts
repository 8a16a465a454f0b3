/**
 * The HTTP API as a plain `(Request) => Promise<Response>` function. `Deno.serve`
 * is called in `server.ts` only; tests call the handler directly.
 *
 * @module
 */
import { parseDuration, retryAfterSeconds } from "./duration.ts";
import { describeError, HttpError } from "./errors.ts";
import { type Logger, silentLogger } from "./log.ts";
import type { Awaitable } from "./lock.ts";
import type { Denial, LockService, Outcome } from "./service.ts";

/** Options of {@linkcode createHandler}. */
export interface HandlerOptions {
  service: LockService;
  /** The lock duration when a request names none. */
  defaultDurationMs: number;
  /** The longest duration a request may ask for. */
  maxDurationMs: number;
  /** @default {silentLogger} */
  log?: Logger;
}

/** An HTTP request handler; synchronous where it can be, which keeps the hot path cheap. */
export type Handler = (request: Request) => Awaitable<Response>;

interface Route {
  methods: readonly string[];
  handle: (request: Request, query: URLSearchParams) => Awaitable<Response>;
}

/** Builds the handler of the lock API. */
export function createHandler(options: HandlerOptions): Handler {
  const { service, defaultDurationMs, maxDurationMs } = options;
  const log = options.log ?? silentLogger;

  const acquire = (request: Request, query: URLSearchParams): Awaitable<Response> => {
    const durationMs = readDuration(query, defaultDurationMs, maxDurationMs);
    const json = wantsJson(request);
    const respond = (outcome: Outcome): Response => {
      if (!outcome.granted) return locked(outcome.denial, json);
      if (!json) return text(200, "Lock acquired\n");
      return Response.json({
        status: "acquired",
        message: "Lock acquired",
        expiresAt: new Date(outcome.lease.expiresAt).toISOString(),
      });
    };
    const outcome = service.acquire({ durationMs });
    return outcome instanceof Promise ? outcome.then(respond) : respond(outcome);
  };

  const routes: Record<string, Route> = {
    "/": { methods: ["GET", "POST"], handle: acquire },
    "/healthz": { methods: ["GET", "HEAD"], handle: () => text(200, "OK\n") },
  };

  const debug = log.enabled("debug");

  return (request) => {
    const { path, query } = splitUrl(request.url);
    const method = request.method;
    if (debug) log.debug(`${method} ${request.url}`);
    const fail = (error: unknown): Response => {
      if (error instanceof HttpError) {
        return text(error.status, `${error.message}\n`, error.headers);
      }
      log.error(`Unexpected error on ${method} ${path}: ${describeError(error)}`);
      return text(500, "Internal error\n");
    };
    try {
      const route = routes[path];
      if (!route) throw new HttpError(404, `Not found: ${path}`);
      if (!route.methods.includes(method)) {
        throw new HttpError(405, `Method ${method} is not allowed on ${path}`, {
          headers: { Allow: route.methods.join(", ") },
        });
      }
      const response = route.handle(request, query);
      return response instanceof Promise ? response.catch(fail) : response;
    } catch (error) {
      return fail(error);
    }
  };
}

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

function wantsJson(request: Request): boolean {
  return request.headers.get("accept")?.includes("application/json") ?? false;
}

function locked(denial: Denial, json: boolean): Response {
  const retryAfter = retryAfterSeconds(denial.retryAfterMs);
  const headers = { "Retry-After": String(retryAfter) };
  const message = `Locked: ${denial.message}`;
  if (!json) return text(423, `${message}\n`, headers);
  return Response.json(
    { status: "locked", reason: denial.reason, message, retryAfter },
    { status: 423, headers },
  );
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", ...headers },
  });
}
