/**
 * Metrics in the Prometheus text exposition format (version 0.0.4): a
 * subscriber that counts the core's events, plus gauges read when scraped
 * (slots, waiting clients, gates, the store, the process). Written by hand:
 * a few dozen lines, no dependency, and no registry on the hot path, where an
 * event costs one increment.
 *
 * @module
 */
import type { DenialReason } from "../core/denial.ts";
import type { EdgeRefusal, EventBus, LockEvent, LockEventType } from "../core/events.ts";
import type { GateView } from "../core/gates.ts";
import type { StatusData } from "../core/service.ts";

/** The `Content-Type` of the exposition format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * Bucket bounds of both histograms, in seconds: from a grant at once to an
 * hour, the longest default `--maxDuration`.
 */
export const DURATION_BUCKETS_SECONDS: readonly number[] = [
  0.1,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  120,
  300,
  600,
  1800,
  3600,
];

/**
 * Every denial reason of the core, so that each has a series (at 0) from the
 * start: `rate()` and alerts then see the first denial of a kind.
 */
export const DENIAL_REASONS = [
  "starting",
  "dependencies",
  "recovering",
  "cooldown",
  "load",
  "pressure",
  "busy",
  "queued",
  "queue_full",
  "shutting_down",
  "store",
  "superseded",
  "cancelled",
] as const satisfies readonly DenialReason[];

/** The reasons the HTTP layer refuses for, before the core sees a request. */
const EDGE_REASONS: readonly EdgeRefusal[] = ["unauthorized", "invalid"];

// A reason added to Denial but not to DENIAL_REASONS fails to compile here.
const _everyReason: Exclude<DenialReason, typeof DENIAL_REASONS[number]> extends never ? true
  : never = true;

/** The events the metrics count; the others are not built for them. */
export const METRIC_EVENTS = [
  "granted",
  "released",
  "expired",
  "renewed",
  "denied",
  "handed_back",
  "dependency",
  "gate",
  "store",
  "edge_refused",
] as const satisfies readonly LockEventType[];

/** The process's own figures; a field left out is a metric left out. */
export interface ProcessFigures {
  /** Unix time the process started, in seconds. */
  startTimeSeconds?: number;
  residentMemoryBytes?: number;
  openFds?: number;
}

/** Options of {@linkcode Metrics}. */
export interface MetricsOptions {
  /** The service's state when scraped: slots, holders, waiters, gates, the store. */
  status: () => Promise<StatusData>;
  /** The process's figures when scraped. @default {processFigures} */
  process?: () => ProcessFigures;
  /** Log lines dropped so far because stderr could not keep up. @default {() => 0} */
  logLinesDropped?: () => number;
  /**
   * The CPU cores `--locksPerCore` counted its slots from; `startup_lock_cores`
   * is left out without it. @default {undefined}
   */
  cores?: number;
}

/** Wall-clock start of this process, in seconds, taken once. */
const PROCESS_START_SECONDS = (Date.now() - performance.now()) / 1000;

/**
 * This process's start time, resident memory and open file descriptors.
 * Descriptors are counted in `/proc/self/fd` (Linux); where that cannot be
 * read, `openFds` is left out rather than reported as 0.
 */
export function processFigures(): ProcessFigures {
  const figures: ProcessFigures = {
    startTimeSeconds: PROCESS_START_SECONDS,
    residentMemoryBytes: Deno.memoryUsage().rss,
  };
  try {
    let count = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) count++;
    figures.openFds = count;
  } catch {
    // No /proc here (macOS, Windows) or no permission to read it.
  }
  return figures;
}

/** A cumulative histogram of durations, kept in milliseconds, rendered in seconds. */
class Histogram {
  readonly #boundsMs = DURATION_BUCKETS_SECONDS.map((s) => s * 1000);
  readonly #counts = new Array<number>(DURATION_BUCKETS_SECONDS.length).fill(0);
  #count = 0;
  #sumMs = 0;

  observe(ms: number): void {
    this.#count++;
    this.#sumMs += ms;
    const i = this.#boundsMs.findIndex((bound) => ms <= bound);
    if (i >= 0) this.#counts[i]!++;
  }

  render(name: string, out: string[]): void {
    let cumulative = 0;
    DURATION_BUCKETS_SECONDS.forEach((bound, i) => {
      cumulative += this.#counts[i]!;
      out.push(`${name}_bucket{le="${formatNumber(bound)}"} ${cumulative}`);
    });
    out.push(`${name}_bucket{le="+Inf"} ${this.#count}`);
    out.push(`${name}_sum ${formatNumber(this.#sumMs / 1000)}`);
    out.push(`${name}_count ${this.#count}`);
  }
}

