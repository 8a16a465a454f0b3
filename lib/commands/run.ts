/**
 * `startup-lock run … -- COMMAND`: acquires a lock, runs the command under it
 * and supervises it like a tiny init: SIGTERM and SIGINT are forwarded, the
 * lock is released once the app is ready (or it exits, or the lock expires),
 * and the command's exit code becomes ours.
 *
 * @module
 */
import { describeError } from "../errors.ts";
import { acquireLock, reportFailure } from "./acquire.ts";
import type { RunOptions } from "./flags.ts";
import { EXIT, note, onStopSignals, STOP_SIGNALS, type StopSignal } from "./output.ts";
import { releaseWhenReady } from "./ready.ts";
import { releaseHeldLock } from "./release.ts";

/** The variable that hands the lock's token to the command, e.g. to release it itself. */
export const TOKEN_VARIABLE = "STARTUP_LOCK_TOKEN";

/** `startup-lock run`: returns the command's exit code, or the client's own. */
export async function runCommand(options: RunOptions): Promise<number> {
  const stopping = new AbortController();
  let stopSignal: StopSignal | undefined;
  let child: Deno.ChildProcess | undefined;
  // Before the command runs, a signal stops the wait; after, it goes to the command.
  using _signals = onStopSignals((signal) => {
    if (child) {
      try {
        child.kill(signal);
      } catch { /* it has just exited */ }
    } else {
      stopSignal ??= signal;
      stopping.abort();
    }
  });

  const result = await acquireLock(options.acquire, { signal: stopping.signal });
  if (result.kind === "timeout" || result.kind === "failed") {
    return reportFailure(result, options.acquire);
  }
  if (result.kind === "aborted" || stopSignal) {
    if (result.kind === "acquired") await releaseHeldLock(result.lock, `received ${stopSignal}`);
    note(`Received ${stopSignal}: not starting ${options.command}`);
    return 128 + STOP_SIGNALS[stopSignal ?? "SIGTERM"];
  }
  const { lock } = result;

  try {
    child = new Deno.Command(options.command, {
      args: options.args,
      env: lock.token === undefined ? {} : { [TOKEN_VARIABLE]: lock.token },
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (error) {
    await releaseHeldLock(lock, "the command did not start");
    if (error instanceof Deno.errors.NotFound) {
      note(`Command not found: "${options.command}"`);
      return EXIT.NOT_FOUND;
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      note(`Command not executable: "${options.command}": ${describeError(error)}`);
      return EXIT.NOT_EXECUTABLE;
    }
    note(`Cannot start "${options.command}": ${describeError(error)}`);
    return EXIT.FAILURE;
  }

  const exited = new AbortController();
  const watching = releaseWhenReady(lock, options, exited.signal);
  const status = await child.status;
  exited.abort();
  if (await watching === "stopped") {
    await releaseHeldLock(lock, `${options.command} exited with code ${status.code}`);
  }
  return status.code;
}
