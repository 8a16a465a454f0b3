/**
 * What the client tells its user: one-line notes on stderr, and the stop
 * signals it listens for. Stdout carries only the lock token, so
 * `TOKEN=$(startup-lock acquire …)` works.
 *
 * @module
 */
import { formatLine, type LogFormat, type LogLevel } from "../log.ts";
import { redactPasswords } from "../redact.ts";

/** The signals `run` forwards and `hold` stops on, with their numbers for `128 + n` exit codes. */
export const STOP_SIGNALS = { SIGINT: 2, SIGTERM: 15 } as const;

/** A stop signal's name. */
export type StopSignal = keyof typeof STOP_SIGNALS;

let noteFormat: LogFormat = "text";

/** How {@link note} writes: set once by each client command from its `--logFormat`. */
export function setNoteFormat(format: LogFormat): void {
  noteFormat = format;
}

/** What a client's note is about: the `event` of its JSON line. */
export type NoteEvent =
  | "acquired"
  | "waiting"
  | "gave_up"
  | "refused"
  | "duration_cut"
  | "released"
  | "already_gone"
  | "release_failed"
  | "lock_expired"
  | "no_token"
  | "invalid_token"
  | "token_file_unreadable"
  | "command_failed"
  | "listening"
  | "listen_failed"
  | "idling"
  | "stopped"
  | "unhealthy"
  | "secret_in_flag"
  | "decision"
  | "certificate_reloaded"
  | "certificate_unusable"
  | "failed";

/**
 * Writes `startup-lock: <message>` to stderr, or with `--logFormat json` a
 * line `{"time","level","msg","event"}`. Synchronous: a client writes a few
 * lines, and they must be out before it exits. The password of a URL in the
 * message (`--server https://user:PASSWORD@proxy`) is replaced by `***`.
 */
export function note(message: string, event: NoteEvent, level: LogLevel = "info"): void {
  const text = redactPasswords(message);
  console.error(
    noteFormat === "text" ? `startup-lock: ${text}` : formatLine("json", level, text, { event }),
  );
}

/**
 * Calls `onSignal` on SIGTERM or SIGINT (instead of the default of exiting at
 * once) until the returned disposable is disposed.
 */
export function onStopSignals(onSignal: (signal: StopSignal) => void): Disposable {
  const listeners = (Object.keys(STOP_SIGNALS) as StopSignal[]).map((signal) => {
    const listener = () => onSignal(signal);
    Deno.addSignalListener(signal, listener);
    return () => Deno.removeSignalListener(signal, listener);
  });
  return { [Symbol.dispose]: () => listeners.forEach((remove) => remove()) };
}
