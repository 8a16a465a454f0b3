/**
 * The Redis store, measured against a real redis-server started for the run:
 *
 * - the floor: a Redis `PING` round trip from this process;
 * - what an acquire costs the store: `RedisLockStore.acquire()` called in
 *   this process, one at a time, against that round trip;
 * - acquire latency, one request at a time, on a server with the Redis store
 *   and on the same server with the memory store, at the default flags; and
 *   how many Redis calls an acquire makes (from Redis's own command counts);
 * - acquire throughput (wrk, 50 connections) on both;
 * - the handoff across replicas: two servers on one semaphore; a client
 *   waits through replica B while the holder releases through replica A;
 *   and, between handoffs, the floor under it that is not the store's: two
 *   HTTP round trips from this process to a bare `Deno.serve` (the release
 *   goes in and the 200 comes out through this process's HTTP client, as
 *   in a handoff); and the yardstick of its target, a write round trip as a
 *   handoff meets it: one `INCR` after a pause, never back to back. Lock
 *   changes come one at a time, and a lone fsynced write costs what a
 *   stream of them does not (measured here: about 1 ms alone, 0.08 ms in a
 *   tight loop, where the disk's flushes come hot).
 *
 * @module
 */
import { RedisLockStore } from "../lib/stores/redis/store.ts";
import { parseStore } from "../lib/stores/settings.ts";
import { REDIS_SERVER, RedisServer } from "./_redis_server.ts";
import { atMost, type Figure, formatMs, labelText, percentile } from "./figures.ts";
import { acquire, checkStatus, grantedToken, untilStatus } from "./lock_api.ts";
import { type ChildProcess, launchLockServer } from "./process.ts";
import type { Program } from "./program.ts";
import { startBareServer } from "./servers.ts";
import { runWrk } from "./wrk.ts";

/** An acquire may cost at most this many Redis round trips at p50. */
export const ACQUIRE_TARGET_ROUND_TRIPS = 2;
/** The p99 of a handoff across replicas, in milliseconds. */
export const CROSS_HANDOFF_TARGET_P99_MS = 5;
/** The p50 of a handoff across replicas, in fsynced write round trips measured in the same run. */
export const CROSS_HANDOFF_TARGET_ROUND_TRIPS = 2;
/**
 * The pause before each write of the yardstick, as before a handoff's
 * release: its fsync costs the same for any pause from 1 ms to 10 ms.
 */
export const PACED_WRITE_PAUSE_MS = 2;

/** Options of {@linkcode runRedis}. */
export interface RedisBenchOptions {
  program: Program;
  label?: string;
  /** Measured requests of each latency run, and measured handoffs. */
  samples: number;
  warmup: number;
  /** Seconds of each wrk run; 0 skips throughput. */
  seconds: number;
  track: (child: ChildProcess) => void;
}

const NAME = "Redis store";
// The acquire runs' servers: what users run, with slots that never run out.
const ACQUIRE_FLAGS = ["--locks", "1000000", "--timeout", "1s"];
const HANDOFF_FLAGS = ["--locks", "1", "--timeout", "1m", "--maxWait", "1m"];

