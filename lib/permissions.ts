/**
 * The permissions the program runs with, in one place: `deno task compile`
 * bakes these into the executable, and the tests run `deno run` with the same
 * flags. `tests/permissions_test.ts` checks that the `start` task in
 * `deno.json` matches.
 *
 * @module
 */
import { envNames } from "./args.ts";
import { SERVER_FLAGS } from "./cli.ts";

/** The environment variables the program reads. */
export const ENV_VARIABLES: readonly string[] = envNames(SERVER_FLAGS);

/**
 * `--allow-net`: the server listens on a configurable address and checks
 * endpoints named at run time. `--allow-env`: only the program's own variables.
 */
export const PERMISSION_FLAGS: readonly string[] = [
  "--allow-net",
  `--allow-env=${ENV_VARIABLES.join(",")}`,
];
