/**
 * startup-lock: a tiny HTTP lock service that spreads out application start-ups,
 * and its client, in one executable.
 *
 * This file only wires: it picks the command from the first argument, parses
 * the command line and runs the command. See `lib/` (server) and `lib/client/`
 * for everything else.
 *
 * @module
 */
import { parseServerArgs, serverUsage } from "./lib/cli.ts";
import { acquireCommand } from "./lib/client/acquire.ts";
import {
  CLIENT_COMMANDS,
  type ClientCommandName,
  commandsOverview,
  type Env,
  isClientCommand,
  parseAcquireArgs,
  type Parsed,
  parseHealthcheckArgs,
  parseHoldArgs,
  parseReleaseArgs,
  parseRunArgs,
} from "./lib/client/flags.ts";
import { healthcheckCommand } from "./lib/client/healthcheck.ts";
import { holdCommand } from "./lib/client/hold.ts";
import { EXIT } from "./lib/client/output.ts";
import { releaseCommand } from "./lib/client/release.ts";
import { runCommand } from "./lib/client/run.ts";
import { UsageError } from "./lib/errors.ts";
import { runServer } from "./lib/server.ts";
import { VERSION } from "./lib/version.ts";

/** Runs the program with `args` and returns its exit code. */
export async function main(args: readonly string[]): Promise<number> {
  const env: Env = (name) => Deno.env.get(name);
  const [first = "", ...rest] = args;
  try {
    if (isClientCommand(first)) return await CLIENTS[first](rest, env);
    if (first !== "serve" && first !== "" && !first.startsWith("-")) {
      const commands = ["serve", ...Object.keys(CLIENT_COMMANDS)].join(", ");
      throw new UsageError(
        `Unexpected argument "${first}": expected a command (${commands}) or flags (see --help)`,
      );
    }
    return await server(first === "serve" ? rest : args, env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`startup-lock: ${error.message}`);
    return EXIT.USAGE;
  }
}

async function server(args: readonly string[], env: Env): Promise<number> {
  const command = parseServerArgs(args, env);
  switch (command.action) {
    case "help":
      console.log(`${serverUsage()}\n\n${commandsOverview()}`);
      return EXIT.OK;
    case "version":
      console.log(`startup-lock ${VERSION} (deno ${Deno.version.deno})`);
      return EXIT.OK;
    case "serve":
      return await runServer(command.config);
  }
}

/** A client command: parse its arguments, then print its help or run it. */
function clientCommand<T>(
  parse: (args: readonly string[], env: Env) => Parsed<T>,
  run: (options: T) => Promise<number>,
) {
  return async (args: readonly string[], env: Env): Promise<number> => {
    const parsed = parse(args, env);
    if (parsed.action === "help") {
      console.log(parsed.usage);
      return EXIT.OK;
    }
    return await run(parsed.options);
  };
}

const CLIENTS: Record<ClientCommandName, (args: readonly string[], env: Env) => Promise<number>> = {
  acquire: clientCommand(parseAcquireArgs, acquireCommand),
  release: clientCommand(parseReleaseArgs, releaseCommand),
  run: clientCommand(parseRunArgs, runCommand),
  hold: clientCommand(parseHoldArgs, holdCommand),
  healthcheck: clientCommand(parseHealthcheckArgs, healthcheckCommand),
};

if (import.meta.main) Deno.exit(await main(Deno.args));
