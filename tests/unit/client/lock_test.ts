/**
 * The client's lock: the acquire loop against stand-in servers whose answers
 * the test controls, and release and renewal against the real server.
 */
import assert from "node:assert/strict";
import { acquireLock, type AcquireOptions, ANSWER_MARGIN_MS } from "../../../lib/client/lock.ts";
import { parseDuration } from "../../../lib/duration.ts";
import { startStandIn } from "../../_client.ts";
import { ManualClock } from "../../_clock.ts";

function options(server: string, overrides: Partial<AcquireOptions> = {}): AcquireOptions {
  return {
    server: new URL(`${server}/`),
    durationMs: undefined,
    id: "web-1",
    waitMs: undefined,
    tokenFile: undefined,
    pollIntervalMs: 3_600_000,
    ...overrides,
  };
}

Deno.test("acquireLock() counts the expiry from the duration granted, not the one asked", async () => {
  await using stub = startStandIn(() =>
    Response.json({ status: "acquired", token: "tok", duration: 1 }, {
      headers: { "Lock-Token": "tok", "Lock-Duration": "1", "Lock-Duration-Requested": "7200" },
    })
  );
  const clock = new ManualClock();
  const result = await acquireLock(options(stub.url, { durationMs: 7_200_000 }), { clock });
  assert.ok(result.kind === "acquired");
  assert.equal(result.lock.token, "tok");
  assert.equal(result.lock.expiresAt, clock.now() + 1_000);
});

Deno.test("acquireLock() counts its hold from when it sent the request, as the server may grant any time until it answers", async () => {
  const clock = new ManualClock();
  await using stub = startStandIn(() => {
    clock.advance(400); // The answer takes 400 ms to come back.
    return Response.json({ status: "acquired", token: "tok", duration: 2 }, {
      headers: { "Lock-Token": "tok", "Lock-Duration": "2" },
    });
  });
  const result = await acquireLock(options(stub.url, { durationMs: 2_000 }), { clock });
  assert.ok(result.kind === "acquired");
  assert.equal(result.lock.expiresAt, clock.now() - 400 + 2_000);
});

Deno.test("acquireLock() counts the expiry from expiresAt when the server names no duration", async () => {
  const clock = new ManualClock();
  await using stub = startStandIn(() =>
    Response.json({
      status: "acquired",
      token: "tok",
      expiresAt: new Date(clock.wallNow() + 5_000).toISOString(),
    })
  );
  const result = await acquireLock(options(stub.url, { durationMs: 60_000 }), { clock });
  assert.ok(result.kind === "acquired");
  assert.equal(result.lock.expiresAt, clock.now() + 5_000);
});

Deno.test("acquireLock() asks its last wait to end a margin before --wait runs out, and gives up with that answer", async () => {
  // Answers every request at once, numbering its answers.
  await using stub = startStandIn((_request, index) =>
    Response.json({ status: "locked", message: `Locked: answer ${index + 1}` }, { status: 423 })
  );
  const waitMs = 2_000;
  const result = await acquireLock(options(stub.url, { waitMs }));
  assert.deepEqual(result, { kind: "timeout", reason: "Locked: answer 2" });
  assert.equal(stub.requests.length, 2, "the poll interval outlasts --wait");
  assert.equal(
    stub.requests[0]!.searchParams.get("wait"),
    null,
    "the first asks for an answer at once",
  );
  const asked = parseDuration(stub.requests[1]!.searchParams.get("wait") ?? "");
  assert.ok(asked <= waitMs - ANSWER_MARGIN_MS, `?wait= of ${asked} ms`);
  assert.ok(asked > 0);
});

Deno.test("acquireLock() with a wait of 0 asks once, for an answer at once", async () => {
  await using stub = startStandIn(() =>
    Response.json({ status: "locked", message: "Locked: held" }, { status: 423 })
  );
  const result = await acquireLock(options(stub.url, { waitMs: 0 }));
  assert.deepEqual(result, { kind: "timeout", reason: "Locked: held" });
  assert.equal(stub.requests.length, 1);
  assert.equal(stub.requests[0]!.searchParams.get("wait"), null);
});

Deno.test("acquireLock() asks again after the server's Retry-After when it is sooner than the poll interval", async (t) => {
  for (const status of [423, 503]) {
    await t.step(`${status}`, async () => {
      // The original's way (plain text, no ?wait=), then a grant on the third request.
      await using stub = startStandIn((_request, index) =>
        index < 2
          ? new Response("Locked", { status, headers: { "Retry-After": "1" } })
          : new Response("Lock acquired", { status: 200 })
      );
      // The poll interval is an hour and --wait a minute: only Retry-After explains the grant.
      const result = await acquireLock(options(stub.url, { waitMs: 60_000 }));
      assert.equal(result.kind, "acquired");
      assert.equal(stub.requests.length, 3);
    });
  }
});

Deno.test("acquireLock() keeps its poll interval when Retry-After is 0, instead of asking in a hot loop", async (t) => {
  for (const status of [423, 503]) {
    await t.step(`${status}`, async () => {
      // A proxy or another kind of server that answers at once, every time, with Retry-After: 0.
      await using stub = startStandIn(() =>
        new Response("busy", { status, headers: { "Retry-After": "0" } })
      );
      // The poll interval is an hour: after the first answer, the client sleeps until --wait
      // runs out (and may make one last try when it wakes just before); a hot loop asks
      // thousands of times.
      const result = await acquireLock(options(stub.url, { waitMs: 1_000 }));
      assert.deepEqual(result, { kind: "timeout", reason: "busy" });
      assert.ok(stub.requests.length <= 2, `${stub.requests.length} requests`);
    });
  }
});

Deno.test("acquireLock() keeps its poll interval when Retry-After is longer", async () => {
  await using stub = startStandIn(() =>
    new Response("Locked", { status: 423, headers: { "Retry-After": "3600" } })
  );
  const clock = new ManualClock();
  const waiting = acquireLock(options(stub.url, { waitMs: 60_000, pollIntervalMs: 2_000 }), {
    clock,
    random: () => 0.5,
  });
  for (let i = 0; i < 50 && stub.requests.length < 1; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  clock.advance(2_000); // One poll interval: the second request goes out, not an hour later.
  for (let i = 0; i < 50 && stub.requests.length < 2; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(stub.requests.length, 2);
  clock.advance(60_000);
  for (let i = 0; i < 50; i++) await new Promise((r) => setTimeout(r, 5));
  const result = await waiting;
  assert.equal(result.kind, "timeout");
});
