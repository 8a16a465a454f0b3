/**
 * The Redis store's handoff against a real redis-server: a script that frees
 * a slot hands it, in the same step, to the first ticket in line that can
 * take it, and that ticket's replica passes it on without a take of its own.
 * Replicas are stores (with a {@linkcode LockService} where a client waits);
 * a replica that no process runs is written into Redis directly, so that its
 * heartbeat and gates are exactly what a test says.
 */
import assert from "node:assert/strict";
import { Gates } from "../../../lib/core/gates.ts";
import { LockService } from "../../../lib/core/service.ts";
import type { AcquireRequest } from "../../../lib/core/store.ts";
import { HANDOFF_MIN_LEFT_MS } from "../../../lib/stores/redis/scripts.ts";
import { RedisLockStore } from "../../../lib/stores/redis/store.ts";
import { parseStore, type RedisTarget } from "../../../lib/stores/settings.ts";
import { ManualGate } from "../../_gate.ts";
import { RedisServer, SKIP_REDIS } from "../../_redis.ts";
import { eventually } from "../../_wait.ts";

const redis = SKIP_REDIS ? undefined : await RedisServer.start();
addEventListener("unload", () => redis?.killSync());

let semaphores = 0;

function target(server: RedisServer, auth: { username?: string; password?: string } = {}) {
  const setting = parseStore(server.url);
  assert.equal(setting.kind, "redis");
  return { ...setting.target, ...auth } as RedisTarget;
}

const redisTest = (name: string, fn: () => Promise<void>) =>
  redis ? Deno.test(name, fn) : Deno.test.ignore(`${name} (skipped: no redis-server)`, fn);

/** Replicas A and B of one fresh semaphore, each with a service, and a direct client. */
async function cluster(
  capacity: number,
  options: { b?: { username: string; password: string }; gateB?: ManualGate } = {},
) {
  const name = `handoff-${++semaphores}`;
  const open = async (replica: string, credentials = {}) => {
    const store = new RedisLockStore(capacity, target(redis!, credentials), { name, replica });
    await store.connect(5_000);
    return store;
  };
  const [a, b] = await Promise.all([open("A"), open("B", options.b)]);
  const services = [a, b].map((store) =>
    new LockService({
      store,
      maxDurationMs: 3_600_000,
      ...(store === b && options.gateB ? { gates: new Gates([options.gateB]) } : {}),
    })
  );
  const direct = await redis!.client();
  const key = (what: string) => `startup-lock:{${name}}:${what}`;
  /** Redis's clock, in milliseconds. */
  const redisNow = async () => {
    const [seconds, micros] = (await direct.sendCommand(["TIME"])) as [string, string];
    return Number(seconds) * 1_000 + Math.floor(Number(micros) / 1_000);
  };
  return {
    a,
    b,
    serviceA: services[0]!,
    serviceB: services[1]!,
    direct,
    key,
    redisNow,
    /** A ticket in line of replica `replica`, which no process runs: its heartbeat ends in `leftMs`. */
    async ghost(ticket: string, replica: string, leftMs: number, offer?: string) {
      await direct.sendCommand([
        "ZADD",
        key("replicas"),
        String(await redisNow() + leftMs),
        replica,
      ]);
      const place = await direct.sendCommand(["INCR", key("seq")]);
      await direct.sendCommand(["ZADD", key("line"), String(place), ticket]);
      await direct.sendCommand(["HSET", key("tickets"), ticket, ""]);
      if (offer) await direct.sendCommand(["HSET", key("offers"), ticket, offer]);
    },
    async [Symbol.asyncDispose]() {
      for (const service of services) service.close();
      direct.destroy();
      await Promise.all([a.close(), b.close()]);
    },
  };
}

/** Counts the takes a store makes from now on. */
function countTakes(store: RedisLockStore): { readonly count: number } {
  const take = store.acquire.bind(store);
  const counter = { count: 0 };
  store.acquire = (request: AcquireRequest) => {
    counter.count++;
    return take(request);
  };
  return counter;
}

