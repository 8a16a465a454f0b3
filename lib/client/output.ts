/**
 * What the client tells its user: one-line notes on stderr, and the stop
 * signals it listens for. Stdout carries only the lock token, so
 * `TOKEN=$(startup-lock acquire …)` works.
 *
 * @module
 */
import { formatLine, type LogFormat } from "../log.ts";

/** The signals `run` forwards and `hold` stops on, with their numbers for `128 + n` exit codes. */
export const STOP_SIGNALS = { SIGINT: 2, SIGTERM: 15 } as const;

/** A stop signal's name. */
export type StopSignal = keyof typeof STOP_SIGNALS;

let noteFormat: LogFormat = "text";

/** How {@link note} writes: set once by each client command from its `--logFormat`. */
export function setNoteFormat(format: LogFormat): void {
  noteFormat = format;
}

/**
 * Writes `startup-lock: <message>` to stderr, or with `--logFormat json` a
 * line `{"time","level":"info","msg"}`. Synchronous: a client writes a few
 * lines, and they must be out before it exits.
 */
export function note(message: string): void {
  console.error(
    noteFormat === "text" ? `startup-lock: ${message}` : formatLine("json", "info", message),
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
