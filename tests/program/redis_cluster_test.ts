/**
 * Replicas of the real program sharing one real redis-server
 * (`--store redis://…`), tested from outside: clients talk HTTP to the
 * replicas, and an observer reads the semaphore's keys in Redis directly.
 * Hundreds of clients at once, first come first served across replicas,
 * tokens that move between replicas, Redis stopped, killed and frozen, a
 * replica killed with clients waiting, and the settings a replica refuses.
 *
 * No timing assertions: only generous bounds on waits.
 */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { type ProgramServer, runProgram, startProgram } from "../_program.ts";
import { RedisServer, SKIP_REDIS } from "../_redis.ts";
import { eventually } from "../_wait.ts";
import { ACQUIRE } from "../../lib/stores/redis/scripts.ts";

/** The longest any single HTTP request of these tests may take before it counts as hung. */
const REQUEST_BOUND_MS = 60_000;

/** An HTTP answer, its body parsed when it is JSON. */
interface Answer {
  status: number;
  headers: Headers;
  text: string;
  body: Record<string, unknown>;
}

/** One request, asking for JSON; rejects rather than hang past `timeoutMs`. */
async function send(url: string, method = "GET", timeoutMs = REQUEST_BOUND_MS): Promise<Answer> {
  const aborter = new AbortController();
  const timer = setTimeout(() => aborter.abort(), timeoutMs);
  try {
    const response = await fetch(url, {
      method,
      headers: { Accept: "application/json" },
      signal: aborter.signal,
    });
    const text = await response.text();
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(text);
    } catch {
      // Not JSON: a 204, or /metrics.
    }
    return { status: response.status, headers: response.headers, text, body };
  } finally {
    clearTimeout(timer);
  }
}

interface AcquireParams {
  id?: string;
  wait?: string;
  duration?: string;
}

function acquire(replica: ProgramServer, params: AcquireParams = {}, timeoutMs?: number) {
  const query = new URLSearchParams(params as Record<string, string>);
  return send(`${replica.url}/?${query}`, "GET", timeoutMs);
}

function release(replica: ProgramServer, token: string) {
  return send(`${replica.url}/locks/${token}`, "DELETE");
}

function renew(replica: ProgramServer, token: string, duration: string) {
  return send(`${replica.url}/locks/${token}?duration=${duration}`, "PUT");
}

/** `startup-lock:{NAME}:KEY`, as `lib/stores/redis/scripts.ts` names the semaphore's keys. */
function key(name: string, what: "leases" | "line" | "owners"): string {
  return `startup-lock:{${name}}:${what}`;
}

/** Sends one command to Redis directly, on a connection of its own. */
async function command(redis: RedisServer, args: string[]): Promise<unknown> {
  const client = await redis.client();
  try {
    return await client.sendCommand(args);
  } finally {
    client.destroy();
  }
}

/** Replicas of one semaphore, each a child process of the real program. */
class Cluster implements AsyncDisposable {
  readonly replicas: ProgramServer[];

  private constructor(replicas: ProgramServer[]) {
    this.replicas = replicas;
  }

  static async start(
    redis: RedisServer,
    options: { name: string; locks: number; count: number; args?: string[] },
  ): Promise<Cluster> {
    const started = await Promise.allSettled(
      Array.from({ length: options.count }, () =>
        startProgram([
          ...["--store", redis.url, "--name", options.name],
          ...["--locks", String(options.locks), ...(options.args ?? [])],
        ])),
    );
    const replicas = started.flatMap((s) => s.status === "fulfilled" ? [s.value] : []);
    const failed = started.find((s) => s.status === "rejected");
    if (failed) {
      await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
      throw failed.reason;
    }
    return new Cluster(replicas);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.stop("SIGKILL")));
  }
}

/**
 * The clients' own record of who holds a lock: from the moment a grant's
 * answer arrives to the moment its release is sent. Each span lies inside the
 * lease's real life in Redis, so more overlapping spans than slots would
 * prove more holders than slots.
 */
class Ledger {
  readonly #spans: [number, number][] = [];
  readonly #open = new Map<string, number>();

