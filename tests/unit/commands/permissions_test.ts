import assert from "node:assert/strict";
import { envNames } from "../../../lib/args.ts";
import { ACQUIRE_FLAGS } from "../../../lib/commands/acquire.ts";
import { HOLD_FLAGS } from "../../../lib/commands/hold.ts";
import { INJECT_FLAGS } from "../../../lib/commands/inject.ts";
import { RELEASE_FLAGS } from "../../../lib/commands/release.ts";
import { RUN_FLAGS } from "../../../lib/commands/run.ts";
import { SERVER_FLAGS } from "../../../lib/commands/serve.ts";
import {
  allowFlags,
  ENV_VARIABLES,
  OTHER_ENV_VARIABLES,
  PERMISSION_FLAGS,
  PERMISSION_SET,
  PROGRAM_PERMISSIONS,
} from "../../../lib/commands/permissions.ts";
import { VERSION } from "../../../lib/version.ts";
import { compileArgs } from "../../../scripts/compile.ts";
import { programCommand } from "../../_program.ts";

const CONFIG = new URL("../../../deno.json", import.meta.url);
const config = JSON.parse(await Deno.readTextFile(CONFIG));

/** Permission flags and `-A` among `words`. */
function permissionWords(words: readonly string[]): string[] {
  return words.filter((w) => /^(-A|-P|--allow|--permission-set|--deny)/.test(w));
}

Deno.test("deno.json's permission set holds exactly what the program needs", () => {
  assert.deepEqual(
    config.permissions?.[PERMISSION_SET],
    PROGRAM_PERMISSIONS,
    `deno.json's "permissions" must read:\n${
      JSON.stringify({ [PERMISSION_SET]: PROGRAM_PERMISSIONS }, null, 2)
    }`,
  );
  assert.deepEqual(Object.keys(config.permissions), [PERMISSION_SET], "no other set");
});

Deno.test("the start task, the compile task and the tests' program use that permission set", async (t) => {
  await t.step("the start task", () => {
    const start: string = config.tasks.start;
    assert.deepEqual(permissionWords(start.split(/\s+/)), [...PERMISSION_FLAGS]);
  });
  await t.step("deno compile, with deno.json as its config", () => {
    const args = compileArgs("out");
    assert.deepEqual(permissionWords(args), [...PERMISSION_FLAGS]);
    assert.equal(args[args.indexOf("--config") + 1], CONFIG.pathname);
  });
  await t.step("the black-box tests' deno run, with deno.json as its config", () => {
    const { args } = programCommand();
    if (args.length === 0) return; // the compiled executable: compileArgs above built it
    assert.deepEqual(permissionWords(args), [...PERMISSION_FLAGS]);
    assert.equal(args[args.indexOf("--config") + 1], CONFIG.pathname);
  });
});

/** What `deno run` with `flags` (and deno.json as its config) reports for `descriptors`. */
async function grantedStates(
  flags: readonly string[],
  descriptors: readonly Deno.PermissionDescriptor[],
): Promise<{ states: string[]; stderr: string }> {
  const dir = await Deno.makeTempDir({ prefix: "startup-lock-permissions-" });
  try {
    const script = `${dir}/granted.ts`;
    await Deno.writeTextFile(
      script,
      `const descriptors = JSON.parse(Deno.args[0]);
console.log(JSON.stringify(descriptors.map((d) => Deno.permissions.querySync(d).state)));`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--no-prompt",
        "--config",
        CONFIG.pathname,
        ...flags,
        script,
        JSON.stringify(descriptors),
      ],
      env: { NO_COLOR: "1" },
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    return { states: JSON.parse(new TextDecoder().decode(out.stdout)), stderr };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("deno run with the permission set grants exactly those permissions", async (t) => {
  const granted: Deno.PermissionDescriptor[] = [
    { name: "net" },
    { name: "run" },
    { name: "read" },
    { name: "write" },
    { name: "sys", kind: "hostname" },
    ...PROGRAM_PERMISSIONS.env.map((variable) => ({ name: "env" as const, variable })),
  ];
  const notGranted: Deno.PermissionDescriptor[] = [
    { name: "env", variable: "PATH" },
    { name: "env" },
    { name: "sys", kind: "osRelease" },
    { name: "ffi" },
  ];
  const expected = [...granted.map(() => "granted"), ...notGranted.map(() => "prompt")];
  await t.step("the set from deno.json", async () => {
    const { states, stderr } = await grantedStates(PERMISSION_FLAGS, [...granted, ...notGranted]);
    assert.deepEqual(states, expected);
    assert.equal(stderr, "", "--quiet hides the warning that permission sets are experimental");
  });
  await t.step("the same as --allow flags, for a checkout without the set", async () => {
    const flags = allowFlags(PROGRAM_PERMISSIONS);
    const { states } = await grantedStates(flags, [...granted, ...notGranted]);
    assert.deepEqual(states, expected);
  });
});

Deno.test("the program may read exactly its own environment variables", () => {
  assert.ok(ENV_VARIABLES.length > 0);
  for (const name of ENV_VARIABLES) assert.match(name, /^STARTUP_LOCK_[A-Z_]+$/);
  assert.ok(ENV_VARIABLES.includes("STARTUP_LOCK_PORT"));
  assert.ok(ENV_VARIABLES.includes("STARTUP_LOCK_CHECK"));
  assert.equal(new Set(ENV_VARIABLES).size, ENV_VARIABLES.length, "no duplicates");
});

Deno.test("the program may read the variable of every flag of every command, HOSTNAME and the Redis client's", () => {
  const allowed = new Set(PROGRAM_PERMISSIONS.env);
  for (
    const specs of [SERVER_FLAGS, ACQUIRE_FLAGS, RELEASE_FLAGS, RUN_FLAGS, HOLD_FLAGS, INJECT_FLAGS]
  ) {
    for (const name of envNames(specs)) assert.ok(allowed.has(name), name);
  }
  const named = [
    ...["STARTUP_LOCK_SERVER", "STARTUP_LOCK_TOKEN", "HOSTNAME"],
    ...["STARTUP_LOCK_STORE", "STARTUP_LOCK_NAME", "STARTUP_LOCK_STORE_PASSWORD_FILE"],
    // @redis/client reads these two as it connects (and no other: its dist, version 6.3.1).
    ...["REDIS_DEBUG_MAINTENANCE", "REDIS_EMIT_DIAGNOSTICS"],
  ];
  for (const name of named) assert.ok(allowed.has(name), name);
  assert.deepEqual([...allowed], [...ENV_VARIABLES, ...OTHER_ENV_VARIABLES]);
});

Deno.test("no task runs with -A", () => {
  for (const [name, task] of Object.entries<string>(config.tasks)) {
    assert.ok(!/(^|\s)(-A|--allow-all)(\s|$)/.test(task), name);
  }
});

Deno.test("the program's version matches deno.json", () => {
  assert.equal(VERSION, config.version);
});
