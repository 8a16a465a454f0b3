/**
 * The server's wiring (`lib/server.ts`) where it loads a part only when a flag
 * asks for it: the check of bearer tokens, and `node:crypto` with it.
 */
import assert from "node:assert/strict";
import { serveCommand } from "../../lib/commands/serve.ts";
import type { ServerConfig } from "../../lib/config.ts";
import { createLogger } from "../../lib/log.ts";
import { buildServer, loadTokenSource, runServer } from "../../lib/server.ts";

const silent = createLogger("error", () => {});

/** The config of `startup-lock serve ARGS`. */
function configOf(args: string[]): ServerConfig {
  const parsed = serveCommand.parse(["--host", "127.0.0.1", "--port", "0", ...args], () => {
    return undefined;
  });
  assert.ok(parsed.action === "run" && parsed.options.action === "serve");
  return parsed.options.config;
}

Deno.test("buildServer() refuses a config with a token but no token source, and checks it when given", async () => {
  const config = configOf(["--authToken", "s3cret"]);
  assert.throws(() => buildServer(config, silent), TypeError);
  const auth = await loadTokenSource(config.auth!, silent);
  const { handler, store } = buildServer(config, silent, { auth });
  try {
    assert.equal((await handler(new Request("http://localhost/status"))).status, 401);
    const request = new Request("http://localhost/status", {
      headers: { Authorization: "Bearer s3cret" },
    });
    assert.equal((await handler(request)).status, 200);
  } finally {
    await store.close();
  }
});

Deno.test("runServer() exits 2 when the token file is gone by the time the server starts", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/token`;
    await Deno.writeTextFile(path, "s3cret\n");
    const config = configOf(["--authTokenFile", path, "--logLevel", "error"]);
    await Deno.remove(path);
    assert.equal(await runServer(config), 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