  granted(token: string): void {
    if (!this.#open.has(token)) this.#open.set(token, performance.now());
  }

  releasing(token: string): void {
    const from = this.#open.get(token);
    if (from === undefined) return;
    this.#open.delete(token);
    this.#spans.push([from, performance.now()]);
  }

  /** The most spans that overlapped at any moment (ends first on a tie). */
  get maxHolders(): number {
    const edges = [
      ...this.#spans.flatMap(([from, to]): [number, number][] => [[from, 1], [to, -1]]),
      ...[...this.#open.values()].map((from): [number, number] => [from, 1]),
    ].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let now = 0;
    let max = 0;
    for (const [, delta] of edges) max = Math.max(max, now += delta);
    return max;
  }

  get grants(): number {
    return this.#spans.length + this.#open.size;
  }
}

type DirectClient = Awaited<ReturnType<RedisServer["client"]>>;

/** Reads the semaphore's leases straight from Redis, as often as it can, and keeps the most seen. */
class Observer {
  maxHolders = 0;
  samples = 0;
  readonly #stopped: Promise<void>;
  #running = true;
  readonly #client: DirectClient;

  private constructor(client: DirectClient, leases: string) {
    this.#client = client;
    this.#stopped = (async () => {
      while (this.#running) {
        try {
          const held = Number(await client.sendCommand(["ZCARD", leases]));
          this.maxHolders = Math.max(this.maxHolders, held);
          this.samples++;
          await sleep(2);
        } catch {
          await sleep(50); // Redis is down: the client reconnects by itself.
        }
      }
    })();
  }

  static async start(redis: RedisServer, name: string): Promise<Observer> {
    return new Observer(await redis.client(), key(name, "leases"));
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#client.destroy();
    await this.#stopped;
  }
}

/** What a crowd of clients saw. */
interface ChurnReport {
  /** Grants per client. */
  grants: number[];
  /** Refusals by status and reason, such as `503 store`. */
  refusals: Map<string, number>;
  /** Tokens whose first release attempt answered 404: a grant the cluster forgot. */
  forgotten: string[];
  /** When (performance.now()) each grant's answer arrived. */
  grantTimes: number[];
}

interface ChurnOptions {
  replicas: readonly ProgramServer[];
  clients: number;
  /** Clients keep going until this says stop, and each has had a grant. */
  done: () => boolean;
  ledger: Ledger;
  /** The id prefix of the clients. */
  prefix: string;
  /** How long a client holds its lock, at most. @default {30} */
  holdMs?: number;
  /** Give up (the client was never served) after this long. @default {60_000} */
  boundMs?: number;
}

/**
 * Clients that each acquire (waiting in line, with an id), hold briefly and
 * release through another replica, over and over; a refused request is asked
 * again, and a release is retried until the cluster answers it.
 */
async function churn(options: ChurnOptions): Promise<ChurnReport> {
  const { replicas, ledger } = options;
  const report: ChurnReport = {
    grants: Array(options.clients).fill(0),
    refusals: new Map(),
    forgotten: [],
    grantTimes: [],
  };
  const giveUp = performance.now() + (options.boundMs ?? 60_000);
  const refused = (what: string) => report.refusals.set(what, (report.refusals.get(what) ?? 0) + 1);
  const client = async (i: number) => {
    let turn = i;
    const next = () => replicas[turn++ % replicas.length]!;
    while ((!options.done() || report.grants[i] === 0) && performance.now() < giveUp) {
      let answer: Answer;
      try {
        answer = await acquire(next(), {
          id: `${options.prefix}${i}`,
          wait: "30s",
          duration: "40s",
        });
      } catch (error) {
        refused(`error ${error instanceof Error ? error.name : error}`);
        await sleep(200);
        continue;
      }
      if (answer.status !== 200) {
        refused(`${answer.status} ${answer.body.reason}`);
        assert.ok(answer.headers.get("Retry-After"), "a refusal says when to try again");
        await sleep(100 + Math.random() * 200);
        continue;
      }
      const token = String(answer.body.token);
      ledger.granted(token);
      report.grants[i]!++;
      report.grantTimes.push(performance.now());
      await sleep(Math.random() * (options.holdMs ?? 30));
      ledger.releasing(token);
      for (let attempt = 0;; attempt++) {
        const answer = await release(next(), token).catch(() => undefined);
        if (answer?.status === 204) break;
        if (answer?.status === 404) {
          // After a retry, the first attempt may have freed it already without getting the word back.
          if (attempt === 0) report.forgotten.push(token);
          break;
        }
        assert.ok(
          answer === undefined || answer.status === 503,
          `release answered ${answer?.status}`,
        );
        await sleep(200);
      }
    }
  };
  await Promise.all(Array.from({ length: options.clients }, (_, i) => client(i)));
  return report;
}

