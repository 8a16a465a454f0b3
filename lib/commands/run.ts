/**
 * `startup-lock run … -- COMMAND`: acquires a lock, runs the command under it
 * and supervises it like a tiny init: SIGTERM and SIGINT are forwarded, the
 * lock is released once the app is ready (or it exits, or the lock expires),
 * and the command's exit code becomes ours.
 *
 * @module
 */
import {
  type Command,
  type Env,
  type FlagSpec,
  HELP_FLAG,
  type Parsed,
  parseFlags,
  Reader,
  renderUsage,
} from "../args.ts";
import { acquireLock, type AcquireOptions, releaseHeldLock } from "../client/lock.ts";
import { note, onStopSignals, STOP_SIGNALS, type StopSignal } from "../client/output.ts";
import { type ReadyOptions, releaseWhenReady } from "../client/ready.ts";
import { describeError, UsageError } from "../errors.ts";
import { EXIT } from "../exit.ts";
import { ACQUIRE_FLAGS, readAcquire, reportFailure } from "./acquire.ts";
import { readReady, READY_INTERVAL_FLAG, READY_URL_FLAG } from "./_client.ts";

/** The variable that hands the lock's token to the command, e.g. to release it itself. */
export const TOKEN_VARIABLE = "STARTUP_LOCK_TOKEN";

/** What `run` needs. */
export interface RunOptions extends ReadyOptions {
  acquire: AcquireOptions;
  command: string;
  args: string[];
}

/** The flags of `run`. */
export const RUN_FLAGS: readonly FlagSpec[] = [
  ...ACQUIRE_FLAGS,
  {
    ...READY_URL_FLAG,
    description: READY_URL_FLAG.description + "; without it, when the command exits",
  },
  READY_INTERVAL_FLAG,
  HELP_FLAG,
];

function parse(argv: readonly string[], env: Env): Parsed<RunOptions> {
  const example = "as in: startup-lock run --server URL -- ./app --port 8080";
  const raw = parseFlags(argv, RUN_FLAGS, env, {
    rest: true,
    unexpected: (argument) =>
      `Unexpected argument "${argument}": put the command after "--", ${example}`,
  });
  if (raw.values.has("help")) return { action: "help" };
  const [command, ...args] = raw.rest;
  if (command === undefined || command === "") {
    throw new UsageError(`Missing command: put the command to run after "--", ${example}`);
  }
  const read = new Reader(raw);
  return {
    action: "run",
    options: { acquire: readAcquire(read, env), ...readReady(read), command, args },
  };
}

/** Returns the command's exit code, or the client's own. */
async function run(options: RunOptions): Promise<number> {
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
    note(`Received ${stopSignal}: not starting ${options.command}`, "stopped");
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
      note(`Command not found: "${options.command}"`, "command_failed", "error");
      return EXIT.NOT_FOUND;
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      note(
        `Command not executable: "${options.command}": ${describeError(error)}`,
        "command_failed",
        "error",
      );
      return EXIT.NOT_EXECUTABLE;
    }
    note(`Cannot start "${options.command}": ${describeError(error)}`, "command_failed", "error");
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

/** `startup-lock run … -- COMMAND`: exits with the command's exit code. */
export const runCommand: Command<RunOptions> = {
  name: "run",
  flags: RUN_FLAGS,
  usage: () =>
    renderUsage({
      synopsis: "startup-lock run --server URL [FLAGS] -- COMMAND [ARGS...]",
      about: [
        "Acquires a lock, runs COMMAND with STARTUP_LOCK_TOKEN in its environment, forwards",
        "SIGTERM and SIGINT to it, and releases the lock once --readyUrl answers 2xx (a",
        "tcp://HOST:PORT: accepts a connection), or the command exits, or the lock expires.",
        "Exits with the command's exit code (128 + the signal number when a signal ended",
        "it); 124 no lock within --wait; 127 no such command.",
      ],
      flags: RUN_FLAGS,
    }),
  parse,
  run,
};
