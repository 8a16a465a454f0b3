/**
 * The dependency gate: probes every `--check` endpoint in rounds scheduled
 * with `setTimeout`, and is open only while every endpoint passed its last
 * round.
 *
 * A round probes all endpoints at once, each bounded by a timeout, so an
 * endpoint that accepts and never answers counts as down and never stalls
 * anything. The next round starts `passIntervalMs` after a passing round and
 * `failIntervalMs` after a failing one. The gate opens and closes only at the
 * end of a round, when listeners are told.
 *
 * @module
 */
import { type Clock, realClock, type TimerId } from "../clock.ts";
import type { FailingDependency } from "../core/denial.ts";
import type { EventBus } from "../core/events.ts";
import { type Gate, type GateState, OPEN } from "../core/gates.ts";
import { formatDuration } from "../duration.ts";
import { describeError } from "../errors.ts";
import type { CheckTarget } from "../check_target.ts";

/**
 * `probe` of `probes.ts`, whose module (and its socket-level HTTP client) is
 * loaded at the first probe: a server without `--check` never loads it.
 */
async function realProbe(target: CheckTarget, signal: AbortSignal): Promise<void> {
  const { probe } = await import("../probes.ts");
  await probe(target, signal);
}

/** What is known of one endpoint. */
export interface DependencyState {
  url: string;
  /** `undefined` until its first probe finishes. */
  up: boolean | undefined;
  /** Wall-clock milliseconds of the last finished probe. */
  lastCheckedAt: number | undefined;
  lastError: string | undefined;
  latencyMs: number | undefined;
}

/** Options of {@linkcode DependencyChecker}. */
export interface DependencyCheckerOptions {
  targets: readonly CheckTarget[];
  /** Pause after a passing round. */
  passIntervalMs: number;
  /** Pause after a failing round. */
  failIntervalMs: number;
  /** Bound on each probe. */
  timeoutMs: number;
  /** @default {realClock} */
  clock?: Clock;
  /** Probes one endpoint; rejects when it is down. @default {probe} from `probes.ts`, loaded at the first probe */
  probe?: (target: CheckTarget, signal: AbortSignal) => Promise<void>;
  /** Where each probe's result is reported, as a `dependency` event. */
  events?: EventBus;
}

/** Checks dependency endpoints continuously; see the module documentation. */
export class DependencyChecker implements Gate {
  readonly name = "dependencies";
  readonly #targets: readonly CheckTarget[];
  readonly #states: DependencyState[];
  readonly #options: Required<Omit<DependencyCheckerOptions, "targets" | "events">>;
  readonly #events: EventBus | undefined;
  readonly #stopped = new AbortController();
  readonly #listeners = new Set<() => void>();
  #timer: TimerId | undefined;
  #roundsDone = 0;
  #nextRoundAt = 0;
  #round: Promise<void> | undefined;
  /** The endpoints that failed the last finished round; the gate reads this, not the live states. */
  #failing: FailingDependency[] = [];

  constructor(options: DependencyCheckerOptions) {
    this.#targets = options.targets;
    this.#options = {
      passIntervalMs: options.passIntervalMs,
      failIntervalMs: options.failIntervalMs,
      timeoutMs: options.timeoutMs,
      clock: options.clock ?? realClock,
      probe: options.probe ?? realProbe,
    };
    this.#events = options.events;
    this.#states = options.targets.map((t) => ({
      url: t.url,
      up: undefined,
      lastCheckedAt: undefined,
      lastError: undefined,
      latencyMs: undefined,
    }));
  }

  /** Starts the first round now; later rounds schedule themselves. */
  start(): void {
    if (this.#targets.length > 0 && !this.#round && this.#timer === undefined) this.#runRound();
  }

  /** Cancels the next round and aborts probes in flight. */
  stop(): void {
    this.#stopped.abort();
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves when the round in flight (if any) has finished. */
  async settled(): Promise<void> {
    await this.#round;
  }

  /** How many rounds have finished. */
  get rounds(): number {
    return this.#roundsDone;
  }

  /** A copy of every endpoint's state, in `--check` order. */
  get dependencies(): DependencyState[] {
    return this.#states.map((s) => ({ ...s }));
  }

  state(): GateState {
    if (this.#targets.length === 0) return OPEN;
    const { clock, timeoutMs } = this.#options;
    if (this.#roundsDone === 0) {
      return { open: false, denial: { reason: "starting", retryAfterMs: timeoutMs } };
    }
    if (this.#failing.length === 0) return OPEN;
    // The answer can change once the next round has run and its probes finished.
    const retryAfterMs = Math.max(0, this.#nextRoundAt - clock.now()) + timeoutMs;
    return {
      open: false,
      denial: { reason: "dependencies", failing: this.#failing, retryAfterMs },
    };
  }

  #runRound(): void {
    this.#timer = undefined;
    const round = this.#probeAll().then(() => {
      if (this.#round === round) this.#round = undefined;
    });
    this.#round = round;
  }

  async #probeAll(): Promise<void> {
    const { clock } = this.#options;
    await Promise.all(this.#targets.map((target, i) => this.#probeOne(target, this.#states[i]!)));
    if (this.#stopped.signal.aborted) return;
    this.#roundsDone++;
    this.#failing = this.#states.filter((s) => !s.up).map((s) => ({
      url: s.url,
      error: s.lastError,
    }));
    const pause = this.#failing.length === 0
      ? this.#options.passIntervalMs
      : this.#options.failIntervalMs;
    this.#nextRoundAt = clock.now() + pause;
    this.#timer = clock.setTimeout(() => this.#runRound(), pause);
    for (const listener of this.#listeners) listener();
  }

  async #probeOne(target: CheckTarget, state: DependencyState): Promise<void> {
    const { clock, timeoutMs } = this.#options;
    const started = clock.now();
    const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), this.#stopped.signal]);
    let error: string | undefined;
    try {
      await this.#options.probe(target, signal);
    } catch (e) {
      error = signal.reason?.name === "TimeoutError" && signal.aborted
        ? `no answer within ${formatDuration(timeoutMs)}`
        : describeError(e);
    }
    if (this.#stopped.signal.aborted) return;
    const was = state.up;
    const previousError = state.lastError;
    state.up = error === undefined;
    state.lastError = error;
    state.lastCheckedAt = clock.wallNow();
    state.latencyMs = Math.round((clock.now() - started) * 10) / 10;
    this.#events?.emit({
      type: "dependency",
      endpoint: target.url,
      up: state.up,
      was,
      error,
      previousError,
      durationMs: state.latencyMs,
    });
  }
}
