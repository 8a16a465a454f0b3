/**
 * Dependency endpoints and how to probe them once: `tcp://host:port` is up when
 * a connection is established; `http://` and `https://` URLs are up when they
 * answer 2xx, after following redirects.
 *
 * @module
 */
import { FETCH_BLOCKED_PORTS, getResponseHead, type ResponseHead, urlPort } from "./_http_head.ts";
import type { CheckTarget } from "./check_target.ts";

export { type CheckTarget, parseCheckTarget } from "./check_target.ts";

/** As many redirects as `fetch` follows. */
const MAX_REDIRECTS = 20;

const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);

/**
 * Probes `target` once. Resolves when it is up; rejects with the reason when it
 * is down or when `signal` aborts first (the caller bounds each probe with a timeout).
 *
 * An http(s) target is asked with `fetch`, except on the ports `fetch` refuses
 * (6000, 6665–6669, 10080, …), where a plain HTTP/1.1 request asks instead;
 * redirects are followed here, so a redirect may lead from one kind of port to the other.
 */
export async function probe(target: CheckTarget, signal: AbortSignal): Promise<void> {
  if (target.kind === "tcp") {
    const conn = await Deno.connect({ hostname: target.hostname, port: target.port, signal });
    conn.close();
    return;
  }
  let url = new URL(target.requestUrl ?? target.url);
  for (let redirects = 0;; redirects++) {
    const head = FETCH_BLOCKED_PORTS.has(urlPort(url))
      ? await getResponseHead(url, signal)
      : await fetchHead(url, signal);
    if (REDIRECT_STATUSES.has(head.status) && head.location !== null) {
      if (redirects === MAX_REDIRECTS) throw new Error(`more than ${MAX_REDIRECTS} redirects`);
      url = redirectTarget(head.location, url);
      continue;
    }
    if (head.status < 200 || head.status > 299) {
      throw new Error(`HTTP ${head.status}${head.statusText ? ` ${head.statusText}` : ""}`);
    }
    return;
  }
}

async function fetchHead(url: URL, signal: AbortSignal): Promise<ResponseHead> {
  const response = await fetch(url, { signal, redirect: "manual" });
  await response.body?.cancel();
  const { status, statusText } = response;
  return { status, statusText, location: response.headers.get("location") };
}

function redirectTarget(location: string, base: URL): URL {
  let url: URL;
  try {
    url = new URL(location, base);
  } catch {
    throw new Error(`redirect to an invalid URL ${JSON.stringify(location.slice(0, 100))}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`redirect to an unsupported scheme "${url.protocol.slice(0, -1)}"`);
  }
  return url;
}
