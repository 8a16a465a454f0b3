/**
 * A randomized run of the Redis mode behind a load balancer (issue 16): the
 * real program on several replicas sharing a real redis-server, and clients
 * that ask with their ids in 2 s chunks (`?id=cN&wait=2s&duration=4s`), hold
 * 0.3–1.5 s, release, think 0.5–2 s and ask again, each request sent to a
 * replica chosen at random (`hop`), as a Kubernetes Service spreads a
 * client's connections, or always to the same one (sticky). Faults may be
 * thrown in: Redis `kill -9` and restarted, Redis or a replica frozen
 * (`SIGSTOP`), the replicas' pub/sub connections killed.
 *
 * What it reports comes from the clients' own records: each grant is held
 * from its answer's arrival until its release is sent, which is what a client
 * believes it holds; and how long each turn waited, from its first ask to its
 * grant. The line's drain time is the number of clients over the grants per
 * second measured in the run. An observer also reads the lease set in Redis.
 *
 * Shared by `tests/program/redis_fair_test.ts` (short runs) and
 * `bench/fair.ts` (longer runs, figures); it lives here because nothing under
 * `bench/` loads a module of `tests/`.
 *
 * @module
 */
import { RedisServer } from "./_redis_server.ts";
import { type ProgramLauncher, spawnReplica } from "./_replica.ts";

/** A fault the run can throw in. */
export type Fault = "redis kill -9" | "redis SIGSTOP" | "replica SIGSTOP" | "pub/sub killed";

/** Every fault, in the order they are named in reports. */
export const FAULTS: readonly Fault[] = [
  "redis kill -9",
  "redis SIGSTOP",
  "replica SIGSTOP",
  "pub/sub killed",
];

/** How long a client waits per request (`?wait=`), as the issue's clients do. */
export const CHUNK = "2s";
/** The lease a client asks for (`?duration=`). */
export const LEASE_MS = 4_000;
/** How long a client holds its lock, at least and at most. */
const HOLD_MS: Range = [300, 1_500];
/** How long a client thinks before asking again. */
const THINK_MS: Range = [500, 2_000];
/** Between two faults. */
const FAULT_GAP_MS: Range = [2_000, 4_000];
/**
 * How long a fault lasts. A frozen replica may hold a grant's answer that
 * long: with at most 2 s of it and 1.5 s of holding, a client never believes
 * it holds past its 4 s lease, so an overlap in the records is the service's.
 */
const FAULT_LENGTH_MS: Range = [500, 2_000];
/** A request that takes this much longer than its wait counts as hung: it is dropped and asked again. */
const REQUEST_MARGIN_MS = 8_000;
/** After the run, a client never served keeps asking this long at most. */
const UNSERVED_BOUND_MS = 60_000;

type Range = readonly [number, number];

export type { ProgramLauncher } from "./_replica.ts";

/** Options of {@linkcode fairRun}. */
export interface FairRunOptions {
  /** The program the replicas run. */
  program: ProgramLauncher;
  /** Seeds every random choice: clients' holds, thinks and replicas, and the faults. */
  seed: number;
  /** How long clients keep starting turns. */
  runMs: number;
  /** Each request to a replica chosen at random; otherwise client `i` sticks to replica `i mod R`. */
  hop: boolean;
  /**
   * Each request's `?wait=`. Shorter chunks make more of a client's waits run
   * out, at any moment (as a slot is taken for it too). @default {CHUNK}
   */
  chunk?: string;
  /** Throw in faults (see {@linkcode FAULTS}). @default {false} */
  faults?: boolean;
  /** @default {3} */
  replicas?: number;
  /** @default {3} */
  slots?: number;
  /** @default {45} */
  clients?: number;
  /** Progress lines (faults as they happen). @default {none} */
  log?: (line: string) => void;
  /**
   * Keep what the replicas said of the longest-waiting client: they log at
   * debug level, and {@linkcode FairReport.worstTurnLog} holds their lines
   * that name it. @default {false}
   */
  history?: boolean;
}