/** Resolves as `promise` does, or fails after a generous bound. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out waiting until ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, bound]);
  } finally {
    clearTimeout(timer);
  }
}

/** `startup_lock_store_up` from `/metrics`. */
async function storeUpMetric(replica: ProgramServer): Promise<number> {
  const { text } = await send(`${replica.url}/metrics`);
  const line = text.split("\n").find((l) => l.startsWith("startup_lock_store_up "));
  assert.ok(line, `no startup_lock_store_up in /metrics:\n${text}`);
  return Number(line.split(" ")[1]);
}

async function status(replica: ProgramServer) {
  const { status, body } = await send(`${replica.url}/status`);
  assert.equal(status, 200);
  return body as {
    slots: { total: number; held: number | null };
    waiters: { count: number; ids: (string | null)[] };
    store: { up: boolean; error: string | null };
  };
}

/**
 * While Redis cannot answer: an acquire is `503` with `Retry-After` and the
 * reason `store`, `/healthz` stays `200`, `/status` and `/metrics` say the store
 * is down. Bounded: no request hangs.
 */
async function assertStoreDown(replica: ProgramServer, id: string): Promise<void> {
  await eventually("an acquire is refused for the store", async () => {
    const answer = await acquire(replica, { id }, 15_000);
    return answer.status === 503;
  });
  const answer = await acquire(replica, { id }, 15_000);
  assert.equal(answer.status, 503);
  assert.equal(answer.body.reason, "store");
  assert.ok(Number(answer.headers.get("Retry-After")) >= 1);
  assert.equal((await send(`${replica.url}/healthz`, "GET", 15_000)).status, 200);
  const state = await status(replica);
  assert.equal(state.store.up, false);
  assert.match(state.store.error ?? "", /lock store/);
  assert.equal(await storeUpMetric(replica), 0);
}

/** Once Redis is back, the replica grants again by itself and says the store is up. */
async function assertRecovers(replica: ProgramServer, id: string): Promise<void> {
  await eventually("the replica grants again", async () => {
    const answer = await acquire(replica, { id, duration: "1s", wait: "5s" }, 15_000);
    if (answer.status !== 200) return false;
    assert.equal((await release(replica, String(answer.body.token))).status, 204);
    return true;
  });
  assert.equal((await status(replica)).store.up, true);
  assert.equal(await storeUpMetric(replica), 1);
}

const redisTest = (name: string, fn: (t: Deno.TestContext) => Promise<void>) =>
  SKIP_REDIS
    ? Deno.test.ignore(`${name} (skipped: redis-server is not installed)`, () => {})
    : Deno.test(name, fn);

/** One redis-server for the tests that do not stop it; each test has its own semaphore. */
const shared = SKIP_REDIS ? undefined : await RedisServer.start();
addEventListener("unload", () => shared?.killSync());

redisTest(
  "300 clients on 3 replicas: never more holders than slots, and every client is served",
  async () => {
    const name = "crowd";
    const locks = 3;
    await using cluster = await Cluster.start(shared!, { name, locks, count: 3 });
    const observer = await Observer.start(shared!, name);
    const ledger = new Ledger();
    const until = performance.now() + 10_000;
    const report = await churn({
      replicas: cluster.replicas,
      clients: 300,
      done: () => performance.now() > until,
      ledger,
      prefix: "client-",
    });
    await observer.stop();
    const unserved = report.grants.flatMap((n, i) => n === 0 ? [i] : []);
    assert.deepEqual(unserved, [], "every client is served");
    // A refusal for the store (an answer that took over a second on a loaded machine) is
    // asked again; a wait in line that runs out is a failure.
    assert.deepEqual([...report.refusals.keys()].filter((r) => r !== "503 store"), []);
    assert.deepEqual(report.forgotten, []);
    assert.ok(ledger.maxHolders <= locks, `the clients saw ${ledger.maxHolders} holders`);
    assert.ok(observer.maxHolders <= locks, `Redis held ${observer.maxHolders} leases`);
    assert.ok(observer.samples > 100, "the observer read Redis throughout");
    assert.equal(
      Number(await command(shared!, ["ZCARD", key(name, "line")])),
      0,
      "the line is empty",
    );
    console.log(
      `crowd: ${ledger.grants} grants, refusals ${JSON.stringify([...report.refusals])}, ` +
        `most holders ${ledger.maxHolders} (clients) ` +
        `${observer.maxHolders} (Redis, ${observer.samples} reads)`,
    );
  },
);

