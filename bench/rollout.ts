/**
 * Rollout: how long 20 apps that all restart at once take to be ready when
 * startup-lock lets 2 of them start at a time.
 *
 * Start-up times come from a fixed-seed lognormal distribution, scaled down
 * {@linkcode TIME_SCALE} times: a real start-up of 10 to 80 s takes 100 to
 * 800 ms here, and the polling interval of 1 s becomes 10 ms. Two ways are
 * measured, each against a fresh server:
 *
 * - release on ready (`startup-lock run`): each app asks with `?wait=` and its
 *   id, starts once granted, and releases with `DELETE` the moment it is ready;
 * - fixed duration (the original startup-lock): each app polls
 *   `GET /?duration=D` every scaled second until it gets a 200 and never
 *   releases.
 *
 * Both ask for the same `D`, long enough for the slowest app: its start-up
 * rounded up to the next scaled 10 s above it.
 *
 * Both are compared with the ideal: the list schedule of the same start-up
 * times on 2 slots in arrival order, where each app takes the first slot to
 * free and holds it for exactly its start-up time.
 *
 * @module
 */
import { atMost, type Figure, formatSeconds, labelText } from "./figures.ts";
import { acquire, checkStatus, release, untilStatus } from "./lock_api.ts";
import { type ChildProcess, delay, launchLockServer } from "./process.ts";
import type { Program } from "./program.ts";

/** How many times faster than real life the rollout runs. */
export const TIME_SCALE = 100;
/** Apps that restart together. */
export const APPS = 20;
/** Apps that may start at once (`--locks`). */
export const SLOTS = 2;
/** The seed of the start-up times, so that every run rolls out the same apps. */
export const SEED = 20_240_601;
/** Release on ready should take at most this many times the ideal. */
export const ROLLOUT_TARGET_RATIO = 1.05;

/** The median real start-up time, in ms, before scaling. */
const MEDIAN_STARTUP_MS = 30_000;
/** The spread of the lognormal distribution (σ of the logarithm). */
const STARTUP_SIGMA = 0.5;
/** The real start-up times are clamped to this range, in ms, before scaling. */
const STARTUP_RANGE_MS = [10_000, 80_000] as const;
/** The original's clients poll once a second. */
const POLL_INTERVAL_MS = 1_000 / TIME_SCALE;
/** The lock duration is the slowest start-up rounded up to the next multiple of this (10 s) above it. */
const DURATION_STEP_MS = 10_000 / TIME_SCALE;

const NAME = "Rollout";

/** Options of {@linkcode runRollout}. */
export interface RolloutOptions {
  /** The startup-lock to measure. */
  program: Program;
  /** Named in the heading when set: which of several programs this is. */
  label?: string;
  /** Gets each process started, so that an interrupted run can stop it. */
  track: (child: ChildProcess) => void;
}

/** Start-up times in ms, already scaled, drawn from a lognormal distribution with a fixed seed. */
export function startupTimes(count: number, seed: number): number[] {
  const random = mulberry32(seed);
  const [min, max] = STARTUP_RANGE_MS;
  return Array.from({ length: count }, () => {
    // Box–Muller: a standard normal from two uniform numbers in (0, 1].
    const u = 1 - random();
    const v = random();
    const normal = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    const real = Math.min(max, Math.max(min, MEDIAN_STARTUP_MS * Math.exp(STARTUP_SIGMA * normal)));
    return Math.round(real / TIME_SCALE);
  });
}

/**
 * The list schedule of `durations` on `slots` in the given order: each job
 * starts on the first slot to free. Returns when the last job ends.
 */
export function listScheduleMakespan(durations: readonly number[], slots: number): number {
  const freeAt: number[] = Array.from({ length: slots }, () => 0);
  let end = 0;
  for (const duration of durations) {
    let first = 0;
    for (let s = 1; s < slots; s++) if ((freeAt[s] ?? 0) < (freeAt[first] ?? 0)) first = s;
    const finish = (freeAt[first] ?? 0) + duration;
    freeAt[first] = finish;
    end = Math.max(end, finish);
  }
  return end;
}

/** What one way of rolling out measured. */
interface Rollout {
  /** From t = 0 until the last app was ready, in ms. */
  totalMs: number;
  /** App indices in the order they were granted the lock. */
  grantOrder: number[];
  /** Requests sent in all. */
  requests: number;
}