/** What a run saw. */
export interface FairReport {
  seed: number;
  hop: boolean;
  /** The faults thrown in, in order, with their length. */
  faults: string[];
  /** From the first ask to the end of the last turn. */
  elapsedMs: number;
  grants: number;
  grantsPerSecond: number;
  /** The time the line needs to drain: clients / grants per second. */
  drainMs: number;
  /** The longest turn, from its first ask to its grant (or to the end, never granted). */
  longestWaitMs: number;
  /**
   * The most grants to other clients while one turn waited: how many went
   * before it. In a line served in order, at most every other client once
   * (clients − 1), however slow the machine; each place lost adds about a
   * line's worth.
   */
  mostGrantsBefore: number;
  longestWaitClient: string;
  /** The client of the turn that waited for the most grants to others. */
  worstTurnClient: string;
  /**
   * That turn's requests, one line each: when it was sent and answered
   * (seconds from the run's start), through which replica, the answer.
   */
  worstTurn: string[];
  /** With `history`: every replica's log lines that name that client. */
  worstTurnLog: string[];
  /** Grants handed back by the replicas (their `handed_back` log lines): whose, and when. */
  handBacks: string[];
  /** Clients never granted a lock. */
  unserved: string[];
  /** The most locks the clients believed they held at once. */
  maxHolders: number;
  /** The most leases the observer saw in Redis at once. */
  serverMaxHolders: number;
  /** Grants whose `Lock-Duration` was shorter than asked. */
  shortGrants: number;
  /** Answers other than a grant, by status and reason (`423 busy`, `503 store`, `error`). */
  refusals: Record<string, number>;
}

/** mulberry32: a small seeded generator, enough to make a run's choices repeatable. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const between = (random: () => number, [min, max]: Range) => min + random() * (max - min);

/** Starts Redis and the replicas, runs the clients (and faults), stops everything; never leaks a process. */
export async function fairRun(options: FairRunOptions): Promise<FairReport> {
  const replicaCount = options.replicas ?? 3;
  const slots = options.slots ?? 3;
  const name = "fair";
  await using redis = await RedisServer.start();
  const started = await Promise.allSettled(
    Array.from({ length: replicaCount }, () =>
      startReplica(options.program, [
        ...["--store", redis.url, "--name", name, "--locks", String(slots)],
        ...(options.history ? ["--logLevel", "debug", "--logFormat", "json"] : []),
      ])),
  );
  const replicas = started.flatMap((s) => s.status === "fulfilled" ? [s.value] : []);
  try {
    const failed = started.find((s) => s.status === "rejected");
    if (failed) throw failed.reason;
    return await drive(redis, replicas, options);
  } finally {
    await Promise.all(replicas.map((r) => r.kill()));
  }
}

/** One client's grant: from its answer's arrival until its release is sent. */
type Span = [number, number];

