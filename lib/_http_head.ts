/**
 * One HTTP/1.1 `GET` over a plain socket that reads only the response's head:
 * for the ports Deno's `fetch` refuses to reach.
 *
 * `fetch` follows the Fetch standard's "bad port" list (the ports browsers
 * block, such as 6000 and 6665–6669), and neither `Deno.createHttpClient` nor
 * a redirect gets round it. `node:http` does reach them, but `node:https` asks
 * for the whole `--allow-sys` (and `NODE_USE_SYSTEM_CA`) before it reads a
 * certificate, throws outside the request when it lacks them, and ignores
 * `DENO_CERT`. `Deno.connect` and `Deno.startTls` need no more than
 * `--allow-net` and trust the same certificates as `fetch`
 * (`DENO_TLS_CA_STORE`, `DENO_CERT`). A probe needs only the status and the
 * `Location` header, so the connection is closed once the head is read.
 *
 * @module
 */

/** What a probe needs of a response. */
export interface ResponseHead {
  status: number;
  statusText: string;
  /** The `Location` header, if any. */
  location: string | null;
}

/** A head longer than this is not a health endpoint's answer. */
const MAX_HEAD_BYTES = 64 * 1024;

/** The ports `fetch` refuses: the Fetch standard's bad ports, as Deno 2.9 applies them. */
// deno-fmt-ignore
export const FETCH_BLOCKED_PORTS: ReadonlySet<number> = new Set([
  0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102,
  103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465,
  512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993,
  995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668,
  6669, 6679, 6697, 10080,
]);

/** The port an http(s) URL connects to. */
export function urlPort(url: URL): number {
  return url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port);
}

/**
 * Sends `GET url` over a new connection and resolves with the response's
 * status and `Location`, skipping interim 1xx answers; closes the connection
 * without reading the body. Rejects with `signal.reason` once `signal` aborts.
 */
export async function getResponseHead(url: URL, signal: AbortSignal): Promise<ResponseHead> {
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const tcp = await Deno.connect({ hostname, port: urlPort(url), signal });
  let conn: Deno.Conn = tcp;
  // Closing the connection ends a pending handshake, write or read at once.
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    conn.close();
  };
  signal.addEventListener("abort", close, { once: true });
  try {
    if (url.protocol === "https:") conn = await Deno.startTls(tcp, { hostname });
    await writeAll(conn, new TextEncoder().encode(requestText(url)));
    return await readHead(conn);
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw error;
  } finally {
    signal.removeEventListener("abort", close);
    close();
  }
}

function requestText(url: URL): string {
  const lines = [
    `GET ${url.pathname}${url.search} HTTP/1.1`,
    `Host: ${url.host}`,
    // What fetch sends, so the endpoint sees the same request whichever client asks.
    `User-Agent: Deno/${Deno.version.deno}`,
    "Accept: */*",
    "Connection: close",
  ];
  if (url.username || url.password) {
    const user = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    const bytes = new TextEncoder().encode(user);
    lines.push(`Authorization: Basic ${btoa(String.fromCharCode(...bytes))}`);
  }
  return `${lines.join("\r\n")}\r\n\r\n`;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await conn.write(bytes.subarray(done));
}

async function readHead(conn: Deno.Conn): Promise<ResponseHead> {
  const decoder = new TextDecoder();
  let text = "";
  const chunk = new Uint8Array(4096);
  for (;;) {
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) {
      const head = parseHead(text.slice(0, end));
      // 100 Continue, 103 Early Hints: the final answer follows on the same connection.
      if (head.status >= 100 && head.status <= 199 && head.status !== 101) {
        text = text.slice(end + 4);
        continue;
      }
      return head;
    }
    if (text.length > MAX_HEAD_BYTES) {
      throw new Error(`the HTTP response head is longer than ${MAX_HEAD_BYTES / 1024} KiB`);
    }
    const n = await conn.read(chunk);
    if (n === null) {
      const where = text ? "within the HTTP response head" : "before an HTTP response";
      throw new Error(`the connection closed ${where}`);
    }
    text += decoder.decode(chunk.subarray(0, n), { stream: true });
  }
}

function parseHead(head: string): ResponseHead {
  const [statusLine = "", ...fields] = head.split("\r\n");
  const match = /^HTTP\/\d(?:\.\d)? (\d{3})(?: (.*))?$/.exec(statusLine);
  if (!match) throw new Error(`not an HTTP response: ${JSON.stringify(statusLine.slice(0, 40))}`);
  const location = fields.find((f) => /^location:/i.test(f))?.slice("location:".length).trim();
  return {
    status: Number(match[1]),
    statusText: match[2]?.trim() ?? "",
    location: location ?? null,
  };
}
