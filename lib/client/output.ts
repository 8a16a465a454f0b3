/**
 * What the client tells its user: one-line notes on stderr, and the stop
 * signals it listens for. Stdout carries only the lock token, so
 * `TOKEN=$(startup-lock acquire …)` works.
 *
 * @module
 */

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