async function drive(
  redis: RedisServer,
  replicas: Replica[],
  options: FairRunOptions,
): Promise<FairReport> {
  const clients = options.clients ?? 45;
  const chunk = options.chunk ?? CHUNK;
  const log = options.log ?? (() => {});
  const spans: Span[] = [];
  /** Each turn: its client, its first ask, its grant (or when it stopped asking). */
  const turns: { client: number; from: number; to: number; lines: string[] }[] = [];
  /** Each grant: its client, when its answer arrived. */
  const granted: [number, number][] = [];
  const grants: number[] = Array(clients).fill(0);
  const refusals: Record<string, number> = {};
  const refused = (what: string) => refusals[what] = (refusals[what] ?? 0) + 1;
  let shortGrants = 0;
  let longestWaitMs = 0;
  let longestWaitClient = "";
  const aborter = new AbortController();
  const startedAt = performance.now();
  const runUntil = startedAt + options.runMs;
  const giveUpAt = runUntil + UNSERVED_BOUND_MS;
  const waited = (client: string, ms: number) => {
    if (ms > longestWaitMs) [longestWaitMs, longestWaitClient] = [ms, client];
  };
  const at = (t: number) => ((t - startedAt) / 1000).toFixed(3);
  // A client keeps starting turns until the run ends, and past it only if never served yet.
  const goOn = (i: number) => {
    const now = performance.now();
    return !aborter.signal.aborted && (now < runUntil || (grants[i] === 0 && now < giveUpAt));
  };

  const client = async (i: number) => {
    const id = `c${i}`;
    const random = seeded(options.seed * 1_000 + i);
    const replica = () =>
      replicas[options.hop ? Math.floor(random() * replicas.length) : i % replicas.length]!;
    while (goOn(i)) {
      const turnStart = performance.now();
      const turn: string[] = [];
      let token: string | undefined;
      while (token === undefined && goOn(i)) {
        const through = replica();
        const sentAt = performance.now();
        const answer = await ask(through, `?id=${id}&wait=${chunk}&duration=${LEASE_MS / 1000}s`);
        turn.push(
          `${at(sentAt)}–${at(performance.now())} s replica ${replicas.indexOf(through)}: ` +
            answer.what,
        );
        if (answer.status === 200) {
          token = answer.token;
          if (answer.durationMs < LEASE_MS) shortGrants++;
        } else {
          refused(answer.what);
          // A wait that ran out is asked again at once; a refusal after its Retry-After (≤ 1 s).
          if (answer.status !== 423) await sleep(Math.min(answer.retryAfterMs, 1_000));
        }
      }
      const now = performance.now();
      waited(id, now - turnStart);
      turns.push({ client: i, from: turnStart, to: now, lines: turn });
      if (token === undefined) break;
      grants[i]!++;
      granted.push([i, now]);
      await sleep(between(random, HOLD_MS));
      spans.push([now, performance.now()]);
      await giveBack(replica, token);
      await sleep(between(random, THINK_MS));
    }
  };

  /** One acquire; never throws: an error or a hung request is an answer too. */
  const ask = async (replica: Replica, query: string) => {
    const timeout = AbortSignal.timeout(2_000 + REQUEST_MARGIN_MS);
    try {
      const response = await fetch(`${replica.url}/${query}`, {
        headers: { Accept: "application/json" },
        signal: AbortSignal.any([aborter.signal, timeout]),
      });
      const body = await response.json().catch(() => ({}));
      return {
        status: response.status,
        token: String(body.token),
        durationMs: Number(response.headers.get("Lock-Duration")) * 1000,
        retryAfterMs: Number(response.headers.get("Retry-After") ?? 1) * 1000,
        what: `${response.status} ${body.reason ?? ""}`.trim(),
      };
    } catch {
      return { status: 0, token: "", durationMs: 0, retryAfterMs: 200, what: "error" };
    }
  };

  /** Releases through a replica; retried while the cluster cannot answer, until the lease is gone anyway. */
  const giveBack = async (replica: () => Replica, token: string) => {
    for (const until = performance.now() + LEASE_MS; performance.now() < until;) {
      try {
        const response = await fetch(`${replica().url}/locks/${token}`, {
          method: "DELETE",
          signal: AbortSignal.any([aborter.signal, AbortSignal.timeout(REQUEST_MARGIN_MS)]),
        });
        await response.body?.cancel();
        if (response.status === 204 || response.status === 404) return;
      } catch {
        if (aborter.signal.aborted) return;
      }
      await sleep(200);
    }
  };

  const observer = observe(redis, `startup-lock:{fair}:leases`);
  const faults: string[] = [];
  const faulting = options.faults
    ? injectFaults(redis, replicas, seeded(options.seed), runUntil, (line) => {
      faults.push(line);
      log(line);
    })
    : Promise.resolve();
  try {
    await Promise.all(Array.from({ length: clients }, (_, i) => client(i)));
  } finally {
    aborter.abort();
    await faulting;
  }
  const elapsedMs = performance.now() - startedAt;
  // The turn that waited for the most grants to other clients.
  let worst: { before: number; turn: (typeof turns)[number] | undefined } = {
    before: 0,
    turn: undefined,
  };
  for (const turn of turns) {
    const before = granted.filter(([j, at]) => j !== turn.client && at > turn.from && at < turn.to)
      .length;
    if (before > worst.before || !worst.turn) worst = { before, turn };
  }
  const worstClient = worst.turn ? `c${worst.turn.client}` : "";
  const serverMaxHolders = await observer.stop();
  const total = grants.reduce((a, b) => a + b, 0);
  const grantsPerSecond = total / (Math.min(elapsedMs, options.runMs) / 1000);
  return {
    seed: options.seed,
    hop: options.hop,
    faults,
    elapsedMs,
    grants: total,
    grantsPerSecond,
    drainMs: clients / grantsPerSecond * 1000,
    longestWaitMs,
    mostGrantsBefore: worst.before,
    longestWaitClient,
    worstTurnClient: worstClient,
    worstTurn: worst.turn?.lines ?? [],
    worstTurnLog: options.history
      ? replicas.flatMap((r, n) =>
        r.log.filter((l) => l.includes(`"${worstClient}"`)).map((l) => `replica ${n}: ${l}`)
      )
      : [],
    handBacks: replicas.flatMap((r, n) =>
      r.log.filter((l) => /handed.back/.test(l)).map((l) => `replica ${n}: ${l}`)
    ),
    unserved: grants.flatMap((n, i) => n === 0 ? [`c${i}`] : []),
    maxHolders: mostAtOnce(spans),
    serverMaxHolders,
    shortGrants,
    refusals,
  };
}