redisTest(
  "RedisLockStore: a release through A hands the slot to B's waiting client in the same script; B passes it on without a take",
  async () => {
    await using r = await cluster(1);
    const holder = await r.serviceA.acquire({ durationMs: 60_000, id: "holder" });
    assert.ok(holder.granted);
    const waiting = r.serviceB.acquire({ durationMs: 20_000, id: "next", waitMs: 30_000 });
    await eventually(
      "the waiter's offer is in line",
      async () => (await r.direct.sendCommand(["HGET", r.key("offers"), "#next"])) !== null,
    );
    const takes = countTakes(r.b);
    assert.ok(await r.serviceA.release(holder.lease.token));
    const next = await waiting;
    assert.ok(next.granted, JSON.stringify(next));
    assert.equal(takes.count, 0, "B answered its client from the handoff, not from a take");
    assert.equal(next.lease.id, "next");
    assert.equal(next.durationMs, 20_000);
    assert.equal(next.lease.expiresAt - next.lease.acquiredAt, 20_000, "the offer's duration");
    const expires = await r.direct.sendCommand(["ZSCORE", r.key("leases"), next.lease.token]);
    assert.equal(Number(expires), next.lease.expiresAt, "the lease B answered is Redis's");
    assert.deepEqual(await r.direct.sendCommand(["ZRANGE", r.key("line"), "0", "-1"]), []);
  },
);

redisTest(
  "RedisLockStore: a slot handed to a ticket whose client is gone is given back, and goes to the next in line",
  async () => {
    await using r = await cluster(1);
    const holder = await r.serviceA.acquire({ durationMs: 60_000, id: "holder" });
    assert.ok(holder.granted);
    // A ticket of B's in line, with an offer, that no client of B waits on (its client left,
    // and the leave had not reached Redis yet).
    await r.b.line.join("B/999", undefined, undefined, 5_000);
    const waiting = r.serviceA.acquire({ durationMs: 5_000, id: "second", waitMs: 30_000 });
    await eventually(
      "the second waiter is in line",
      async () => Number(await r.direct.sendCommand(["ZCARD", r.key("line")])) === 2,
    );
    assert.ok(await r.serviceA.release(holder.lease.token));
    const second = await waiting;
    assert.ok(second.granted, JSON.stringify(second));
    assert.equal(second.lease.id, "second");
    assert.equal(Number(await r.direct.sendCommand(["ZCARD", r.key("leases")])), 1);
  },
);

redisTest(
  "RedisLockStore hands no slot to a replica that has not beaten lately nor to one that cannot grant; those ask, as any replica",
  async () => {
    await using r = await cluster(1);
    const holder = await r.a.acquire({ durationMs: 60_000, id: "holder" });
    assert.ok(holder.granted);
    // Z's last beat was 2 s ago (1 s of its 3 s left): it may be gone.
    await r.ghost("Z/1", "Z", HANDOFF_MIN_LEFT_MS - 500, "5000 stale-token");
    await r.a.release(holder.lease.token);
    assert.equal(await r.direct.sendCommand(["ZSCORE", r.key("leases"), "stale-token"]), null);
    assert.equal(Number(await r.direct.sendCommand(["HLEN", r.key("handed")])), 0);
    // Z's ticket still holds the line up until it is dropped as dead: nothing was given past it.
    assert.equal((await r.a.acquire({ durationMs: 1_000, id: "later" })).granted, false);

    // Y beat just now but cannot grant (a gate closed): its ticket is passed over for X's.
    await r.direct.sendCommand(["DEL", r.key("line")]);
    const again = await r.a.acquire({ durationMs: 60_000, id: "again" });
    assert.ok(again.granted);
    await r.ghost("Y/1", "Y", 2_900, "5000 paused-token");
    await r.direct.sendCommand(["SADD", r.key("paused"), "Y"]);
    await r.ghost("X/1", "X", 2_900, "7000 x-token");
    await r.a.release(again.lease.token);
    assert.equal(await r.direct.sendCommand(["ZSCORE", r.key("leases"), "paused-token"]), null);
    const [xAt, xEnds] = [
      Number(String(await r.direct.sendCommand(["HGET", r.key("info"), "x-token"]))),
      Number(await r.direct.sendCommand(["ZSCORE", r.key("leases"), "x-token"])),
    ];
    assert.equal(xEnds - xAt, 7_000, "X's ticket got a lease for its offer's duration");
    assert.deepEqual(await r.direct.sendCommand(["HGET", r.key("handed"), "X/1"]), "X x-token");
    assert.deepEqual(await r.direct.sendCommand(["ZRANGE", r.key("line"), "0", "-1"]), ["Y/1"]);
  },
);

