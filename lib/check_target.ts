/**
 * The endpoints the program probes, as the command line names them:
 * `http://` and `https://` URLs, and `tcp://host:port`. Apart from the
 * probing (`probes.ts`), so that a client reading its `--readyUrl` loads only
 * this: every module a command loads is start-up time and resident memory.
 *
 * @module
 */

/**
 * A dependency endpoint to check. `url` is what logs, metrics, the status page
 * and refusals show: a password in it is replaced by `***`, and only the probe
 * asks `requestUrl`, which keeps it.
 */
export type CheckTarget =
  | { kind: "tcp"; url: string; hostname: string; port: number }
  | { kind: "http"; url: string; requestUrl?: string };

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
    if (url.password === "") return { kind: "http", url: url.href };
    const requestUrl = url.href;
    url.password = "***";
    return { kind: "http", url: url.href, requestUrl };
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