/** The most spans that overlap at any moment (an end before a start on a tie). */
export function mostAtOnce(spans: readonly Span[]): number {
  const edges = spans.flatMap(([from, to]): Span[] => [[from, 1], [to, -1]])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let max = 0;
  for (const [, delta] of edges) max = Math.max(max, now += delta);
  return max;
}

/** Reads the number of leases in Redis as often as it can; `stop()` resolves with the most seen. */
function observe(redis: RedisServer, key: string) {
  let running = true;
  let most = 0;
  const done = (async () => {
    while (running) {
      try {
        const client = await redis.client();
        try {
          while (running) {
            most = Math.max(most, Number(await client.sendCommand(["ZCARD", key])));
            await sleep(5);
          }
        } finally {
          client.destroy();
        }
      } catch {
        await sleep(100); // Redis is down or frozen: connect again.
      }
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return most;
    },
  };
}

/** Throws in one fault after another until `until`, each undone before the next. */
async function injectFaults(
  redis: RedisServer,
  replicas: readonly Replica[],
  random: () => number,
  until: number,
  log: (line: string) => void,
): Promise<void> {
  const at = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const start = performance.now();
  for (let n = 0;; n++) {
    await sleep(between(random, FAULT_GAP_MS));
    if (performance.now() >= until) return;
    // Every kind in turn first, then at random.
    const fault = FAULTS[n < FAULTS.length ? n : Math.floor(random() * FAULTS.length)]!;
    const length = between(random, FAULT_LENGTH_MS);
    const when = at(performance.now() - start);
    switch (fault) {
      case "redis kill -9":
        await redis.kill();
        await sleep(length);
        await redis.relaunch();
        break;
      case "redis SIGSTOP":
        redis.pause();
        await sleep(length).finally(() => redis.resume());
        break;
      case "replica SIGSTOP": {
        const replica = replicas[Math.floor(random() * replicas.length)]!;
        replica.signal("SIGSTOP");
        await sleep(length).finally(() => replica.signal("SIGCONT"));
        break;
      }
      case "pub/sub killed": {
        const client = await redis.client();
        try {
          await client.sendCommand(["CLIENT", "KILL", "TYPE", "pubsub"]);
        } finally {
          client.destroy();
        }
        break;
      }
    }
    log(`${when}: ${fault}${fault === "pub/sub killed" ? "" : ` for ${at(length)}`}`);
  }
}

/** A replica of the program in a child process: its URL, its stderr lines so far. */
interface Replica {
  url: string;
  /** Every stderr line so far. */
  log: string[];
  signal(signal: Deno.Signal): void;
  /** `SIGKILL`, and waits for the end of the process and of its output. */
  kill(): Promise<void>;
}

/** Starts a replica on a free port of 127.0.0.1 and resolves once it listens. */
async function startReplica(program: ProgramLauncher, flags: string[]): Promise<Replica> {
  const log: string[] = [];
  const { url, process, reading } = await spawnReplica(
    program,
    flags,
    "a replica",
    (line) => log.push(line),
  );
  const signal = (name: Deno.Signal) => {
    try {
      process.kill(name);
    } catch {
      // Exited already.
    }
  };
  const kill = async () => {
    signal("SIGCONT");
    signal("SIGKILL");
    await process.status;
    await reading;
  };
  return { url, log, signal, kill };
}
