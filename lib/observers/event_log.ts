/**
 * The server's event log: a subscriber that renders the core's events as log
 * lines, one per event, at a level that fits: a sentence (flag names and units
 * are written here, at the edge, not in the core) and the event's fields
 * (`event`, `id`, `token`, `durationMs`…) for the JSON format. Tokens in
 * events are already short prefixes, so no line carries a whole token.
 *
 * @module
 */
import { EVENT_TYPES, type EventBus, type LockEvent, type LockEventType } from "../core/events.ts";
import { formatDuration } from "../duration.ts";
import type { LogFields, Logger } from "../log.ts";

/** Events that only `--logLevel debug` shows: not subscribed to otherwise, so they cost nothing. */
const DEBUG_ONLY: ReadonlySet<LockEventType> = new Set([
  "denied",
  "queued",
  "left_queue",
  "edge_refused",
]);

/** Writes the events of `events` to `log`; returns an unsubscribe function. */
export function logEvents(events: EventBus, log: Logger): () => void {
  const types = log.enabled("debug") ? EVENT_TYPES : EVENT_TYPES.filter((t) => !DEBUG_ONLY.has(t));
  return events.on((event) => writeEvent(event, log), types);
}

const holder = (id: string | undefined) => id ? ` of ${id}` : "";

/**
 * An event's fields for a log line: its type as `event`, and the rest as they
 * are, but for durations in milliseconds (`…Ms`), which are whole: the monotonic
 * clock's fractions (`"waitedMs":1503.2710000000006`) are noise in a log.
 */
export function eventFields(event: LockEvent): LogFields {
  // One copy, not two: `type` stays, undefined, and is left out like any undefined field.
  const fields: Record<string, string | number | boolean | undefined> = {
    event: event.type,
    ...event,
    type: undefined,
  };
  for (const [key, value] of Object.entries(fields)) {
    if (key.endsWith("Ms") && typeof value === "number") fields[key] = Math.round(value);
  }
  return fields;
}

/** Writes one event, if its level is enabled. */
export function writeEvent(event: LockEvent, log: Logger): void {
  const f = () => eventFields(event); // Built only for formats that show fields.
  switch (event.type) {
    case "granted": {
      const to = event.id ? ` to ${event.id}` : "";
      const waited = event.waitedMs > 0 ? ` after waiting ${formatDuration(event.waitedMs)}` : "";
      if (event.requestedMs !== undefined) {
        log.warn(
          `Lock granted${to} for ${formatDuration(event.durationMs)}${waited}: it asked for ` +
            `${formatDuration(event.requestedMs)}, longer than --maxDuration`,
          f,
        );
      } else if (log.enabled("info")) {
        log.info(`Lock granted${to} for ${formatDuration(event.durationMs)}${waited}`, f);
      }
      return;
    }
    case "released":
      if (log.enabled("info")) {
        log.info(`Lock${holder(event.id)} released after ${formatDuration(event.heldMs)}`, f);
      }
      return;
    case "expired":
      if (log.enabled("info")) {
        log.info(`Lock${holder(event.id)} expired after ${formatDuration(event.heldMs)}`, f);
      }
      return;
    case "renewed":
      if (event.requestedMs !== undefined) {
        log.warn(
          `Lock${holder(event.id)} renewed for ${formatDuration(event.durationMs)}: it asked for ` +
            `${formatDuration(event.requestedMs)}, longer than --maxDuration`,
          f,
        );
      } else if (log.enabled("debug")) {
        log.debug(`Lock${holder(event.id)} renewed for ${formatDuration(event.durationMs)}`, f);
      }
      return;
    case "handed_back":
      log.info(
        `Lock${holder(event.id)} handed back: its client went away before it was answered`,
        f,
      );
      return;
    case "denied":
      if (log.enabled("debug")) {
        log.debug(`Refused ${event.id ?? "a client"}: ${event.reason}`, f);
      }
      return;
    case "edge_refused":
      if (log.enabled("debug")) log.debug(`Refused a request at the HTTP edge: ${event.reason}`, f);
      return;
    case "queued":
      if (log.enabled("debug")) {
        log.debug(
          `${event.id ?? "A client"} waits at place ${event.position} (${event.waiting} waiting)`,
          f,
        );
      }
      return;
    case "left_queue":
      if (log.enabled("debug")) {
        const why = event.why === "timeout"
          ? "its wait ran out and it did not ask again"
          : event.why === "disconnected"
          ? "it went away and did not come back"
          : "the server is shutting down";
        log.debug(`${event.id ?? "A client"} left the queue: ${why}`, f);
      }
      return;
    case "dependency":
      if (event.up && event.was !== true) log.info(`Dependency ${event.endpoint} is up`, f);
      else if (!event.up && event.was !== false) {
        log.warn(`Dependency ${event.endpoint} is down: ${event.error}`, f);
      } else if (!event.up && event.error !== event.previousError) {
        log.debug(`Dependency ${event.endpoint} is still down: ${event.error}`, f);
      }
      return;
    case "gate":
      if (event.gate === "dependencies") {
        if (event.open) log.info("All dependencies are up: locking is allowed", f);
        else if (event.reason === "dependencies") {
          log.warn("A dependency is down: locking is paused until every check passes", f);
        }
        return;
      }
      if (event.gate === "cooldown") {
        // It closes after every grant, by design: pacing is not news.
        if (event.open) log.debug("The cooldown is over: locking is allowed", f);
        else log.debug("Cooldown after a grant: locking is paused", f);
        return;
      }
      if (event.open) log.info(`The ${event.gate} gate is open: locking is allowed`, f);
      // Whoever closes the recovery gate says why in its own warning: one line, not two.
      else if (event.gate === "recovery") log.debug("The recovery gate is closed", f);
      else log.warn(`The ${event.gate} gate is closed (${event.reason}): locking is paused`, f);
      return;
    case "store":
      if (event.up) log.info("The lock store answers again: locking resumes", f);
      else log.error(`${event.error}: refusing locks until it answers`, f);
      return;
  }
}
