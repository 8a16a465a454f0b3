/**
 * A command line of the program as a deployment file writes it (a systemd
 * `ExecStart=`, a container's `command` and `args`), checked with the
 * program's own flag specs and parsers, for the tests of `deploy/`.
 *
 * @module
 */
import { envName, type FlagSpec } from "../lib/args.ts";
import { parseServerArgs, SERVER_FLAGS } from "../lib/cli.ts";
import {
  ACQUIRE_FLAGS,
  type AcquireOptions,
  type ClientCommandName,
  HEALTHCHECK_FLAGS,
  type HealthcheckOptions,
  HOLD_FLAGS,
  type HoldOptions,
  isClientCommand,
  parseAcquireArgs,
  type Parsed,
  parseHealthcheckArgs,
  parseHoldArgs,
  parseReleaseArgs,
  parseRunArgs,
  RELEASE_FLAGS,
  type ReleaseOptions,
  RUN_FLAGS,
  type RunOptions,
} from "../lib/client/flags.ts";
import type { ServerConfig } from "../lib/config.ts";

/** Where the deployment files install the executable. */
export const EXECUTABLE = "/usr/local/bin/startup-lock";

/** A command of the program: `serve` or a client command. */
export type CommandName = "serve" | ClientCommandName;

/** Each command's flags, as the program parses them. */
export const COMMAND_FLAGS: Readonly<Record<CommandName, readonly FlagSpec[]>> = {
  serve: SERVER_FLAGS,
  acquire: ACQUIRE_FLAGS,
  release: RELEASE_FLAGS,
  run: RUN_FLAGS,
  hold: HOLD_FLAGS,
  healthcheck: HEALTHCHECK_FLAGS,
};

/** A command line the program accepted, with what it would do. */
export type ParsedCommandLine =
  | { command: "serve"; config: ServerConfig }
  | { command: "acquire"; options: AcquireOptions }
  | { command: "release"; options: ReleaseOptions }
  | { command: "run"; options: RunOptions }
  | { command: "hold"; options: HoldOptions }
  | { command: "healthcheck"; options: HealthcheckOptions };

/**
 * Splits the arguments after the executable into the command and its
 * arguments, the way `main.ts` dispatches: a client command, `serve`, or flags
 * of the server.
 *
 * @throws {Error} for a word that is no command
 */
export function splitCommand(args: readonly string[]): { command: CommandName; rest: string[] } {
  const [first = "", ...rest] = args;
  if (isClientCommand(first)) return { command: first, rest };
  if (first === "serve") return { command: "serve", rest };
  if (first === "" || first.startsWith("-")) return { command: "serve", rest: [...args] };
  throw new Error(`Unknown command "${first}": expected serve or a client command`);
}

/** The flags named before any `--`, camelCase as in the flag specs. */
export function flagNames(args: readonly string[]): string[] {
  const end = args.indexOf("--");
  return (end === -1 ? args : args.slice(0, end))
    .filter((a) => a.startsWith("--"))
    .map((a) =>
      a.slice(2).split("=")[0]!.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase())
    );
}

/**
 * Checks a command line (the arguments after the executable) and the
 * environment it runs with: every flag must be one of its command's, every
 * `STARTUP_LOCK_*` variable one the command reads, and the program's own parser
 * must accept it all.
 *
 * @throws {Error} naming the unknown flag or variable, or the parser's reason
 */
export function parseCommandLine(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): ParsedCommandLine {
  const { command, rest } = splitCommand(args);
  const specs = COMMAND_FLAGS[command];
  const known = new Set(specs.map((s) => s.name));
  for (const name of flagNames(rest)) {
    if (!known.has(name)) {
      throw new Error(
        `Unknown flag --${name} for "startup-lock ${command}": it takes ` +
          [...known].map((n) => `--${n}`).join(", "),
      );
    }
  }
  const variables = new Set(specs.map((s) => envName(s.name)));
  for (const name of Object.keys(env)) {
    if (name.startsWith("STARTUP_LOCK_") && !variables.has(name)) {
      throw new Error(`"startup-lock ${command}" reads no variable ${name}`);
    }
  }
  const read = (name: string) => env[name];
  switch (command) {
    case "serve": {
      const parsed = parseServerArgs(rest, read);
      if (parsed.action !== "serve") throw new Error(`"${args.join(" ")}" does not serve`);
      return { command, config: parsed.config };
    }
    case "acquire":
      return { command, options: go(parseAcquireArgs(rest, read)) };
    case "release":
      return { command, options: go(parseReleaseArgs(rest, read)) };
    case "run":
      return { command, options: go(parseRunArgs(rest, read)) };
    case "hold":
      return { command, options: go(parseHoldArgs(rest, read)) };
    case "healthcheck":
      return { command, options: go(parseHealthcheckArgs(rest, read)) };
  }
}

function go<T>(parsed: Parsed<T>): T {
  if (parsed.action !== "go") throw new Error("The command line asks for --help");
  return parsed.options;
}
