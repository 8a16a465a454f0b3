/**
 * What happens in the lock service, as data. The core emits events; logs (and
 * later metrics) are subscribers that render them, so a new way of watching the
 * service is a new subscriber, not an edit of the core.
 *
 * Events never carry a whole token: `token` is a short prefix.
 *
 * @module
 */
import type { DenialReason } from "./denial.ts";

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
  | { type: "gate"; gate: string; open: boolean; reason: string | undefined };

/** An event's type. */
export type LockEventType = LockEvent["type"];

/** A subscriber. It must not throw; a throwing subscriber is logged away by the bus. */
export type EventListener = (event: LockEvent) => void;

/** Delivers events to subscribers, synchronously, in order. */
export class EventBus {
  readonly #listeners = new Set<EventListener>();

  /** Subscribes; returns an unsubscribe function. */
  on(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Whether anybody listens, so emitters can skip building events. */
  get active(): boolean {
    return this.#listeners.size > 0;
  }

  /** Tells every subscriber. A subscriber that throws cannot stop the core or the others. */
  emit(event: LockEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        queueMicrotask(() => {
          console.error(`startup-lock: an event subscriber failed on ${event.type}: ${error}`);
        });
      }
    }
  }
}