/** Runs the benchmark, printing as it goes; returns its figures. */
export async function runRedis(options: RedisBenchOptions): Promise<Figure[]> {
  const { samples, warmup } = options;
  if (!REDIS_SERVER) {
    console.log(
      "\nRedis store: skipped, redis-server is not installed (apt-get install redis-server)",
    );
    return [];
  }
  console.log(
    `\nRedis store${labelText(options.label)}: redis-server on 127.0.0.1 (appendfsync always), ` +
      `${samples} requests per latency run after ${warmup} of warm-up`,
  );
  await using redis = await RedisServer.start();
  const figures: Figure[] = [];

  const client = await redis.client();
  let ping: number[];
  let write: number[];
  try {
    ping = await timeEach(warmup, samples, () => client.ping());
    // A write waits for its fsync (appendfsync always), as every change of a lock does.
    write = await timeEach(warmup, samples, () => client.incr("startup-lock-bench:writes"));
  } finally {
    await client.close();
  }
  const pingP50 = percentile(ping, 50);
  const writeP50 = percentile(write, 50);
  line("Redis PING round trip", ping);
  line("Redis INCR round trip (a write)", write);
  const store = await openStore(redis, "bench-store");
  let storeAcquire: number[];
  try {
    storeAcquire = await timeEach(warmup, samples, async (i) => {
      const result = await store.acquire({ durationMs: 1_000, id: `s-${i}` });
      if (!result.granted) throw new Error(`store acquire ${i} was refused`);
    });
  } finally {
    await store.close();
  }
  line("RedisLockStore.acquire(), in process", storeAcquire);
  const storeP50 = percentile(storeAcquire, 50);
  const storeRoundTrips = storeP50 / writeP50;
  figures.push(
    { benchmark: NAME, measure: "p50 of a Redis PING round trip", value: formatMs(pingP50) },
    {
      benchmark: NAME,
      measure: "p50 of a Redis INCR round trip (a write, fsynced)",
      value: formatMs(writeP50),
    },
    {
      benchmark: NAME,
      measure: "p50 of the store's acquire, in PING round trips",
      value: `${formatMs(storeP50)} = ${(storeP50 / pingP50).toFixed(2)}`,
    },
    {
      benchmark: NAME,
      measure: "p50 of the store's acquire, in write round trips",
      value: `${formatMs(storeP50)} = ${storeRoundTrips.toFixed(2)}`,
      target: atMost(
        storeRoundTrips,
        ACQUIRE_TARGET_ROUND_TRIPS,
        `${ACQUIRE_TARGET_ROUND_TRIPS} round trips`,
      ),
    },
  );

  const launch = async (flags: readonly string[], name?: string) => {
    const server = await launchLockServer(
      options.program,
      name === undefined ? flags : [...flags, "--store", redis.url, "--name", name],
    );
    options.track(server);
    return server;
  };
  const memory = await launch(ACQUIRE_FLAGS);
  const shared = await launch(ACQUIRE_FLAGS, "bench-acquire");
  try {
    const memoryLatency = await acquireLatency(memory.url, warmup, samples, "m");
    const before = await redisCalls(redis);
    const redisLatency = await acquireLatency(shared.url, warmup, samples, "r");
    const calls = (await redisCalls(redis) - before) / (warmup + samples);
    line("acquire, memory store", memoryLatency);
    line("acquire, Redis store", redisLatency);
    const extra = percentile(redisLatency, 50) - percentile(memoryLatency, 50);
    console.log(
      `  Redis calls per acquire over HTTP: ${calls.toFixed(2)}; the Redis store adds ` +
        `${formatMs(extra)} at p50`,
    );
    figures.push(
      {
        benchmark: NAME,
        measure: "p50 acquire, memory store / Redis store",
        value: `${formatMs(percentile(memoryLatency, 50))} / ${
          formatMs(percentile(redisLatency, 50))
        }`,
      },
      {
        benchmark: NAME,
        measure: "Redis calls per acquire over HTTP (Redis's command counts)",
        value: calls.toFixed(2),
        target: atMost(calls, ACQUIRE_TARGET_ROUND_TRIPS, `${ACQUIRE_TARGET_ROUND_TRIPS}`),
      },
    );
    if (options.seconds > 0) {
      const run = (url: string) =>
        runWrk({ url: `${url}?duration=1`, threads: 2, connections: 50, seconds: options.seconds });
      // Alternating, so that neither gets the quieter moment.
      const m1 = await run(memory.url);
      const r1 = await run(shared.url);
      const r2 = await run(shared.url);
      const m2 = await run(memory.url);
      const m = (m1.requestsPerSecond + m2.requestsPerSecond) / 2;
      const r = (r1.requestsPerSecond + r2.requestsPerSecond) / 2;
      console.log(
        `  acquire throughput, 50 connections: memory ${Math.round(m)}/s, ` +
          `Redis ${Math.round(r)}/s (${(r / m).toFixed(2)} of memory)`,
      );
      figures.push({
        benchmark: NAME,
        measure: "acquires/s at 50 connections, memory store / Redis store",
        value: `${Math.round(m)} / ${Math.round(r)} (${(r / m).toFixed(2)})`,
      });
    }
  } finally {
    await Promise.all([memory.stop(), shared.stop()]);
  }

  // Two replicas of one semaphore.
  const a = await launch(HANDOFF_FLAGS, "bench-handoff");
  const b = await launch(HANDOFF_FLAGS, "bench-handoff");
  const bare = await startBareServer();
  const writer = await redis.client();
  try {
    const { handoff, floor, writes } = await crossHandoffs(
      [a.url, b.url],
      bare.url,
      () => writer.incr("startup-lock-bench:paced-writes"),
      warmup,
      samples,
    );
    line("handoff, release on A → waiter on B", handoff);
    line("floor: 2 HTTP round trips, bare server", floor);
    line("a write after a pause, between them", writes);
    const p99 = percentile(handoff, 99);
    const floorP50 = percentile(floor, 50);
    const pacedP50 = percentile(writes, 50);
    const handoffP50 = percentile(handoff, 50);
    console.log(
      `  in write round trips (p50), a write after a pause: handoff ` +
        `${(handoffP50 / pacedP50).toFixed(2)}, its HTTP floor alone ` +
        `${(floorP50 / pacedP50).toFixed(2)}; in back-to-back writes: handoff ` +
        `${(handoffP50 / writeP50).toFixed(2)}, its HTTP floor ${(floorP50 / writeP50).toFixed(2)}`,
    );
    figures.push(
      {
        benchmark: NAME,
        measure: `p50 / p99 of a Redis INCR after a ${PACED_WRITE_PAUSE_MS} ms pause, ` +
          "between the handoffs (a write as a handoff meets it)",
        value: `${formatMs(pacedP50)} / ${formatMs(percentile(writes, 99))} = ${
          (pacedP50 / writeP50).toFixed(1)
        } back-to-back writes`,
      },
      {
        benchmark: NAME,
        measure:
          "p50 / p99 of 2 HTTP round trips to a bare Deno.serve, between the handoffs (the floor)",
        value: `${formatMs(floorP50)} / ${formatMs(percentile(floor, 99))} = ${
          (floorP50 / pacedP50).toFixed(2)
        } paced write round trips`,
      },
      {
        benchmark: NAME,
        measure:
          "p50, release on replica A → waiter's 200 on replica B, in paced write round trips",
        value: `${formatMs(handoffP50)} = ${(handoffP50 / pacedP50).toFixed(2)} (${
          (handoffP50 / writeP50).toFixed(1)
        } back-to-back writes)`,
        target: atMost(
          handoffP50 / pacedP50,
          CROSS_HANDOFF_TARGET_ROUND_TRIPS,
          `${CROSS_HANDOFF_TARGET_ROUND_TRIPS} round trips`,
        ),
      },
      {
        benchmark: NAME,
        measure: `p99, release on replica A → waiter's 200 on replica B (${samples} handoffs)`,
        value: formatMs(p99),
        target: atMost(p99, CROSS_HANDOFF_TARGET_P99_MS, `${CROSS_HANDOFF_TARGET_P99_MS} ms`),
      },
    );
  } finally {
    await writer.close();
    await Promise.all([a.stop(), b.stop(), bare.stop()]);
  }
  return figures;
}

