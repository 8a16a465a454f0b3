/**
 * Replicas of the real program on a real redis-server, each test one fault
 * that once turned a bad replica, a lost message or lost Redis data into a
 * stall or into more holders than slots (issue 13): Redis losing the
 * semaphore, a capacity that differs, a replica that cannot grant, a user
 * without channel rights, Redis frozen, Redis's clock.
 *
 * No timing assertions: only generous bounds on waits.
 */
import assert from "node:assert/strict";
import { type ProgramServer, startProgram } from "../_program.ts";
import { RedisServer, SKIP_REDIS } from "../_redis.ts";
import { eventually } from "../_wait.ts";

/** An HTTP answer, its body parsed when it is JSON. */
interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
  text: string;
}

async function send(url: string, method = "GET"): Promise<Answer> {
  const response = await fetch(url, {
    method,
    headers: { Accept: "application/json" },
    signal: AbortSignal.timeout(60_000),
  });
  const text = await response.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: a 204, or /metrics.
  }
  return { status: response.status, headers: response.headers, body, text };
}

function acquire(replica: ProgramServer, params: Record<string, string>): Promise<Answer> {
  return send(`${replica.url}/?${new URLSearchParams(params)}`);
}

let names = 0;

/** A fresh semaphore name, so tests on one Redis never share one. */
function freshName(): string {
  return `faults-${++names}`;
}

/** One replica of `name` on `redis`, with `args` after the store's. */
function replica(redis: RedisServer, name: string, args: string[]): Promise<ProgramServer> {
  return startProgram(["--store", redis.url, "--name", name, ...args]);
}

/** Waits until the one client `who` stands in the shared line of semaphore `name`. */
function inLine(redis: RedisServer, name: string, who: string): Promise<void> {
  return eventually(`${who} waits in the shared line`, async () => {
    const client = await redis.client();
    try {
      return (await client.zCard(`startup-lock:{${name}}:line`)) === 1;
    } finally {
      client.destroy();
    }
  });
}

const redisTest = (name: string, fn: () => Promise<void>) =>
  SKIP_REDIS
    ? Deno.test.ignore(`${name} (skipped: redis-server is not installed)`, () => {})
    : Deno.test(name, fn);

/**
 * Holds both slots of a fresh replica, makes Redis lose them with `lose`,
 * and checks that nothing more is granted until `--maxDuration` has passed,
 * with the recovery gate as the reason everywhere, and then that the
 * semaphore works again.
 */
async function lostStateIsNoticed(lose: (redis: RedisServer) => Promise<void>): Promise<void> {
  await using redis = await RedisServer.start();
  const name = freshName();
  await using server = await replica(redis, name, [
    ...["--locks", "2", "--timeout", "3s", "--maxDuration", "3s"],
  ]);
  for (const id of ["old1", "old2"]) {
    assert.equal((await acquire(server, { id })).status, 200);
  }
  await lose(redis);
  // Both old leases may still be held by their clients: nothing more until they have run out.
  let refused = await acquire(server, { id: "new1" });
  // After a restart, the replica answers 503 until it has reconnected.
  await eventually("the replica reconnected", async () => {
    refused = await acquire(server, { id: "new1" });
    return refused.status !== 503;
  });
  assert.equal(refused.status, 423, refused.text);
  assert.equal(refused.body.reason, "recovering");
  assert.match(String(refused.body.message), /lost the locks it held/);
  assert.ok(Number(refused.headers.get("Retry-After")) >= 1);
  const status = (await send(`${server.url}/status`)).body as {
    gates: { name: string; open: boolean; reason: string | null }[];
    locking: { allowed: boolean; reason?: string };
  };
  assert.deepEqual(status.gates.find((g) => g.name === "recovery"), {
    name: "recovery",
    open: false,
    reason: "recovering",
  });
  assert.equal(status.locking.reason, "recovering");
  const metrics = (await send(`${server.url}/metrics`)).text;
  assert.match(metrics, /^startup_lock_gate_open\{gate="recovery"\} 0$/m);
  // The line may reach the log's pipe a little after the answer.
  await server.waitForLog(/no longer holds the semaphore/);
  const warnings = server.log.filter((l) => /no longer holds the semaphore/.test(l));
  assert.equal(warnings.length, 1, server.log.join("\n"));
  assert.match(warnings[0]!, /WARN/);
  // After --maxDuration, the semaphore is made anew and grants resume.
  await eventually("a grant after the recovery", async () => {
    const answer = await acquire(server, { id: "new1" });
    return answer.status === 200;
  });
  const client = await redis.client();
  try {
    const config = await client.hGetAll(`startup-lock:{${name}}:config`);
    assert.equal(config.capacity, "2");
    assert.ok(config.epoch, "the new semaphore has an epoch");
  } finally {
    client.destroy();
  }
}

