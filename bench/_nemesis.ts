/**
 * A randomized fault run in the spirit of Jepsen, black-box with real
 * processes: one real `redis-server` (`appendonly yes`, `appendfsync always`),
 * replicas of the real program on it (`--store redis://…`), clients with ids
 * that ask in chunks (`GET /?id=cN&wait=2s&duration=4s`, hold briefly,
 * `DELETE`, think, ask again; each request to a random replica), and a
 * nemesis that every 2–5 s does one of: `kill -9` Redis and start it again on
 * the same port and data, `SIGSTOP` a replica for 2–4 s, `CLIENT KILL TYPE
 * pubsub`, close the gate of the replica started with `--check tcp://…` (by
 * closing the listener it checks) for 2–4 s, `FLUSHALL`; each kind once in
 * every round of five, in a random order.
 *
 * An observer reads the leases straight from Redis; `_nemesis_checks.ts`
 * judges what the clients and the observer recorded. The faults are drawn
 * from a seeded generator, printed at the start with every parameter, so a
 * failing run can be replayed with the same schedule (the timing of the
 * processes is the machine's).
 *
 * Used by `tests/program/redis_nemesis_test.ts` (about 30 s) and by
 * `bench/nemesis.ts` (minutes).
 *
 * @module
 */
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "../lib/stores/_redis_client.ts";
import {
  type Attempt,
  type Fault,
  FAULT_KINDS,
  type FaultKind,
  type History,
  type Hold,
  judge,
  type Judgement,
  MAX_SAMPLE_ROUND_TRIP_MS,
  type ReplicaEnd,
  type Sample,
} from "./_nemesis_checks.ts";
import { RedisServer } from "./_redis_server.ts";
import { freePort } from "./process.ts";
import { type ProgramLauncher, spawnReplica } from "./_replica.ts";

export type { ProgramLauncher } from "./_replica.ts";

/** The parameters of a run; every one is printed at its start. */
export interface NemesisParams {
  /** How long the nemesis injects faults. */
  seconds: number;
  clients: number;
  replicas: number;
  /** `--locks`. */
  locks: number;
  seed: number;
  /** `--maxDuration` of the replicas: the length of a recovery window. */
  maxDurationMs: number;
  /** The kinds of fault to draw from. @default {all of FAULT_KINDS} */
  faults?: readonly FaultKind[];
  /**
   * Each chunk's `?wait=`: shorter chunks end more often at the moment a
   * slot is granted. @default {DEFAULT_WAIT_MS}
   */
  waitMs?: number;
}

/** Options of {@linkcode runNemesis}. */
export interface NemesisOptions extends NemesisParams {
  program: ProgramLauncher;
  /** Where progress lines go. @default {console.log} */
  log?: (line: string) => void;
  /** Told of each child process (replicas, each Redis), e.g. to stop it on an interrupt. */
  track?: (pid: number) => void;
}

/** What a run recorded and how it was judged. */
export interface NemesisRun {
  params: NemesisParams;
  history: History;
  judgement: Judgement;
}

/** The id prefix and each client's chunk: `?wait=` and `?duration=` of every acquire. */
const CHUNK = { duration: "4s", durationMs: 4_000 } as const;
/** Each chunk's `?wait=` when the parameters name none: a client's usual chunk, shortened. */
export const DEFAULT_WAIT_MS = 2_000;
/** Clients hold a lock this long (uniform), then release it. */
const HOLD_MS: readonly [number, number] = [100, 300];
/** Clients think this long between a release and their next request. */
const THINK_MS: readonly [number, number] = [200, 1_000];
/** After a 503 or a failed request, a client asks again after this long. */
const RETRY_MS: readonly [number, number] = [250, 500];
/** The nemesis waits this long between faults. */
const FAULT_GAP_MS: readonly [number, number] = [2_000, 5_000];
/** A replica stays frozen, a gate closed, this long. */
const FAULT_LENGTH_MS: readonly [number, number] = [2_000, 4_000];
/** Redis stays dead this long after `kill -9`. */
const REDIS_DOWN_MS: readonly [number, number] = [0, 1_000];
/**
 * A request that took longer than this counts as failed: a chunk's 2 s wait,
 * a replica frozen 4 s, and room to spare on a loaded machine.
 */
