/**
 * startup-lock: a tiny HTTP lock service that spreads out application start-ups,
 * and its client, in one executable.
 *
 * This file only dispatches: it picks the command from the first argument,
 * prints help, and turns usage errors into exit code 2. Each command lives in
 * `lib/commands/`.
 *
 * @module
 */
import type { Command, Env } from "./lib/args.ts";
import { acquireCommand } from "./lib/commands/acquire.ts";
import { healthcheckCommand } from "./lib/commands/healthcheck.ts";
import { holdCommand } from "./lib/commands/hold.ts";
import { injectCommand } from "./lib/commands/inject.ts";
import { releaseCommand } from "./lib/commands/release.ts";
import { runCommand } from "./lib/commands/run.ts";
import { serveCommand } from "./lib/commands/serve.ts";
import { UsageError } from "./lib/errors.ts";
import { EXIT } from "./lib/exit.ts";

/** Every command, in `--help` order; `serve` is the default. */
export const COMMANDS: readonly Command<unknown>[] = [
  serveCommand,
  acquireCommand,
  releaseCommand,
  runCommand,
  holdCommand,
  healthcheckCommand,
  injectCommand,
];

/** What the arguments select: a command and its arguments, or a command's help. */
export type Selection =
  | { action: "help"; command: Command<unknown> }
  | { action: "run"; command: Command<unknown>; args: readonly string[] };

function find(name: string): Command<unknown> | undefined {
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
    if (rest.length === 0) return { action: "help", command: serveCommand };
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
    return { action: "run", command: serveCommand, args };
  }
  throw new UsageError(
    `Unexpected argument "${first}": expected a command (${NAMES}) or flags (see --help)`,
  );
}

/** A command's `--help`; the default command's also lists the others. */
function help(command: Command<unknown>): string {
  if (command !== serveCommand) return command.usage();
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
    const { command } = selected;
    const parsed = selected.action === "help"
      ? { action: "help" as const }
      : command.parse(selected.args, env);
    if (parsed.action === "help") {
      console.log(help(command));
      return EXIT.OK;
    }
    return await command.run(parsed.options);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`startup-lock: ${error.message}`);
    return EXIT.USAGE;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
