/**
 * A real `redis-server` for tests (`bench/_redis_server.ts`, which the
 * benchmark starts too), and whether tests that need one are skipped.
 *
 * @module
 */
import { REDIS_SERVER } from "../bench/_redis_server.ts";

export { REDIS_SERVER, type RedisOptions, RedisServer } from "../bench/_redis_server.ts";
export { freePort } from "../bench/process.ts";

/** Whether tests that need Redis must be skipped: only outside CI, with no redis-server. */
export const SKIP_REDIS = REDIS_SERVER === undefined && Deno.env.get("CI") === undefined;
if (SKIP_REDIS) {
  console.error("SKIPPED Redis tests: redis-server not found (apt-get install -y redis-server)");
}
