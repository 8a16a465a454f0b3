/**
 * The judge of a randomized fault run (`_nemesis.ts`): pure functions over
 * what the clients recorded, what an observer read from Redis directly and
 * which faults were injected when. It trusts neither the replicas (only the
 * clients' own records and Redis's keys count) nor the observer's own reads
 * (a read that took long is dropped, a failed one breaks any stretch it was
 * part of). Every time is `performance.now()` of the one process that ran the
 * clients, the nemesis and the observer.
 *
 * The properties, each reported on its own so that a failure names what broke:
 *
 * - `safety (clients)`: never more than N clients hold a lock at once by their
 *   own records, outside recovery windows. A client holds from the moment its
 *   `200` arrived until it sent the release, or until its lease ran out by
 *   its own count: `duration` from when it *sent* the request (the end Redis
 *   can not pass, since its script ran after that). The start is the answer,
 *   not the request: counting the wait as holding would overlap every
 *   handoff. So each span lies inside the lease's life in Redis, and more
 *   overlapping spans than slots prove more holders than slots.
 * - `safety (Redis)`: never more than N unexpired leases in Redis's own keys.
 * - `recovery`: after a loss of Redis data (`FLUSHALL`, a restart that lost
 *   the observer's marker key), no request sent after the loss is granted
 *   before `--maxDuration` has passed: leases that Redis forgot may still be
 *   held until then. The window from the loss to `--maxDuration` after it is
 *   the documented `recovery` window, excluded from `safety (clients)`.
 * - `liveness`: no stretch longer than {@linkcode LIVENESS_BOUND_MS} in which
 *   Redis showed a free slot at every read, a client that could take it waited
 *   (its request was out to a replica that was running, had its gate open and
 *   could reach Redis), and nothing was granted. Stretches that overlap a
 *   paused replica are excused (its waiters keep their place in line while it
 *   is frozen, up to the ticket limit) and reported apart.
 * - `served`: after the faults stop, every client is granted a lock within a
 *   generous bound.
 * - `no crash`: every replica and Redis ran until the end, each replica exited
 *   0 on SIGTERM, and no replica wrote an uncaught error or a stack trace.
 *
 * @module
 */
import { MAX_RECONNECT_MS, REDIS_TIMEOUT_MS, TICKET_TTL_MS } from "../lib/stores/redis/store.ts";

/**
 * The longest a slot may stay free while a client that can take it waits.
 * The issue's bound is about 1 s (a replica with waiters re-checks at least
 * every second); the second second is slack for a shared 2-core machine and
 * for the observer's own reads.
 */
export const LIVENESS_BOUND_MS = 2_000;

/**
 * After Redis is back, replicas may need this long to reconnect: the client's
 * longest backoff ({@linkcode MAX_RECONNECT_MS}, plus its 50 ms jitter) and
 * one call timeout. Waiters are not counted as able to take a slot meanwhile.
 */
export const RECONNECT_MARGIN_MS = MAX_RECONNECT_MS + 50 + REDIS_TIMEOUT_MS;

/** The kinds of fault the nemesis injects. */
export const FAULT_KINDS = [
  "kill-redis",
  "pause-replica",
  "kill-pubsub",
  "close-gate",
  "flushall",
] as const;

/** One kind of fault. */
export type FaultKind = (typeof FAULT_KINDS)[number];

/** One injected fault. */
export interface Fault {
  kind: FaultKind;
  /** The replica it hit (`pause-replica`, `close-gate`). */
  replica?: number;
  /** When the nemesis started it (the command was sent). */
  startedAt: number;
  /** When it was over: Redis answered again, the replica resumed, the gate's listener reopened. */
  endedAt: number;
  /** Whether Redis lost its data: after a `FLUSHALL`, or a restart that lost the marker key. */
  lostData: boolean;
  /** When the loss was certain (the `FLUSHALL` answered, the restart finished). */
  lossCertainAt?: number;
}

/** One acquire request a client sent. */
export interface Attempt {
  client: number;
  replica: number;
  sentAt: number;
  answeredAt: number;
  /** The HTTP status, or `0` when the request failed (connection error, bound passed). */
  status: number;
  /** The refusal's `reason`, or the error's name. */
  reason?: string;
  /** The lease's token, on a `200`. */
  token?: string;
}