redisTest(
  "Replicas serve one line in arrival order, and a token works through any replica",
  async (t) => {
    const name = "line";
    await using cluster = await Cluster.start(shared!, { name, locks: 1, count: 2 });
    const [a, b] = cluster.replicas as [ProgramServer, ProgramServer];
    const leases = key(name, "leases");

    let holder = "";
    await t.step("the same id through two replicas at once gets one lock", async () => {
      const answers = await Promise.all([a, b, a, b].map((r) => acquire(r, { id: "first" })));
      assert.deepEqual(answers.map((x) => x.status), [200, 200, 200, 200]);
      holder = String(answers[0]!.body.token);
      assert.deepEqual(answers.map((x) => x.body.token), [holder, holder, holder, holder]);
      assert.deepEqual(await command(shared!, ["ZRANGE", leases, "0", "-1"]), [holder]);
    });

    await t.step("a lock acquired through one replica is renewed through another", async () => {
      const before = Number(await command(shared!, ["ZSCORE", leases, holder]));
      const answer = await renew(b, holder, "5m");
      assert.equal(answer.status, 200);
      const after = Number(await command(shared!, ["ZSCORE", leases, holder]));
      assert.equal(after, Date.parse(String(answer.body.expiresAt)));
      assert.ok(after > before, "the expiry moved");
    });

    await t.step("waiters on both replicas are served in the order they arrived", async () => {
      // Interleaved, with runs on one replica: A B B A B A A B.
      const order = ["a", "b", "b", "a", "b", "a", "a", "b"];
      const served: string[] = [];
      const waiters: Promise<void>[] = [];
      for (const [i, side] of order.entries()) {
        const [via, other] = side === "a" ? [a, b] : [b, a];
        const id = `${side}-${i}`;
        waiters.push((async () => {
          const answer = await acquire(via, { id, wait: "30s", duration: "30s" });
          assert.equal(answer.status, 200, `${id}: ${answer.text}`);
          served.push(id);
          // Released through the other replica.
          assert.equal((await release(other, String(answer.body.token))).status, 204);
        })());
        await eventually(
          `${id} stands in line`,
          async () => Number(await command(shared!, ["ZCARD", key(name, "line")])) === i + 1,
        );
      }
      assert.equal((await status(a)).waiters.count, order.length);
      // The holder got its lock through A; it gives it back through B.
      assert.equal((await release(b, holder)).status, 204);
      await Promise.all(waiters);
      assert.deepEqual(
        served,
        order.map((side, i) => `${side}-${i}`),
      );
      assert.equal((await release(a, holder)).status, 404, "a token is released once");
    });
  },
);

