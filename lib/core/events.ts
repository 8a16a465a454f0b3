/**
 * What happens in the lock service, as data. The core emits events; the log
 * (`observers/event_log.ts`) and the metrics (`observers/metrics.ts`) are
 * subscribers that render them, so a new way of watching the service is a new
 * subscriber, not an edit of the core.
 *
 * Events never carry a whole token: `token` is a short prefix.
 *
 * @module
 */
import type { DenialReason } from "./denial.ts";

/**
 * Why the HTTP layer refused a request itself, before the core saw it: no or a
 * wrong bearer token (401), or a malformed or too large request (400, 413, 414).
 */
export type EdgeRefusal = "unauthorized" | "invalid";

/** Why a waiting client left the queue without a lock. */
export type LeaveReason =
  /** Its wait ran out and it did not ask again within the grace. */
  | "timeout"
  /** It went away (disconnected) and did not ask again within the grace. */
  | "disconnected"
  /** The service shut down. */
  | "shutdown";

/** Everything the core reports. Durations are milliseconds. */
export type LockEvent =
  | {
    type: "granted";
    id: string | undefined;
    token: string;
    durationMs: number;
    /** Set when the request asked for more than the longest allowed duration. */
    requestedMs: number | undefined;
    /** How long the client waited in the queue; 0 for a grant at once. */
    waitedMs: number;
  }
  | { type: "released"; id: string | undefined; token: string; heldMs: number }
  | { type: "expired"; id: string | undefined; token: string; heldMs: number }
  | {
    type: "renewed";
    id: string | undefined;
    token: string;
    durationMs: number;
    requestedMs: number | undefined;
  }
  | { type: "denied"; id: string | undefined; reason: DenialReason; retryAfterMs: number }
  | { type: "queued"; id: string | undefined; position: number; waiting: number }
  | { type: "left_queue"; id: string | undefined; why: LeaveReason; waitedMs: number }
  /** A grant went back to the pool: its client was gone before it could be answered. */
  | { type: "handed_back"; id: string | undefined; token: string }
  | {
    /** One probe finished; emitted after every probe, so subscribers see its duration. */
    type: "dependency";
    endpoint: string;
    up: boolean;
    /** The endpoint's state before this probe; `undefined` before its first. */
    was: boolean | undefined;
    error: string | undefined;
    previousError: string | undefined;
    durationMs: number;
  }
  | { type: "store"; up: boolean; error: string | undefined }
  | { type: "gate"; gate: string; open: boolean; reason: string | undefined }
  | { type: "edge_refused"; reason: EdgeRefusal };

/** An event's type. */
export type LockEventType = LockEvent["type"];

/** Every event type, for subscribers that pick some. */
export const EVENT_TYPES = [
  "granted",
  "released",
  "expired",
  "renewed",
  "denied",
  "queued",
  "left_queue",
  "handed_back",
  "dependency",
  "gate",
  "store",
  "edge_refused",
] as const satisfies readonly LockEventType[];

// A type added to LockEvent but not to EVENT_TYPES fails to compile here.
const _everyType: Exclude<LockEventType, typeof EVENT_TYPES[number]> extends never ? true : never =
  true;

/** A subscriber. It must not throw; a throwing subscriber is logged away by the bus. */
export type EventListener = (event: LockEvent) => void;

/** Delivers events to subscribers, synchronously, in order. */
export class EventBus {
  /** Each subscriber, with the event types it takes (`undefined`: all). */
  readonly #listeners = new Map<EventListener, ReadonlySet<LockEventType> | undefined>();
  /** How many subscribers take each type, so emitters can skip building unwanted events. */
  readonly #wanted = new Map<LockEventType, number>();
  #all = 0;

  /**
   * Subscribes to every event, or only to `types`; returns an unsubscribe
   * function. Naming the types keeps events nobody reads off the hot path.
   */
  on(listener: EventListener, types?: readonly LockEventType[]): () => void {
    if (this.#listeners.has(listener)) return () => this.#off(listener);
    const only = types === undefined ? undefined : new Set(types);
    this.#listeners.set(listener, only);
    this.#count(only, 1);
    return () => this.#off(listener);
  }

  /** Whether any subscriber takes events of `type`. */
  wants(type: LockEventType): boolean {
    return this.#all > 0 || (this.#wanted.get(type) ?? 0) > 0;
  }

  /** Tells every subscriber that takes it. A subscriber that throws cannot stop the core or the others. */
  emit(event: LockEvent): void {
    for (const [listener, only] of this.#listeners) {
      if (only && !only.has(event.type)) continue;
      try {
        listener(event);
      } catch (error) {
        queueMicrotask(() => {
          console.error(`startup-lock: an event subscriber failed on ${event.type}: ${error}`);
        });
      }
    }
  }

  #off(listener: EventListener): void {
    if (!this.#listeners.has(listener)) return;
    this.#count(this.#listeners.get(listener), -1);
    this.#listeners.delete(listener);
  }

  #count(only: ReadonlySet<LockEventType> | undefined, delta: number): void {
    if (!only) {
      this.#all += delta;
      return;
    }
    for (const type of only) this.#wanted.set(type, (this.#wanted.get(type) ?? 0) + delta);
  }
}
