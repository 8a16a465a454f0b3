/**
 * The lock service: decides whether a request gets a slot, from the dependency
 * gate and the lock store. The HTTP handler only translates.
 *
 * @module
 */
import type { Gate } from "./checker.ts";
import { formatDuration } from "./duration.ts";
import type { AcquireRequest, AcquireResult, Awaitable, Lease, LockStore } from "./lock.ts";
import { type Logger, silentLogger } from "./log.ts";

/** Why a request was denied. */
export type DenialReason = "starting" | "dependencies" | "busy";

/** A refused request: why, in words, and when to try again. */
export interface Denial {
  reason: DenialReason;
  /** One sentence for people, without the leading "Locked". */
  message: string;
  retryAfterMs: number;
}

/** The answer to {@linkcode LockService.acquire}. */
export type Outcome =
  | { granted: true; lease: Lease; existing: boolean }
  | { granted: false; denial: Denial };

/** Something that tells whether locking is allowed: the dependency checker. */
export interface GateSource {
  readonly gate: Gate;
}

/** Options of {@linkcode LockService}. */
export interface LockServiceOptions {
  store: LockStore;
  /** @default {always open} */
  gate?: GateSource;
  /** @default {silentLogger} */
  log?: Logger;
}

const OPEN_GATE: GateSource = { gate: { open: true } };

/** Grants and refuses locks; see the module documentation. */
export class LockService {
  readonly store: LockStore;
  readonly #gate: GateSource;
  readonly #log: Logger;

  constructor(options: LockServiceOptions) {
    this.store = options.store;
    this.#gate = options.gate ?? OPEN_GATE;
    this.#log = options.log ?? silentLogger;
  }

  /** Takes a slot if every dependency passes and one is free. */
  acquire(request: AcquireRequest): Awaitable<Outcome> {
    const gate = this.#gate.gate;
    if (!gate.open) return { granted: false, denial: describeClosedGate(gate) };
    const result = this.store.acquire(request);
    return result instanceof Promise
      ? result.then((r) => this.#settle(request, r))
      : this.#settle(request, result);
  }

  #settle(request: AcquireRequest, result: AcquireResult): Outcome {
    if (!result.granted) {
      const n = this.store.capacity;
      return {
        granted: false,
        denial: {
          reason: "busy",
          message: `${n === 1 ? "the only slot is" : `all ${n} slots are`} held; ` +
            `the next frees in ${formatDuration(result.nextFreeInMs)}`,
          retryAfterMs: result.nextFreeInMs,
        },
      };
    }
    if (!result.existing && this.#log.enabled("info")) {
      this.#log.info(
        `Lock granted${request.id ? ` to ${request.id}` : ""} for ${
          formatDuration(request.durationMs)
        }`,
      );
    }
    return result;
  }
}

function describeClosedGate(gate: Exclude<Gate, { open: true }>): Denial {
  if (gate.reason === "starting") {
    return {
      reason: "starting",
      message: "the first dependency check round has not finished",
      retryAfterMs: gate.retryInMs,
    };
  }
  const parts = gate.failing.map((d) =>
    `${d.url} is down${d.lastError ? ` (${d.lastError})` : ""}`
  );
  return {
    reason: "dependencies",
    message: `${gate.failing.length === 1 ? "dependency" : "dependencies"} ${parts.join(", ")}`,
    retryAfterMs: gate.retryInMs,
  };
}
