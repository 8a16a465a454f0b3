/**
 * The compiled executable. `deno compile` needs the Deno runtime (denort): from
 * `DENORT_BIN`, or downloaded. Where neither works (as on machines without
 * internet) these tests are skipped, and say so.
 */
import assert from "node:assert/strict";
import { REDIS_STORE_MODULE } from "../../lib/server.ts";
import type { RedisStoreModule } from "../../lib/stores/settings.ts";
import { COMMAND_MODULES } from "../../main.ts";
import { compileArgs, includedModules } from "../../scripts/compile.ts";

/** The module `lib/server.ts` loads for a Redis `--store`, by a path only it knows. */
const REDIS_MODULE = new URL(REDIS_STORE_MODULE, new URL("../../lib/server.ts", import.meta.url));

Deno.test("REDIS_STORE_MODULE names the Redis store's module, which exports the store", async () => {
  assert.ok(Deno.statSync(REDIS_MODULE).isFile, `${REDIS_MODULE.pathname} exists`);
  const module: RedisStoreModule = await import(REDIS_MODULE.href);
  assert.equal(typeof module.RedisLockStore, "function");
});

Deno.test("deno compile includes the Redis store's module, which the program's static graph leaves out", async () => {
  const args = compileArgs("out");
  const included = args.flatMap((arg, i) => args[i - 1] === "--include" ? [arg] : []);
  assert.ok(included.includes(REDIS_MODULE.pathname), included.join("\n"));
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "info",
      "--json",
      "--lock=" + new URL("../deno.lock", import.meta.url).pathname,
      "main.ts",
    ],
    cwd: new URL("../../", import.meta.url).pathname,
    env: { NO_COLOR: "1" },
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const modules: string[] = JSON.parse(new TextDecoder().decode(out.stdout)).modules
    .map((m: { specifier: string }) => m.specifier);
  // Without --include the executable could not load it; with it in the graph, every server would.
  assert.ok(!modules.includes(REDIS_MODULE.href), "the Redis store is not imported ahead of time");
  assert.deepEqual(modules.filter((m) => m.startsWith("npm:")), [], "nor any npm package");
});

Deno.test("deno compile includes every command's module, which main.ts loads by a path Deno does not follow", async () => {
  const args = compileArgs("out");
  const included = args.flatMap((arg, i) => args[i - 1] === "--include" ? [arg] : []);
  const root = new URL("../../", import.meta.url);
  const modules: string[] = JSON.parse(
    new TextDecoder().decode(
      (await new Deno.Command(Deno.execPath(), {
        args: [
          "info",
          "--json",
          "--lock=" + new URL("../deno.lock", import.meta.url).pathname,
          "main.ts",
        ],
        cwd: root.pathname,
        env: { NO_COLOR: "1" },
      }).output()).stdout,
    ),
  ).modules.flatMap((
    m: { specifier: string; dependencies?: { code?: unknown; specifier: string }[] },
  ) =>
    m.specifier === new URL("main.ts", root).href
      ? (m.dependencies ?? []).filter((d) => d.code).map((d) => d.specifier)
      : []
  );
  for (const [name, path] of Object.entries(COMMAND_MODULES)) {
    const file = new URL(path, root);
    assert.ok(Deno.statSync(file).isFile, `${name}: ${file.pathname} exists`);
    assert.ok(included.includes(file.pathname), `${name}: --include ${file.pathname}`);
    // In main.ts's code graph, every start would read it, whichever command runs.
    assert.ok(
      !modules.some((m) => m.endsWith(path.slice(1))),
      `${name} is not followed ahead of time`,
    );
  }
  assert.deepEqual(includedModules(), included);
});

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
