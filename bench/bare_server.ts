/**
 * The baseline of `deno task bench`: a bare `Deno.serve` handler that answers
 * every request with the same 423 response (status, headers and body size) as a
 * busy startup-lock. Listens on a free port of 127.0.0.1, prints the port on
 * stdout and stops on SIGTERM or SIGINT.
 *
 *     deno run --allow-net bench/bare_server.ts
 *
 * @module
 */

/** The body startup-lock sends when its only slot is held for an hour. */
export const LOCKED_BODY = "Locked: the only slot is held; the next frees in 1h\n";

/** Answers every request with 423 Locked. */
export function bareHandler(): Response {
  return new Response(LOCKED_BODY, {
    status: 423,
    headers: { "Content-Type": "text/plain; charset=utf-8", "Retry-After": "3600" },
  });
}

if (import.meta.main) {
  const aborter = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: aborter.signal,
    onListen: ({ port }) => console.log(port),
  }, bareHandler);
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => aborter.abort());
  }
  await server.finished;
  Deno.exit(0);
}
