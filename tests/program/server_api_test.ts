/**
 * Black-box tests of the lock API ("Release on ready"): the real program in a
 * child process, spoken to over real sockets.
 */
import assert from "node:assert/strict";
import { SHUTDOWN_GRACE_MS } from "../../lib/server.ts";
import type { StatusBody as Status } from "../../lib/http/render.ts";
import { runProgram, startProgram } from "../_program.ts";
import { eventually } from "../_wait.ts";

const JSON_ACCEPT = { Accept: "application/json" };
const TOKEN = /^[A-Za-z0-9_-]{22}$/;
/** One slot held for a minute unless released, waits of up to 30 s. */
const FLAGS = ["--locks", "1", "--timeout", "60s", "--maxWait", "30s"];

async function getStatus(url: string): Promise<Status> {
  const res = await fetch(`${url}/status`);
  assert.equal(res.status, 200);
  return await res.json() as Status;
}

async function waiterCount(url: string): Promise<number> {
  return (await getStatus(url)).waiters.count;
}

/** Takes the lock and returns its token. */
async function take(url: string, query = ""): Promise<string> {
  const res = await fetch(`${url}/${query}`);
  await res.body?.cancel();
  assert.equal(res.status, 200);
  const token = res.headers.get("Lock-Token");
  assert.match(token ?? "", TOKEN);
  return token!;
}

async function send(url: string, init: RequestInit = {}): Promise<number> {
  const res = await fetch(url, init);
  await res.body?.cancel();
  return res.status;
}

Deno.test("server answers a waiting client 200 as soon as the holder DELETEs its lock", async () => {
  await using server = await startProgram(FLAGS);
  const holder = await take(server.url, "?id=holder");
  const waiting = fetch(`${server.url}/?wait=20s&id=waiter`, { headers: JSON_ACCEPT });
  await eventually("the client waits", async () => (await waiterCount(server.url)) === 1);

  // The holder asked for 60 s: only the release can explain the waiter's 200.
  assert.equal(await send(`${server.url}/locks/${holder}`, { method: "DELETE" }), 204);
  const res = await waiting;
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.id, "waiter");
  assert.match(body.token, TOKEN);
  assert.equal(res.headers.get("Lock-Token"), body.token);

  const status = await getStatus(server.url);
  assert.deepEqual(status.waiters, { count: 0, ids: [] });
  assert.deepEqual(status.holders.map((h) => h.id), ["waiter"]);
});

Deno.test("server drops a waiting client that disconnects from the queue and leaks no slot", async () => {
  await using server = await startProgram(FLAGS);
  const holder = await take(server.url, "?id=holder");
  const controller = new AbortController();
  const waiting = fetch(`${server.url}/?wait=20s&id=leaver`, { signal: controller.signal })
    .then(async (res) => {
      await res.body?.cancel();
      return `answered ${res.status}`;
    }, (error: Error) => error.name);
  await eventually("the client waits", async () => (await waiterCount(server.url)) === 1);

  controller.abort();
  assert.equal(await waiting, "AbortError");
  await eventually(
    "the client leaves the queue",
    async () => (await waiterCount(server.url)) === 0,
  );
  assert.deepEqual((await getStatus(server.url)).holders.map((h) => h.id), ["holder"]);

  assert.equal(await send(`${server.url}/locks/${holder}`, { method: "DELETE" }), 204);
  const status = await getStatus(server.url);
  assert.deepEqual(status.slots, { total: 1, held: 0, free: 1 }, "no slot went to the leaver");
  await take(server.url, "?id=fresh");
});

Deno.test("server answers a waiting client 503 shutting_down on SIGTERM and exits 0 promptly", async () => {
  await using server = await startProgram(FLAGS);
  await take(server.url);
  const waiting = fetch(`${server.url}/?wait=30s`, { headers: JSON_ACCEPT });
  await eventually("the client waits", async () => (await waiterCount(server.url)) === 1);

  const started = performance.now();
  const exited = server.stop("SIGTERM");
  const res = await waiting;
  assert.equal(res.status, 503);
  assert.ok(Number(res.headers.get("Retry-After")) >= 1);
  const body = await res.json();
  assert.equal(body.status, "unavailable");
  assert.equal(body.reason, "shutting_down");
  assert.equal(await exited, 0);
  const took = performance.now() - started;
  assert.ok(took < SHUTDOWN_GRACE_MS, `exited after ${took} ms: the waiter held the shutdown up`);
  assert.ok(server.log.at(-1)?.includes("Stopped"), server.log.join("\n"));
});