/** A grant as its client saw it. */
export interface Hold {
  client: number;
  token: string;
  /** When the acquire request that got it was sent. */
  sentAt: number;
  /** When its `200` arrived. */
  grantedAt: number;
  durationMs: number;
  /** When the client sent its first release; `undefined` if it never did. */
  releaseSentAt?: number;
  /** The status of the release that settled it (204, 404), or 0 if none did. */
  releaseStatus?: number;
  /** When the client began wanting this lock (its first request since its last hold). */
  wantedSince: number;
}

/** One read of Redis's leases by the observer. */
export interface Sample {
  /** The middle of the read's round trip. */
  at: number;
  /** The unexpired leases' tokens by Redis's clock, or `undefined` when the read failed. */
  tokens?: readonly string[];
}

/** A replica process's end. */
export interface ReplicaEnd {
  replica: number;
  /** Whether it had exited before the run stopped it. */
  exitedEarly: boolean;
  /** Its exit code after SIGTERM (or earlier). */
  code: number;
  /** Lines of its stderr that show an uncaught error or a stack trace. */
  errorLines: readonly string[];
}

/** Everything a run recorded. */
export interface History {
  locks: number;
  replicas: number;
  clients: number;
  maxDurationMs: number;
  /** The pause between the gated replica's check rounds plus one check timeout. */
  gateLagMs: number;
  startedAt: number;
  /** When the last fault was over: the clients' final phase began. */
  healedAt: number;
  endedAt: number;
  attempts: readonly Attempt[];
  holds: readonly Hold[];
  samples: readonly Sample[];
  faults: readonly Fault[];
  replicaEnds: readonly ReplicaEnd[];
  /** Whether Redis exited without the nemesis killing it. */
  redisDiedUnasked: boolean;
}

/** The name of a checked property. */
export type PropertyName =
  | "safety (clients)"
  | "safety (Redis)"
  | "recovery"
  | "liveness"
  | "served"
  | "no crash";

/** A property's verdict, with up to a few examples of what broke it. */
export interface Verdict {
  property: PropertyName;
  ok: boolean;
  /** One line on what was checked and what was found. */
  summary: string;
  examples: string[];
}

/** A stretch in which a slot sat free while an able client waited and nothing was granted. */
export interface Gap {
  from: number;
  to: number;
  /** The kinds of the faults whose windows it overlaps. */
  during: FaultKind[];
  /** Whether a paused replica excuses it. */
  excused: boolean;
}

/** The figures of a run. */
export interface Figures {
  grants: number;
  /** The most overlapping holds by the clients' records, anywhere / outside recovery windows. */
  maxHoldersClients: number;
  maxHoldersOutsideRecovery: number;
  maxHoldersRedis: number;
  /** Observer reads that counted, and those that failed or took too long. */
  samples: number;
  samplesDropped: number;
  /** The longest free-slot-while-waiting stretch: overall, not excused, and by fault kind. */
  longestGapMs: number;
  longestUnexcusedGapMs: number;
  longestGapByKind: Partial<Record<FaultKind | "none", number>>;
  /** From a client's first request for a lock to its `200`. */
  waitP50Ms: number;
  waitP99Ms: number;
  waitMaxMs: number;
  faults: Partial<Record<FaultKind, number>>;
  /** Acquire answers by status and reason, such as `423 queued`. */
  answers: Record<string, number>;
  /** Releases answered 404: a grant the cluster had forgotten (or that ran out). */
  releases404: number;
  /** Grants inside recovery windows whose requests were sent after the loss. */
  recoveryGrants: number;
  /** Clients never granted after the faults stopped. */
  unserved: number;
}

/** The verdicts and the figures of one run. */
export interface Judgement {
  verdicts: Verdict[];
  figures: Figures;
  gaps: Gap[];
}

/** The most examples kept per property. */
const MAX_EXAMPLES = 5;

