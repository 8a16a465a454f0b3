/**
 * The waiting clients of the memory benchmark, in a process of their own:
 * opens COUNT connections to startup-lock and sends on each one long-poll
 * request, `GET /?wait=WAIT&id=PREFIX-N`, then holds them open until it is
 * killed. Prints `sent COUNT` once every request is written, and a line for
 * each connection answered or closed early (the server should do neither).
 *
 *     deno run --allow-net bench/memory_clients.ts URL COUNT PREFIX [WAIT]
 *
 * Raw TCP rather than `fetch`: one socket per request, nothing pooled, and
 * little memory here. Every connection is a file descriptor, so raise the
 * open-file limit first.
 *
 * @module
 */

/** Connections being opened at once: well under the server's listen backlog. */
const CONNECTING_AT_ONCE = 64;

/** A bare HTTP/1.1 GET request. */
export function waitRequest(host: string, path: string): Uint8Array {
  return new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

/** Reports the first bytes a waiting connection receives: it should receive none. */
async function watch(conn: Deno.Conn, id: string): Promise<void> {
  const buffer = new Uint8Array(64);
  try {
    const n = await conn.read(buffer);
    const first = n === null ? "closed" : new TextDecoder().decode(buffer.subarray(0, n));
    console.log(`early ${id}: ${first.split("\r\n")[0]}`);
  } catch (error) {
    console.log(`early ${id}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

async function main(args: string[]): Promise<number> {
  const [url, countText, prefix, wait = "60s"] = args;
  const count = Number(countText);
  if (!url || !prefix || !Number.isInteger(count) || count < 1) {
    console.error("Usage: memory_clients.ts URL COUNT PREFIX [WAIT]");
    return 2;
  }
  const { hostname, port, host } = new URL(url);
  const conns: Deno.Conn[] = [];
  let next = 0;
  const open = async () => {
    while (next < count) {
      const id = `${prefix}-${next++}`;
      const conn = await Deno.connect({ hostname, port: Number(port) });
      conns.push(conn);
      await writeAll(conn, waitRequest(host, `/?wait=${wait}&id=${id}`));
      watch(conn, id);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONNECTING_AT_ONCE, count) }, open));
  console.log(`sent ${conns.length}`);
  // Hold the connections until killed; the timer keeps the process alive should they all close.
  await new Promise(() => setInterval(() => {}, 60_000));
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