Deno.test("server with --maxWaiters 1 answers a second waiting client 503 queue_full", async () => {
  await using server = await startProgram([...FLAGS, "--maxWaiters", "1"]);
  const holder = await take(server.url);
  const first = fetch(`${server.url}/?wait=20s&id=first`);
  await eventually("the first client waits", async () => (await waiterCount(server.url)) === 1);

  const second = await fetch(`${server.url}/?wait=20s&id=second`, { headers: JSON_ACCEPT });
  assert.equal(second.status, 503);
  assert.ok(Number(second.headers.get("Retry-After")) >= 1);
  const body = await second.json();
  assert.equal(body.reason, "queue_full");
  assert.deepEqual((await getStatus(server.url)).waiters, { count: 1, ids: ["first"] });

  assert.equal(await send(`${server.url}/locks/${holder}`, { method: "DELETE" }), 204);
  const granted = await first;
  assert.equal(granted.status, 200);
  await granted.body?.cancel();
});

Deno.test("server renews, releases and routes locks by token", async () => {
  await using server = await startProgram([...FLAGS, "--maxDuration", "2m"]);
  const token = await take(server.url, "?id=web-1&duration=10s");
  assert.equal(await take(server.url, "?id=web-1"), token, "the same id gets its token back");

  const renewed = await fetch(`${server.url}/locks/${token}?duration=1h`, {
    method: "PUT",
    headers: JSON_ACCEPT,
  });
  assert.equal(renewed.status, 200);
  const { expiresAt } = await renewed.json();
  const secondsLeft = (Date.parse(expiresAt) - Date.now()) / 1000;
  assert.ok(secondsLeft > 60 && secondsLeft <= 120, `capped at --maxDuration: ${expiresAt}`);
  assert.equal(
    await send(`${server.url}/locks/${token}?duration=abc`, { method: "PUT" }),
    400,
  );

  const text = await (await fetch(`${server.url}/status`)).text();
  assert.ok(!text.includes(token), "no token in /status");

  const wrong = await fetch(`${server.url}/locks/${token}`);
  assert.equal(wrong.status, 405);
  assert.equal(wrong.headers.get("Allow"), "DELETE, PUT");
  await wrong.body?.cancel();
  for (const path of ["/locks/a/b", `/locks/${token}/x`]) {
    assert.equal(await send(`${server.url}${path}`, { method: "DELETE" }), 404, path);
  }
  for (const path of ["/locks/", "/locks/bogus", `/locks/${token.slice(1)}`]) {
    assert.equal(await send(`${server.url}${path}`, { method: "DELETE" }), 400, path);
    assert.equal(await send(`${server.url}${path}`, { method: "PUT" }), 400, path);
  }

  assert.equal(await send(`${server.url}/locks/${token}`, { method: "DELETE" }), 204);
  assert.equal(await send(`${server.url}/locks/${token}`, { method: "DELETE" }), 404);
  assert.equal(await send(`${server.url}/locks/${token}`, { method: "PUT" }), 404);
  assert.equal(await send(`${server.url}/?id=bad%20id`), 400);
  await take(server.url);
});

Deno.test("startup-lock --help lists --maxWait and --maxWaiters", async () => {
  const { code, stdout } = await runProgram(["--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /^\s+--maxWait\b.*STARTUP_LOCK_MAX_WAIT\b/m);
  assert.match(stdout, /^\s+--maxWaiters\b.*STARTUP_LOCK_MAX_WAITERS\b/m);
});

Deno.test("startup-lock exits 2 naming the flag for an invalid --maxWaiters or --maxWait", async (t) => {
  const cases: { args: string[]; env?: Record<string, string>; says: string }[] = [
    { args: ["--maxWaiters", "-1"], says: 'Invalid --maxWaiters "-1"' },
    { args: ["--maxWaiters", "x"], says: 'Invalid --maxWaiters "x"' },
    { args: ["--maxWaiters", "1.5"], says: 'Invalid --maxWaiters "1.5"' },
    { args: [], env: { STARTUP_LOCK_MAX_WAITERS: "x" }, says: 'STARTUP_LOCK_MAX_WAITERS "x"' },
    { args: ["--maxWait", "0"], says: 'Invalid --maxWait "0"' },
    { args: ["--maxWait", "soon"], says: 'Invalid --maxWait "soon"' },
  ];
  for (const { args, env, says } of cases) {
    await t.step([...args, ...Object.entries(env ?? {}).flat()].join(" "), async () => {
      const { code, stdout, stderr } = await runProgram(args, env ? { env } : {});
      assert.equal(code, 2, stderr);
      assert.equal(stdout, "");
      assert.ok(stderr.includes(says), stderr);
      assert.equal(stderr.trim().split("\n").length, 1, stderr);
    });
  }
});
