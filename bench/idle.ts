/**
 * The floor under the `hold` sidecar in `deno task bench -- startup`: the
 * runtime started and idle, until it is stopped. Prints `idle` once running.
 *
 *     deno run bench/idle.ts
 *
 * @module
 */
console.log("idle");
setInterval(() => {}, 2 ** 30);