/** An observer read whose round trip took longer than this is too vague to place in time. */
export const MAX_SAMPLE_ROUND_TRIP_MS = 100;

/** Judges a run; see the module documentation. */
export function judge(history: History): Judgement {
  const t0 = history.startedAt;
  const at = (t: number) => `${((t - t0) / 1000).toFixed(3)} s`;
  const losses = countedLosses(history);
  const recovery = recoveryWindows(history, losses);
  const inRecovery = (t: number) => recovery.some(([from, to]) => from <= t && t < to);

  // Safety by the clients' own records.
  const overlaps = maxOverlaps(history.holds, history.endedAt, history.locks, inRecovery);
  const safetyClients: Verdict = {
    property: "safety (clients)",
    ok: overlaps.outside <= history.locks,
    summary: `at most ${overlaps.outside} holders outside recovery windows ` +
      `(${overlaps.max} anywhere) for ${history.locks} slots`,
    examples: overlaps.violations.slice(0, MAX_EXAMPLES).map((v) =>
      `${v.count} holders at ${at(v.at)}: ${v.clients.map((c) => `c${c}`).join(", ")}`
    ),
  };

  // Safety by Redis's keys.
  const read = history.samples.filter((s) => s.tokens !== undefined);
  const maxRedis = Math.max(0, ...read.map((s) => s.tokens!.length));
  const safetyRedis: Verdict = {
    property: "safety (Redis)",
    ok: maxRedis <= history.locks,
    summary: `at most ${maxRedis} unexpired leases in Redis in ${read.length} reads`,
    examples: read.filter((s) => s.tokens!.length > history.locks).slice(0, MAX_EXAMPLES)
      .map((s) => `${s.tokens!.length} leases at ${at(s.at)}`),
  };

  // No grant for a request sent after a loss, until --maxDuration after it.
  const early = history.attempts.filter((a) =>
    a.status === 200 && losses.some((f) => {
      const certain = f.lossCertainAt ?? f.endedAt;
      return a.sentAt >= certain && a.answeredAt < f.startedAt + history.maxDurationMs;
    })
  );
  const recoveryVerdict: Verdict = {
    property: "recovery",
    ok: early.length === 0,
    summary: `${history.faults.filter((f) => f.lostData).length} losses of Redis data ` +
      `(${losses.length} that could forget a lease); ${early.length} grants inside their ` +
      `${history.maxDurationMs} ms recovery windows to requests sent after the loss`,
    examples: early.slice(0, MAX_EXAMPLES).map((a) =>
      `c${a.client} granted at ${at(a.answeredAt)} through replica ${a.replica}`
    ),
  };

  // Liveness: a free slot, an able waiter, no grant.
  const gaps = freeSlotGaps(history, losses);
  const unexcused = gaps.filter((g) => !g.excused);
  const tooLong = unexcused.filter((g) => g.to - g.from > LIVENESS_BOUND_MS);
  const longest = (list: Gap[]) => Math.max(0, ...list.map((g) => g.to - g.from));
  const liveness: Verdict = {
    property: "liveness",
    ok: tooLong.length === 0,
    summary: `longest stretch with a slot free while an able client waited: ` +
      `${Math.round(longest(unexcused))} ms (bound ${LIVENESS_BOUND_MS} ms); ` +
      `${Math.round(longest(gaps))} ms counting those a paused replica excuses`,
    examples: tooLong.sort((a, b) => (b.to - b.from) - (a.to - a.from)).slice(0, MAX_EXAMPLES)
      .map((g) =>
        `${Math.round(g.to - g.from)} ms from ${at(g.from)}` +
        (g.during.length ? ` during ${g.during.join(", ")}` : " with no fault")
      ),
  };

  // Every client served once the faults stopped.
  const servedAfter = new Set(
    history.holds.filter((h) => h.sentAt >= history.healedAt).map((h) => h.client),
  );
  const unserved = Array.from({ length: history.clients }, (_, i) => i)
    .filter((i) => !servedAfter.has(i));
  const served: Verdict = {
    property: "served",
    ok: unserved.length === 0,
    summary: `${history.clients - unserved.length} of ${history.clients} clients granted ` +
      `within ${
        ((history.endedAt - history.healedAt) / 1000).toFixed(1)
      } s after the faults stopped`,
    examples: unserved.slice(0, MAX_EXAMPLES).map((i) => {
      const last = history.attempts.findLast((a) => a.client === i);
      return `c${i} unserved; its last answer: ${
        last ? `${last.status} ${last.reason ?? ""} at ${at(last.answeredAt)}` : "none"
      }`;
    }),
  };

  // No crash.
  const crashed = history.replicaEnds.filter((e) =>
    e.exitedEarly || e.code !== 0 || e.errorLines.length > 0
  );
  const noCrash: Verdict = {
    property: "no crash",
    ok: crashed.length === 0 && !history.redisDiedUnasked,
    summary: `${history.replicaEnds.length} replicas, exit codes ` +
      `${history.replicaEnds.map((e) => e.code).join(", ")}; ` +
      `Redis ${history.redisDiedUnasked ? "died unasked" : "ran until the end"}`,
    examples: crashed.slice(0, MAX_EXAMPLES).map((e) =>
      `replica ${e.replica}: ${e.exitedEarly ? "exited early, " : ""}code ${e.code}` +
      (e.errorLines.length ? `, stderr: ${e.errorLines.slice(0, 3).join(" | ")}` : "")
    ),
  };

  // Figures.
  const waits = history.holds.map((h) => h.grantedAt - h.wantedSince);
  const answers: Record<string, number> = {};
  for (const a of history.attempts) {
    const key = a.status === 200 ? "200" : `${a.status} ${a.reason ?? ""}`.trim();
    answers[key] = (answers[key] ?? 0) + 1;
  }
  const faults: Partial<Record<FaultKind, number>> = {};
  for (const f of history.faults) faults[f.kind] = (faults[f.kind] ?? 0) + 1;
  const byKind: Partial<Record<FaultKind | "none", number>> = {};
  for (const g of gaps) {
    for (const kind of g.during.length ? g.during : ["none" as const]) {
      byKind[kind] = Math.max(byKind[kind] ?? 0, Math.round(g.to - g.from));
    }
  }
  const figures: Figures = {
    grants: history.holds.length,
    maxHoldersClients: overlaps.max,
    maxHoldersOutsideRecovery: overlaps.outside,
    maxHoldersRedis: maxRedis,
    samples: read.length,
    samplesDropped: history.samples.length - read.length,
    longestGapMs: Math.round(longest(gaps)),
    longestUnexcusedGapMs: Math.round(longest(unexcused)),
    longestGapByKind: byKind,
    waitP50Ms: Math.round(percentile(waits, 50)),
    waitP99Ms: Math.round(percentile(waits, 99)),
    waitMaxMs: Math.round(Math.max(0, ...waits)),
    faults,
    answers,
    releases404: history.holds.filter((h) => h.releaseStatus === 404).length,
    recoveryGrants: early.length,
    unserved: unserved.length,
  };
  return {
    verdicts: [safetyClients, safetyRedis, recoveryVerdict, liveness, served, noCrash],
    figures,
    gaps,
  };
}

