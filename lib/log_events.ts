/**
 * The events of the server's own log lines, beside the core's
 * (`core/events.ts`): start-up, shutdown, the state file, the Redis
 * connection, the auth token file, and warnings about the command line. Every
 * JSON line carries one in `event`, so a log query never has to match on
 * `msg`. They carry no fields besides `event`: the message says the rest.
 *
 * @module
 */

/** Each event of the server's own lines, with the level it is written at. */
export const SERVER_LOG_EVENTS = {
  /** A secret (`--authToken`, a password in `--store`) was given as a flag. */
  secret_in_flag: "warn",
  state_file_missing: "info",
  state_file_loaded: "info",
  state_file_unreadable: "error",
  /** `--stateFile` cannot be used: the process exits 2. */
  state_file_unusable: "error",
  listening: "info",
  listen_failed: "error",
  redis_unreachable: "warn",
  redis_connected: "info",
  /** Redis lost the semaphore, or its clock jumped: no grants for --maxDuration. */
  redis_recovery: "warn",
  /** A setting of Redis breaks a guarantee, or cannot be read (CONFIG refused). */
  redis_setting: "warn",
  /** The replica cannot subscribe to the semaphore's channel (a missing ACL right). */
  redis_channel_refused: "error",
  /** Another `--locks` than the shared semaphore's: the process exits 2. */
  locks_conflict: "error",
  auth_token_reloaded: "info",
  auth_token_unreadable: "warn",
  /** The token file changed between the check of the flags and the start: the process exits 2. */
  auth_token_unusable: "error",
  /** A bug: the request was answered `500`. */
  internal_error: "error",
  shutting_down: "info",
  stopped: "info",
} as const;

/** An event of the server's own lines. */
export type ServerLogEvent = keyof typeof SERVER_LOG_EVENTS;

/** The fields of a line with `event`, for `Logger` calls: `log.info(msg, logEvent("stopped"))`. */
export function logEvent(event: ServerLogEvent): { event: ServerLogEvent } {
  return { event };
}
