import assert from "node:assert/strict";
import { envNames } from "../lib/args.ts";
import { ACQUIRE_FLAGS } from "../lib/commands/acquire.ts";
import { HOLD_FLAGS } from "../lib/commands/hold.ts";
import { RELEASE_FLAGS } from "../lib/commands/release.ts";
import { RUN_FLAGS } from "../lib/commands/run.ts";
import { SERVER_FLAGS } from "../lib/commands/serve.ts";
import { ENV_VARIABLES, OTHER_ENV_VARIABLES, PERMISSION_FLAGS } from "../lib/permissions.ts";
import { VERSION } from "../lib/version.ts";
import { compileArgs } from "../scripts/compile.ts";

const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));

Deno.test("the start task runs with exactly the program's permissions", () => {
  const start: string = config.tasks.start;
  const flags = start.split(/\s+/).filter((w) => w.startsWith("--allow") || w === "-A");
  assert.deepEqual(flags, [...PERMISSION_FLAGS]);
  assert.ok(!start.includes(" -A") && !start.includes("--allow-all"));
});

Deno.test("the compile task bakes in exactly the program's permissions", () => {
  const args = compileArgs("out");
  const flags = args.filter((a) => a.startsWith("--allow") || a === "-A");
  assert.deepEqual(flags, [...PERMISSION_FLAGS]);
});

Deno.test("the program may read exactly its own environment variables", () => {
  assert.ok(ENV_VARIABLES.length > 0);
  for (const name of ENV_VARIABLES) assert.match(name, /^STARTUP_LOCK_[A-Z_]+$/);
  assert.ok(ENV_VARIABLES.includes("STARTUP_LOCK_PORT"));
  assert.ok(ENV_VARIABLES.includes("STARTUP_LOCK_CHECK"));
  assert.equal(new Set(ENV_VARIABLES).size, ENV_VARIABLES.length, "no duplicates");
});

Deno.test("the program may read the variable of every flag of every command, and HOSTNAME", () => {
  const allowEnv = PERMISSION_FLAGS.find((f) => f.startsWith("--allow-env="));
  assert.ok(allowEnv, "--allow-env is scoped to a list");
  const allowed = new Set(allowEnv.slice("--allow-env=".length).split(","));
  for (const specs of [SERVER_FLAGS, ACQUIRE_FLAGS, RELEASE_FLAGS, RUN_FLAGS, HOLD_FLAGS]) {
    for (const name of envNames(specs)) assert.ok(allowed.has(name), name);
  }
  for (const name of ["STARTUP_LOCK_SERVER", "STARTUP_LOCK_TOKEN", "HOSTNAME"]) {
    assert.ok(allowed.has(name), name);
  }
  assert.deepEqual([...allowed], [...ENV_VARIABLES, ...OTHER_ENV_VARIABLES]);
});

Deno.test("the program may run commands and read and write files, for run and token files", () => {
  for (const flag of ["--allow-net", "--allow-run", "--allow-read", "--allow-write"]) {
    assert.ok(PERMISSION_FLAGS.includes(flag), flag);
  }
});

Deno.test("the program's version matches deno.json", () => {
  assert.equal(VERSION, config.version);
});
