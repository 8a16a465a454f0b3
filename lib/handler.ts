/**
 * The HTTP API as a plain `(Request) => Promise<Response>` function. `Deno.serve`
 * is called in `server.ts` only; tests call the handler directly.
 *
 * @module
 */
import { parseDuration, retryAfterSeconds } from "./duration.ts";
import { describeError, HttpError } from "./errors.ts";
import { type Logger, silentLogger } from "./log.ts";
import type { Denial, LockService } from "./service.ts";

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

/** An HTTP request handler. */
export type Handler = (request: Request) => Promise<Response>;

interface Route {
  methods: readonly string[];
  handle: (request: Request, url: URL) => Promise<Response> | Response;
}

/** Builds the handler of the lock API. */
export function createHandler(options: HandlerOptions): Handler {
  const { service, defaultDurationMs, maxDurationMs } = options;
  const log = options.log ?? silentLogger;

  const acquire = async (request: Request, url: URL): Promise<Response> => {
    const durationMs = readDuration(url, defaultDurationMs, maxDurationMs);
    const json = wantsJson(request);
    const outcome = await service.acquire({ durationMs });
    if (!outcome.granted) return locked(outcome.denial, json);
    const { lease } = outcome;
    if (!json) return text(200, "Lock acquired\n");
    return Response.json({
      status: "acquired",
      message: "Lock acquired",
      expiresAt: new Date(lease.expiresAt).toISOString(),
    });
  };

  const routes: Record<string, Route> = {
    "/": { methods: ["GET", "POST"], handle: acquire },
    "/healthz": { methods: ["GET", "HEAD"], handle: () => text(200, "OK\n") },
  };

  return async (request) => {
    const url = new URL(request.url);
    log.debug(`${request.method} ${url.pathname}${url.search}`);
    try {
      const route = routes[url.pathname];
      if (!route) throw new HttpError(404, `Not found: ${url.pathname}`);
      if (!route.methods.includes(request.method)) {
        throw new HttpError(405, `Method ${request.method} is not allowed on ${url.pathname}`, {
          headers: { Allow: route.methods.join(", ") },
        });
      }
      return await route.handle(request, url);
    } catch (error) {
      if (error instanceof HttpError) {
        return text(error.status, `${error.message}\n`, error.headers);
      }
      log.error(`Unexpected error on ${request.method} ${url.pathname}: ${describeError(error)}`);
      return text(500, "Internal error\n");
    }
  };
}

/** Reads `?duration=`, or the default; refuses what is malformed or above `maxMs`. */
function readDuration(url: URL, defaultMs: number, maxMs: number): number {
  const raw = url.searchParams.get("duration");
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