/** A Redis store in this process, on its own semaphore. */
async function openStore(redis: RedisServer, name: string): Promise<RedisLockStore> {
  const setting = parseStore(redis.url);
  if (setting.kind !== "redis") throw new Error(`${redis.url} is not a Redis URL`);
  const store = new RedisLockStore(1_000_000, setting.target, { name });
  await store.connect(5_000);
  return store;
}

function line(what: string, samples: number[]): void {
  console.log(
    `  ${what.padEnd(38)} p50 ${formatMs(percentile(samples, 50))}, ` +
      `p99 ${formatMs(percentile(samples, 99))}`,
  );
}

/** Milliseconds of each of `count` sequential calls after `warmup` unmeasured ones. */
async function timeEach(
  warmup: number,
  count: number,
  call: (i: number) => Promise<unknown>,
): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < warmup + count; i++) {
    const start = performance.now();
    await call(i);
    if (i >= warmup) samples.push(performance.now() - start);
  }
  return samples;
}

/** Sequential acquires, each for a new id (a new grant), on one keep-alive connection. */
async function acquireLatency(
  url: string,
  warmup: number,
  count: number,
  prefix: string,
): Promise<number[]> {
  const client = Deno.createHttpClient({});
  try {
    return await timeEach(warmup, count, async (i) => {
      const token = await acquire(url, { id: `${prefix}-${i}`, duration: "1" }, { client });
      if (!token) throw new Error(`acquire ${i} on ${url} was refused`);
    });
  } finally {
    client.close();
  }
}

