/**
 * The Redis client, pinned in this one place: node-redis's core (`@redis/client`),
 * the client Redis itself maintains. Only the Redis store (and the tests that
 * read Redis directly) import it, so a server on the memory store never loads it.
 *
 * @module
 */
export { createClient } from "npm:@redis/client@6.3.1";
