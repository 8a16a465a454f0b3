/**
 * The few calls of the lock API the benchmarks make, over `fetch`, with an
 * optional `Deno.HttpClient` so that a caller keeps its own connection.
 *
 * @module
 */
import { TOKEN_HEADER } from "../lib/protocol.ts";

/** The header that carries a granted lock's token. */

/** Options of the calls below. */
export interface CallOptions {
  /** The connection pool to use; the global one when absent. */
  client?: Deno.HttpClient;
}

/**
 * `GET /?query`: the token when granted (200), `undefined` when refused (423).
 * Any other status is an error: the benchmark does not expect it.
 */
export async function acquire(
  url: string,
  query: Record<string, string>,
  options: CallOptions = {},
): Promise<string | undefined> {
  return grantedToken(await fetch(`${url}?${new URLSearchParams(query)}`, init(options)));
}

/** The token of an acquire response; `undefined` for 423; throws on anything else. */
export async function grantedToken(response: Response): Promise<string | undefined> {
  // Reading the body to its end keeps the connection alive for the next request.
  const body = await response.text();
  if (response.status === 423) return undefined;
  const token = response.headers.get(TOKEN_HEADER);
  if (response.status !== 200 || !token) {
    throw new Error(`Expected 200 with a ${TOKEN_HEADER} or 423, got ${response.status}: ${body}`);
  }
  return token;
}

/** `DELETE /locks/{token}`; throws unless it answers 204. */
export async function release(url: string, token: string, options: CallOptions = {}) {
  const response = await fetch(`${url}locks/${token}`, { ...init(options), method: "DELETE" });
  await checkStatus(response, 204);
}

/** Throws unless `response` has `status`; reads the body to its end either way. */
export async function checkStatus(response: Response, status: number): Promise<void> {
  const body = await response.text();
  if (response.status !== status) {
    throw new Error(`Expected ${status} from ${response.url}, got ${response.status}: ${body}`);
  }
}

/** How many clients hold a slot and how many wait, from `GET /status`. */
export interface Counts {
  held: number;
  waiting: number;
}

/** `slots.held` and `waiters.count` of `GET /status`. */
export async function statusCounts(url: string, options: CallOptions = {}): Promise<Counts> {
  const response = await fetch(`${url}status`, init(options));
  if (!response.ok) {
    throw new Error(`GET /status answered ${response.status}: ${await response.text()}`);
  }
  const status = await response.json();
  const held = status?.slots?.held;
  const waiting = status?.waiters?.count;
  if (typeof held !== "number" || typeof waiting !== "number") {
    throw new Error("GET /status has no slots.held or waiters.count");
  }
  return { held, waiting };
}

/** Options of {@linkcode untilStatus}. */
export interface UntilStatusOptions extends CallOptions {
  /** @default {10_000} */
  timeoutMs?: number;
  /** Pause between two looks at `/status`. @default {0} */
  intervalMs?: number;
  /** Called before each look; throw to stop waiting. */
  check?: () => void;
}

/** Resolves with the counts of `/status` once `accept` holds for them; throws after `timeoutMs`. */
export async function untilStatus(
  url: string,
  accept: (counts: Counts) => boolean,
  options: UntilStatusOptions = {},
): Promise<Counts> {
  const { timeoutMs = 10_000, intervalMs = 0 } = options;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    options.check?.();
    const counts = await statusCounts(url, options);
    if (accept(counts)) return counts;
    if (performance.now() > deadline) {
      throw new Error(
        `Still ${counts.held} holding and ${counts.waiting} waiting after ${timeoutMs} ms`,
      );
    }
    if (intervalMs > 0) await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

function init(options: CallOptions): RequestInit & { client?: Deno.HttpClient } {
  return options.client ? { client: options.client } : {};
}