const REQUEST_BOUND_MS = 20_000;
/** After the faults stop, every client must be served within `--maxDuration` plus this. */
const FINAL_BOUND_MS = 60_000;
/** The observer reads Redis this often. */
const SAMPLE_EVERY_MS = 25;
/** The gated replica's check rounds: a closed listener is noticed within about a second. */
const GATE_CHECK = { interval: "500ms", timeout: "500ms", lagMs: 1_500 } as const;
/** The semaphore's name. */
const NAME = "nemesis";
/** A key the nemesis writes before killing Redis: missing after the restart means lost data. */
const MARKER_KEY = "nemesis:marker";

/** A generator of numbers in [0, 1) from a seed (mulberry32): the same seed, the same draws. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A copy of `items` in a random order (Fisher–Yates). */
function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

/** The parameters as one line, to replay a run. */
export function paramsLine(p: NemesisParams): string {
  return `seconds=${p.seconds} clients=${p.clients} replicas=${p.replicas} locks=${p.locks} ` +
    `seed=${p.seed} maxDuration=${p.maxDurationMs}ms wait=${p.waitMs ?? DEFAULT_WAIT_MS}ms ` +
    `faults=${(p.faults ?? FAULT_KINDS).join(",")}`;
}

/** Runs the clients, the nemesis and the observer against a fresh Redis and replicas. */
export async function runNemesis(options: NemesisOptions): Promise<NemesisRun> {
  const log = options.log ?? console.log;
  const params: NemesisParams = {
    seconds: options.seconds,
    clients: options.clients,
    replicas: options.replicas,
    locks: options.locks,
    seed: options.seed,
    maxDurationMs: options.maxDurationMs,
    faults: options.faults ?? FAULT_KINDS,
    waitMs: options.waitMs ?? DEFAULT_WAIT_MS,
  };
  const waitMs = params.waitMs ?? DEFAULT_WAIT_MS;
  log(`nemesis: ${paramsLine(params)}`);
  // The nemesis draws from a generator of its own, so that the same seed gives the same faults
  // at the same times whatever the clients drew meanwhile.
  const faultRandom = seededRandom(params.seed);
  const random = seededRandom(params.seed ^ 0x5bd1e995);
  const between = ([lo, hi]: readonly [number, number], draw = random) => lo + draw() * (hi - lo);

  await using redis = await RedisServer.start();
  await using gate = new GateListener(freePort());
  const replicas: Replica[] = [];
  let observer: Observer | undefined;
  try {
    const started = await Promise.allSettled(
      Array.from({ length: params.replicas }, (_, i) =>
        Replica.start(options.program, i, [
          ...["--store", redis.url, "--name", NAME, "--locks", String(params.locks)],
          ...["--maxDuration", `${params.maxDurationMs}ms`, "--timeout", CHUNK.duration],
          ...(i === 0
            ? [
              ...["--check", `tcp://127.0.0.1:${gate.port}`],
              ...["--passHc", GATE_CHECK.interval, "--failHc", GATE_CHECK.interval],
              ...["--checkTimeout", GATE_CHECK.timeout],
            ]
            : []),
        ])),
    );
    for (const s of started) if (s.status === "fulfilled") replicas.push(s.value);
    const failed = started.find((s) => s.status === "rejected");
    if (failed) throw failed.reason;
    for (const pid of [redis.pid, ...replicas.map((r) => r.pid)]) options.track?.(pid);

    const startedAt = performance.now();
    const attempts: Attempt[] = [];
    const holds: Hold[] = [];
    const faults: Fault[] = [];
    observer = await Observer.start(redis);
    const stopFaultsAt = startedAt + params.seconds * 1_000;
    let healedAt = Infinity;
    /** What broke the nemesis itself, if anything: the clients stop, and the run fails with it. */
    let broken: { error: unknown } | undefined;

    const client = async (i: number) => {
      const id = `c${i}`;
      const finalDeadline = () => healedAt + params.maxDurationMs + FINAL_BOUND_MS;
      let servedSinceHeal = false;
      while (!servedSinceHeal && !broken && performance.now() < finalDeadline()) {
        const wantedSince = performance.now();
        let hold: Hold | undefined;
        while (!hold && !broken && performance.now() < finalDeadline()) {
          const replica = Math.floor(random() * replicas.length);
          const sentAt = performance.now();
          const answer = await send(
            `${replicas[replica]!.url}/?id=${id}&wait=${waitMs}ms&duration=${CHUNK.duration}`,
            "GET",
          );
          const attempt: Attempt = {
            client: i,
            replica,
            sentAt,
            answeredAt: performance.now(),
            status: answer.status,
            ...(answer.reason ? { reason: answer.reason } : {}),
            ...(answer.token ? { token: answer.token } : {}),
          };
          attempts.push(attempt);
          if (answer.status === 200 && answer.token) {
            hold = {
              client: i,
              token: answer.token,
              sentAt,
              grantedAt: attempt.answeredAt,
              durationMs: CHUNK.durationMs,
              wantedSince,
            };
            holds.push(hold);
          } else if (answer.status !== 423) {
            await sleep(between(RETRY_MS));
          }
          // A 423 is a chunk that ran out: ask again at once, keeping the place by the id.
        }
        if (!hold) break;
        if (hold.sentAt >= healedAt) servedSinceHeal = true;
        await sleep(between(HOLD_MS));
        await releaseHold(hold);
        if (!servedSinceHeal) await sleep(between(THINK_MS));
      }
    };

    /** Releases through random replicas until one answers 204 or 404, or the lease ran out. */
    const releaseHold = async (hold: Hold) => {
      hold.releaseSentAt = performance.now();
      while (performance.now() < hold.sentAt + hold.durationMs + REQUEST_BOUND_MS) {
        const replica = replicas[Math.floor(random() * replicas.length)]!;
        const answer = await send(`${replica.url}/locks/${hold.token}`, "DELETE");
        if (answer.status === 204 || answer.status === 404) {
          hold.releaseStatus = answer.status;
          return;
        }
        if (performance.now() > hold.sentAt + hold.durationMs) break; // Ran out by now anyway.
        await sleep(between(RETRY_MS));
      }
      hold.releaseStatus = 0;
    };

    const nemesis = async () => {
      // Every kind once in each round, in a random order: even a short run meets each of them.
      const deck: FaultKind[] = [];
      for (;;) {
        await sleep(between(FAULT_GAP_MS, faultRandom));
        // Past the time, the first round still ends: every kind is injected at least once.
        const firstRoundDone = faults.length >= (params.faults ?? FAULT_KINDS).length;
        if (performance.now() >= stopFaultsAt && firstRoundDone) break;
        if (deck.length === 0) deck.push(...shuffled(params.faults ?? FAULT_KINDS, faultRandom));
        const kind = deck.pop()!;
        const fault = await inject(kind);
        faults.push(fault);
        log(`  ${((fault.startedAt - startedAt) / 1000).toFixed(1)} s: ${describeFault(fault)}`);
      }
      healedAt = performance.now();
      log(
        `  ${
          ((healedAt - startedAt) / 1000).toFixed(1)
        } s: faults stop; every client must be served`,
      );
    };

    /** A nemesis command that failed is said, not hidden: the run's judge counts it as done. */
    const reportFailure = (error: unknown) =>
      log(`  the nemesis's command failed: ${error instanceof Error ? error.message : error}`);

    const inject = async (kind: FaultKind): Promise<Fault> => {
      const startedAt = performance.now();
      switch (kind) {
        case "kill-redis": {
          const marker = String(Math.floor(faultRandom() * 1e9));
          await command(redis, ["SET", MARKER_KEY, marker]).catch(reportFailure);
          const killedAt = performance.now();
          await redis.kill();
          await sleep(between(REDIS_DOWN_MS, faultRandom));
          await redis.relaunch();
          const endedAt = performance.now();
          options.track?.(redis.pid);
          const kept = await command(redis, ["GET", MARKER_KEY]).catch(() => undefined);
          const lostData = kept !== marker;
          return {
            kind,
            startedAt: killedAt,
            endedAt,
            lostData,
            ...(lostData ? { lossCertainAt: endedAt } : {}),
          };
        }
        case "pause-replica": {
          const replica = Math.floor(faultRandom() * replicas.length);
          replicas[replica]!.signal("SIGSTOP");
          await sleep(between(FAULT_LENGTH_MS, faultRandom));
          replicas[replica]!.signal("SIGCONT");
          return { kind, replica, startedAt, endedAt: performance.now(), lostData: false };
        }
        case "kill-pubsub": {
          await command(redis, ["CLIENT", "KILL", "TYPE", "pubsub"]).catch(reportFailure);
          return { kind, startedAt, endedAt: performance.now(), lostData: false };
        }
        case "close-gate": {
          gate.close();
          await sleep(between(FAULT_LENGTH_MS, faultRandom));
          gate.open();
          return { kind, replica: 0, startedAt, endedAt: performance.now(), lostData: false };
        }
        case "flushall": {
          // Counted as a loss even if the answer failed: it may have run.
          await command(redis, ["FLUSHALL"]).catch(reportFailure);
          const endedAt = performance.now();
          return { kind, startedAt, endedAt, lostData: true, lossCertainAt: endedAt };
        }
      }
    };

    const faulting = nemesis().catch((error) => {
      broken = { error };
      healedAt = performance.now();
    });
    await Promise.all([faulting, ...Array.from({ length: params.clients }, (_, i) => client(i))]);
    if (broken) throw broken.error;
    const endedAt = performance.now();
    await observer.stop();
    const redisUp = await command(redis, ["PING"]).then(() => true, () => false);
    const replicaEnds: ReplicaEnd[] = [];
    for (const r of replicas) replicaEnds.push(await r.end());
    replicas.length = 0;
    const history: History = {
      locks: params.locks,
      replicas: params.replicas,
      clients: params.clients,
      maxDurationMs: params.maxDurationMs,
      gateLagMs: GATE_CHECK.lagMs,
      startedAt,
      healedAt,
      endedAt,
      attempts,
      holds,
      samples: observer.samples,
      faults,
      replicaEnds,
      redisDiedUnasked: !redisUp,
    };
    return { params, history, judgement: judge(history) };
  } finally {
    await observer?.stop();
    await Promise.all(replicas.map((r) => r.kill()));
  }
}

