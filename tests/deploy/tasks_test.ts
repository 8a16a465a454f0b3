/**
 * The tasks in deno.json as a user runs them: what `deno task start` needs
 * besides the program itself (nothing) and what it prints.
 *
 * @module
 */
import assert from "node:assert/strict";
import { VERSION } from "../../lib/version.ts";

const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

Deno.test("deno task start runs the program with an empty Deno cache and no registry", async () => {
  const denoDir = await Deno.makeTempDir({ prefix: "startup-lock-deno-dir-" });
  try {
    // Anything fetched would fail: the npm registry and every proxy point at a closed port.
    const nowhere = "http://127.0.0.1:9/";
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "--config", CONFIG, "start", "--version"],
      env: {
        DENO_DIR: denoDir,
        NPM_CONFIG_REGISTRY: nowhere,
        HTTP_PROXY: nowhere,
        HTTPS_PROXY: nowhere,
        DENO_NO_UPDATE_CHECK: "1",
        NO_COLOR: "1",
      },
      clearEnv: true,
      stdin: "null",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.match(stdout, new RegExp(`^startup-lock ${VERSION.replaceAll(".", "\\.")} `));
    // The task line, and nothing downloaded or warned about.
    const lines = stderr.split("\n").filter((l) => l !== "");
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0]!, /^Task start deno run /);
    assert.ok(lines[0]!.length < 120, `a short task line: ${lines[0]}`);
    const npm = [...Deno.readDirSync(denoDir)].some((e) => e.name === "npm")
      ? [...Deno.readDirSync(`${denoDir}/npm`)]
      : [];
    assert.deepEqual(npm, [], "no npm package cached");
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
});