/** Runs the benchmark, printing as it goes; returns its figures. */
export async function runRollout(options: RolloutOptions): Promise<Figure[]> {
  const startups = startupTimes(APPS, SEED);
  const sorted = [...startups].sort((a, b) => a - b);
  const durationMs = (Math.floor((sorted.at(-1) ?? 0) / DURATION_STEP_MS) + 1) * DURATION_STEP_MS;
  const ideal = listScheduleMakespan(startups, SLOTS);
  console.log(
    `\nRollout${
      labelText(options.label)
    }: ${APPS} apps, --locks ${SLOTS}, times scaled 1:${TIME_SCALE} ` +
      `(1 real second = ${1000 / TIME_SCALE} ms)`,
  );
  console.log(
    `  start-up times (seed ${SEED}): ${sorted[0]} to ${sorted.at(-1)} ms, ` +
      `median ${sorted[Math.floor(APPS / 2)]} ms, sum ${startups.reduce((a, b) => a + b, 0)} ms`,
  );
  console.log(`  in arrival order: ${startups.join(", ")} ms`);
  console.log(`  ideal (list schedule on ${SLOTS} slots): ${formatSeconds(ideal)}`);

  const onReady = await withServer(
    options,
    durationMs,
    (url) => releaseOnReady(url, startups, durationMs),
  );
  // The ideal of the order the server actually saw, should the requests have arrived out of order.
  const onReadyIdeal = listScheduleMakespan(onReady.grantOrder.map((i) => startups[i] ?? 0), SLOTS);
  const onReadyRatio = onReady.totalMs / onReadyIdeal;
  console.log(
    `  release on ready (?wait=, DELETE when ready): ${formatSeconds(onReady.totalMs)}, ` +
      `${onReadyRatio.toFixed(3)}× ideal, ${onReady.requests} requests` +
      (onReadyIdeal === ideal ? "" : `; the requests arrived in another order ` +
        `(${onReady.grantOrder.join(",")}), whose ideal is ${formatSeconds(onReadyIdeal)}`),
  );

  const fixed = await withServer(
    options,
    durationMs,
    (url) => fixedDuration(url, startups, durationMs),
  );
  const fixedRatio = fixed.totalMs / ideal;
  console.log(
    `  fixed duration (poll every ${POLL_INTERVAL_MS} ms, ?duration=${durationMs}ms, no release): ` +
      `${formatSeconds(fixed.totalMs)}, ${
        fixedRatio.toFixed(3)
      }× ideal, ${fixed.requests} requests`,
  );

  const real = (ms: number) => `${((ms * TIME_SCALE) / 60_000).toFixed(1)} min at real scale`;
  return [
    {
      benchmark: NAME,
      measure: `ideal: ${APPS} apps on ${SLOTS} slots, 1:${TIME_SCALE} time scale`,
      value: `${formatSeconds(ideal)} (${real(ideal)})`,
    },
    {
      benchmark: NAME,
      measure: "release on ready (`?wait=` + `DELETE`), vs ideal",
      value: `${formatSeconds(onReady.totalMs)}, ${onReadyRatio.toFixed(3)}×`,
      target: atMost(onReadyRatio, ROLLOUT_TARGET_RATIO, `${ROLLOUT_TARGET_RATIO}×`),
    },
    {
      benchmark: NAME,
      measure: `fixed \`?duration=\` polled every scaled 1 s (original), vs ideal`,
      value: `${formatSeconds(fixed.totalMs)}, ${fixedRatio.toFixed(3)}×`,
    },
  ];
}

/** Starts a fresh server for one way of rolling out, and stops it afterwards. */
async function withServer(
  options: RolloutOptions,
  durationMs: number,
  roll: (url: string) => Promise<Rollout>,
): Promise<Rollout> {
  const server = await launchLockServer(options.program, [
    ...["--locks", String(SLOTS), "--timeout", `${durationMs}ms`],
    ...["--maxWait", "1m"],
  ]);
  options.track(server);
  try {
    return await roll(server.url);
  } finally {
    await server.stop();
  }
}

/**
 * Runs `app(i, client, turn)` for every app at t = 0, each app on its own
 * keep-alive connection opened beforehand; returns when the last app was
 * ready, in ms from t = 0.
 *
 * An app sends its first request once `turn` resolves: at once, or with
 * `ordered`, once the server has seen the request of the app before it (as a
 * holder or a waiter). Sent together, the requests reach the server in no
 * particular order, and the order decides how long a rollout takes.
 */
async function rollOut(
  url: string,
  count: number,
  app: (i: number, client: Deno.HttpClient, turn: Promise<void>) => Promise<number>,
  ordered: boolean,
): Promise<number> {
  const clients = Array.from({ length: count }, () => Deno.createHttpClient({}));
  const turns = clients.map(() => Promise.withResolvers<void>());
  try {
    // Open every connection first, so that t = 0 is not spent on handshakes.
    await Promise.all(
      clients.map(async (client) => checkStatus(await fetch(`${url}healthz`, { client }), 200)),
    );
    const start = performance.now();
    const apps = Promise.all(clients.map((client, i) => app(i, client, turns[i]!.promise)));
    for (const [i, turn] of turns.entries()) {
      turn.resolve();
      if (ordered) await untilStatus(url, ({ held, waiting }) => held + waiting > i);
    }
    return Math.max(...await apps) - start;
  } finally {
    for (const client of clients) client.close();
  }
}

/** Release on ready: wait in the queue, start, release the moment the app is ready. */
async function releaseOnReady(
  url: string,
  startups: readonly number[],
  durationMs: number,
): Promise<Rollout> {
  const grantOrder: number[] = [];
  const totalMs = await rollOut(url, startups.length, async (i, client, turn) => {
    const query = { wait: "1m", duration: `${durationMs}ms`, id: `app-${i}` };
    await turn;
    const token = await acquire(url, query, { client });
    if (!token) throw new Error(`app-${i} got 423 after waiting`);
    grantOrder.push(i);
    await delay(startups[i] ?? 0);
    const readyAt = performance.now();
    await release(url, token, { client });
    return readyAt;
  }, true);
  return { totalMs, grantOrder, requests: 2 * startups.length };
}

/** The original way: poll with a fixed duration until granted, start, never release. */
async function fixedDuration(
  url: string,
  startups: readonly number[],
  durationMs: number,
): Promise<Rollout> {
  const grantOrder: number[] = [];
  let requests = 0;
  const totalMs = await rollOut(url, startups.length, async (i, client) => {
    const query = { duration: `${durationMs}ms`, id: `app-${i}` };
    for (;;) {
      requests++;
      if (await acquire(url, query, { client })) break;
      await delay(POLL_INTERVAL_MS);
    }
    grantOrder.push(i);
    await delay(startups[i] ?? 0);
    return performance.now();
  }, false);
  return { totalMs, grantOrder, requests };
}

/** A small seeded pseudo-random generator of numbers in [0, 1). */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6D2B79F5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