redisTest(
  "RedisLockStore: a take with the ticket answers with the slot handed to it, for the duration asked now, and the ticket never stands in line again",
  async () => {
    await using r = await cluster(1);
    const holder = await r.a.acquire({ durationMs: 60_000, id: "holder" });
    assert.ok(holder.granted);
    // No service listens on a plain store of B's: the handed slot waits for B's take.
    const plain = new RedisLockStore(1, target(redis!), {
      name: r.key("").replace(/^startup-lock:\{|\}:$/g, ""),
      replica: "P",
    });
    await plain.connect(5_000);
    try {
      await plain.line.join("#p", "p", undefined, 1_000);
      await r.a.release(holder.lease.token);
      const handed = String(await r.direct.sendCommand(["HGET", r.key("handed"), "#p"]));
      const token = handed.split(" ")[1]!;
      assert.equal(await plain.line.join("#p", "p", undefined, 1_000), 0, "not in line again");
      assert.deepEqual(await r.direct.sendCommand(["ZRANGE", r.key("line"), "0", "-1"]), []);
      const taken = await plain.acquire({ durationMs: 30_000, id: "p", ticket: "#p" });
      assert.ok(taken.granted && !taken.existing, JSON.stringify(taken));
      assert.equal(taken.lease.token, token, "the slot handed to the ticket");
      assert.ok(taken.lease.remainingMs > 20_000, `${taken.lease.remainingMs} ms left`);
    } finally {
      await plain.close();
    }
  },
);

redisTest(
  "RedisLockStore: a replica that cannot hear the channel learns of a slot handed to its waiter at its next beat",
  async () => {
    const admin = await redis!.client();
    try {
      // Redis 7's default for a new user: no channel.
      await admin.sendCommand(["ACL", "SETUSER", "deaf", "on", ">pw", "~*", "+@all"]);
      await using r = await cluster(1, { b: { username: "deaf", password: "pw" } });
      const holder = await r.serviceA.acquire({ durationMs: 60_000, id: "holder" });
      assert.ok(holder.granted);
      const waiting = r.serviceB.acquire({ durationMs: 20_000, id: "deaf-1", waitMs: 30_000 });
      await eventually(
        "the waiter's offer is in line",
        async () => (await r.direct.sendCommand(["HGET", r.key("offers"), "#deaf-1"])) !== null,
      );
      assert.ok(await r.serviceA.release(holder.lease.token));
      const next = await waiting;
      assert.ok(next.granted, JSON.stringify(next));
      assert.equal(
        String(await r.direct.sendCommand(["HGET", r.key("handed"), "#deaf-1"])),
        `B ${next.lease.token}`,
        "it was handed over by the release, and passed on by B's beat",
      );
    } finally {
      await admin.sendCommand(["ACL", "DELUSER", "deaf"]);
      admin.destroy();
    }
  },
);

redisTest(
  "RedisLockStore: a slot handed to a replica whose gate closed since it last told the line goes back to the line, and its waiter keeps its place",
  async () => {
    const gate = new ManualGate();
    gate.open();
    await using r = await cluster(1, { gateB: gate });
    const holder = await r.serviceA.acquire({ durationMs: 60_000, id: "holder" });
    assert.ok(holder.granted);
    const first = r.serviceB.acquire({ durationMs: 20_000, id: "first", waitMs: 30_000 });
    await eventually(
      "B's waiter is in line",
      async () => (await r.direct.sendCommand(["HGET", r.key("offers"), "#first"])) !== null,
    );
    const second = r.serviceA.acquire({ durationMs: 20_000, id: "second", waitMs: 30_000 });
    await eventually(
      "A's waiter is in line behind it",
      async () => Number(await r.direct.sendCommand(["ZCARD", r.key("line")])) === 2,
    );
    gate.close({ reason: "starting", retryAfterMs: 1_000 });
    await eventually(
      "B told the line that it cannot grant",
      async () => Number(await r.direct.sendCommand(["SISMEMBER", r.key("paused"), "B"])) === 1,
    );
    // As if B's word had not reached Redis yet (its beat failed): the release hands B the slot.
    await r.direct.sendCommand(["SREM", r.key("paused"), "B"]);
    assert.ok(await r.serviceA.release(holder.lease.token));
    const served = await second;
    assert.ok(served.granted, "B gave the slot back, and the next in line got it");
    assert.equal(r.serviceB.waiting, 1, "B's waiter still waits");
    // Once B's gate opens, its waiter takes its old place again: first in line.
    gate.open();
    await eventually(
      "B's waiter is back in line",
      async () =>
        (await r.direct.sendCommand(["ZRANGE", r.key("line"), "0", "-1"]) as string[])
          .includes("#first"),
    );
    assert.ok(await r.serviceA.release(served.lease.token));
    const got = await first;
    assert.ok(got.granted, JSON.stringify(got));
    assert.equal(got.lease.id, "first");
  },
);