/** The spans in which a client held its lock by its own records: see the module documentation. */
export function holdSpan(hold: Hold, endedAt: number): [number, number] {
  const ranOut = hold.sentAt + hold.durationMs;
  const end = Math.min(hold.releaseSentAt ?? Infinity, ranOut, endedAt);
  return [hold.grantedAt, Math.max(hold.grantedAt, end)];
}

/**
 * The losses of Redis data that may have made Redis forget a lease. A loss
 * inside the window of an earlier one, with nothing granted since that one
 * (no `200` arrived, no lease in Redis), forgot nothing new: the leases the
 * earlier loss forgot run out by the end of its window all the same.
 */
export function countedLosses(history: History): Fault[] {
  const counted: Fault[] = [];
  const grants = history.attempts.filter((a) => a.status === 200).map((a) => a.answeredAt);
  for (const loss of history.faults.filter((f) => f.lostData)) {
    const previous = counted.at(-1);
    if (previous && loss.startedAt < previous.startedAt + history.maxDurationMs) {
      const since = previous.lossCertainAt ?? previous.endedAt;
      const between = (t: number) => since < t && t <= loss.startedAt;
      const granted = grants.some(between) ||
        history.samples.some((s) =>
          between(s.at) && (s.tokens === undefined || s.tokens.length > 0)
        );
      if (!granted) continue;
    }
    counted.push(loss);
  }
  return counted;
}

