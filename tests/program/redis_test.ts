/**
 * The program on a Redis store, as users run it (its permission set, not
 * `-A`): it loads the Redis store's module, which nothing imports ahead of
 * time, and keeps its locks in a real redis-server that requires a password.
 * The password from `--storePasswordFile` works; a wrong one is a `503` with
 * the reason `store`; and the password shows in no log line, no `/status`
 * and no `/metrics`. `rediss://` speaks TLS, trusting the CA the image's way.
 */
import assert from "node:assert/strict";
import { type ProgramServer, startProgram } from "../_program.ts";
import { hasOpenssl, makeTestCertificates } from "../_image_tls.ts";
import { RedisServer, SKIP_REDIS } from "../_redis.ts";

const PASSWORD = "Right-Horse-Battery-7q3x";
const WRONG_PASSWORD = "Wrong-Staple-Donkey-2k9w";

const redis = SKIP_REDIS ? undefined : await RedisServer.start({ requirepass: PASSWORD });
const dir = await Deno.makeTempDir({ prefix: "startup-lock-redis-program-" });
addEventListener("unload", () => {
  redis?.killSync();
  Deno.removeSync(dir, { recursive: true });
});

async function passwordFile(name: string, password: string): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, `${password}\n`);
  return path;
}

const JSON_ACCEPT = { Accept: "application/json" };

/** Everything the server shows about itself: its log so far, `/status` and `/metrics`. */
async function everythingShown(server: ProgramServer): Promise<string> {
  const status = await (await fetch(`${server.url}/status`, { headers: JSON_ACCEPT })).text();
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  return [...server.log, status, metrics].join("\n");
}

function assertNoPassword(text: string, ...passwords: string[]): void {
  for (const password of passwords) {
    assert.ok(!text.includes(password), `the password shows:\n${text}`);
  }
}

Deno.test({
  name:
    "startup-lock --store redis://… with its permission set keeps its locks in a Redis that wants the password from --storePasswordFile",
  ignore: !redis,
  async fn() {
    const file = await passwordFile("right", PASSWORD);
    await using server = await startProgram([
      ...["--store", redis!.url, "--storePasswordFile", file, "--name", "program"],
      ...["--locks", "1", "--logLevel", "debug"],
    ]);
    assert.ok(
      server.log.some((l) => l.includes(`shared in ${redis!.url} as "program"`)),
      server.log.join("\n"),
    );

    const granted = await fetch(`${server.url}/?id=web-1&duration=1m`, { headers: JSON_ACCEPT });
    assert.equal(granted.status, 200, await granted.clone().text());
    const token = granted.headers.get("Lock-Token");
    assert.ok(token);
    await granted.body?.cancel();
    const observer = await redis!.client();
    try {
      assert.equal(
        await observer.zCard("startup-lock:{program}:leases"),
        1,
        "the lease is in Redis",
      );
    } finally {
      observer.destroy();
    }
    const busy = await fetch(`${server.url}/?id=web-2`, { headers: JSON_ACCEPT });
    assert.equal(busy.status, 423);
    assert.equal((await busy.json()).reason, "busy");

    const status = await (await fetch(`${server.url}/status`, { headers: JSON_ACCEPT })).json();
    assert.deepEqual(status.store, { up: true, error: null });
    assert.deepEqual(status.holders.map((h: { id: string }) => h.id), ["web-1"]);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /^startup_lock_store_up 1$/m);

    const released = await fetch(`${server.url}/locks/${token}`, { method: "DELETE" });
    assert.equal(released.status, 204);
    await released.body?.cancel();
    assertNoPassword(await everythingShown(server), PASSWORD);
    assert.equal(await server.stop(), 0);
    assertNoPassword(server.log.join("\n"), PASSWORD);
  },
});

Deno.test({
  name: "startup-lock with a wrong Redis password answers 503 (store) and never shows the password",
  ignore: !redis,
  async fn(t) {
    const file = await passwordFile("wrong", WRONG_PASSWORD);
    const ways: { name: string; args: string[]; env?: Record<string, string> }[] = [
      {
        name: "from --storePasswordFile",
        args: ["--store", redis!.url, "--storePasswordFile", file],
      },
      {
        name: "in STARTUP_LOCK_STORE",
        args: [],
        env: { STARTUP_LOCK_STORE: redis!.url.replace("//", `//:${WRONG_PASSWORD}@`) },
      },
    ];
    // Each waits for Redis a while before it listens: start them together.
    const servers = await Promise.all(
      ways.map((way) =>
        startProgram([...way.args, "--logLevel", "debug"], way.env ? { env: way.env } : {})
      ),
    );
    await using _stop = {
      async [Symbol.asyncDispose]() {
        await Promise.all(servers.map((server) => server.stop("SIGKILL")));
      },
    };
    for (const [i, way] of ways.entries()) {
      const server = servers[i]!;
      await t.step(way.name, async () => {
        const refused = await fetch(`${server.url}/?id=web-1`, { headers: JSON_ACCEPT });
        const body = await refused.text();
        assert.equal(refused.status, 503, body);
        assert.equal(JSON.parse(body).reason, "store");
        assert.match(JSON.parse(body).message, /WRONGPASS/, "says why");
        assertNoPassword(body, WRONG_PASSWORD, PASSWORD);

        const status = await (await fetch(`${server.url}/status`, { headers: JSON_ACCEPT })).json();
        assert.equal(status.store.up, false);
        assert.match(status.store.error, /WRONGPASS/);
        const metrics = await (await fetch(`${server.url}/metrics`)).text();
        assert.match(metrics, /^startup_lock_store_up 0$/m);

        assertNoPassword(await everythingShown(server), WRONG_PASSWORD, PASSWORD);
        assert.equal(await server.stop(), 0);
        assertNoPassword(server.log.join("\n"), WRONG_PASSWORD, PASSWORD);
      });
    }
  },
});

Deno.test({
  name:
    "startup-lock --store rediss://… with its permission set speaks TLS to Redis, trusting the CA that SSL_CERT_FILE names",
  ignore: !redis || !hasOpenssl(),
  async fn() {
    const certs = await Deno.makeTempDir({ dir, prefix: "tls-" });
    await makeTestCertificates(certs);
    await using tlsRedis = await RedisServer.start({
      requirepass: PASSWORD,
      tls: {
        certFile: `${certs}/server.pem`,
        keyFile: `${certs}/server.key`,
        caFile: `${certs}/ca.pem`,
      },
    });
    const store = tlsRedis.url.replace("//", `//:${PASSWORD}@`);
    await using server = await startProgram([
      "--store",
      store,
      "--name",
      "tls",
      "--logLevel",
      "debug",
    ], {
      // As in the image: the system store, from the bundle SSL_CERT_FILE names.
      env: { DENO_TLS_CA_STORE: "system", SSL_CERT_FILE: `${certs}/ca.pem` },
    });
    const granted = await fetch(`${server.url}/?id=web-1`, { headers: JSON_ACCEPT });
    assert.equal(granted.status, 200, await granted.clone().text());
    await granted.body?.cancel();
    const observer = await tlsRedis.client();
    try {
      assert.equal(await observer.zCard("startup-lock:{tls}:leases"), 1, "the lease is in Redis");
    } finally {
      observer.destroy();
    }
    assertNoPassword(await everythingShown(server), PASSWORD);
    assert.equal(await server.stop(), 0);
    assertNoPassword(server.log.join("\n"), PASSWORD);
  },
});

if (!redis) {
  Deno.test.ignore(
    "startup-lock on a Redis store: skipped, redis-server is not installed",
    () => {},
  );
}
