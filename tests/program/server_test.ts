/**
 * Black-box tests: the real program in a child process, spoken to over HTTP,
 * for what needs it (flags and variables, real timers, concurrent sockets,
 * signals). What the handler answers to each request is
 * tests/unit/http/handler_test.ts.
 */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { startProgram } from "../_program.ts";
import { eventually } from "../_wait.ts";

async function status(url: string, init?: RequestInit): Promise<number> {
  const res = await fetch(url, init);
  await res.body?.cancel();
  return res.status;
}

Deno.test("server grants the first request, refuses the next, and frees the slot on expiry", async () => {
  await using server = await startProgram(["--timeout", "1s"]);
  const first = await fetch(`${server.url}/`);
  assert.equal(first.status, 200);
  assert.equal(await first.text(), "Lock acquired\n");
  const second = await fetch(`${server.url}/`);
  assert.equal(second.status, 423);
  assert.equal(second.headers.get("Retry-After"), "1");
  assert.match(await second.text(), /^Locked: the only slot is held; the next frees in/);
  await eventually("the lock expires", async () => (await status(`${server.url}/`)) === 200);
  await server.waitForLog(/Lock expired after/);
});

Deno.test("server gives exactly three of 100 concurrent requests a lock with --locks 3", async () => {
  await using server = await startProgram(["--locks", "3", "--timeout", "1m"]);
  const statuses = await Promise.all(
    Array.from({ length: 100 }, () => status(`${server.url}/?duration=60`)),
  );
  assert.equal(statuses.filter((s) => s === 200).length, 3);
  assert.equal(statuses.filter((s) => s === 423).length, 97);
});

Deno.test("server takes its settings from STARTUP_LOCK_* variables, flags winning", async () => {
  await using server = await startProgram(["--locks", "2"], {
    env: { STARTUP_LOCK_LOCKS: "5", STARTUP_LOCK_TIMEOUT: "1m" },
  });
  const statuses = await Promise.all(Array.from({ length: 4 }, () => status(`${server.url}/`)));
  assert.deepEqual(statuses.sort(), [200, 200, 423, 423]);
  const res = await fetch(`${server.url}/`);
  assert.match(await res.text(), /all 2 slots are held; the next frees in (59\.\ds|1m)\n$/);
});

Deno.test("server gates locks on a dependency going down and up again", async () => {
  let up = false;
  await using dependency = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(null, { status: up ? 204 : 503 }),
  );
  const depUrl = `http://127.0.0.1:${dependency.addr.port}/health`;
  await using server = await startProgram([
    "--check",
    depUrl,
    "--failHc",
    "100ms",
    "--passHc",
    "100ms",
    "--timeout",
    "100ms",
  ]);
  await server.waitForLog(/Dependency .* is down: HTTP 503/);
  const refused = await fetch(`${server.url}/`);
  assert.equal(refused.status, 423);
  assert.equal(
    await refused.text(),
    `Locked: dependency ${depUrl} is down (HTTP 503 Service Unavailable)\n`,
  );

  up = true;
  await eventually("the dependency is up", async () => (await status(`${server.url}/`)) === 200);
  up = false;
  await eventually(
    "the dependency is down again",
    async () => {
      const res = await fetch(`${server.url}/?duration=1ms`);
      const body = await res.text();
      return res.status === 423 && body.includes("is down");
    },
  );
  up = true;
  await eventually(
    "it is up again",
    async () => (await status(`${server.url}/?duration=1ms`)) === 200,
  );

  // Transitions are logged once each, not every 100 ms round.
  await sleep(500);
  const ups = server.log.filter((l) => l.includes(`Dependency ${depUrl} is up`)).length;
  const downs = server.log.filter((l) => l.includes(`Dependency ${depUrl} is down`)).length;
  assert.equal(ups, 2, server.log.join("\n"));
  assert.equal(downs, 2, server.log.join("\n"));
});

Deno.test("server exits 0 on SIGTERM and on SIGINT", async (t) => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    await t.step(signal, async () => {
      const server = await startProgram(["--check", "tcp://127.0.0.1:1", "--failHc", "1h"]);
      assert.equal(await status(`${server.url}/healthz`), 200);
      assert.equal(await server.stop(signal), 0);
      assert.ok(server.log.some((l) => l.includes(`Received ${signal}: shutting down`)));
      assert.ok(server.log.at(-1)?.includes("Stopped"), server.log.join("\n"));
    });
  }
});