redisTest(
  "Redis stopped and killed mid-run: 503 while down, held locks kept, grants resume",
  async (t) => {
    await using redis = await RedisServer.start(); // appendonly yes, appendfsync always
    const name = "restart";
    const locks = 2;
    // Another semaphore, with one slot, for clients standing in line through the outage.
    const [cluster, inLine] = await Promise.all([
      Cluster.start(redis, { name, locks, count: 2 }),
      Cluster.start(redis, { name: "restart-line", locks: 1, count: 2 }),
    ]);
    await using _cluster = cluster;
    await using _inLine = inLine;
    const [a, b] = cluster.replicas as [ProgramServer, ProgramServer];
    const observer = await Observer.start(redis, name);
    const ledger = new Ledger();
    // A lock held across both outages, acquired through A.
    const long = await acquire(a, { id: "long", duration: "2m" });
    assert.equal(long.status, 200);
    const longToken = String(long.body.token);
    ledger.granted(longToken);
    let stop = false;
    const running = churn({
      replicas: cluster.replicas,
      clients: 12,
      done: () => stop,
      ledger,
      prefix: "restart-",
    });
    const outages: { how: string; back: number }[] = [];
    /** Takes Redis down for at least `downMs`, while clients work. */
    const outage = async (how: "stop" | "kill", down: () => Promise<void>, downMs = 0) => {
      await sleep(1_000); // grants under way
      await down();
      const downAt = performance.now();
      await assertStoreDown(b, `probe-${how}`);
      await assertStoreDown(a, `probe-${how}`);
      await sleep(Math.max(0, downMs - (performance.now() - downAt)));
      await redis.relaunch();
      outages.push({ how, back: performance.now() });
      await assertRecovers(a, `after-${how}`);
      await assertRecovers(b, `after-${how}`);
      // The lock held through the outage is still held, in Redis and for the service.
      assert.ok(await command(redis, ["ZSCORE", key(name, "leases"), longToken]));
      assert.equal((await renew(b, longToken, "2m")).status, 200);
    };

    try {
      await t.step("graceful SHUTDOWN (SIGTERM)", () => outage("stop", () => redis.stop()));
      await t.step("kill -9, down longer than a replica's heartbeat lasts", async () => {
        // A holds the slot of the other semaphore; a client waits through A, then one through B.
        const [lineA, lineB] = inLine.replicas as [ProgramServer, ProgramServer];
        assert.equal((await acquire(lineA, { id: "holder", duration: "2s" })).status, 200);
        const served: string[] = [];
        const waiter = (replica: ProgramServer, id: string) =>
          (async () => {
            const answer = await acquire(replica, { id, wait: "30s", duration: "30s" });
            assert.equal(answer.status, 200, `${id}: ${answer.text}`);
            served.push(id);
            assert.equal((await release(replica, String(answer.body.token))).status, 204);
          })();
        const inLineKey = key("restart-line", "line");
        const standing = async () => Number(await command(redis, ["ZCARD", inLineKey]));
        const first = waiter(lineA, "first");
        await eventually("the first client stands in line", async () => await standing() === 1);
        const second = waiter(lineB, "second");
        await eventually("the second client stands in line", async () => await standing() === 2);
        // Down for 4 s: every heartbeat runs out (TICKET_TTL_MS), and so does the holder's lock.
        await outage("kill", () => redis.kill(), 4_000);
        await within(20_000, "both clients are served", Promise.all([first, second]));
        assert.deepEqual(served, ["first", "second"], "served in the order they came");
      });
      await sleep(1_000);
    } finally {
      stop = true;
    }
    const report = await running;
    await observer.stop();
    ledger.releasing(longToken);
    assert.equal((await release(a, longToken)).status, 204);

    assert.deepEqual(report.grants.filter((n) => n === 0), [], "every client is served");
    for (const { how, back } of outages) {
      assert.ok(report.grantTimes.some((at) => at > back), `grants resumed after the ${how}`);
    }
    assert.deepEqual(report.forgotten, [], "no grant was forgotten");
    assert.ok(ledger.maxHolders <= locks, `the clients saw ${ledger.maxHolders} holders`);
    assert.ok(observer.maxHolders <= locks, `Redis held ${observer.maxHolders} leases`);
    console.log(
      `restart: ${ledger.grants} grants, refusals ${JSON.stringify([...report.refusals])}, ` +
        `most holders ${ledger.maxHolders} (clients) ${observer.maxHolders} (Redis)`,
    );
  },
);

