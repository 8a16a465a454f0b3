import assert from "node:assert/strict";
import {
  busy,
  queued,
  queueFull,
  recovering,
  storeDown,
  UNAVAILABLE_RETRY_MS,
} from "../../../lib/core/refusals.ts";

Deno.test("refusals: Retry-After follows one policy", () => {
  assert.equal(busy(2, 300).retryAfterMs, 300, "busy: when the next slot frees");
  assert.equal(busy(2, undefined).retryAfterMs, UNAVAILABLE_RETRY_MS);
  assert.equal(queued(1, 300).retryAfterMs, UNAVAILABLE_RETRY_MS, "the queue is served first");
  assert.equal(queued(1, 5_000).retryAfterMs, 5_000, "and not before a slot frees");
  assert.equal(queueFull(9, undefined).retryAfterMs, UNAVAILABLE_RETRY_MS);
  assert.equal(storeDown("gone").retryAfterMs, UNAVAILABLE_RETRY_MS);
  assert.deepEqual(recovering("store_lost", 4_000), {
    reason: "recovering",
    cause: "store_lost",
    retryAfterMs: 4_000,
  });
});
