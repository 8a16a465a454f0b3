/**
 * What the client tells its user: exit codes and one-line notes on stderr.
 * Stdout carries only the lock token, so `TOKEN=$(startup-lock acquire …)` works.
 *
 * @module
 */

/** Exit codes of the client commands. */
export const EXIT = {
  /** The command did what was asked. */
  OK: 0,
  /** The server refused the request, could not be reached by `release`, or a file could not be written. */
  FAILURE: 1,
  /** Bad flags or variables. */
  USAGE: 2,
  /** `--wait` ran out before a lock was granted; the same code as `timeout(1)`. */
  TIMEOUT: 124,
  /** `run`: the command exists but cannot be executed, as in a shell. */
  NOT_EXECUTABLE: 126,
  /** `run`: no such command, as in a shell. */
  NOT_FOUND: 127,
} as const;

/** The signals `run` forwards and `hold` stops on, with their numbers for `128 + n` exit codes. */
export const STOP_SIGNALS = { SIGINT: 2, SIGTERM: 15 } as const;

/** A stop signal's name. */
export type StopSignal = keyof typeof STOP_SIGNALS;

/** Writes `startup-lock: <message>` to stderr. */
export function note(message: string): void {
  console.error(`startup-lock: ${message}`);
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