redisTest(
  "A replica killed with clients waiting: its tickets leave the line, its holders expire",
  async () => {
    const name = "dead-replica";
    await using cluster = await Cluster.start(shared!, { name, locks: 2, count: 2 });
    const [a, b] = cluster.replicas as [ProgramServer, ProgramServer];
    const line = key(name, "line");
    const leases = key(name, "leases");
    // One slot held through A, which dies with it; the other through B, freed after the kill.
    const onADead = await acquire(a, { id: "holder-a", duration: "6s" });
    const onB = await acquire(b, { id: "holder-b", duration: "1m" });
    assert.deepEqual([onADead.status, onB.status], [200, 200]);
    const heldThroughA = String(onADead.body.token);
    const expiresAt = Date.parse(String(onADead.body.expiresAt));
    // Three clients wait through A, then two through B, behind them.
    const waitingOnA = ["a-1", "a-2", "a-3"].map((id) =>
      acquire(a, { id, wait: "1m", duration: "30s" }).catch((error: unknown) => error)
    );
    const tickets = async () => (await command(shared!, ["ZRANGE", line, "0", "-1"])) as string[];
    await eventually("A's clients stand in line", async () => (await tickets()).length === 3);
    // A ticket is REPLICA/N, or #ID for a client with an id, whose replica is in `owners`.
    const replicaOf = async (ticket: string) =>
      ticket.startsWith("#")
        ? String(await command(shared!, ["HGET", key(name, "owners"), ticket]))
        : ticket.slice(0, ticket.lastIndexOf("/"));
    const ofA = async (tickets: string[]) =>
      (await Promise.all(tickets.map(replicaOf))).map((r) => r.startsWith(`${a.process.pid}-`));
    assert.ok((await ofA(await tickets())).every(Boolean));
    const served: string[] = [];
    const waitingOnB = ["b-1", "b-2"].map(async (id) => {
      const answer = await acquire(b, { id, wait: "1m", duration: "30s" });
      assert.equal(answer.status, 200, `${id}: ${answer.text}`);
      served.push(id);
      assert.equal((await release(b, String(answer.body.token))).status, 204);
    });
    await eventually("B's clients stand in line", async () => (await tickets()).length === 5);

    const killedAt = performance.now();
    await a.stop("SIGKILL");
    for (const outcome of await Promise.all(waitingOnA)) assert.ok(outcome instanceof Error);
    // A slot is free now, but A's dead clients stand ahead of B's.
    assert.equal((await release(b, String(onB.body.token))).status, 204);

    let lineClearedMs = 0;
    await eventually("A's tickets have left the line", async () => {
      lineClearedMs = performance.now() - killedAt;
      return !(await ofA(await tickets())).some(Boolean);
    }, 15_000);
    await within(15_000, "B's clients are served", Promise.all(waitingOnB));
    const servedMs = performance.now() - killedAt;
    assert.deepEqual(served, ["b-1", "b-2"]);
    // The lease taken through A outlives A, up to its own expiry, not a moment less.
    const stillHeld = await command(shared!, ["ZSCORE", leases, heldThroughA]);
    assert.ok(stillHeld !== null || Date.now() >= expiresAt, "A's lease ended before its expiry");
    let heldMs = 0;
    await eventually("the lease taken through A has expired", async () => {
      heldMs = performance.now() - killedAt;
      // Asking a replica runs the sweep, as any request does.
      await status(b);
      return await command(shared!, ["ZSCORE", leases, heldThroughA]) === null;
    }, 15_000);
    assert.ok(Date.now() >= expiresAt);
    assert.equal((await status(b)).waiters.count, 0);
    console.log(
      `dead replica: line cleared after ${lineClearedMs.toFixed(0)} ms, B's clients served after ` +
        `${servedMs.toFixed(0)} ms, its lease gone after ${
          heldMs.toFixed(0)
        } ms (all after the kill)`,
    );
  },
);