/** How many scripts Redis has run so far (`INFO commandstats`: eval and evalsha calls). */
async function redisCalls(redis: RedisServer): Promise<number> {
  const client = await redis.client();
  try {
    const info = await client.info("commandstats");
    let calls = 0;
    for (const match of info.matchAll(/^cmdstat_(eval|evalsha):calls=(\d+)/gm)) {
      calls += Number(match[2]);
    }
    return calls;
  } finally {
    await client.close();
  }
}

/**
 * The slot goes back and forth between two replicas: a client waits through
 * one while the holder releases through the other. Returns the milliseconds
 * from sending each measured release to the waiter's 200 (`handoff`) and,
 * after each, of two sequential requests to the bare server at `bareUrl`
 * on a connection of its own (`floor`), and of one `write` to Redis after a
 * pause of {@linkcode PACED_WRITE_PAUSE_MS} (`writes`): measured in turn,
 * all meet the same load of a shared machine.
 */
async function crossHandoffs(
  urls: readonly [string, string],
  bareUrl: string,
  write: () => Promise<unknown>,
  warmup: number,
  count: number,
): Promise<{ handoff: number[]; floor: number[]; writes: number[] }> {
  const clients = [Deno.createHttpClient({}), Deno.createHttpClient({})] as const;
  const probe = Deno.createHttpClient({});
  const bare = Deno.createHttpClient({});
  const samples: number[] = [];
  const floor: number[] = [];
  const writes: number[] = [];
  try {
    let holder: 0 | 1 = 0;
    let token = await acquire(urls[0], { id: "cross-0" }, { client: clients[0] });
    if (!token) throw new Error("The first request of the cross-replica handoff was refused");
    for (let i = 0; i < warmup + count; i++) {
      const next: 0 | 1 = holder === 0 ? 1 : 0;
      let grantedAt = NaN;
      const waiting = fetch(`${urls[next]}?wait=30s&id=cross-${next}`, { client: clients[next] })
        .then((response) => {
          grantedAt = performance.now();
          return response;
        });
      // The line is shared: the holder's replica sees the waiter of the other.
      await untilStatus(urls[holder], (n) => n.waiting >= 1, {
        client: probe,
        check: () => {
          if (!Number.isNaN(grantedAt)) throw new Error(`Handoff ${i + 1}: answered before queued`);
        },
      });
      const start = performance.now();
      const released = fetch(`${urls[holder]}locks/${token}`, {
        method: "DELETE",
        client: clients[holder],
      }).then((response) => checkStatus(response, 204));
      const [, response] = await Promise.all([released, waiting]);
      token = await grantedToken(response);
      if (!token) throw new Error(`Handoff ${i + 1}: the waiting client got 423`);
      if (i >= warmup) samples.push(grantedAt - start);
      holder = next;
      const floorStart = performance.now();
      for (let n = 0; n < 2; n++) await (await fetch(bareUrl, { client: bare })).text();
      if (i >= warmup) floor.push(performance.now() - floorStart);
      await new Promise((resolve) => setTimeout(resolve, PACED_WRITE_PAUSE_MS));
      const writeStart = performance.now();
      await write();
      if (i >= warmup) writes.push(performance.now() - writeStart);
    }
    return { handoff: samples, floor, writes };
  } finally {
    for (const client of [...clients, probe, bare]) client.close();
  }
}
