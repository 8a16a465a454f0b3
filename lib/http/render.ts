/**
 * Rendering the service's answers as HTTP: statuses, plain text or JSON,
 * `Retry-After`, and `/status` with ISO times. The core says what happened in
 * codes and milliseconds; the sentences are written here.
 *
 * @module
 */
import {
  type Denial,
  type FailingDependency,
  type RecoveryCause,
  UNAVAILABLE_REASONS,
} from "../core/denial.ts";
import type { StatusData } from "../core/service.ts";
import { isoTime } from "../clock.ts";
import type { PerCoreSlots } from "../config.ts";
import type { Lease } from "../core/store.ts";
import { formatDuration, retryAfterSeconds } from "../duration.ts";
import type { DependencyState } from "../gates/dependencies.ts";
import { DURATION_HEADER, REQUESTED_DURATION_HEADER, TOKEN_HEADER } from "../protocol.ts";

/** A plain-text response. */
export function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", ...headers },
  });
}

/** An error response in the form the client asked for. */
export function errorResponse(
  status: number,
  message: string,
  json: boolean,
  headers: Record<string, string> = {},
): Response {
  return json
    ? Response.json({ status: "error", message }, { status, headers })
    : text(status, `${message}\n`, headers);
}

/** Seconds, as a header or JSON value: `3600`, `0.5`. */
function seconds(ms: number): number {
  return Math.round(ms) / 1000;
}

/** A held lock's duration as granted, and what was asked when it was cut. */
interface Held {
  lease: Lease;
  durationMs: number;
  requestedMs: number | undefined;
}

/** Headers and words for the duration, and for one cut to the longest allowed. */
function durationNotes({ durationMs, requestedMs }: Held) {
  const headers: Record<string, string> = { [DURATION_HEADER]: String(seconds(durationMs)) };
  if (requestedMs === undefined) return { headers, warning: undefined, fields: {} };
  headers[REQUESTED_DURATION_HEADER] = String(seconds(requestedMs));
  const warning = `asked for ${formatDuration(requestedMs)}, cut to ${
    formatDuration(durationMs)
  }, the longest this server grants`;
  const fields = {
    duration: seconds(durationMs),
    requestedDuration: seconds(requestedMs),
    warning,
  };
  return { headers, warning, fields };
}

/** `200 Lock acquired`, with the token in a header (and in the JSON body). */
export function granted(grant: Held, json: boolean): Response {
  const { lease } = grant;
  const { headers, warning, fields } = durationNotes(grant);
  headers[TOKEN_HEADER] = lease.token;
  if (!json) {
    return text(200, warning ? `Lock acquired\nWarning: ${warning}\n` : "Lock acquired\n", headers);
  }
  return Response.json({
    status: "acquired",
    message: "Lock acquired",
    token: lease.token,
    id: lease.id ?? null,
    expiresAt: isoTime(lease.expiresAt),
    ...fields,
  }, { headers });
}

/** `200` with the new expiry of a renewed lock. */
export function renewed(renewal: Held, json: boolean): Response {
  const { lease } = renewal;
  const { headers, warning, fields } = durationNotes(renewal);
  const expiresAt = isoTime(lease.expiresAt);
  if (!json) {
    const note = warning ? `\nWarning: ${warning}` : "";
    return text(200, `Lock renewed until ${expiresAt}${note}\n`, headers);
  }
  return Response.json({
    status: "renewed",
    message: "Lock renewed",
    expiresAt,
    ...fields,
  }, { headers });
}

/** `404` for a token that is not (or no longer) held. */
export function lockNotFound(json: boolean): Response {
  return errorResponse(404, "No such lock: it was released or has expired", json);
}