redisTest(
  "A replica notices FLUSHALL: no grants (recovering) until --maxDuration after, then the semaphore is made anew",
  () =>
    lostStateIsNoticed(async (redis) => {
      const client = await redis.client();
      await client.sendCommand(["FLUSHALL"]);
      client.destroy();
    }),
);

redisTest(
  "A replica notices a Redis restarted without its data, as after FLUSHALL",
  () =>
    lostStateIsNoticed(async (redis) => {
      await redis.kill();
      for await (const entry of Deno.readDir(redis.dir)) {
        await Deno.remove(`${redis.dir}/${entry.name}`, { recursive: true });
      }
      await redis.relaunch();
    }),
);

redisTest(
  "A replica whose --locks differs from the stored capacity grants nothing more and stops, saying so",
  async () => {
    await using redis = await RedisServer.start();
    const name = freshName();
    await using server = await replica(redis, name, ["--locks", "1"]);
    assert.equal((await acquire(server, { id: "a" })).status, 200);
    // Another capacity in Redis, as if a replica with --locks 3 had made the semaphore.
    const client = await redis.client();
    await client.hSet(`startup-lock:{${name}}:config`, "capacity", "3");
    client.destroy();
    const answer = await acquire(server, { id: "b" });
    assert.notEqual(answer.status, 200, answer.text);
    await server.waitForLog(/--locks 1 differs from the 3 slots/);
    assert.equal(await server.stop(), 2);
  },
);

redisTest(
  "A replica whose gate is closed holds up no client of another replica, and /status says what the replica answers",
  async () => {
    await using redis = await RedisServer.start();
    const name = freshName();
    // A's only dependency never answers: its gate stays closed.
    await using a = await replica(redis, name, ["--locks", "1", "--check", "tcp://127.0.0.1:1"]);
    await using b = await replica(redis, name, ["--locks", "1"]);
    // Its client is cut off when A is killed at the end.
    const waiting = acquire(a, { id: "a1", wait: "20s" }).catch(() => undefined);
    await inLine(redis, name, "a1");
    const status = (await send(`${b.url}/status`)).body as { locking: { allowed: boolean } };
    assert.equal(status.locking.allowed, true);
    const b1 = await acquire(b, { id: "b1" });
    assert.equal(b1.status, 200, b1.text);
    await send(`${b.url}/locks/${b1.body.token}`, "DELETE");
    const b2 = await acquire(b, { id: "b2", wait: "5s" });
    assert.equal(b2.status, 200, b2.text);
    await a.stop("SIGKILL");
    await waiting;
  },
);

redisTest(
  "A user without channel rights: releases answer what Redis did, waiters are served within a beat, and the log names the right",
  async () => {
    await using redis = await RedisServer.start();
    const name = freshName();
    const admin = await redis.client();
    // The ACL line a Redis 7 deployment might write first: no channel, as acl-pubsub-default says.
    await admin.sendCommand(["ACL", "SETUSER", "lock", "on", ">pw", "~startup-lock:*", "+@all"]);
    admin.destroy();
    const url = redis.url.replace("redis://", "redis://lock:pw@");
    const start = () => startProgram(["--store", url, "--name", name, "--locks", "1"]);
    await using a = await start();
    await using b = await start();
    await a.waitForLog(/ERROR.*Cannot subscribe.*ACL SETUSER lock &startup-lock:\*/);
    const x = await acquire(a, { id: "x" });
    assert.equal(x.status, 200);
    const b1 = acquire(b, { id: "b1", wait: "20s" });
    await inLine(redis, name, "b1");
    const released = await send(`${a.url}/locks/${x.body.token}`, "DELETE");
    assert.equal(released.status, 204, released.text);
    const served = await b1;
    assert.equal(served.status, 200, served.text);
  },
);

