/**
 * The Redis store against a real redis-server: the store contract
 * (`tests/_store_contract.ts`) unchanged, on the real clock, then what only a
 * shared store has: several stores (replicas) on one semaphore, the shared
 * line, and Redis going away.
 */
import assert from "node:assert/strict";
import { StoreUnavailableError } from "../../../lib/core/store.ts";
import { KEY_NAMES, SEMAPHORE_TTL_MS, SILENCE_MS } from "../../../lib/stores/redis/scripts.ts";
import {
  BEAT_INTERVAL_MS,
  MAX_RECONNECT_MS,
  RECONNECT_JITTER_MS,
  RedisLockStore,
  TICKET_TTL_MS,
} from "../../../lib/stores/redis/store.ts";
import { parseStore, type RedisTarget } from "../../../lib/stores/settings.ts";
import { RedisServer, SKIP_REDIS } from "../../_redis.ts";
import { storeContract } from "../../_store_contract.ts";
import { eventually } from "../../_wait.ts";

const redis = SKIP_REDIS ? undefined : await RedisServer.start();
addEventListener("unload", () => redis?.killSync());

let semaphores = 0;

function target(server: RedisServer): RedisTarget {
  const setting = parseStore(server.url);
  assert.equal(setting.kind, "redis");
  return setting.target;
}

