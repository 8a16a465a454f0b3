/**
 * startup-lock: a tiny HTTP lock service that spreads out application start-ups,
 * and its client, in one executable.
 *
 * This file only dispatches: it picks the command from the first argument,
 * prints help, and turns usage errors into exit code 2. Each command lives in
 * `lib/commands/` and is loaded only once it is chosen: `healthcheck`, run by
 * container probes every few seconds, and the `hold` sidecar, which idles
 * beside an application for its whole life, load nothing of the server.
 *
 * @module
 */
import type { Command, Env } from "./lib/args.ts";
import { UsageError } from "./lib/errors.ts";
import { EXIT } from "./lib/exit.ts";
import { redactPasswords } from "./lib/redact.ts";

/** A command as the dispatcher knows it before loading it: its name, its `--help` line, its module. */
export interface CommandEntry {
  /** The word that selects it: `acquire`. */
  readonly name: string;
  /** One line for the top-level `--help`. */
  readonly summary: string;
  /** Loads the command's module, and only it. */
  load(): Promise<Command<unknown>>;
}

/**
 * The module of each command, in a variable rather than in `import("…")`:
 * Deno follows an `import()` of a literal ahead of time, reading, hashing and
 * keeping every module behind it before the first line runs, so every start
 * would pay for reading every command's code (measured alternating, the gain is
 * small: about 0.4 ms on the server's first answer). `deno compile` is told to
 * include them (`scripts/compile.ts`).
 */
export const COMMAND_MODULES = {
  serve: "./lib/commands/serve.ts",
  acquire: "./lib/commands/acquire.ts",
  release: "./lib/commands/release.ts",
  run: "./lib/commands/run.ts",
  hold: "./lib/commands/hold.ts",
  healthcheck: "./lib/commands/healthcheck.ts",
  inject: "./lib/commands/inject.ts",
} as const;

/** Loads a command's module; `T` is its type, which the specifier, kept in a variable, cannot give. */
async function load<T>(name: keyof typeof COMMAND_MODULES): Promise<T> {
  return await import(COMMAND_MODULES[name]) as T;
}

/** Every command, in `--help` order; `serve` is the default. */
export const COMMANDS: readonly CommandEntry[] = [
  {
    name: "serve",
    summary: "Run the lock server (the default; the flags above)",
    load: async () => (await load<typeof import("./lib/commands/serve.ts")>("serve")).serveCommand,
  },
  {
    name: "acquire",
    summary: "Wait for a lock and print its token",
    load: async () =>
      (await load<typeof import("./lib/commands/acquire.ts")>("acquire")).acquireCommand,
  },
  {
    name: "release",
    summary: "Give a lock back",
    load: async () =>
      (await load<typeof import("./lib/commands/release.ts")>("release")).releaseCommand,
  },
  {
    name: "run",
    summary: "Acquire, run a command, release once it is ready; exit with its code",
    load: async () => (await load<typeof import("./lib/commands/run.ts")>("run")).runCommand,
  },
  {
    name: "hold",
    summary: "Kubernetes sidecar: acquire, release once the app is ready, then idle",
    load: async () => (await load<typeof import("./lib/commands/hold.ts")>("hold")).holdCommand,
  },
  {
    name: "healthcheck",
    summary: "Exit 0 when the server's /healthz answers 200: for HEALTHCHECK and exec probes",
    load: async () =>
      (await load<typeof import("./lib/commands/healthcheck.ts")>("healthcheck"))
        .healthcheckCommand,
  },
  {
    name: "inject",
    summary: "Kubernetes admission webhook: add the lock to every new pod of labelled namespaces",
    load: async () =>
      (await load<typeof import("./lib/commands/inject.ts")>("inject")).injectCommand,
  },
];

const SERVE = COMMANDS[0]!;

/** What the arguments select: a command and its arguments, or a command's help. */
export type Selection =
  | { action: "help"; command: CommandEntry }
  | { action: "run"; command: CommandEntry; args: readonly string[] };

function find(name: string): CommandEntry | undefined {
  return COMMANDS.find((c) => c.name === name);
}

const NAMES = COMMANDS.map((c) => c.name).join(", ");

/**
 * Picks the command: `COMMAND [ARGS…]`, or flags of `serve` alone. `help`,
 * `help COMMAND` and `COMMAND help` ask for help, as `--help` and `-h` do.
 *
 * @throws {UsageError} for a word that is no command
 */
export function selectCommand(args: readonly string[]): Selection {
  const [first = "", ...rest] = args;
  if (first === "help") {
    if (rest.length === 0) return { action: "help", command: SERVE };
    const command = rest.length === 1 ? find(rest[0]!) : undefined;
    if (!command) {
      throw new UsageError(
        `Unexpected argument "${rest.join(" ")}" after help: expected one command (${NAMES})`,
      );
    }
    return { action: "help", command };
  }
  const command = find(first);
  if (command) {
    if (rest.length === 1 && rest[0] === "help") return { action: "help", command };
    return { action: "run", command, args: rest };
  }
  if (first === "" || first.startsWith("-")) {
    return { action: "run", command: SERVE, args };
  }
  throw new UsageError(
    `Unexpected argument "${first}": expected a command (${NAMES}) or flags (see --help)`,
  );
}

/** A command's `--help`; the default command's also lists the others. */
function help(entry: CommandEntry, command: Command<unknown>): string {
  if (entry !== SERVE) return command.usage();
  const rows = COMMANDS.map((c) => `  ${c.name.padEnd(13)}${c.summary}`);
  return [
    command.usage(),
    "",
    "Commands:",
    ...rows,
    "",
    'Run "startup-lock COMMAND --help" for the flags of a command.',
  ].join("\n");
}

/** Runs the program with `args` and returns its exit code. */
export async function main(args: readonly string[]): Promise<number> {
  const env: Env = (name) => Deno.env.get(name);
  try {
    const selected = selectCommand(args);
    const command = await selected.command.load();
    const parsed = selected.action === "help"
      ? { action: "help" as const }
      : command.parse(selected.args, env);
    if (parsed.action === "help") {
      console.log(help(selected.command, command));
      return EXIT.OK;
    }
    return await command.run(parsed.options);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    // A value quoted in the message may be a URL with a password in it.
    console.error(`startup-lock: ${redactPasswords(error.message)}`);
    return EXIT.USAGE;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
