/**
 * The entry point the baseline servers share: serve `handler` on a free port of
 * 127.0.0.1, print the port on stdout, stop on SIGTERM or SIGINT.
 *
 * @module
 */

/** Serves `handler` until SIGTERM or SIGINT, then exits 0. */
export async function serveUntilSignal(
  handler: (request: Request) => Response | Promise<Response>,
): Promise<never> {
  const aborter = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: aborter.signal,
    onListen: ({ port }) => console.log(port),
  }, handler);
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => aborter.abort());
  }
  await server.finished;
  Deno.exit(0);
}
