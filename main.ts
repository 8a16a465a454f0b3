/**
 * startup-lock: a tiny HTTP lock service that spreads out application start-ups.
 *
 * This file only wires: it parses the command line and runs the server. See
 * `lib/` for everything else.
 *
 * @module
 */
import { parseServerArgs, serverUsage } from "./lib/cli.ts";
import { UsageError } from "./lib/errors.ts";
import { runServer } from "./lib/server.ts";
import { VERSION } from "./lib/version.ts";

/** Runs the program with `args` and returns its exit code. */
export async function main(args: readonly string[]): Promise<number> {
  const serverArgs = args[0] === "serve" ? args.slice(1) : args;
  let command;
  try {
    command = parseServerArgs(serverArgs, (name) => Deno.env.get(name));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`startup-lock: ${error.message}`);
    return 2;
  }
  switch (command.action) {
    case "help":
      console.log(serverUsage());
      return 0;
    case "version":
      console.log(`startup-lock ${VERSION} (deno ${Deno.version.deno})`);
      return 0;
    case "serve":
      return await runServer(command.config);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
