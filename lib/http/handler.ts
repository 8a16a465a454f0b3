/**
 * The HTTP API as a plain `(Request) => Response` function. `Deno.serve` is
 * called in `server.ts` only; tests call the handler directly.
 *
 * The handler answers synchronously whenever the service does (the memory
 * store always can), which keeps promises off the hot path.
 *
 * @module
 */
import type { LockService, Outcome, Renewal } from "../core/service.ts";
import { storeDown } from "../core/refusals.ts";
import { type Awaitable, type Lease, StoreUnavailableError } from "../core/store.ts";
import { describeError, HttpError } from "../errors.ts";
import type { TokenSource } from "./auth.ts";
import type { PerCoreSlots } from "../config.ts";
import type { DependencyState } from "../gates/dependencies.ts";
import { METRICS_CONTENT_TYPE } from "../observers/metrics.ts";
import { TOKEN_HINT, TOKEN_PATTERN } from "../protocol.ts";
import {
  errorResponse,
  granted,
  lockNotFound,
  refused,
  renewed,
  statusBody,
  text,
  toStatusPage,
  unauthorized,
} from "./render.ts";
import {
  checkBodySize,
  echo,
  MAX_ACQUIRE_BODY_BYTES,
  readDuration,
  readId,
  readWait,
  requestTarget,
  wantsJson,
  wantsStatusPage,
} from "./request.ts";

/** Options of {@linkcode createHandler}. */
export interface HandlerOptions {
  /**
   * The lock service. Requests the handler refuses itself, before the service
   * sees them (401, 400, 413, 414), are told on its event bus as `edge_refused`.
   */
  service: LockService;
  /** The lock duration when a request names none. */
  defaultDurationMs: number;
  /** The longest a request may wait in the queue; longer `?wait=` values are cut to this. @default {0} */
  maxWaitMs?: number;
  /** The dependencies' states, for `/status`. @default {none} */
  dependencies?: () => readonly DependencyState[];
  /** Where `--locksPerCore` got the slots from, for `/status`. @default {none: --locks} */
  perCore?: PerCoreSlots;
  /** Renders `GET /metrics`; without it, `/metrics` is `404`. @default {none} */
  metrics?: () => Promise<string>;
  /** Called with errors that are bugs (answered `500`). @default {console.error} */
  onError?: (message: string) => void;
  /**
   * The bearer token that acquire, release, renew and `/status` need; other
   * routes stay open. @default {none: every route is open}
   */
  auth?: TokenSource;
}

/** The statuses of a request refused as malformed or too large. */
const INVALID_STATUSES: ReadonlySet<number> = new Set([400, 413, 414]);

/** What `Deno.serve` tells the handler besides the request. */
export interface RequestInfo {
  /** Settles when the response has been delivered; rejects when it could not be. */
  completed?: Promise<void>;
}

/** An HTTP request handler; synchronous where it can be. */
export type Handler = (request: Request, info?: RequestInfo) => Awaitable<Response>;

/** A lock's path: one part after `/locks/`, checked as a token once the route is known. */
const LOCK_PATH = /^\/locks\/([^/]*)$/;

type RouteHandler = (
  request: Request,
  query: URLSearchParams,
  info: RequestInfo | undefined,
  token: string,
) => Awaitable<Response>;

interface Route {
  methods: Record<string, RouteHandler>;
  allow: string;
  /** Whether the route needs the bearer token when the server has one. */
  guarded: boolean;
}

function route(methods: Record<string, RouteHandler>, options: { guarded?: boolean } = {}): Route {
  return { methods, allow: Object.keys(methods).join(", "), guarded: options.guarded ?? false };
}

const NO_DEPENDENCIES = () => [];
/** `/status` answers HTML or JSON by `Accept`: caches must keep them apart. */
const VARY = { Vary: "Accept" };

