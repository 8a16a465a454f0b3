/**
 * Black-box tests of the lock API where only the real program will do: a
 * waiting client that drops its connection, and SIGTERM while clients wait.
 * The answers themselves are tested through the handler in
 * tests/unit/http/handler_test.ts.
 */
import assert from "node:assert/strict";
import { SHUTDOWN_GRACE_MS } from "../../lib/server.ts";
import type { StatusBody as Status } from "../../lib/http/render.ts";
import { startProgram } from "../_program.ts";
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
