/**
 * The dependency checker: probes every `--check` endpoint in rounds scheduled
 * with `setTimeout`, and tells whether locking is allowed.
 *
 * A round probes all endpoints at once, each bounded by a timeout, so an
 * endpoint that accepts and never answers counts as down and never stalls
 * anything. The next round starts `passIntervalMs` after a passing round and
 * `failIntervalMs` after a failing one.
 *
 * @module
 */
import { type Clock, realClock, type TimerId } from "./clock.ts";
import { describeError } from "./errors.ts";
import { formatDuration } from "./duration.ts";
import { type Logger, silentLogger } from "./log.ts";
import { type CheckTarget, probe as realProbe } from "./probes.ts";

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

/** Whether locking is allowed, and if not why. */
export type Gate =
  | { open: true }
  | { open: false; reason: "starting"; retryInMs: number }
  | { open: false; reason: "dependencies"; failing: DependencyState[]; retryInMs: number };

/** The open gate; one object, since `gate` is read on every request. */
const OPEN: Gate = Object.freeze({ open: true });

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
  /** Probes one endpoint; rejects when it is down. @default {probe} from `probes.ts` */
  probe?: (target: CheckTarget, signal: AbortSignal) => Promise<void>;
  /** @default {silentLogger} */
  log?: Logger;
}

/** Checks dependency endpoints continuously; see the module documentation. */
export class DependencyChecker {
  readonly #targets: readonly CheckTarget[];
  readonly #states: DependencyState[];
  readonly #options: Required<Omit<DependencyCheckerOptions, "targets">>;
  readonly #stopped = new AbortController();
  readonly #listeners = new Set<() => void>();
  #timer: TimerId | undefined;
  #roundsDone = 0;
  #nextRoundAt = 0;
  #round: Promise<void> | undefined;
  /**
   * The endpoints that failed the last finished round. The gate reads this, not
   * the live states, so it opens and closes only at the end of a round, when
   * listeners are told.
   */
  #failing: DependencyState[] = [];

  constructor(options: DependencyCheckerOptions) {
    this.#targets = options.targets;
    this.#options = {
      passIntervalMs: options.passIntervalMs,
      failIntervalMs: options.failIntervalMs,
      timeoutMs: options.timeoutMs,
      clock: options.clock ?? realClock,
      probe: options.probe ?? realProbe,
      log: options.log ?? silentLogger,
    };
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

  /** Calls `listener` whenever the gate may have opened or closed. */
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

  /** Whether locking is allowed now. */
  get gate(): Gate {
    if (this.#targets.length === 0) return OPEN;
    const now = this.#options.clock.now();
    if (this.#roundsDone === 0) {
      return { open: false, reason: "starting", retryInMs: this.#options.timeoutMs };
    }
    if (this.#failing.length === 0) return OPEN;
    // The next answer can change once the next round has run and its probes finished.
    const retryInMs = Math.max(0, this.#nextRoundAt - now) + this.#options.timeoutMs;
    return { open: false, reason: "dependencies", failing: this.#failing, retryInMs };
  }

  #runRound(): void {
    this.#timer = undefined;
    const round = this.#probeAll().then(() => {
      if (this.#round === round) this.#round = undefined;
    });
    this.#round = round;
  }

  async #probeAll(): Promise<void> {
    const { clock, log } = this.#options;
    const wasOpen = this.gate.open;
    await Promise.all(this.#targets.map((target, i) => this.#probeOne(target, this.#states[i]!)));
    if (this.#stopped.signal.aborted) return;
    this.#roundsDone++;
    this.#failing = this.#states.filter((s) => !s.up).map((s) => ({ ...s }));
    const passed = this.#failing.length === 0;
    const pause = passed ? this.#options.passIntervalMs : this.#options.failIntervalMs;
    this.#nextRoundAt = clock.now() + pause;
    this.#timer = clock.setTimeout(() => this.#runRound(), pause);
    const isOpen = this.gate.open;
    if (this.#roundsDone === 1 || wasOpen !== isOpen) {
      if (isOpen) log.info("All dependencies are up: locking is allowed");
      else log.warn("A dependency is down: locking is paused until every check passes");
      for (const listener of this.#listeners) listener();
    }
  }

  async #probeOne(target: CheckTarget, state: DependencyState): Promise<void> {
    const { clock, log, timeoutMs } = this.#options;
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
    const up = error === undefined;
    if (state.up !== up) {
      if (up) log.info(`Dependency ${target.url} is up`);
      else log.warn(`Dependency ${target.url} is down: ${error}`);
    } else if (!up && state.lastError !== error) {
      log.debug(`Dependency ${target.url} is still down: ${error}`);
    }
    state.up = up;
    state.lastError = error;
    state.lastCheckedAt = clock.wallNow();
    state.latencyMs = Math.round((clock.now() - started) * 10) / 10;
  }
}