redisTest(
  "Redis frozen (SIGSTOP) longer than the timeout: 503 without hanging, then grants resume",
  async (t) => {
    await using redis = await RedisServer.start();
    const name = "stall";
    // One slot: the waiters of both replicas take turns on it, through one line.
    const locks = 1;
    await using cluster = await Cluster.start(redis, { name, locks, count: 2 });
    const [a, b] = cluster.replicas as [ProgramServer, ProgramServer];

    /** Freezes Redis for 3 s, three times the store's timeout; `during` runs meanwhile. */
    const freeze = async (during: () => Promise<void>) => {
      redis.pause();
      const pausedAt = performance.now();
      try {
        await during();
        assert.equal((await send(`${a.url}/healthz`, "GET", 10_000)).status, 200);
        await sleep(Math.max(0, 3_000 - (performance.now() - pausedAt)));
      } finally {
        redis.resume();
      }
    };
    /** Each answered 503 (store) with Retry-After, within a bound: nothing hangs. */
    const refusedForTheStore = async (requests: Promise<Answer>[]) => {
      for (const answer of await Promise.all(requests)) {
        assert.equal(answer.status, 503, answer.text);
        assert.equal(answer.body.reason, "store");
        assert.ok(Number(answer.headers.get("Retry-After")) >= 1);
      }
    };

    await t.step(
      "requests refused while Redis is frozen hold no slot once it runs them",
      async () => {
        await freeze(() =>
          refusedForTheStore([
            // Without an id, nobody could ever release these if Redis ran them late.
            ...Array.from({ length: locks }, () => acquire(a, { duration: "5m" }, 10_000)),
            acquire(b, { id: "frozen", duration: "5m" }, 10_000),
          ])
        );
        // "frozen" may hold a lease, if Redis ran its acquire late: asking again, it gets it back.
        const again = await acquire(a, { id: "frozen", wait: "10s" });
        assert.equal(again.status, 200, again.text);
        assert.equal((await release(b, String(again.body.token))).status, 204);
        assert.equal(
          Number(await command(redis, ["ZCARD", key(name, "leases")])),
          0,
          "no lease left",
        );
        await assertRecovers(a, "after-freeze-a");
        await assertRecovers(b, "after-freeze-b");
      },
    );

    await t.step(
      "clients at work: never more holders than slots, and all served after",
      async () => {
        const observer = await Observer.start(redis, name);
        const ledger = new Ledger();
        let stop = false;
        let resumedAt = 0;
        const running = churn({
          replicas: cluster.replicas,
          clients: 10,
          done: () => stop,
          ledger,
          prefix: "stall-",
        });
        try {
          await sleep(1_000);
          await freeze(async () => {
            await refusedForTheStore([acquire(a, { id: "probe" }, 10_000)]);
            assert.equal((await status(b)).store.up, false);
          });
          resumedAt = performance.now();
          await sleep(1_500);
        } finally {
          stop = true;
        }
        const report = await running;
        await observer.stop();
        assert.deepEqual(report.grants.filter((n) => n === 0), [], "every client is served");
        assert.ok(report.grantTimes.some((at) => at > resumedAt), "grants resumed");
        // Only requests that found Redis frozen are refused: no wait in line runs out.
        assert.deepEqual([...report.refusals.keys()].filter((r) => r !== "503 store"), []);
        assert.deepEqual(report.forgotten, []);
        assert.ok(ledger.maxHolders <= locks, `the clients saw ${ledger.maxHolders} holders`);
        assert.ok(observer.maxHolders <= locks, `Redis held ${observer.maxHolders} leases`);
        console.log(
          `stall: ${ledger.grants} grants, refusals ${JSON.stringify([...report.refusals])}, ` +
            `most holders ${ledger.maxHolders} (clients) ${observer.maxHolders} (Redis)`,
        );
      },
    );
  },
);