/** The recovery windows: from each counted loss of Redis data to `--maxDuration` after it. */
export function recoveryWindows(history: History, losses: readonly Fault[]): [number, number][] {
  return losses.map((f) => [
    f.startedAt,
    f.startedAt + history.maxDurationMs,
  ]);
}

interface Overlaps {
  max: number;
  outside: number;
  violations: { at: number; count: number; clients: number[] }[];
}

/** The most holds that overlap, anywhere and at instants outside the recovery windows. */
function maxOverlaps(
  holds: readonly Hold[],
  endedAt: number,
  locks: number,
  excluded: (t: number) => boolean,
): Overlaps {
  // Ends sort before starts at the same instant: a release sent, then a grant answered at once.
  // A span of no length (its lease ran out by the client's count before the 200 arrived) holds
  // nothing.
  const edges = holds.flatMap((hold, i): [number, number, number][] => {
    const [from, to] = holdSpan(hold, endedAt);
    return to > from ? [[from, 1, i], [to, -1, i]] : [];
  }).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let max = 0;
  let outside = 0;
  const open = new Set<number>();
  const violations: Overlaps["violations"] = [];
  for (const [t, delta, i] of edges) {
    if (delta > 0) open.add(i);
    else open.delete(i);
    max = Math.max(max, open.size);
    if (delta > 0 && !excluded(t)) {
      outside = Math.max(outside, open.size);
      if (open.size > locks) {
        violations.push({
          at: t,
          count: open.size,
          clients: [...open].map((j) => holds[j]!.client),
        });
      }
    }
  }
  return { max, outside, violations };
}

/**
 * The stretches in which every observer read showed a free slot, an able
 * client waited at each read, and nothing was granted (no new lease in Redis,
 * no `200` arrived at a client).
 */
export function freeSlotGaps(history: History, losses: readonly Fault[]): Gap[] {
  const lost = new Set(losses);
  const able = ableWindows(history, lost);
  const grantTimes = history.attempts.filter((a) => a.status === 200).map((a) => a.answeredAt)
    .sort((a, b) => a - b);
  const gaps: Gap[] = [];
  let start: Sample | undefined;
  let last: Sample | undefined;
  let previous: ReadonlySet<string> = new Set();
  const close = () => {
    if (start && last && last.at > start.at) {
      gaps.push(describeGap(history, lost, start.at, last.at));
    }
    start = last = undefined;
  };
  for (const sample of history.samples) {
    if (sample.tokens === undefined) {
      close();
      previous = new Set();
      continue;
    }
    const tokens = new Set(sample.tokens);
    const newLease = [...tokens].some((t) => !previous.has(t));
    previous = tokens;
    const free = tokens.size < history.locks;
    const waiting = free && able(sample.at);
    if (!waiting) {
      close();
      continue;
    }
    // A grant since the stretch began restarts it from this read.
    const granted = start !== undefined &&
      (newLease || hasBetween(grantTimes, (last ?? start).at, sample.at));
    if (granted) close();
    start ??= sample;
    last = sample;
  }
  close();
  return gaps;
}

function describeGap(
  history: History,
  lost: ReadonlySet<Fault>,
  from: number,
  to: number,
): Gap {
  const during = new Set<FaultKind>();
  let excused = false;
  for (const f of history.faults) {
    const [wFrom, wTo] = faultWindow(f, history, lost.has(f));
    if (wFrom < to && from < wTo) {
      during.add(f.kind);
      if (f.kind === "pause-replica") excused = true;
    }
  }
  return { from, to, during: [...during], excused };
}

