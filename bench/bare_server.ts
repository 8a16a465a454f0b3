/**
 * The baseline of `deno task bench`: a bare `Deno.serve` handler that answers
 * every request with the same 423 response (status, headers and body size) as a
 * busy startup-lock. Listens on a free port of 127.0.0.1, prints the port on
 * stdout and stops on SIGTERM or SIGINT.
 *
 * With `--read-request` it first reads what any lock server must read of a
 * request (its URL, method and `Accept` header) and still answers 423: the
 * floor under startup-lock's cost, which the plain baseline never pays.
 *
 *     deno run --allow-net bench/bare_server.ts [--read-request]
 *
 * @module
 */
import { serveUntilSignal } from "./_serve.ts";

/** The body startup-lock sends when its only slot is held for an hour. */
export const LOCKED_BODY = "Locked: the only slot is held; the next frees in 1h\n";

/** Answers every request with 423 Locked. */
export function bareHandler(): Response {
  return new Response(LOCKED_BODY, {
    status: 423,
    headers: { "Content-Type": "text/plain; charset=utf-8", "Retry-After": "3600" },
  });
}

/** Reads the request as a lock server must, then answers like {@linkcode bareHandler}. */
export function readingHandler(request: Request): Response {
  if (!request.url || !request.method || request.headers.get("accept") === "-") {
    throw new Error("unreachable: only here so the reads cannot be optimised away");
  }
  return bareHandler();
}

if (import.meta.main) {
  await serveUntilSignal(Deno.args.includes("--read-request") ? readingHandler : bareHandler);
}
