import assert from "node:assert/strict";
import { ENV_VARIABLES, PERMISSION_FLAGS } from "../lib/permissions.ts";
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
});

Deno.test("the program's version matches deno.json", () => {
  assert.equal(VERSION, config.version);
});
