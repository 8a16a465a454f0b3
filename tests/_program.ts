/**
 * Starts the real program as a child process, the way users run it: the
 * compiled executable when `dist/startup-lock` exists, otherwise `deno run` with
 * the same permissions the executable has baked in.
 *
 * @module
 */
import { PERMISSION_FLAGS } from "../lib/commands/permissions.ts";

const ROOT = new URL("../", import.meta.url);
const COMPILED = new URL("dist/startup-lock", ROOT).pathname;
const MAIN = new URL("main.ts", ROOT).pathname;
const CONFIG = new URL("deno.json", ROOT).pathname;

function compiledExists(): boolean {
  try {
    return Deno.statSync(COMPILED).isFile;
  } catch {
    return false;
  }
}

/** Whether the tests run the compiled executable. */
export const USING_COMPILED = compiledExists();
if (USING_COMPILED) console.error(`Black-box tests run the compiled executable ${COMPILED}`);

/** The command and leading arguments that run the program. */
export function programCommand(): { command: string; args: string[] } {
  if (USING_COMPILED) return { command: COMPILED, args: [] };
  return {
    command: Deno.execPath(),
    args: ["run", "--quiet", "--config", CONFIG, ...PERMISSION_FLAGS, MAIN],
  };
}

/** Options of {@linkcode runProgram} and {@linkcode startProgram}. */
export interface ProgramOptions {
  /** Environment variables; the program's own `STARTUP_LOCK_*` are cleared first. */
  env?: Record<string, string>;
  /** A command that runs the program with its arguments, such as `["taskset", "-c", "0"]`. */
  wrapper?: string[];
  /** Kills the program when aborted, so a test of an exit never hangs on a program that serves. */
  signal?: AbortSignal;
}

/** The program's command line, behind `wrapper` when given. */
function commandLine(args: string[], wrapper: string[] = []): { command: string; args: string[] } {
  const { command, args: lead } = programCommand();
  const [first, ...rest] = [...wrapper, command, ...lead, ...args];
  return { command: first!, args: rest };
}

/** Options of {@linkcode startProgram}. */
export interface StartOptions extends ProgramOptions {
  /** The command that listens, before the flags: `inject`. @default {the default command, serve} */
  command?: string;
}

function childEnv(env: Record<string, string> = {}): Record<string, string> {
  const base = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => !k.startsWith("STARTUP_LOCK_")),
  );
  return { ...base, NO_COLOR: "1", ...env };
}

/** Runs the program to completion and returns its exit code and output. */
export async function runProgram(
  args: string[],
  options: ProgramOptions = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const line = commandLine(args, options.wrapper);
  const out = await new Deno.Command(line.command, {
    args: line.args,
    env: childEnv(options.env),
    clearEnv: true,
    stdin: "null",
    ...(options.signal ? { signal: options.signal } : {}),
  }).output();
  const decoder = new TextDecoder();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

/** A running server process. */
export interface ProgramServer extends AsyncDisposable {
  /** `http://127.0.0.1:PORT`, or `https://` for a command that serves HTTPS */
  url: string;
  process: Deno.ChildProcess;
  /** Every stderr line so far. */
  log: string[];
  /** Resolves with the first log line matching `pattern` (or rejects after `timeoutMs`). */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Sends a signal and returns the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
}

/**
 * Starts the server on a free port of 127.0.0.1 and resolves once it listens.
 * `args` come after `--host 127.0.0.1 --port 0`, so they may override them.
 */
export async function startProgram(
  args: string[] = [],
  options: StartOptions = {},
): Promise<ProgramServer> {
  const selected = options.command === undefined ? [] : [options.command];
  const line = commandLine(
    [...selected, "--host", "127.0.0.1", "--port", "0", ...args],
    options.wrapper,
  );
  const process = new Deno.Command(line.command, {
    args: line.args,
    env: childEnv(options.env),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const log: string[] = [];
  const waiters = new Set<() => void>();
  const reading = (async () => {
    const lines = process.stderr.pipeThrough(new TextDecoderStream());
    let buffer = "";
    for await (const chunk of lines) {
      buffer += chunk;
      const parts = buffer.split("\n");
      buffer = parts.pop() ?? "";
      log.push(...parts);
      for (const w of waiters) w();
    }
    if (buffer) log.push(buffer);
    for (const w of waiters) w();
  })();
  const stdoutDone = process.stdout.cancel();
  let exited = false;
  const status = process.status.then((s) => {
    exited = true;
    for (const w of waiters) w();
    return s;
  });

  const waitForLog = (pattern: RegExp, timeoutMs = 20_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const line = log.find((l) => pattern.test(l));
        if (line !== undefined) done(() => resolve(line));
        else if (exited) {
          done(() =>
            reject(new Error(`Program exited before logging ${pattern}:\n${log.join("\n")}`))
          );
        }
      };
      const timer = setTimeout(
        () =>
          done(() =>
            reject(new Error(`No log line ${pattern} within ${timeoutMs} ms:\n${log.join("\n")}`))
          ),
        timeoutMs,
      );
      const done = (settle: () => void) => {
        clearTimeout(timer);
        waiters.delete(check);
        settle();
      };
      waiters.add(check);
      check();
    });

  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    if (!exited) {
      try {
        process.kill(signal);
      } catch { /* already gone */ }
    }
    const { code } = await status;
    await reading;
    await stdoutDone;
    return code;
  };

  let listening: string;
  try {
    listening = await waitForLog(/Listening on https?:\/\//);
  } catch (error) {
    await stop("SIGKILL");
    throw error;
  }
  // The line may name other URLs (a --check's) after the listener's own.
  const [, scheme, port] = /Listening on (https?):\/\/[^/]*:(\d+)\//.exec(listening) ?? [];
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    process,
    log,
    waitForLog,
    stop,
    async [Symbol.asyncDispose]() {
      await stop("SIGKILL");
    },
  };
}