redisTest(
  "A user without the rights to the keys: the log and the 503 say NOPERM, and the replica grants once the ACL is fixed, without a restart",
  async () => {
    await using redis = await RedisServer.start();
    const name = freshName();
    const admin = await redis.client();
    try {
      await admin.sendCommand(["ACL", "SETUSER", "lock", "on", ">pw", "&startup-lock:*", "+@all"]);
      const url = redis.url.replace("redis://", "redis://lock:pw@");
      await using server = await startProgram(["--store", url, "--name", name, "--locks", "1"]);
      await server.waitForLog(/WARN .*NOPERM.*: no grants until it answers/);
      const refused = await acquire(server, {});
      assert.equal(refused.status, 503, refused.text);
      assert.match(String(refused.body.message), /NOPERM/);
      await admin.sendCommand(["ACL", "SETUSER", "lock", "~startup-lock:*"]);
      await eventually(
        "the replica grants",
        async () => (await acquire(server, {})).status === 200,
      );
      await server.waitForLog(/Connected to redis:\/\/127\.0\.0\.1:\d+ again/);
    } finally {
      admin.destroy();
    }
  },
);

redisTest(
  '"Store up" comes back once Redis answers again, without any client asking',
  async () => {
    await using redis = await RedisServer.start();
    await using server = await replica(redis, freshName(), ["--locks", "1"]);
    await redis.stop();
    const refused = await send(`${server.url}/locks/AAAAAAAAAAAAAAAAAAAAAA`, "DELETE");
    assert.equal(refused.status, 503, refused.text);
    const storeUp = async () => {
      const status = (await send(`${server.url}/status`)).body as { store: { up: boolean } };
      const metrics = (await send(`${server.url}/metrics`)).text;
      return status.store.up && /^startup_lock_store_up 1$/m.test(metrics);
    };
    assert.equal(await storeUp(), false);
    await redis.relaunch();
    // Only /status and /metrics are asked: neither changes a slot.
    await eventually("/status and /metrics say the store is up", storeUp, 10_000);
  },
);

redisTest("A replica warns when Redis keeps nothing on disk (appendonly no)", async () => {
  await using redis = await RedisServer.start();
  const client = await redis.client();
  await client.sendCommand(["CONFIG", "SET", "appendonly", "no"]);
  client.destroy();
  await using server = await replica(redis, freshName(), ["--locks", "1"]);
  const line = await server.waitForLog(/appendonly is no/);
  assert.match(line, /WARN/);
});

/** The ACL docs/redis.md gives a deployment: its keys, its channel, the commands it runs. */
const DOCUMENTED_ACL = "ACL SETUSER startup-lock on >PASSWORD resetkeys ~startup-lock:* " +
  "resetchannels &startup-lock:* nocommands +@read +@write +@scripting +@pubsub +@connection " +
  "+time +config|get";

redisTest(
  "The ACL of docs/redis.md is all a replica needs: no refusal, no warning, handoffs work",
  async () => {
    const docs = await Deno.readTextFile(new URL("../../docs/redis.md", import.meta.url));
    assert.ok(docs.includes(`\n${DOCUMENTED_ACL}\n`), "docs/redis.md gives this ACL line");
    await using redis = await RedisServer.start();
    const name = freshName();
    const admin = await redis.client();
    await admin.sendCommand(DOCUMENTED_ACL.replace(">PASSWORD", ">pw").split(" "));
    admin.destroy();
    const url = redis.url.replace("redis://", "redis://startup-lock:pw@");
    const start = () => startProgram(["--store", url, "--name", name, "--locks", "1"]);
    await using a = await start();
    await using b = await start();
    const x = await acquire(a, { id: "x" });
    assert.equal(x.status, 200, x.text);
    const b1 = acquire(b, { id: "b1", wait: "20s" });
    b1.catch(() => {}); // Cut off if an assertion below fails first.
    await inLine(redis, name, "b1");
    assert.equal((await send(`${a.url}/locks/${x.body.token}`, "DELETE")).status, 204);
    assert.equal((await b1).status, 200);
    for (const server of [a, b]) {
      // The password in --store is warned about, as it should be; nothing else.
      const problems = server.log.filter((l) => /WARN|ERROR/.test(l) && !/has a password/.test(l));
      assert.deepEqual(problems, [], server.log.join("\n"));
    }
  },
);
