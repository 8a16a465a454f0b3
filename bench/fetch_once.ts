/**
 * The floor under `startup-lock healthcheck` in `deno task bench -- startup`:
 * the runtime starting, fetching one URL and exiting, and nothing else.
 *
 *     deno run --allow-net bench/fetch_once.ts URL
 *
 * @module
 */
await fetch(Deno.args[0]!).then((response) => response.body?.cancel());
