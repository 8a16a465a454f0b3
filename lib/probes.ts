/**
 * Dependency endpoints and how to probe them once: `tcp://host:port` is up when
 * a connection is established; `http://` and `https://` URLs are up when they
 * answer 2xx, after following redirects.
 *
 * @module
 */
import { FETCH_BLOCKED_PORTS, getResponseHead, type ResponseHead, urlPort } from "./_http_head.ts";

/** A dependency endpoint to check. */
export type CheckTarget =
  | { kind: "tcp"; url: string; hostname: string; port: number }
  | { kind: "http"; url: string };

const TCP_HINT = "expected tcp://HOST:PORT with a port from 1 to 65535";

/**
 * Parses a `--check` value.
 *
 * @throws {RangeError} with what is allowed, for a malformed URL, another scheme,
 *   or a tcp URL without host and port
 */
export function parseCheckTarget(text: string): CheckTarget {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // `new URL` already refuses a port above 65535: say what a tcp check looks like.
    if (/^\s*tcp:/i.test(text)) throw new RangeError(TCP_HINT);
    throw new RangeError(
      "expected a URL such as http://host:9200/health, https://host/ or tcp://host:27017",
    );
  }
  if (url.protocol === "http:" || url.protocol === "https:") {
    // Port 0 means "any port" to a listener; nothing can be reached there.
    if (url.port === "0") throw new RangeError("expected a port from 1 to 65535");
    return { kind: "http", url: url.href };
  }
  if (url.protocol === "tcp:") {
    // Special-scheme parsing does not apply to tcp:, so host and port are read by hand.
    const match = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[^/:?#\s]+):(\d{1,5})\/?$/i.exec(text.trim());
    const port = Number(match?.[2]);
    if (!match || !match[1] || port < 1 || port > 65535) {
      throw new RangeError(TCP_HINT);
    }
    const hostname = match[1].replace(/^\[(.*)\]$/, "$1");
    return { kind: "tcp", url: `tcp://${match[1]}:${port}`, hostname, port };
  }
  throw new RangeError(
    `unsupported scheme "${url.protocol.slice(0, -1)}": expected http, https or tcp`,
  );
}

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
  let url = new URL(target.url);
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
