/**
 * `deno task install`: installs this checkout as the command `startup-lock`
 * into a temporary `--root`, with no network, and the installed command
 * answers `--version` and `acquire` against a real server.
 */
import assert from "node:assert/strict";
import { allowFlags, PROGRAM_PERMISSIONS } from "../../lib/commands/permissions.ts";
import { VERSION } from "../../lib/version.ts";
import { installArgs } from "../../scripts/install.ts";
import { startProgram } from "../_program.ts";

const CONFIG = new URL("../../deno.json", import.meta.url).pathname;
/** A proxy nobody listens on: any download the install tried would fail. */
const NO_NETWORK = { HTTP_PROXY: "http://127.0.0.1:1", HTTPS_PROXY: "http://127.0.0.1:1" };

async function run(command: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(command, { args, env, stdin: "null" }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

Deno.test("installArgs() spells the permission set out as --allow-* flags and passes --root and --force", () => {
  const args = installArgs({ root: "/opt/x", force: true });
  for (const flag of allowFlags(PROGRAM_PERMISSIONS)) assert.ok(args.includes(flag), flag);
  assert.ok(!args.some((a) => a.startsWith("--permission-set")), "the set is not carried over");
  assert.deepEqual(args.slice(args.indexOf("--root"), args.indexOf("--root") + 2), [
    "--root",
    "/opt/x",
  ]);
  assert.ok(args.includes("--force"));
  assert.equal(args[args.indexOf("--config") + 1], CONFIG);
  assert.ok(!installArgs().includes("--force"));
  assert.ok(!installArgs().includes("--root"));
});

Deno.test("deno task install installs a startup-lock that answers --version and acquire", async () => {
  const root = await Deno.makeTempDir({ prefix: "startup-lock-install-task-" });
  try {
    const task = (extra: string[]) =>
      run(Deno.execPath(), ["task", "--quiet", "--config", CONFIG, "install", ...extra], {
        ...NO_NETWORK,
        NO_COLOR: "1",
      });
    const installed = await task(["--root", root]);
    assert.equal(installed.code, 0, installed.stderr);
    const command = `${root}/bin/startup-lock`;

    const again = await task(["--root", root]);
    assert.equal(again.code, 1, "an installed command is not replaced without --force");
    assert.match(again.stderr, /add --force/);
    const forced = await task(["--root", root, "--force"]);
    assert.equal(forced.code, 0, forced.stderr);

    const version = await run(command, ["--version"], NO_NETWORK);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, new RegExp(`^startup-lock ${VERSION.replaceAll(".", "\\.")} `));

    await using server = await startProgram();
    const acquired = await run(command, ["acquire", "--server", server.url, "--wait", "10s"], {
      ...NO_NETWORK,
      NO_PROXY: "127.0.0.1", // The server is local: only it is reachable.
      NO_COLOR: "1",
    });
    assert.equal(acquired.code, 0, acquired.stderr);
    assert.match(acquired.stdout, /^[A-Za-z0-9_-]{22}\n$/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("deno task install refuses a bad flag with one line and exit 2", async () => {
  const out = await run(Deno.execPath(), [
    "task",
    "--quiet",
    "--config",
    CONFIG,
    "install",
    "--rot",
    "/x",
  ]);
  assert.equal(out.code, 2, out.stderr);
  assert.equal(out.stderr, 'install: Unknown flag "--rot": did you mean --root? (see --help)\n');
});