/** The last finished probe of one dependency. */
interface ProbeResult {
  up: boolean;
  durationMs: number;
}

/**
 * Counts the events of a bus and renders every metric on demand; see the
 * module documentation and docs/operations.md, "Metrics", for the list.
 */
export class Metrics {
  readonly #options: Required<Omit<MetricsOptions, "cores">> & Pick<MetricsOptions, "cores">;
  readonly #unsubscribe: () => void;
  #grants = 0;
  readonly #denials = new Map<string, number>(
    [...DENIAL_REASONS, ...EDGE_REASONS].map((r) => [r, 0]),
  );
  #released = 0;
  #expired = 0;
  #renewals = 0;
  #handBacks = 0;
  #storeFailures = 0;
  readonly #gateClosures = new Map<string, number>();
  readonly #checks = new Map<string, { up: number; down: number }>();
  /** Each endpoint's last probe, in the order first seen. */
  readonly #probes = new Map<string, ProbeResult>();
  readonly #waited = new Histogram();
  readonly #held = new Histogram();

  constructor(events: EventBus, options: MetricsOptions) {
    this.#options = { process: processFigures, logLinesDropped: () => 0, ...options };
    this.#unsubscribe = events.on((event) => this.#count(event), METRIC_EVENTS);
  }

  /** Stops counting. */
  close(): void {
    this.#unsubscribe();
  }

  #count(event: LockEvent): void {
    switch (event.type) {
      case "granted":
        this.#grants++;
        this.#waited.observe(event.waitedMs);
        return;
      case "released":
        this.#released++;
        this.#held.observe(event.heldMs);
        return;
      case "expired":
        this.#expired++;
        this.#held.observe(event.heldMs);
        return;
      case "renewed":
        this.#renewals++;
        return;
      case "denied":
        this.#denials.set(event.reason, (this.#denials.get(event.reason) ?? 0) + 1);
        return;
      case "handed_back":
        this.#handBacks++;
        return;
      case "dependency": {
        this.#probes.set(event.endpoint, { up: event.up, durationMs: event.durationMs });
        const checks = this.#checks.get(event.endpoint) ?? { up: 0, down: 0 };
        if (event.up) checks.up++;
        else checks.down++;
        this.#checks.set(event.endpoint, checks);
        return;
      }
      case "gate":
        if (!event.open) {
          this.#gateClosures.set(event.gate, (this.#gateClosures.get(event.gate) ?? 0) + 1);
        }
        return;
      case "store":
        if (!event.up) this.#storeFailures++;
        return;
      case "edge_refused":
        this.#denials.set(event.reason, (this.#denials.get(event.reason) ?? 0) + 1);
        return;
      default:
        return;
    }
  }

  /** Every metric, in the text exposition format, ending with a newline. */
  async render(): Promise<string> {
    const status = await this.#options.status();
    const out: string[] = [];
    const metric = (name: string, type: string, help: string) => {
      out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    };

    metric(
      "startup_lock_slots",
      "gauge",
      "Slots, the most locks held at once (--locks, or --locksPerCore times the cores).",
    );
    out.push(`startup_lock_slots ${status.capacity}`);
    if (this.#options.cores !== undefined) {
      metric(
        "startup_lock_cores",
        "gauge",
        "CPU cores this process may use, counted at start; the slots are --locksPerCore times this.",
      );
      out.push(`startup_lock_cores ${this.#options.cores}`);
    }
    metric(
      "startup_lock_slots_held",
      "gauge",
      "Slots held now; absent while the lock store cannot answer.",
    );
    if (status.leases) out.push(`startup_lock_slots_held ${status.leases.length}`);
    metric("startup_lock_waiting_clients", "gauge", "Clients waiting in the queue now.");
    out.push(`startup_lock_waiting_clients ${status.waiting.length}`);

    metric("startup_lock_grants_total", "counter", "Locks granted.");
    out.push(`startup_lock_grants_total ${this.#grants}`);
    metric("startup_lock_denials_total", "counter", "Requests refused, by reason.");
    for (const [reason, n] of this.#denials) {
      out.push(`startup_lock_denials_total{reason="${escapeLabel(reason)}"} ${n}`);
    }
    metric(
      "startup_lock_releases_total",
      "counter",
      "Locks that ended, by how: released by their holder, or expired.",
    );
    out.push(`startup_lock_releases_total{how="released"} ${this.#released}`);
    out.push(`startup_lock_releases_total{how="expired"} ${this.#expired}`);
    metric("startup_lock_renewals_total", "counter", "Locks renewed.");
    out.push(`startup_lock_renewals_total ${this.#renewals}`);
    metric(
      "startup_lock_hand_backs_total",
      "counter",
      "Grants given back because their client went away before it was answered.",
    );
    out.push(`startup_lock_hand_backs_total ${this.#handBacks}`);

    metric(
      "startup_lock_wait_seconds",
      "histogram",
      "How long clients waited in the queue before a grant; 0 for a grant at once.",
    );
    this.#waited.render("startup_lock_wait_seconds", out);
    metric(
      "startup_lock_hold_seconds",
      "histogram",
      "How long locks were held, until released or expired.",
    );
    this.#held.render("startup_lock_hold_seconds", out);

    metric(
      "startup_lock_dependency_up",
      "gauge",
      "Whether the dependency passed its last check (1) or failed it (0).",
    );
    for (const [endpoint, probe] of this.#probes) {
      out.push(`startup_lock_dependency_up{endpoint="${escapeLabel(endpoint)}"} ${+probe.up}`);
    }
    metric(
      "startup_lock_dependency_check_duration_seconds",
      "gauge",
      "How long the dependency's last check took.",
    );
    for (const [endpoint, probe] of this.#probes) {
      out.push(
        `startup_lock_dependency_check_duration_seconds{endpoint="${escapeLabel(endpoint)}"} ` +
          formatNumber(probe.durationMs / 1000),
      );
    }
    metric("startup_lock_dependency_checks_total", "counter", "Dependency checks, by result.");
    for (const [endpoint, checks] of this.#checks) {
      const label = escapeLabel(endpoint);
      out.push(
        `startup_lock_dependency_checks_total{endpoint="${label}",result="up"} ${checks.up}`,
      );
      out.push(
        `startup_lock_dependency_checks_total{endpoint="${label}",result="down"} ${checks.down}`,
      );
    }

    metric(
      "startup_lock_gate_open",
      "gauge",
      "Whether the gate lets grants through (1) or not (0).",
    );
    for (const gate of status.gates) {
      out.push(`startup_lock_gate_open{gate="${escapeLabel(gate.name)}"} ${+gate.open}`);
    }
    metric("startup_lock_gate_closures_total", "counter", "Times the gate closed.");
    for (const name of gateNames(status.gates, this.#gateClosures)) {
      const n = this.#gateClosures.get(name) ?? 0;
      out.push(`startup_lock_gate_closures_total{gate="${escapeLabel(name)}"} ${n}`);
    }

    metric(
      "startup_lock_log_lines_dropped_total",
      "counter",
      "Log lines dropped because stderr could not keep up.",
    );
    out.push(`startup_lock_log_lines_dropped_total ${this.#options.logLinesDropped()}`);

    metric("startup_lock_store_up", "gauge", "Whether the lock store answers (1) or not (0).");
    out.push(`startup_lock_store_up ${+status.store.up}`);
    metric(
      "startup_lock_store_failures_total",
      "counter",
      "Times the lock store stopped answering.",
    );
    out.push(`startup_lock_store_failures_total ${this.#storeFailures}`);

    const figures = this.#options.process();
    if (figures.startTimeSeconds !== undefined) {
      metric(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch.",
      );
      out.push(`process_start_time_seconds ${formatNumber(figures.startTimeSeconds)}`);
    }
    if (figures.residentMemoryBytes !== undefined) {
      metric("process_resident_memory_bytes", "gauge", "Resident memory size.");
      out.push(`process_resident_memory_bytes ${figures.residentMemoryBytes}`);
    }
    if (figures.openFds !== undefined) {
      metric("process_open_fds", "gauge", "Open file descriptors.");
      out.push(`process_open_fds ${figures.openFds}`);
    }
    return out.join("\n") + "\n";
  }
}

/** Gates listed now, then any that closed once and is gone from the list. */
function gateNames(gates: readonly GateView[], closures: ReadonlyMap<string, number>): string[] {
  const names = gates.map((g) => g.name);
  for (const name of closures.keys()) if (!names.includes(name)) names.push(name);
  return names;
}

/** A sample value: Prometheus spells infinities `+Inf` and `-Inf`. */
export function formatNumber(n: number): string {
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

/** A label value, escaped as the exposition format asks: `\\`, `\"` and `\n`. */
export function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

/** A `# HELP` text, escaped as the exposition format asks: `\\` and `\n`. */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => c === "\n" ? "\\n" : "\\\\");
}