redisTest(
  "A replica refuses a different --locks and a malformed --store, in one line, exit 2",
  async () => {
    const name = "settings";
    await using cluster = await Cluster.start(shared!, { name, locks: 3, count: 1 });
    const other = await runProgram([
      ...["--port", "0", "--host", "127.0.0.1"],
      ...["--store", shared!.url, "--name", name, "--locks", "2"],
    ]);
    assert.equal(other.code, 2, other.stderr);
    assert.equal(other.stdout, "");
    const lines = other.stderr.trim().split("\n");
    assert.equal(lines.length, 1, other.stderr);
    assert.match(lines[0]!, /--locks 2 differs from the 3 slots/);
    assert.match(lines[0]!, new RegExp(`--name ${name}`));
    // The running replica is not disturbed.
    assert.equal((await acquire(cluster.replicas[0]!, { id: "still-here" })).status, 200);

    const secret = "s3cret-Pw";
    for (const url of [`redis://user:${secret}@127.0.0.1:notaport`, `redis://:${secret}@h/x`]) {
      const malformed = await runProgram(["--store", url]);
      assert.equal(malformed.code, 2, malformed.stderr);
      assert.equal(malformed.stderr.trim().split("\n").length, 1, malformed.stderr);
      assert.match(malformed.stderr, /Invalid --store "redis:\/\/.*\*\*\*@/);
      assert.ok(!`${malformed.stdout}${malformed.stderr}`.includes(secret), malformed.stderr);
    }
  },
);

redisTest(
  "The Redis password never shows: not in logs, answers, /status or /metrics",
  async (t) => {
    const right = "correct-Horse-7";
    const wrong = "wrong-Battery-9";
    await using redis = await RedisServer.start({ requirepass: right });
    const seen: string[] = [];
    /** Everything a replica said and answered. */
    const look = async (replica: ProgramServer) => {
      for (const path of ["/", "/?id=look", "/status", "/metrics", "/healthz"]) {
        const answer = await send(`${replica.url}${path}`, "GET", 15_000);
        seen.push(answer.text, JSON.stringify([...answer.headers]));
      }
    };
    const where = redis.url.replace("redis://", "");

    await t.step(
      "a wrong password: the replica serves, and answers 503 for the store",
      async () => {
        const replica = await startProgram([
          "--store",
          `redis://:${wrong}@${where}`,
          "--name",
          "pw",
        ]);
        try {
          const answer = await acquire(replica, { id: "w" }, 15_000);
          assert.equal(answer.status, 503);
          assert.equal(answer.body.reason, "store");
          assert.match(String(answer.body.message), /WRONGPASS|NOAUTH|not connected/);
          assert.equal((await status(replica)).store.up, false);
          await look(replica);
        } finally {
          await replica.stop();
          seen.push(...replica.log);
        }
        assert.ok(
          replica.log.some((line) => line.includes(`redis://${where}`)),
          replica.log.join("\n"),
        );
      },
    );

    await t.step("the right password, in the URL or in --storePasswordFile", async () => {
      const file = await Deno.makeTempFile();
      await Deno.writeTextFile(file, `${right}\n`);
      const started = await Promise.all([
        startProgram(["--store", `redis://:${right}@${where}`, "--name", "pw"]),
        startProgram(["--store", redis.url, "--storePasswordFile", file, "--name", "pw"]),
      ]);
      try {
        const [a, b] = started as [ProgramServer, ProgramServer];
        const answer = await acquire(a, { id: "r", duration: "1m" });
        assert.equal(answer.status, 200, answer.text);
        // The other replica, with the password from the file, sees the same lock.
        assert.equal((await acquire(b, { id: "r" })).body.token, answer.body.token);
        assert.equal((await status(b)).store.up, true);
        for (const replica of started) await look(replica);
      } finally {
        for (const replica of started) {
          await replica.stop();
          seen.push(...replica.log);
        }
        await Deno.remove(file);
      }
    });

    const everything = seen.join("\n");
    assert.ok(!everything.includes(right), "the right password shows");
    assert.ok(!everything.includes(wrong), "the wrong password shows");
  },
);

redisTest(
  "A release through one replica hands the slot to a client waiting through another: one script, no take after it",
  async () => {
    const name = "one-script";
    await using cluster = await Cluster.start(shared!, { name, locks: 1, count: 2 });
    const [a, b] = cluster.replicas as [ProgramServer, ProgramServer];
    const holder = await acquire(a, { id: "holder" });
    assert.equal(holder.status, 200);
    const waiting = acquire(b, { id: "next", wait: "30s", duration: "20" });
    await eventually(
      "the waiter stands in line",
      async () =>
        (await command(shared!, ["ZRANGE", key(name, "line"), "0", "-1"]) as string[])
          .includes("#next"),
    );
    // Every script Redis runs from now on, by its SHA-1, in Redis's own log.
    const acquireSha = new Uint8Array(
      await crypto.subtle.digest("SHA-1", new TextEncoder().encode(ACQUIRE)),
    ).toHex();
    await command(shared!, ["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    try {
      await command(shared!, ["SLOWLOG", "RESET"]);
      const released = await release(a, String(holder.body.token));
      assert.equal(released.status, 204);
      const next = await waiting;
      assert.equal(next.status, 200, next.text);
      assert.equal(next.headers.get("lock-duration"), "20");
      const log = await command(shared!, ["SLOWLOG", "GET", "1000"]) as [
        unknown,
        unknown,
        unknown,
        string[],
      ][];
      // B ran its takes before (refused): it knows the take's SHA-1, and would call it so.
      const scripts = log.map((entry) => entry[3]).filter((args) => /^EVAL/i.test(args[0]!));
      assert.ok(scripts.length > 0, "Redis logged the release");
      assert.equal(scripts.filter((args) => args[1] === acquireSha).length, 0, "no take ran");
    } finally {
      await command(shared!, ["CONFIG", "SET", "slowlog-log-slower-than", "10000"]);
    }
  },
);