/** Builds the handler of the lock API. */
export function createHandler(options: HandlerOptions): Handler {
  const { service, defaultDurationMs } = options;
  const maxWaitMs = options.maxWaitMs ?? 0;
  const dependencies = options.dependencies ?? NO_DEPENDENCIES;
  const onError = options.onError ?? ((message) => console.error(message));
  const { auth, perCore } = options;
  const { events } = service;

  /** The answer to an acquire request once the service has decided. */
  const answerAcquire = (outcome: Outcome, json: boolean, info: RequestInfo | undefined) => {
    if (!outcome.granted) return refused(outcome.denial, json);
    const { lease } = outcome;
    // If the answer never reaches the client, it never learns its token: give the slot back
    // rather than leak it until expiry.
    if (!outcome.existing) info?.completed?.catch(() => service.handBack(lease));
    return granted(outcome, json);
  };

  const acquire: RouteHandler = (request, query, info, token) => {
    // Someone who opens the server in a browser is curious, not starting an app: the status
    // page, not a slot. Clients send */*, nothing or JSON, which never prefer HTML.
    if (request.method === "GET" && wantsStatusPage(request)) return toStatusPage();
    // A body is never read: one too large is refused, unread beyond the limit, before any slot.
    const checked = checkBodySize(request, MAX_ACQUIRE_BODY_BYTES);
    return checked ? checked.then(() => acquireNow(request, query, info, token)) : acquireNow(
      request,
      query,
      info,
      token,
    );
  };

  const acquireNow: RouteHandler = (request, query, info) => {
    const durationMs = readDuration(query) ?? defaultDurationMs;
    const id = readId(query);
    const waitMs = readWait(query, maxWaitMs);
    const json = wantsJson(request);
    const outcome = waitMs === 0
      ? service.acquire({ durationMs, id })
      : service.acquire({ durationMs, id, waitMs, signal: request.signal });
    // The hot path: answered synchronously, with no closure or promise.
    if (!(outcome instanceof Promise)) return answerAcquire(outcome, json, info);
    return outcome.then((o) => answerAcquire(o, json, info));
  };

  const release: RouteHandler = (request, _query, _info, token) => {
    const respond = (lease: Lease | undefined) =>
      lease ? new Response(null, { status: 204 }) : lockNotFound(wantsJson(request));
    const lease = service.release(token);
    return lease instanceof Promise ? lease.then(respond) : respond(lease);
  };

  const renew: RouteHandler = (request, query, _info, token) => {
    const durationMs = readDuration(query) ?? defaultDurationMs;
    const json = wantsJson(request);
    const respond = (r: Renewal) => r.renewed ? renewed(r, json) : lockNotFound(json);
    const renewal = service.renew(token, durationMs);
    return renewal instanceof Promise ? renewal.then(respond) : respond(renewal);
  };

  // A browser gets the status page, which fetches the JSON form itself. Its module is loaded at
  // the first request for it: a server nobody looks at never loads it.
  const status: RouteHandler = async (request) =>
    wantsStatusPage(request)
      ? (await import("./status_page.ts")).statusPage()
      : Response.json(statusBody(await service.status(), dependencies(), perCore), {
        headers: VARY,
      });
  const healthz: RouteHandler = () => text(200, "OK\n");

  const routes: Record<string, Route> = {
    "/": route({ GET: acquire, POST: acquire }, { guarded: true }),
    "/healthz": route({ GET: healthz, HEAD: healthz }),
    "/status": route({ GET: status }, { guarded: true }),
  };
  const { metrics } = options;
  if (metrics) {
    // Never takes a slot, like /healthz: scrapes must not compete with clients.
    const scrape: RouteHandler = async (request) => {
      const body = await metrics();
      if (request.method !== "HEAD") {
        return new Response(body, { headers: { "Content-Type": METRICS_CONTENT_TYPE } });
      }
      // A HEAD answer without a body would say `content-length: 0`; it must say the GET's length.
      const length = String(new TextEncoder().encode(body).byteLength);
      return new Response(null, {
        headers: { "Content-Type": METRICS_CONTENT_TYPE, "Content-Length": length },
      });
    };
    routes["/metrics"] = route({ GET: scrape, HEAD: scrape });
  }
  const lockRoute = route({ DELETE: release, PUT: renew }, { guarded: true });

  /** Maps every error to a response, in one place. */
  const fail = (error: unknown, request: Request, path: string): Response => {
    const json = wantsJson(request);
    if (error instanceof HttpError) {
      if (INVALID_STATUSES.has(error.status)) {
        events.emit({ type: "edge_refused", reason: "invalid" });
      }
      return errorResponse(error.status, error.message, json, error.headers);
    }
    if (error instanceof StoreUnavailableError) {
      return refused(storeDown(error.message), json);
    }
    onError(`Unexpected error on ${request.method} ${path}: ${describeError(error)}`);
    return text(500, "Internal error\n");
  };

  return (request, info) => {
    let path = "";
    try {
      const target = requestTarget(request);
      path = target.path;
      let token = "";
      let found = routes[path];
      if (!found) {
        const match = LOCK_PATH.exec(path);
        if (!match) throw new HttpError(404, `Not found: ${path.slice(0, 200)}`);
        found = lockRoute;
        token = match[1]!;
      }
      const handle = found.methods[request.method];
      if (!handle) {
        throw new HttpError(405, `Method ${request.method} is not allowed on ${path}`, {
          headers: { Allow: found.allow },
        });
      }
      if (auth && found.guarded) {
        const failure = auth.check(request);
        if (failure) {
          events.emit({ type: "edge_refused", reason: "unauthorized" });
          return unauthorized(failure, wantsJson(request));
        }
      }
      if (found === lockRoute && !TOKEN_PATTERN.test(token)) {
        // A mangled token is an error to show, not a lock that is already gone.
        throw new HttpError(400, `Invalid token "${echo(token)}": ${TOKEN_HINT}`);
      }
      const response = handle(request, target.query, info, token);
      return response instanceof Promise
        ? response.catch((error) => fail(error, request, path))
        : response;
    } catch (error) {
      return fail(error, request, path);
    }
  };
}
