/**
 * The entry point the baseline servers share: serve `handler` on 127.0.0.1
 * (a free port, or `--port N`), print the port on stdout, stop on SIGTERM or
 * SIGINT.
 *
 * @module
 */

/**
 * Serves `handler` until SIGTERM or SIGINT, then exits 0: on `--port N` when
 * the arguments give one (a caller that polls it from the start, as it polls
 * startup-lock), else on a free port.
 */
export async function serveUntilSignal(
  handler: (request: Request) => Response | Promise<Response>,
): Promise<never> {
  const aborter = new AbortController();
  const at = Deno.args.indexOf("--port");
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: at >= 0 ? Number(Deno.args[at + 1]) : 0,
    signal: aborter.signal,
    onListen: ({ port }) => console.log(port),
  }, handler);
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => aborter.abort());
  }
  await server.finished;
  Deno.exit(0);
}