redisTest(
  "RedisLockStore: a slot handed to a replica whose service has stopped is given back, and goes to the next in line",
  async () => {
    await using r = await cluster(1);
    const holder = await r.serviceA.acquire({ durationMs: 60_000, id: "holder" });
    assert.ok(holder.granted);
    // B's service stops (its store goes on until the server's shutdown ends); a ticket of B's is
    // still first in line, as when its leave has not reached Redis yet.
    r.serviceB.close();
    await r.ghost("B/55", "B", 2_900, "20000 b-token");
    const waiting = r.serviceA.acquire({ durationMs: 5_000, id: "second", waitMs: 30_000 });
    await eventually(
      "A's waiter is in line behind it",
      async () => Number(await r.direct.sendCommand(["ZCARD", r.key("line")])) === 2,
    );
    assert.ok(await r.serviceA.release(holder.lease.token));
    const second = await waiting;
    assert.ok(second.granted, JSON.stringify(second));
    assert.equal(await r.direct.sendCommand(["ZSCORE", r.key("leases"), "b-token"]), null);
  },
);

redisTest(
  "RedisLockStore: a replica whose subscriber is back before its commands' connection passes a handed slot on only once it can call Redis again",
  async () => {
    const admin = await redis!.client();
    try {
      await admin.sendCommand(["ACL", "SETUSER", "half", "on", ">pw", "~*", "&*", "+@all"]);
      await using r = await cluster(1, { b: { username: "half", password: "pw" } });
      const holder = await r.serviceA.acquire({ durationMs: 60_000, id: "holder" });
      assert.ok(holder.granted);
      let answered = false;
      const waiting = Promise.resolve(
        r.serviceB.acquire({ durationMs: 20_000, id: "half-1", waitMs: 30_000 }),
      ).then((outcome) => {
        answered = true;
        return outcome;
      });
      await eventually(
        "the waiter's offer is in line",
        async () => (await r.direct.sendCommand(["HGET", r.key("offers"), "#half-1"])) !== null,
      );
      // B's commands' connection drops and cannot come back (its password changed); its
      // subscriber, connected already, stays.
      await admin.sendCommand(["ACL", "SETUSER", "half", "resetpass", ">other"]);
      const clients = String(await admin.sendCommand(["CLIENT", "LIST"])).split("\n");
      const commands = clients.find((c) => / user=half /.test(c) && !/ flags=P /.test(c));
      assert.ok(commands, clients.join("\n"));
      await admin.sendCommand(["CLIENT", "KILL", "ID", commands.match(/^id=(\d+)/)![1]!]);
      assert.ok(await r.serviceA.release(holder.lease.token));
      await eventually(
        "the slot was handed to B's waiter",
        async () => (await r.direct.sendCommand(["HGET", r.key("handed"), "#half-1"])) !== null,
      );
      // The message reached B's subscriber at once; half a second more, and still no answer.
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(answered, false, "answered while B could not call Redis");
      await admin.sendCommand(["ACL", "SETUSER", "half", "resetpass", ">pw"]);
      const next = await waiting;
      assert.ok(next.granted, JSON.stringify(next));
      assert.ok(await r.serviceB.release(next.lease.token), "its release through B works");
    } finally {
      await admin.sendCommand(["ACL", "DELUSER", "half"]);
      admin.destroy();
    }
  },
);

redisTest(
  "RedisLockStore ignores a malformed handoff on the channel: its waiter is served by the real one",
  async () => {
    await using r = await cluster(1);
    const holder = await r.serviceA.acquire({ durationMs: 60_000, id: "holder" });
    assert.ok(holder.granted);
    let answered = false;
    const waiting = Promise.resolve(
      r.serviceB.acquire({ durationMs: 20_000, id: "m-1", waitMs: 30_000 }),
    ).then((outcome) => {
      answered = true;
      return outcome;
    });
    await eventually(
      "the waiter's offer is in line",
      async () => (await r.direct.sendCommand(["HGET", r.key("offers"), "#m-1"])) !== null,
    );
    const channel = r.key("freed");
    for (
      const message of [
        "/not json",
        "/[]",
        '/{"to":"B","ticket":"#m-1"}',
        '/{"to":"B","ticket":"#m-1","lease":["forged",false,"then","later",0],"now":1}',
        '/{"to":"B","ticket":7,"lease":["forged",false,1,2,0],"now":1}',
      ]
    ) {
      await r.direct.sendCommand(["PUBLISH", channel, message]);
    }
    // Messages reach a subscriber within a millisecond here: 200 ms is long past them.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(answered, false, "answered from a malformed message");
    assert.ok(await r.serviceA.release(holder.lease.token));
    const next = await waiting;
    assert.ok(next.granted, JSON.stringify(next));
    assert.notEqual(next.lease.token, "forged");
  },
);
