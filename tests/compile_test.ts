/**
 * The compiled executable. `deno compile` needs the Deno runtime (denort): from
 * `DENORT_BIN`, or downloaded. Where neither works (as on machines without
 * internet) these tests are skipped, and say so.
 */
import assert from "node:assert/strict";
import { compileArgs } from "../scripts/compile.ts";

const dir = await Deno.makeTempDir({ prefix: "startup-lock-compile-" });
const binary = `${dir}/startup-lock`;
const build = await new Deno.Command(Deno.execPath(), {
  args: compileArgs(binary),
  env: { NO_COLOR: "1" },
  stdout: "null",
  stderr: "piped",
}).output();
const built = build.code === 0;
if (!built) {
  // The innermost cause, such as "failed to lookup address information".
  const lines = new TextDecoder().decode(build.stderr).split("\n");
  const causes = lines.filter((l) => /^\s+\d+: \S/.test(l) && !l.includes("<unknown>"));
  const reason = (causes.at(-1) ?? lines.find((l) => l.startsWith("error:")) ?? "").trim();
  console.error(
    `SKIPPED compiled-executable tests: deno compile could not get its runtime ` +
      `(set DENORT_BIN to a denort ${Deno.version.deno} binary): ${reason}`,
  );
  await Deno.remove(dir, { recursive: true });
}

Deno.test({
  name: "the compiled executable prints its version and serves /healthz",
  ignore: !built,
  async fn() {
    try {
      const version = await new Deno.Command(binary, { args: ["--version"] }).output();
      assert.equal(version.code, 0);
      assert.match(new TextDecoder().decode(version.stdout), /^startup-lock \d+\.\d+\.\d+/);

      const child = new Deno.Command(binary, {
        args: ["--host", "127.0.0.1", "--port", "0"],
        stderr: "piped",
        stdout: "null",
      }).spawn();
      const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (!/Listening on http:\/\/[^/]+:(\d+)\//.test(text)) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      const port = /Listening on http:\/\/[^/]+:(\d+)\//.exec(text)?.[1];
      assert.ok(port, text);
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.equal(res.status, 200);
      await res.body?.cancel();
      child.kill("SIGTERM");
      assert.equal((await child.status).code, 0);
      await reader.cancel();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