/** How long after a fault it still shapes what replicas do. */
function faultWindow(fault: Fault, history: History, lostData: boolean): [number, number] {
  const [from, to] = ((): [number, number] => {
    switch (fault.kind) {
      case "kill-redis":
        return [fault.startedAt, fault.endedAt + RECONNECT_MARGIN_MS];
      case "pause-replica":
        // Its tickets keep their place while it is frozen; once it runs again, a beat to catch up.
        return [fault.startedAt, fault.endedAt + Math.min(TICKET_TTL_MS, 1_000)];
      case "close-gate":
        return [fault.startedAt, fault.endedAt + history.gateLagMs];
      case "kill-pubsub":
        return [fault.startedAt, fault.endedAt + 1_000];
      case "flushall":
        return [fault.startedAt, fault.endedAt];
    }
  })();
  // After a loss, the replicas' recovery gates stay closed for --maxDuration, then a beat.
  return lostData ? [from, Math.max(to, from + history.maxDurationMs + 1_000)] : [from, to];
}

/**
 * Whether, at a moment, some client's acquire was out to a replica that could
 * grant it: not paused, its gate open, Redis reachable, no recovery window.
 * Asked for moments in increasing order.
 */
function ableWindows(history: History, lost: ReadonlySet<Fault>): (t: number) => boolean {
  const windows = history.faults.map((f) => ({
    fault: f,
    lost: lost.has(f),
    window: faultWindow(f, history, lost.has(f)),
  }));
  const blocked = (t: number, replica: number) =>
    windows.some(({ fault: f, lost, window: [from, to] }) => {
      if (t < from || t >= to) return false;
      if (lost) return true;
      switch (f.kind) {
        case "kill-redis":
          return true;
        case "pause-replica":
          return f.replica === replica && t < f.endedAt;
        case "close-gate":
          return f.replica === replica;
        case "kill-pubsub":
        case "flushall":
          return false;
      }
    });
  const attempts = [...history.attempts].sort((a, b) => a.sentAt - b.sentAt);
  let next = 0;
  const out = new Set<Attempt>();
  return (t) => {
    while (next < attempts.length && attempts[next]!.sentAt <= t) out.add(attempts[next++]!);
    let able = false;
    for (const a of out) {
      if (a.answeredAt <= t) out.delete(a);
      else if (!able && !blocked(t, a.replica)) able = true;
    }
    return able;
  };
}

function hasBetween(sorted: readonly number[], from: number, to: number): boolean {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! <= from) lo = mid + 1;
    else hi = mid;
  }
  return lo < sorted.length && sorted[lo]! <= to;
}

/** The nearest-rank percentile; `0` for no values. */
function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length))) - 1]!;
}

/** The verdicts and figures as lines of text, for a test's output and the bench. */
export function judgementLines(judgement: Judgement): string[] {
  const { figures: f } = judgement;
  const kinds = (record: Partial<Record<string, number>>, unit = "") =>
    Object.entries(record).map(([k, v]) => `${k} ${v}${unit}`).join(", ") || "none";
  return [
    ...judgement.verdicts.map((v) =>
      `${v.ok ? "PASS" : "FAIL"} ${v.property}: ${v.summary}` +
      v.examples.map((e) => `\n       ${e}`).join("")
    ),
    `grants ${f.grants}; most holders: ${f.maxHoldersClients} by the clients' records ` +
    `(${f.maxHoldersOutsideRecovery} outside recovery windows), ${f.maxHoldersRedis} in Redis ` +
    `(${f.samples} reads, ${f.samplesDropped} failed or too slow)`,
    `longest free slot while an able client waited: ${f.longestGapMs} ms ` +
    `(${f.longestUnexcusedGapMs} ms not excused); by fault: ${kinds(f.longestGapByKind, " ms")}`,
    `wait from first request to 200: p50 ${f.waitP50Ms} ms, p99 ${f.waitP99Ms} ms, ` +
    `longest ${f.waitMaxMs} ms`,
    `faults injected: ${kinds(f.faults)}`,
    `acquire answers: ${kinds(f.answers)}`,
    `releases answered 404: ${f.releases404}; grants inside recovery windows: ` +
    `${f.recoveryGrants}; clients unserved at the end: ${f.unserved}`,
  ];
}