function describeFault(f: Fault): string {
  const length = `${Math.round(f.endedAt - f.startedAt)} ms`;
  switch (f.kind) {
    case "kill-redis":
      return `kill -9 Redis, back after ${length}${f.lostData ? ", DATA LOST" : ", data kept"}`;
    case "pause-replica":
      return `SIGSTOP replica ${f.replica} for ${length}`;
    case "kill-pubsub":
      return "CLIENT KILL TYPE pubsub";
    case "close-gate":
      return `gate of replica ${f.replica} closed for ${length}`;
    case "flushall":
      return "FLUSHALL";
  }
}

/** What a client needs of an answer. */
interface Answer {
  /** The HTTP status, or 0 when the request failed or passed its bound. */
  status: number;
  reason?: string;
  token?: string;
}

async function send(url: string, method: string): Promise<Answer> {
  try {
    const response = await fetch(url, {
      method,
      headers: { Accept: "application/json" },
      signal: AbortSignal.timeout(REQUEST_BOUND_MS),
    });
    const text = await response.text();
    let body: { reason?: unknown; token?: unknown } = {};
    try {
      body = JSON.parse(text);
    } catch {
      // A 204 has no body.
    }
    return {
      status: response.status,
      ...(typeof body.reason === "string" ? { reason: body.reason } : {}),
      ...(typeof body.token === "string" ? { token: body.token } : {}),
    };
  } catch (error) {
    return { status: 0, reason: error instanceof Error ? error.name : String(error) };
  }
}

