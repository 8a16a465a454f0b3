/**
 * A command line of the program as a deployment file writes it (a systemd
 * `ExecStart=`, a container's `command` and `args`), checked with the
 * program's own dispatcher, flag specs and parsers, for the tests of `deploy/`.
 *
 * @module
 */
import { type Command, envName, type Parsed } from "../lib/args.ts";
import { acquireCommand } from "../lib/commands/acquire.ts";
import type { AcquireOptions } from "../lib/client/lock.ts";
import { healthcheckCommand, type HealthcheckOptions } from "../lib/commands/healthcheck.ts";
import { holdCommand, type HoldOptions } from "../lib/commands/hold.ts";
import { releaseCommand, type ReleaseOptions } from "../lib/commands/release.ts";
import { runCommand, type RunOptions } from "../lib/commands/run.ts";
import { serveCommand } from "../lib/commands/serve.ts";
import type { ServerConfig } from "../lib/config.ts";
import { selectCommand } from "../main.ts";

/** The commands, loaded here at once: the dispatcher loads only the one it picks. */
const COMMANDS_BY_NAME: Record<string, Command<unknown>> = Object.fromEntries(
  [serveCommand, acquireCommand, releaseCommand, runCommand, holdCommand, healthcheckCommand]
    .map((c): [string, Command<unknown>] => [c.name, c]),
);

/** Where the deployment files install the executable. */
export const EXECUTABLE = "/usr/local/bin/startup-lock";

/** A command line the program accepted, with what it would do. */
export type ParsedCommandLine =
  | { command: "serve"; config: ServerConfig }
  | { command: "acquire"; options: AcquireOptions }
  | { command: "release"; options: ReleaseOptions }
  | { command: "run"; options: RunOptions }
  | { command: "hold"; options: HoldOptions }
  | { command: "healthcheck"; options: HealthcheckOptions };

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
  const selected = selectCommand(args);
  if (selected.action === "help") throw new Error(`"${args.join(" ")}" asks for help`);
  const { args: rest } = selected;
  const command = COMMANDS_BY_NAME[selected.command.name];
  if (!command) throw new Error(`No parser for "startup-lock ${selected.command.name}"`);
  const known = new Set(command.flags.map((s) => s.name));
  for (const name of flagNames(rest)) {
    if (!known.has(name)) {
      throw new Error(
        `Unknown flag --${name} for "startup-lock ${command.name}": it takes ` +
          [...known].map((n) => `--${n}`).join(", "),
      );
    }
  }
  const variables = new Set(command.flags.map((s) => envName(s.name)));
  for (const name of Object.keys(env)) {
    if (name.startsWith("STARTUP_LOCK_") && !variables.has(name)) {
      throw new Error(`"startup-lock ${command.name}" reads no variable ${name}`);
    }
  }
  const read = (name: string) => env[name];
  switch (command.name) {
    case "serve": {
      const options = run(serveCommand.parse(rest, read));
      if (options.action !== "serve") throw new Error(`"${args.join(" ")}" does not serve`);
      return { command: "serve", config: options.config };
    }
    case "acquire":
      return { command: "acquire", options: run(acquireCommand.parse(rest, read)) };
    case "release":
      return { command: "release", options: run(releaseCommand.parse(rest, read)) };
    case "run":
      return { command: "run", options: run(runCommand.parse(rest, read)) };
    case "hold":
      return { command: "hold", options: run(holdCommand.parse(rest, read)) };
    case "healthcheck":
      return { command: "healthcheck", options: run(healthcheckCommand.parse(rest, read)) };
  }
  throw new Error(`No parser for "startup-lock ${command.name}"`);
}

function run<T>(parsed: Parsed<T>): T {
  if (parsed.action !== "run") throw new Error("The command line asks for --help");
  return parsed.options;
}
