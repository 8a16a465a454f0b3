/**
 * The server's wiring (`lib/server.ts`): the flags reach the handler, and a
 * part is loaded only when a flag or a request asks for it (the check of
 * bearer tokens and `node:crypto` with it, the state file, the optional gates,
 * the status page). What the handler does with them is handler_test.ts.
 */
import assert from "node:assert/strict";
import { serveCommand } from "../../lib/commands/serve.ts";
import type { ServerConfig } from "../../lib/config.ts";
import { createLogger } from "../../lib/log.ts";
import { buildServer, loadTokenSource, runServer } from "../../lib/server.ts";
import { loadedModules } from "../_module_graph.ts";

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
  await assert.rejects(() => buildServer(config, silent), TypeError);
  const auth = await loadTokenSource(config.auth!, silent);
  const { handler, store } = await buildServer(config, silent, { auth });
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

Deno.test("buildServer() hands --locks, --timeout, --maxDuration and --maxWaiters to the handler", async () => {
  const config = configOf(
    ["--locks", "2", "--timeout", "42s", "--maxDuration", "1m", "--maxWaiters", "1"],
  );
  const { handler, service, store } = await buildServer(config, silent);
  const get = (query: string) =>
    Promise.resolve(
      handler(
        new Request(`http://localhost/${query}`, { headers: { Accept: "application/json" } }),
      ),
    );
  try {
    const byDefault = await get("");
    assert.equal(byDefault.headers.get("Lock-Duration"), "42", "--timeout");
    await byDefault.body?.cancel();
    const cut = await get("?duration=2m");
    assert.equal(cut.headers.get("Lock-Duration"), "60", "--maxDuration");
    assert.equal((await cut.json()).requestedDuration, 120);
    assert.deepEqual((await (await get("status")).json()).slots, { total: 2, held: 2, free: 0 });
    const waiting = get("?wait=30s&id=first");
    const full = await get("?wait=30s&id=second");
    assert.equal(full.status, 503, "--maxWaiters 1");
    assert.equal((await full.json()).reason, "queue_full");
    service.close();
    await (await waiting).body?.cancel();
  } finally {
    service.close();
    await store.close();
  }
});

/** What a server loads only when a flag or a request asks for it. */
const ON_DEMAND = [
  "lib/gates/cooldown.ts", // --cooldown
  "lib/gates/recovery.ts", // an unreadable --stateFile, a Redis --store
  "lib/http/auth.ts", // --authToken, --authTokenFile
  "lib/http/status_page.ts", // the first browser on /status
  "lib/stores/file.ts", // --stateFile
  "lib/stores/redis/store.ts", // a Redis --store
  "lib/stores/state_file.ts", // --stateFile
  "node:crypto", // with lib/http/auth.ts
];

Deno.test("the server loads at start only what every server runs", async () => {
  const loaded = await loadedModules("lib/commands/serve.ts");
  assert.ok(loaded.includes("lib/server.ts"), loaded.join("\n"));
  assert.deepEqual(loaded.filter((m) => ON_DEMAND.includes(m)), [], loaded.join("\n"));
});
