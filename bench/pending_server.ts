/**
 * The baseline of the memory benchmark: a bare `Deno.serve` handler that keeps
 * every request to `/` pending until its client goes away, which is all a
 * waiting client costs a server built on `Deno.serve`. `GET /status` reports
 * how many are pending in the shape of startup-lock's. Listens on a free port
 * of 127.0.0.1, prints the port on stdout and stops on SIGTERM or SIGINT.
 *
 *     deno run --allow-net bench/pending_server.ts
 *
 * @module
 */
import { serveUntilSignal } from "./_serve.ts";

/** Answers `/status` at once and keeps every other request pending until it is aborted. */
export function pendingHandler(): (request: Request) => Response | Promise<Response> {
  let pending = 0;
  return (request) => {
    if (new URL(request.url).pathname === "/status") {
      return Response.json({ slots: { held: 0 }, waiters: { count: pending } });
    }
    pending++;
    return new Promise((resolve) => {
      request.signal.addEventListener("abort", () => {
        pending--;
        resolve(new Response(null, { status: 499 }));
      }, { once: true });
    });
  };
}

if (import.meta.main) await serveUntilSignal(pendingHandler());
