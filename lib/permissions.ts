/**
 * The permissions the program runs with, in one place: `deno task compile`
 * bakes these into the executable, and the tests run `deno run` with the same
 * flags. `tests/permissions_test.ts` checks that the `start` task in
 * `deno.json` matches.
 *
 * @module
 */
import { envNames } from "./args.ts";
import { HEALTHCHECK_FLAGS } from "./commands/healthcheck.ts";
import { HOLD_FLAGS } from "./commands/hold.ts";
import { RELEASE_FLAGS } from "./commands/release.ts";
import { RUN_FLAGS } from "./commands/run.ts";
import { SERVER_FLAGS } from "./commands/serve.ts";

/** The program's own environment variables: those of every flag of every command. */
export const ENV_VARIABLES: readonly string[] = [
  ...new Set(
    [SERVER_FLAGS, RELEASE_FLAGS, RUN_FLAGS, HOLD_FLAGS, HEALTHCHECK_FLAGS].flatMap(envNames),
  ),
];

/** Other variables the program reads: `HOSTNAME` names the client in its default `--id`. */
export const OTHER_ENV_VARIABLES: readonly string[] = ["HOSTNAME"];

/**
 * `--allow-net`: the server listens on a configurable address and checks
 * endpoints named at run time; the client talks to a server and an app named
 * at run time, and `healthcheck` to the URL it is given. `--allow-env`: only
 * the variables above. `--allow-run`: `run` starts any command.
 * `--allow-read`, `--allow-write`: token files at any path.
 * `--allow-sys=hostname`: the host's name for the client's default `--id`.
 */
export const PERMISSION_FLAGS: readonly string[] = [
  "--allow-net",
  `--allow-env=${[...ENV_VARIABLES, ...OTHER_ENV_VARIABLES].join(",")}`,
  "--allow-run",
  "--allow-read",
  "--allow-write",
  "--allow-sys=hostname",
];
