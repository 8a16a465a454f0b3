/**
 * The request limits of `lib/http/request.ts`, through the handler: a long
 * target (`414`), too many or repeated query parameters (`400`), a large
 * acquire body (`413`); none takes a slot. The same limits on the real
 * program's sockets: tests/program/http_edges_test.ts.
 */
import assert from "node:assert/strict";
import { LockService } from "../../../lib/core/service.ts";
import { createHandler } from "../../../lib/http/handler.ts";
import {
  MAX_ACQUIRE_BODY_BYTES,
  MAX_QUERY_PARAMS,
  MAX_TARGET_LENGTH,
} from "../../../lib/http/request.ts";
import { MemoryLockStore } from "../../../lib/stores/memory.ts";
import { ManualClock } from "../../_clock.ts";

/** A handler with one slot; `using` closes the service and store. */
function setup() {
  const clock = new ManualClock();
  const store = new MemoryLockStore(1, { clock });
  const service = new LockService({ store, clock, maxDurationMs: 60_000 });
  const handler = createHandler({ service, defaultDurationMs: 10_000 });
  const request = (path: string, init: RequestInit = {}) =>
    Promise.resolve(handler(new Request(`http://localhost${path}`, init)));
  const held = async () => {
    const res = await request("/status");
    return (await res.json()).slots.held as number;
  };
  return {
    request,
    held,
    [Symbol.dispose]() {
      service.close();
      store.close();
    },
  };
}

async function assertStatus(res: Response, status: number, says?: RegExp): Promise<void> {
  const body = await res.text();
  assert.equal(res.status, status, body);
  if (says) assert.match(body, says);
}

Deno.test("handler answers 414 for a request target over MAX_TARGET_LENGTH, taking no slot", async () => {
  using s = setup();
  const at = (length: number) => `/status?x=${"a".repeat(length - "/status?x=".length)}`;
  await assertStatus(await s.request(at(MAX_TARGET_LENGTH)), 200);
  await assertStatus(await s.request(at(MAX_TARGET_LENGTH + 1)), 414, /^URI too long: 8193/);
  await assertStatus(await s.request(`/?id=${"a".repeat(MAX_TARGET_LENGTH)}`), 414);
  await assertStatus(await s.request(`/${"a".repeat(MAX_TARGET_LENGTH)}`), 414);
  assert.equal(await s.held(), 0);
});

Deno.test("handler answers 400 for more than MAX_QUERY_PARAMS query parameters", async () => {
  using s = setup();
  const params = (n: number) => Array.from({ length: n }, (_, i) => `p${i}=1`).join("&");
  await assertStatus(await s.request(`/status?${params(MAX_QUERY_PARAMS)}`), 200);
  await assertStatus(
    await s.request(`/?${params(MAX_QUERY_PARAMS + 1)}`),
    400,
    /^Too many query parameters: more than 32/,
  );
  assert.equal(await s.held(), 0);
});

Deno.test("handler answers 400 naming a repeated query parameter, taking no slot", async (t) => {
  using s = setup();
  for (const query of ["duration=5&duration=3600", "id=a&wait=1s&id=b", "id=&id=x"]) {
    await t.step(query, async () => {
      const name = query.split("=")[0];
      await assertStatus(
        await s.request(`/?${query}`),
        400,
        new RegExp(`^Repeated query parameter "${name}": give it once`),
      );
    });
  }
  assert.equal(await s.held(), 0);
});

Deno.test("handler answers 413 to an acquire whose Content-Length is over the limit, taking no slot", async () => {
  using s = setup();
  const big = new Uint8Array(MAX_ACQUIRE_BODY_BYTES + 1);
  await assertStatus(
    await s.request("/", { method: "POST", body: big }),
    413,
    /^Request body too large: more than 65536 bytes/,
  );
  assert.equal(await s.held(), 0);
  await assertStatus(
    await s.request("/", { method: "POST", body: new Uint8Array(MAX_ACQUIRE_BODY_BYTES) }),
    200,
  );
});

Deno.test("handler reads a chunked acquire body only up to the limit", async () => {
  using s = setup();
  let pulled = 0;
  const chunk = new Uint8Array(16 * 1024);
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      controller.enqueue(chunk);
    },
  });
  await assertStatus(await s.request("/", { method: "POST", body: endless }), 413);
  assert.ok(pulled <= MAX_ACQUIRE_BODY_BYTES / chunk.length + 2, `pulled ${pulled} chunks`);
  assert.equal(await s.held(), 0);

  const small = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode("hello"));
      controller.close();
    },
  });
  await assertStatus(await s.request("/", { method: "POST", body: small }), 200);
  assert.equal(await s.held(), 1);
});
