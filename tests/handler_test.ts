import assert from "node:assert/strict";
import { DependencyChecker } from "../lib/checker.ts";
import { createHandler } from "../lib/handler.ts";
import { MemoryLockStore } from "../lib/lock.ts";
import { parseCheckTarget } from "../lib/probes.ts";
import { LockService } from "../lib/service.ts";
import { ManualClock } from "./_clock.ts";

function setup(options: { locks?: number; checker?: DependencyChecker } = {}) {
  const clock = new ManualClock();
  const store = new MemoryLockStore(options.locks ?? 1, { clock });
  const service = new LockService(
    options.checker ? { store, gate: options.checker } : { store },
  );
  const handler = createHandler({ service, defaultDurationMs: 10_000, maxDurationMs: 60_000 });
  return { clock, store, handler };
}

const get = (path: string, init?: RequestInit) => new Request(`http://localhost${path}`, init);

Deno.test("handler grants a free slot with 200 Lock acquired", async () => {
  const { handler, store } = setup();
  const res = await handler(get("/"));
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "Lock acquired\n");
  assert.equal(store.held, 1);
});

Deno.test("handler accepts POST / as well as GET /", async () => {
  const { handler } = setup();
  const res = await handler(get("/", { method: "POST" }));
  assert.equal(res.status, 200);
  await res.body?.cancel();
});

Deno.test("handler answers 423 with the reason and Retry-After when every slot is held", async () => {
  const { handler, clock } = setup({ locks: 2 });
  await (await handler(get("/"))).body?.cancel();
  await (await handler(get("/"))).body?.cancel();
  clock.advance(2_500);
  const res = await handler(get("/"));
  assert.equal(res.status, 423);
  assert.equal(res.headers.get("Retry-After"), "8");
  assert.equal(await res.text(), "Locked: all 2 slots are held; the next frees in 7.5s\n");
});

Deno.test("handler holds the lock for the default duration, or ?duration=", async (t) => {
  await t.step("default", async () => {
    const { handler, clock } = setup();
    await (await handler(get("/"))).body?.cancel();
    clock.advance(9_999);
    assert.equal((await handler(get("/"))).status, 423);
    clock.advance(1);
    assert.equal((await handler(get("/"))).status, 200);
  });
  await t.step("?duration=3 is three seconds", async () => {
    const { handler, clock } = setup();
    await (await handler(get("/?duration=3"))).body?.cancel();
    clock.advance(2_999);
    assert.equal((await handler(get("/"))).status, 423);
    clock.advance(1);
    assert.equal((await handler(get("/"))).status, 200);
  });
  await t.step("?duration=500ms takes units", async () => {
    const { handler, clock } = setup();
    await (await handler(get("/?duration=500ms"))).body?.cancel();
    clock.advance(500);
    assert.equal((await handler(get("/"))).status, 200);
  });
});

Deno.test("handler refuses a bad ?duration= with 400 and takes no slot", async (t) => {
  const cases: [string, RegExp][] = [
    ["abc", /Invalid duration "abc": expected a positive number of seconds/],
    ["0", /greater than zero/],
    ["-5", /expected a positive number/],
    ["", /expected a positive number/],
    ["99999999999", /expected at most/],
    ["61", /expected at most 60 seconds \(--maxDuration\)/],
  ];
  for (const [value, reason] of cases) {
    await t.step(`duration=${JSON.stringify(value)}`, async () => {
      const { handler, store } = setup();
      const res = await handler(get(`/?duration=${encodeURIComponent(value)}`));
      assert.equal(res.status, 400);
      assert.match(await res.text(), reason);
      assert.equal(store.held, 0);
    });
  }
});

Deno.test("handler answers in JSON when the client accepts it", async () => {
  const { handler, clock } = setup();
  const accept = { headers: { Accept: "application/json" } };
  const ok = await handler(get("/?duration=5&id=web-1", accept));
  assert.equal(ok.status, 200);
  const token = ok.headers.get("Lock-Token");
  assert.match(token ?? "", /^[A-Za-z0-9_-]{22}$/);
  assert.deepEqual(await ok.json(), {
    status: "acquired",
    message: "Lock acquired",
    token,
    id: "web-1",
    expiresAt: new Date(clock.wallNow() + 5_000).toISOString(),
  });
  const denied = await handler(get("/", accept));
  assert.equal(denied.status, 423);
  assert.deepEqual(await denied.json(), {
    status: "locked",
    reason: "busy",
    message: "Locked: the only slot is held; the next frees in 5s",
    retryAfter: 5,
  });
});

Deno.test("handler answers /healthz with 200 and takes no slot", async () => {
  const { handler, store } = setup();
  for (const method of ["GET", "HEAD"]) {
    const res = await handler(get("/healthz", { method }));
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
  assert.equal(store.held, 0);
});

Deno.test("handler answers 404 for an unknown path and 405 with Allow for a wrong method", async () => {
  const { handler, store } = setup();
  const missing = await handler(get("/nope"));
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
  for (const method of ["DELETE", "PUT", "HEAD"]) {
    const res = await handler(get("/", { method }));
    assert.equal(res.status, 405);
    assert.equal(res.headers.get("Allow"), "GET, POST");
    await res.body?.cancel();
  }
  const wrong = await handler(get("/healthz", { method: "POST" }));
  assert.equal(wrong.status, 405);
  assert.equal(wrong.headers.get("Allow"), "GET, HEAD");
  await wrong.body?.cancel();
  assert.equal(store.held, 0);
});

Deno.test("handler says why it refuses while dependencies gate locking", async (t) => {
  let status = 503;
  await using endpoint = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(null, { status }),
  );
  const url = `http://127.0.0.1:${endpoint.addr.port}/ready`;
  const checkerClock = new ManualClock();
  const checker = new DependencyChecker({
    targets: [parseCheckTarget(url)],
    passIntervalMs: 60_000,
    failIntervalMs: 10_000,
    timeoutMs: 2_000,
    clock: checkerClock,
  });
  const { handler, store } = setup({ checker });

  await t.step("before the first round: starting", async () => {
    const res = await handler(get("/", { headers: { Accept: "application/json" } }));
    assert.equal(res.status, 423);
    const body = await res.json();
    assert.equal(body.reason, "starting");
    assert.match(body.message, /^Locked: the first dependency check round has not finished/);
  });

  await t.step("a dependency is down: names it and its error", async () => {
    checker.start();
    await checker.settled();
    const res = await handler(get("/"));
    assert.equal(res.status, 423);
    assert.equal(
      await res.text(),
      `Locked: dependency ${url} is down (HTTP 503 Service Unavailable)\n`,
    );
    assert.equal(res.headers.get("Retry-After"), "12", "next round in 10s, plus the check timeout");
    assert.equal(store.held, 0);
  });

  await t.step("the dependency is back: grants", async () => {
    status = 200;
    checkerClock.advance(10_000);
    await checker.settled();
    assert.equal((await handler(get("/"))).status, 200);
  });
  checker.stop();
});