/** `423` for a lock that is not free; `503` when the server cannot serve the request now. */
export function refused(denial: Denial, json: boolean): Response {
  const unavailable = UNAVAILABLE_REASONS.has(denial.reason);
  const status = unavailable ? 503 : 423;
  const retryAfter = retryAfterSeconds(denial.retryAfterMs);
  const headers = { "Retry-After": String(retryAfter) };
  const message = `${unavailable ? "Unavailable" : "Locked"}: ${explain(denial)}`;
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

/** Why locks granted before may still be held, for {@linkcode explain}. */
const RECOVERY_CAUSES: Record<RecoveryCause, string> = {
  state_file: "the state file could not be read at start",
  store_lost: "the lock store lost the locks it held (a restart without its data, a flush, " +
    "an eviction or a failover)",
  clock_jump: "the lock store's clock jumped, which moved every lock's expiry",
};

/** One sentence for people, without the leading "Locked". */
export function explain(denial: Denial): string {
  switch (denial.reason) {
    case "starting":
      return "the first dependency check round has not finished";
    case "dependencies": {
      const why = (d: FailingDependency) => d.error ? ` (${d.error})` : "";
      const [first] = denial.failing;
      if (denial.failing.length === 1 && first) {
        return `dependency ${first.url} is down${why(first)}`;
      }
      const parts = denial.failing.map((d) => `${d.url}${why(d)}`);
      return `${parts.length} dependencies are down: ${parts.join(", ")}`;
    }
    case "recovering":
      return `${RECOVERY_CAUSES[denial.cause]}, so locks granted before may still be held; ` +
        `the first grant comes in ${formatDuration(denial.retryAfterMs)}`;
    case "cooldown":
      return `at most one grant every ${formatDuration(denial.cooldownMs)}; the next in ${
        formatDuration(denial.retryAfterMs)
      }`;
    case "load":
      return `the node's load average is ${denial.load.toFixed(2)}, above ${denial.max}`;
    case "pressure":
      return `${denial.resource} pressure is ${denial.percent.toFixed(2)} %, above ${denial.max} %`;
    case "busy": {
      const n = denial.capacity;
      const next = denial.nextFreeInMs === undefined
        ? ""
        : `; the next frees in ${formatDuration(denial.nextFreeInMs)}`;
      return `${n === 1 ? "the only slot is" : `all ${n} slots are`} held${next}`;
    }
    case "queued": {
      const n = denial.waiting;
      return `${n} ${n === 1 ? "client is" : "clients are"} waiting ahead`;
    }
    case "queue_full":
      return `${denial.waiting} clients are already waiting, the most this server allows`;
    case "shutting_down":
      return "the server is shutting down";
    case "superseded":
      return "a newer request with the same id took this one's place in the queue";
    case "cancelled":
      return "the client went away";
    case "store":
      return denial.error;
  }
}

/** What `GET /status` answers, in JSON. Never shows tokens. */
export interface StatusBody {
  /** With `--locksPerCore`, also its value and the cores it counted: `total` is their product. */
  slots: {
    total: number;
    held: number | null;
    free: number | null;
    locksPerCore?: number;
    cores?: number;
  };
  holders: { id: string | null; acquiredAt: string; expiresAt: string }[];
  waiters: { count: number; ids: (string | null)[] };
  /** Clients whose wait ended and who keep their place for a short grace if they ask again. */
  returning: { count: number; ids: string[] };
  dependencies: {
    url: string;
    up: boolean | null;
    lastCheckedAt: string | null;
    lastError: string | null;
    latencyMs: number | null;
  }[];
  gates: { name: string; open: boolean; reason: string | null }[];
  store: { up: boolean; error: string | null };
  locking: { allowed: true } | { allowed: false; reason: string; message: string };
}

/**
 * The `/status` document, from the service's state and the dependencies'
 * states; `perCore` when `--locksPerCore` set the slots.
 */
export function statusBody(
  data: StatusData,
  dependencies: readonly DependencyState[],
  perCore?: PerCoreSlots,
): StatusBody {
  const iso = isoTime;
  const leases = data.leases;
  return {
    slots: {
      total: data.capacity,
      held: leases ? leases.length : null,
      free: leases ? Math.max(0, data.capacity - leases.length) : null,
      ...(perCore ? { locksPerCore: perCore.locksPerCore, cores: perCore.cores } : {}),
    },
    holders: (leases ?? []).map((l) => ({
      id: l.id ?? null,
      acquiredAt: iso(l.acquiredAt),
      expiresAt: iso(l.expiresAt),
    })),
    waiters: { count: data.waiting.length, ids: data.waiting.map((id) => id ?? null) },
    returning: { count: data.returning.length, ids: data.returning },
    dependencies: dependencies.map((d) => ({
      url: d.url,
      up: d.up ?? null,
      lastCheckedAt: d.lastCheckedAt === undefined ? null : iso(d.lastCheckedAt),
      lastError: d.lastError ?? null,
      latencyMs: d.latencyMs ?? null,
    })),
    gates: data.gates.map((g) => ({
      name: g.name,
      open: g.open,
      reason: g.denial?.reason ?? null,
    })),
    store: { up: data.store.up, error: data.store.error ?? null },
    locking: data.denial
      ? { allowed: false, reason: data.denial.reason, message: explain(data.denial) }
      : { allowed: true },
  };
}

/** The realm of `WWW-Authenticate`. */
export const AUTH_REALM = "startup-lock";

/** Why a request was refused: it sent no bearer token, or a wrong one. */
export type AuthFailure = "missing" | "wrong";

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