/** One command on a connection of its own, bounded: Redis may be dead or frozen. */
async function command(redis: RedisServer, args: string[]): Promise<unknown> {
  const client = createClient({
    url: redis.url,
    disableOfflineQueue: true,
    socket: { connectTimeout: 2_000, reconnectStrategy: false },
  });
  client.on("error", () => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      client.connect().then(() => client.sendCommand(args)),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Redis did not answer ${args[0]}`)), 3_000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    client.destroy();
  }
}

/**
 * Reads the unexpired leases from Redis, by Redis's clock, every
 * {@linkcode SAMPLE_EVERY_MS}; a read that fails or takes longer than
 * {@linkcode MAX_SAMPLE_ROUND_TRIP_MS} is kept as a failed read.
 */
class Observer {
  readonly samples: Sample[] = [];
  #running = true;
  readonly #loop: Promise<void>;

  private constructor(redis: RedisServer) {
    const leases = `startup-lock:{${NAME}}:leases`;
    const script = "local t = redis.call('TIME') " +
      "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) " +
      "return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')";
    this.#loop = (async () => {
      let client: ReturnType<typeof createClient> | undefined;
      while (this.#running) {
        const sentAt = performance.now();
        try {
          if (!client) {
            client = createClient({
              url: redis.url,
              disableOfflineQueue: true,
              socket: { connectTimeout: 500, reconnectStrategy: false },
            });
            client.on("error", () => {});
            await client.connect();
          }
          const read = client.sendCommand(["EVAL", script, "1", leases]);
          const tokens = await Promise.race([
            read,
            sleep(MAX_SAMPLE_ROUND_TRIP_MS * 5).then(() => undefined),
          ]);
          read.catch(() => {});
          const answeredAt = performance.now();
          const fast = answeredAt - sentAt <= MAX_SAMPLE_ROUND_TRIP_MS;
          this.samples.push({
            at: (sentAt + answeredAt) / 2,
            ...(fast && Array.isArray(tokens) ? { tokens: tokens.map(String) } : {}),
          });
          if (tokens === undefined) throw new Error("Redis did not answer the observer");
        } catch {
          this.samples.push({ at: sentAt });
          client?.destroy();
          client = undefined;
          await sleep(50);
        }
        await sleep(SAMPLE_EVERY_MS);
      }
      client?.destroy();
    })();
  }

  static start(redis: RedisServer): Promise<Observer> {
    return Promise.resolve(new Observer(redis));
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }
}

/** A TCP listener that a replica's `--check tcp://…` probes: open is up, closed is down. */
class GateListener implements AsyncDisposable {
  readonly port: number;
  #listener: Deno.Listener | undefined;
  #accepting: Promise<void> | undefined;

  constructor(port: number) {
    this.port = port;
    this.open();
  }

  open(): void {
    if (this.#listener) return;
    const listener = Deno.listen({ hostname: "127.0.0.1", port: this.port });
    this.#listener = listener;
    this.#accepting = (async () => {
      try {
        for await (const conn of listener) conn.close();
      } catch {
        // Closed.
      }
    })();
  }

  close(): void {
    this.#listener?.close();
    this.#listener = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.#accepting;
  }
}

/** Lines of a replica's stderr that show an uncaught error or a stack trace. */
const ERROR_LINE = /uncaught|panicked|^\s+at\s/i;
/** How long a replica may take to exit after SIGTERM before it is killed. */
const STOP_BOUND_MS = 15_000;

/** A replica of the program in a child process. */
class Replica {
  readonly index: number;
  readonly url: string;
  readonly #process: Deno.ChildProcess;
  readonly #errorLines: string[];
  readonly #reading: Promise<void>;
  #exited = false;

  private constructor(
    index: number,
    url: string,
    process: Deno.ChildProcess,
    errorLines: string[],
    reading: Promise<void>,
  ) {
    this.index = index;
    this.url = url;
    this.#process = process;
    this.#errorLines = errorLines;
    this.#reading = reading;
    process.status.then(() => this.#exited = true);
  }

  get pid(): number {
    return this.#process.pid;
  }

  static async start(program: ProgramLauncher, index: number, flags: string[]): Promise<Replica> {
    const errorLines: string[] = [];
    const { url, process, reading } = await spawnReplica(
      program,
      flags,
      `replica ${index}`,
      (line) => {
        if (ERROR_LINE.test(line) && errorLines.length < 100) errorLines.push(line);
      },
    );
    return new Replica(index, url, process, errorLines, reading);
  }

  signal(signal: Deno.Signal): void {
    try {
      this.#process.kill(signal);
    } catch {
      // Exited: the end reports it.
    }
  }

  /** Stops it with SIGTERM (SIGKILL after a bound) and reports how it ended. */
  async end(): Promise<ReplicaEnd> {
    const exitedEarly = this.#exited;
    this.signal("SIGCONT");
    this.signal("SIGTERM");
    const timer = setTimeout(() => this.signal("SIGKILL"), STOP_BOUND_MS);
    const { code } = await this.#process.status;
    clearTimeout(timer);
    await this.#reading;
    return { replica: this.index, exitedEarly, code, errorLines: this.#errorLines };
  }

  async kill(): Promise<void> {
    this.signal("SIGKILL");
    await this.#process.status;
    await this.#reading;
  }
}

export { FAULT_KINDS, type FaultKind, type Judgement };
