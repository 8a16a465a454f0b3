/**
 * `deno task install [--root DIR] [--force]`: installs the program from this
 * checkout as the command `startup-lock`, with `deno install --global`, so
 * the client commands run as the docs show them (`startup-lock acquire …`).
 *
 * The command runs `main.ts` of this checkout with the program's permissions
 * spelled out as `--allow-*` flags: `deno install --permission-set=…` does not
 * carry the set into the installed command. It reads this checkout's
 * `deno.json` (`--config`), whatever the working directory, and needs nothing
 * from the network: the program imports only its own files and `node:`
 * modules (the Redis client is loaded only by a server with a Redis store).
 *
 * @module
 */
import { type FlagSpec, HELP_FLAG, parseFlags, Reader, renderUsage } from "../lib/args.ts";
import { allowFlags, PROGRAM_PERMISSIONS } from "../lib/commands/permissions.ts";
import { UsageError } from "../lib/errors.ts";
import { EXIT } from "../lib/exit.ts";

/** The name of the installed command, as every example in the docs spells it. */
export const COMMAND_NAME = "startup-lock";

const FLAGS: readonly FlagSpec[] = [
  {
    name: "root",
    kind: "value",
    valueName: "DIR",
    default: "deno's (~/.deno)",
    description: "Install into DIR/bin",
    env: false,
  },
  { name: "force", kind: "boolean", description: "Replace an installed command", env: false },
  HELP_FLAG,
];

/** The arguments of `deno install` that install this checkout's `main.ts`. */
export function installArgs(options: { root?: string; force?: boolean } = {}): string[] {
  return [
    "install",
    "--global",
    "--quiet",
    "--name",
    COMMAND_NAME,
    "--config",
    new URL("../deno.json", import.meta.url).pathname,
    ...allowFlags(PROGRAM_PERMISSIONS),
    ...(options.root !== undefined ? ["--root", options.root] : []),
    ...(options.force ? ["--force"] : []),
    new URL("../main.ts", import.meta.url).pathname,
  ];
}

async function main(argv: readonly string[]): Promise<number> {
  let options: { root?: string; force?: boolean };
  try {
    const raw = parseFlags(argv, FLAGS, () => undefined);
    if (raw.values.has("help")) {
      console.log(renderUsage({
        synopsis: "deno task install [--root DIR] [--force]",
        about: [`Installs this checkout as the command ${COMMAND_NAME} (deno install --global).`],
        flags: FLAGS,
      }));
      return EXIT.OK;
    }
    const read = new Reader(raw);
    const root = read.value("root", undefined, (text) => {
      if (text.trim() === "") throw new RangeError("expected a directory");
      return text;
    });
    options = { ...(root !== undefined ? { root } : {}), force: raw.values.has("force") };
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`install: ${error.message}`);
    return EXIT.USAGE;
  }
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: installArgs(options),
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (code !== 0) {
    console.error(
      `install: deno install failed (exit ${code})` +
        (options.force ? "" : `; to replace an installed ${COMMAND_NAME}, add --force`),
    );
    return EXIT.FAILURE;
  }
  const where = options.root !== undefined ? `${options.root}/bin` : "deno's bin directory";
  console.error(`Installed ${COMMAND_NAME} in ${where}: try "${COMMAND_NAME} --version"`);
  return EXIT.OK;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
