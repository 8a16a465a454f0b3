/**
 * Dependency endpoints and how to probe them once: `tcp://host:port` is up when
 * a connection is established; `http://` and `https://` URLs are up when they
 * answer 2xx.
 *
 * @module
 */

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

/**
 * Probes `target` once. Resolves when it is up; rejects with the reason when it
 * is down or when `signal` aborts first (the caller bounds each probe with a timeout).
 */
export async function probe(target: CheckTarget, signal: AbortSignal): Promise<void> {
  if (target.kind === "tcp") {
    const conn = await Deno.connect({ hostname: target.hostname, port: target.port, signal });
    conn.close();
    return;
  }
  const response = await fetch(target.url, { signal, redirect: "follow" });
  await response.body?.cancel();
  if (response.status < 200 || response.status > 299) {
    throw new Error(
      `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`,
    );
  }
}
