/**
 * The permissions the program runs with. They live in one place, the
 * `startup-lock` permission set in `deno.json`, which Deno reads for
 * `--permission-set=startup-lock`: the `start` task, `deno task compile`
 * (which bakes them into the executable) and the tests' `deno run` all pass
 * that flag. This module says what the set must hold, computed from the flag
 * specs, and `tests/unit/commands/permissions_test.ts` checks that `deno.json` agrees.
 *
 * @module
 */
import { envNames } from "../args.ts";
import { HEALTHCHECK_FLAGS } from "./healthcheck.ts";
import { HOLD_FLAGS } from "./hold.ts";
import { INJECT_FLAGS } from "./inject.ts";
import { RELEASE_FLAGS } from "./release.ts";
import { RUN_FLAGS } from "./run.ts";
import { SERVER_FLAGS } from "./serve.ts";

/** The program's own environment variables: those of every flag of every command. */
export const ENV_VARIABLES: readonly string[] = [
  ...new Set(
    [SERVER_FLAGS, RELEASE_FLAGS, RUN_FLAGS, HOLD_FLAGS, HEALTHCHECK_FLAGS, INJECT_FLAGS]
      .flatMap(envNames),
  ),
];

/**
 * Other variables the program reads: `HOSTNAME` names the client in its
 * default `--id`; the Redis client (`@redis/client`) reads two debugging
 * switches of its own when it connects.
 */
export const OTHER_ENV_VARIABLES: readonly string[] = [
  "HOSTNAME",
  "REDIS_DEBUG_MAINTENANCE",
  "REDIS_EMIT_DIAGNOSTICS",
];

/** The name of the program's permission set in `deno.json`. */
export const PERMISSION_SET = "startup-lock";

/**
 * A permission set as `deno.json` spells it under `"permissions"`: `true`
 * grants all of a kind, a list only those names.
 */
export interface PermissionSet {
  net: true;
  env: readonly string[];
  sys: readonly string[];
  run: true;
  read: true;
  write: true;
}

/**
 * What the `startup-lock` set must hold. `net`: the server listens on a
 * configurable address and checks endpoints named at run time; the client
 * talks to a server and an app named at run time, and `healthcheck` to the URL
 * it is given. `env`: only the variables above. `sys`: `hostname`, the
 * client's default id (`Deno.hostname()`), and `loadavg`, for `--maxLoad`
 * (`Deno.loadavg()`). `run`: `run` starts any command.
 * `read`, `write`: token files at any path.
 */
export const PROGRAM_PERMISSIONS: PermissionSet = {
  net: true,
  env: [...ENV_VARIABLES, ...OTHER_ENV_VARIABLES],
  sys: ["hostname", "loadavg"],
  run: true,
  read: true,
  write: true,
};

/**
 * The flags that give `deno run` or `deno compile` the program's permissions.
 * They name the set in `deno.json`, so pass that file with `--config` when the
 * working directory may be elsewhere.
 */
export const PERMISSION_FLAGS: readonly string[] = [`--permission-set=${PERMISSION_SET}`];

/**
 * `--allow-*` flags that grant what `set` grants, for a `deno run` whose
 * `deno.json` has no such set (the benchmark's run of another checkout).
 */
export function allowFlags(set: PermissionSet): string[] {
  return Object.entries(set).map(([kind, value]) =>
    value === true ? `--allow-${kind}` : `--allow-${kind}=${value.join(",")}`
  );
}