/** A store on its own semaphore (a fresh name), connected. */
async function openStore(capacity: number, name = `test-${++semaphores}`) {
  const store = new RedisLockStore(capacity, target(redis!), { name });
  await store.connect(5_000);
  return store;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

if (redis) {
  // A busy machine (two cores, other work) was seen 54 ms late between two calls: a tolerance of
  // 80 ms, and a unit to match.
  storeContract("RedisLockStore", async (capacity) => ({
    store: await openStore(capacity),
    advance: sleep,
  }), { unitMs: 200, toleranceMs: 80 });
} else {
  Deno.test.ignore("RedisLockStore: skipped, redis-server is not installed", () => {});
}

Deno.test({
  name: "RedisLockStore's line no longer lists a ticket of its own once it left, at once",
  ignore: !redis,
  async fn() {
    const store = await openStore(1);
    try {
      const line = store.line;
      await line.join(`${line.replica}/1`, "stays", undefined);
      await line.join(`${line.replica}/2`, "leaves", undefined);
      assert.deepEqual(await line.waiting(), ["stays", "leaves"]);
      // The leave reaches Redis a moment later, in a batch; the line must not lag behind it.
      line.leave(`${line.replica}/2`);
      assert.deepEqual(await line.waiting(), ["stays"]);
    } finally {
      await store.close();
    }
  },
});

Deno.test({
  name: "RedisLockStore grants a free slot at once after the only ticket in line left",
  ignore: !redis,
  async fn() {
    const store = await openStore(1);
    try {
      const line = store.line;
      await line.join(`${line.replica}/1`, "gone", undefined);
      line.leave(`${line.replica}/1`);
      // Asked the same instant, before the leave's batch went out: nobody waits ahead any more.
      const result = await store.acquire({ durationMs: 10_000, id: "next" });
      assert.ok(result.granted, JSON.stringify(result));
    } finally {
      await store.close();
    }
  },
});

/** Two replicas (stores named A and B) on one fresh semaphore, and a direct client for its keys. */
async function twoReplicas(capacity: number) {
  const name = `test-${++semaphores}`;
  const open = async (replica: string) => {
    const store = new RedisLockStore(capacity, target(redis!), { name, replica });
    await store.connect(5_000);
    return store;
  };
  const [a, b] = await Promise.all([open("A"), open("B")]);
  const direct = await redis!.client();
  const key = (what: string) => `startup-lock:{${name}}:${what}`;
  return {
    a,
    b,
    line: async () => (await direct.sendCommand(["ZRANGE", key("line"), "0", "-1"])) as string[],
    direct,
    key,
    async [Symbol.asyncDispose]() {
      direct.destroy();
      await Promise.all([a.close(), b.close()]);
    },
  };
}

const redisTest = (name: string, fn: () => Promise<void>) =>
  redis ? Deno.test(name, fn) : Deno.test.ignore(`${name} (skipped: no redis-server)`, fn);

redisTest(
  "RedisLockStore: a replica serves its waiters in its own order, whatever their order in the shared line",
  async () => {
    await using r = await twoReplicas(1);
    const holder = await r.a.acquire({ durationMs: 60_000, id: "holder" });
    assert.ok(holder.granted);
    // A's waiters in A's order: A/1, then A/2; B's in between.
    await r.a.line.join("A/1", "a1");
    await r.b.line.join("B/1", "b1");
    await r.a.line.join("A/2", "a2");
    // A/1 lost its place and joined again at the end (Redis ran a leave or a sweep late).
    r.a.line.leave("A/1");
    await eventually("A/1 has left", async () => !(await r.line()).includes("A/1"));
    await r.a.line.join("A/1", "a1");
    assert.deepEqual(await r.line(), ["B/1", "A/2", "A/1"]);
    await r.a.release(holder.lease.token);
    // B/1 is first in line: A's waiters wait, whichever asks.
    assert.equal(
      (await r.a.acquire({ durationMs: 60_000, id: "a1", ticket: "A/1" })).granted,
      false,
    );
    const b1 = await r.b.acquire({ durationMs: 60_000, id: "b1", ticket: "B/1" });
    assert.ok(b1.granted);
    await r.b.release(b1.lease.token);
    // A's place is its first ticket's: A/1, first in A's order, is served there.
    const a1 = await r.a.acquire({ durationMs: 60_000, id: "a1", ticket: "A/1" });
    assert.ok(a1.granted, "A's first waiter is served at A's first place");
    assert.deepEqual(await r.line(), ["A/2"]);
  },
);

redisTest(
  "RedisLockStore: after a silence of every replica, no live replica's tickets are dropped",
  async () => {
    await using r = await twoReplicas(1);
    const holder = await r.a.acquire({ durationMs: 60_000, id: "holder" });
    assert.ok(holder.granted);
    await r.a.line.join("A/1", "a1");
    await r.b.line.join("B/1", "b1");
    // As if Redis had been frozen for 10 s: nobody could beat, every heartbeat ran out.
    const back = (what: string) => ["ZINCRBY", r.key("replicas"), "-10000", what];
    await r.direct.sendCommand(back("A"));
    await r.direct.sendCommand(back("B"));
    await r.direct.sendCommand(["HINCRBY", r.key("config"), "beat", "-10000"]);
    await r.a.release(holder.lease.token);
    assert.equal((await r.b.acquire({ durationMs: 60_000, ticket: "B/1" })).granted, false);
    assert.deepEqual(await r.line(), ["A/1", "B/1"]);
    assert.ok((await r.a.acquire({ durationMs: 60_000, ticket: "A/1" })).granted);
  },
);

redisTest(
  "RedisLockStore: an acquire that timed out holds no slot once Redis runs it late, with or without an id, unless its id held the lease before",
  async () => {
    const store = new RedisLockStore(3, target(redis!), {
      name: `test-${++semaphores}`,
      timeoutMs: 200,
    });
    await store.connect(5_000);
    try {
      const before = await store.acquire({ durationMs: 60_000, id: "before" });
      assert.ok(before.granted);
      redis!.pause();
      try {
        const tries = [
          store.acquire({ durationMs: 60_000 }),
          store.acquire({ durationMs: 60_000, id: "named" }),
          store.acquire({ durationMs: 60_000, id: "before" }),
        ];
        for (const attempt of tries) await assert.rejects(attempt, StoreUnavailableError);
      } finally {
        redis!.resume();
      }
      await eventually("only the lease held before is left", async () => {
        const leases = await store.leases().catch(() => undefined);
        return leases?.length === 1 && leases[0]?.token === before.lease.token;
      });
    } finally {
      redis!.resume();
      await store.close();
    }
  },
);

redisTest(
  "RedisLockStore: an id keeps its place in line when its next request reaches another replica",
  async () => {
    await using r = await twoReplicas(1);
    const holder = await r.a.acquire({ durationMs: 60_000, id: "holder" });
    assert.ok(holder.granted);
    // x waits through A, then y through B.
    const place = await r.a.line.join("#x", "x");
    await r.b.line.join("B/1", "y");
    // x's wait through A runs out: its place is kept for the grace, holding up nobody…
    r.a.line.leave("#x", 5_000);
    await eventually("x is away", async () => (await r.a.line.waiting()).length === 1);
    assert.deepEqual(await r.b.line.waiting(), ["y"]);
    // …and its next request, through B, takes it back: ahead of y, who came later.
    assert.equal(await r.b.line.join("#x", "x"), place);
    assert.deepEqual(await r.a.line.waiting(), ["x", "y"]);
    // A's late leave of the ticket B holds now changes nothing.
    r.a.line.leave("#x", 5_000);
    await r.a.line.waiting();
    assert.deepEqual(await r.b.line.waiting(), ["x", "y"]);
    await r.a.release(holder.lease.token);
    await r.a.line.join("A/1", "z");
    assert.equal(
      (await r.a.acquire({ durationMs: 60_000, id: "z", ticket: "A/1" })).granted,
      false,
      "a later arrival through A waits behind x",
    );
    const x = await r.b.acquire({ durationMs: 60_000, id: "x", ticket: "#x" });
    assert.ok(x.granted, "the freed slot goes to x, through the replica that holds its request");
    assert.deepEqual(await r.line(), ["B/1", "A/1"], "a grant ends the id's place");
  },
);

redisTest(
  "RedisLockStore: a semaphore gone from Redis, or made anew, is reported and made anew only after the recovery",
  async () => {
    const recoveries: string[] = [];
    let recovered = 0;
    const name = `test-${++semaphores}`;
    const store = new RedisLockStore(1, target(redis!), {
      name,
      recoveryMs: 300,
      onRecovery: ({ cause, detail }) => recoveries.push(`${cause}: ${detail}`),
      onRecovered: () => recovered++,
    });
    await store.connect(5_000);
    const direct = await redis!.client();
    const config = `startup-lock:{${name}}:config`;
    try {
      assert.ok((await store.acquire({ durationMs: 60_000, id: "old" })).granted);
      await direct.sendCommand(["DEL", ...KEY_NAMES.map((k) => `startup-lock:{${name}}:${k}`)]);
      const refused = await store.acquire({ durationMs: 60_000, id: "new" });
      assert.equal(refused.granted, false);
      assert.deepEqual(recoveries, ["store_lost: Redis no longer holds the semaphore"]);
      assert.equal(await direct.exists(config), 0, "nothing made the semaphore anew at once");
      assert.equal(await store.release("any"), undefined);
      await eventually("the semaphore is made anew", () => Promise.resolve(recovered === 1));
      const epoch = await direct.hGet(config, "epoch");
      assert.ok(epoch);
      assert.ok((await store.acquire({ durationMs: 60_000, id: "new" })).granted);
      // Another epoch (a failover to a Redis that saw another semaphore): the same.
      await direct.hSet(config, "epoch", "another");
      assert.equal((await store.acquire({ durationMs: 60_000, id: "next" })).granted, false);
      assert.match(
        recoveries[1] ?? "",
        /^store_lost: Redis holds another semaphore \(epoch another\)/,
      );
      await eventually("the other semaphore is adopted", () => Promise.resolve(recovered === 2));
      assert.equal(await direct.hGet(config, "epoch"), "another");
    } finally {
      direct.destroy();
      await store.close();
    }
  },
);

redisTest(
  "RedisLockStore: the stored capacity is the authority, checked by every script",
  async () => {
    const conflicts: number[] = [];
    const name = `test-${++semaphores}`;
    const store = new RedisLockStore(1, target(redis!), {
      name,
      onConflict: (stored) => conflicts.push(stored),
    });
    await store.connect(5_000);
    const direct = await redis!.client();
    try {
      // The stored capacity changed after this replica checked it at start.
      await direct.hSet(`startup-lock:{${name}}:config`, "capacity", "3");
      await assert.rejects(store.acquire({ durationMs: 60_000 }), StoreUnavailableError);
      assert.deepEqual(conflicts, [3]);
      assert.equal(await direct.zCard(`startup-lock:{${name}}:leases`), 0, "nothing granted");
    } finally {
      direct.destroy();
      await store.close();
    }
  },
);

redisTest(
  "RedisLockStore: the tickets of a replica that cannot grant hold nobody up in the other replicas",
  async () => {
    await using r = await twoReplicas(1);
    await r.a.line.join("A/1", "a1");
    // A's gate closes (a dependency is down): its waiter cannot take a slot, however long it waits.
    r.a.line.eligible(false);
    await eventually(
      "A's pause reached Redis",
      async () => (await r.direct.sIsMember(r.key("paused"), "A")) === 1,
    );
    assert.deepEqual(await r.b.line.waiting(), [], "B's line lists nobody who holds it up");
    const b1 = await r.b.acquire({ durationMs: 60_000, id: "b1" });
    assert.ok(b1.granted, "the free slot goes to B's client");
    await r.b.release(b1.lease.token);
    // A's gate opens again: its ticket is first in line once more.
    r.a.line.eligible(true);
    await eventually(
      "A's ticket counts again",
      async () => (await r.b.line.waiting()).length === 1,
    );
    assert.equal((await r.b.acquire({ durationMs: 60_000, id: "b2" })).granted, false);
  },
);

redisTest(
  "RedisLockStore: an id's ticket holds nobody up while the replica that holds its request cannot grant, and counts again through one that can",
  async () => {
    await using r = await twoReplicas(1);
    const place = await r.a.line.join("#x", "x");
    r.a.line.eligible(false);
    await eventually(
      "A's pause reached Redis",
      async () => (await r.direct.sIsMember(r.key("paused"), "A")) === 1,
    );
    assert.deepEqual(await r.b.line.waiting(), [], "x, waiting through A, holds nobody up");
    // x asks again through B, which can grant: its ticket is B's now, at the place it took.
    assert.equal(await r.b.line.join("#x", "x"), place);
    assert.deepEqual(await r.b.line.waiting(), ["x"]);
    const y = await r.b.acquire({ durationMs: 60_000, id: "y" });
    assert.equal(y.granted, false, "a later client waits behind x");
    const x = await r.b.acquire({ durationMs: 60_000, id: "x", ticket: "#x" });
    assert.ok(x.granted, "x takes the free slot through B");
    r.a.line.eligible(true);
  },
);

redisTest(
  "RedisLockStore: an id's kept place ends with its grace",
  async () => {
    await using r = await twoReplicas(1);
    const holder = await r.a.acquire({ durationMs: 60_000, id: "holder" });
    assert.ok(holder.granted);
    const place = await r.a.line.join("#x", "x");
    r.a.line.leave("#x", 100);
    await r.b.line.join("B/1", "y");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(await r.b.line.join("#x", "x") > place, "back at the end after the grace");
    assert.deepEqual(await r.b.line.waiting(), ["y", "x"]);
  },
);

redisTest(
  "RedisLockStore warns once a connection for each setting of Redis that breaks a guarantee, and when CONFIG is refused",
  async () => {
    await using own = await RedisServer.start({ appendfsync: "everysec" });
    const admin = await own.client();
    try {
      await admin.sendCommand(["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
      const problems: string[] = [];
      const store = new RedisLockStore(1, target(own), {
        onProblem: (level, message) => problems.push(`${level} ${message}`),
      });
      await store.connect(5_000);
      try {
        await eventually("the settings were read", () => Promise.resolve(problems.length >= 2));
        assert.equal(problems.length, 2, problems.join("\n"));
        assert.match(
          problems[0]!,
          /^setting redis:.*: appendfsync is everysec, not always: a crash/,
        );
        assert.match(
          problems[1]!,
          /^setting redis:.*: maxmemory-policy is allkeys-lru, not noeviction/,
        );
        // After a reconnect (a failover may bring another Redis), they are read again.
        await admin.sendCommand(["CONFIG", "SET", "appendonly", "no"]);
        problems.length = 0;
        await admin.sendCommand(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
        await eventually(
          "the settings were read again",
          () => Promise.resolve(problems.length >= 2),
        );
        assert.match(
          problems[0]!,
          /^setting .*appendonly is no, not yes: a restart of Redis loses/,
        );
        assert.match(problems[1]!, /maxmemory-policy is allkeys-lru/);
      } finally {
        await store.close();
      }
      // A managed Redis that refuses CONFIG: one warning that says so.
      await admin.sendCommand([
        "ACL",
        "SETUSER",
        "lock",
        "on",
        ">pw",
        "~*",
        "&*",
        "+@all",
        "-config",
      ]);
      const refused: string[] = [];
      const managed = new RedisLockStore(1, { ...target(own), username: "lock", password: "pw" }, {
        onProblem: (level, message) => refused.push(`${level} ${message}`),
      });
      await managed.connect(5_000);
      try {
        await eventually("CONFIG was refused", () => Promise.resolve(refused.length > 0));
        assert.equal(refused.length, 1, refused.join("\n"));
        assert.match(refused[0]!, /^setting Cannot read the settings .*CONFIG GET.*appendonly yes/);
      } finally {
        await managed.close();
      }
    } finally {
      admin.destroy();
    }
  },
);

redisTest(
  "RedisLockStore: a replica paused past the ticket limit gets its waiters' places back, ahead of later arrivals",
  async () => {
    await using r = await twoReplicas(1);
    const holder = await r.b.acquire({ durationMs: 60_000, id: "holder" });
    assert.ok(holder.granted);
    await r.a.line.join("A/1", "a1");
    await r.b.line.join("B/1", "b1");
    // A stopped beating for longer than TICKET_TTL_MS (SIGSTOP) while B went on: a script of B
    // dropped A's ticket as dead.
    await r.direct.sendCommand(["ZREM", r.key("line"), "A/1"]);
    await r.direct.sendCommand(["HDEL", r.key("tickets"), "A/1"]);
    // A wakes up and asks for its first waiter: the ticket takes its first place again.
    assert.equal((await r.a.acquire({ durationMs: 60_000, ticket: "A/1" })).granted, false);
    assert.deepEqual(await r.line(), ["A/1", "B/1"]);
    await r.b.release(holder.lease.token);
    assert.equal((await r.b.acquire({ durationMs: 60_000, ticket: "B/1" })).granted, false);
    assert.ok((await r.a.acquire({ durationMs: 60_000, ticket: "A/1" })).granted);
  },
);

redisTest(
  "RedisLockStore: a replica paused past the ticket limit gets its waiting ids' places back too",
  async () => {
    await using r = await twoReplicas(1);
    const holder = await r.b.acquire({ durationMs: 60_000, id: "holder" });
    assert.ok(holder.granted);
    await r.a.line.join("#x", "x");
    await r.b.line.join("B/1", "b1");
    // B's scripts dropped A's ticket as dead while A was stopped.
    for (const [key, field] of [["line", "ZREM"], ["tickets", "HDEL"], ["owners", "HDEL"]]) {
      await r.direct.sendCommand([field!, r.key(key!), "#x"]);
    }
    assert.equal(
      (await r.a.acquire({ durationMs: 60_000, id: "x", ticket: "#x" })).granted,
      false,
    );
    assert.deepEqual(await r.line(), ["#x", "B/1"], "x is back at its place, ahead of b1");
    await r.b.release(holder.lease.token);
    assert.equal((await r.b.acquire({ durationMs: 60_000, ticket: "B/1" })).granted, false);
    assert.ok((await r.a.acquire({ durationMs: 60_000, id: "x", ticket: "#x" })).granted);
  },
);

redisTest("RedisLockStore: the keys of a semaphore expire a day after the last beat", async () => {
  await using r = await twoReplicas(1);
  assert.ok((await r.a.acquire({ durationMs: 60_000, id: "x" })).granted);
  const keys = ["config", "leases", "replicas"];
  // A key made since the last beat (the leases) gets its expiry at the next one.
  await eventually("a beat set the expiries", async () => {
    for (const key of keys) {
      if (Number(await r.direct.sendCommand(["PTTL", r.key(key)])) <= 0) return false;
    }
    return true;
  });
  for (const key of keys) {
    const ttl = Number(await r.direct.sendCommand(["PTTL", r.key(key)]));
    assert.ok(ttl > 0 && ttl <= SEMAPHORE_TTL_MS, `${key}: ${ttl}`);
  }
});

Deno.test("RedisLockStore reconnects within the silence that excuses every replica", () => {
  assert.ok(MAX_RECONNECT_MS + RECONNECT_JITTER_MS < SILENCE_MS);
  assert.ok(MAX_RECONNECT_MS + RECONNECT_JITTER_MS + BEAT_INTERVAL_MS <= TICKET_TTL_MS);
});

redisTest(
  "RedisLockStore: while it has waiters, a replica hears of a free slot at its next beat even if no message came",
  async () => {
    await using r = await twoReplicas(1);
    const held = await r.a.acquire({ durationMs: 60_000, id: "held" });
    assert.ok(held.granted);
    await r.b.line.join("B/1", "b1");
    let told = 0;
    r.b.onFree(() => told++);
    // The slot frees without a message on the channel (as when the subscriber was reconnecting).
    await r.direct.sendCommand(["ZREM", r.key("leases"), held.lease.token]);
    await eventually("B was told at a beat", () => Promise.resolve(told > 0), 5_000);
    assert.ok((await r.b.acquire({ durationMs: 60_000, id: "b1", ticket: "B/1" })).granted);
  },
);

redisTest(
  "RedisLockStore: a jump of Redis's clock against this process's pauses grants for the recovery, then they resume",
  async () => {
    // This process's clock falls 5 s behind: to the store, Redis's clock jumped 5 s forwards.
    let behindMs = 0;
    const recoveries: string[] = [];
    let recovered = 0;
    const store = new RedisLockStore(1, target(redis!), {
      name: `test-${++semaphores}`,
      recoveryMs: 300,
      now: () => performance.now() - behindMs,
      onRecovery: ({ cause, detail }) => recoveries.push(`${cause}: ${detail}`),
      onRecovered: () => recovered++,
    });
    await store.connect(5_000);
    try {
      await sleep(1_200); // At least one beat on the true clock.
      assert.deepEqual(recoveries, []);
      behindMs = 5_000;
      await eventually("the jump was noticed", () => Promise.resolve(recoveries.length > 0));
      assert.match(recoveries[0]!, /^clock_jump: The clock of Redis jumped about 5 s forwards/);
      await eventually("grants resume", () => Promise.resolve(recovered === 1));
      assert.equal(recoveries.length, 1, "one jump, one recovery");
    } finally {
      await store.close();
    }
  },
);

redisTest(
  "RedisLockStore: Redis holding fewer changes than a replica saw (a failover that lost writes) pauses every replica",
  async () => {
    await using r = await twoReplicas(1);
    const causes: string[] = [];
    // twoReplicas' stores report nothing: two more replicas that do, on the same semaphore.
    const name = r.key("").replace(/^startup-lock:\{|\}:$/g, "");
    const open = async (replica: string) => {
      const store = new RedisLockStore(1, target(redis!), {
        name,
        replica,
        recoveryMs: 60_000,
        onRecovery: ({ detail }) => causes.push(`${replica}: ${detail}`),
      });
      await store.connect(5_000);
      return store;
    };
    const [c, d] = await Promise.all([open("C"), open("D")]);
    try {
      const held = await c.acquire({ durationMs: 60_000, id: "held" });
      assert.ok(held.granted);
      // The failover's Redis missed the last changes: its count is behind what C saw.
      await r.direct.sendCommand(["HINCRBY", r.key("config"), "version", "-1"]);
      assert.equal((await c.acquire({ durationMs: 60_000, id: "next" })).granted, false);
      assert.equal((await d.acquire({ durationMs: 60_000, id: "other" })).granted, false);
      assert.equal(causes.length, 2, causes.join("\n"));
      assert.match(causes[0]!, /^C: Redis went back in time/);
      assert.match(causes[1]!, /^D: Redis went back in time/, "D learns it from C's mark");
    } finally {
      await Promise.all([c.close(), d.close()]);
    }
  },
);
