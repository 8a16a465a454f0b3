/**
 * `startup-lock hold`: its probe handler called directly, and the real program
 * as a sidecar against the real server.
 */
import assert from "node:assert/strict";
import { createProbeHandler, holdCommand, parseListen } from "../../lib/commands/hold.ts";
import { freePort, startClient } from "../_client.ts";
import { runProgram, startProgram } from "../_program.ts";
import { eventually } from "../_wait.ts";

const SERVER = "http://lock:8888";

Deno.test("holdCommand.parse() needs --readyUrl and listens on 0.0.0.0:8889 by default", () => {
  const noEnv = () => undefined;
  const parsed = holdCommand.parse(
    ["--server", SERVER, "--readyUrl", "http://localhost:8080/ready"],
    noEnv,
  );
  assert.ok(parsed.action === "run");
  assert.deepEqual(parsed.options.listen, { hostname: "0.0.0.0", port: 8889 });
  assert.throws(() => holdCommand.parse(["--server", SERVER], noEnv), /Missing --readyUrl URL/);
});

Deno.test("holdCommand.parse() takes a tcp://HOST:PORT --readyUrl and refuses one without a port", () => {
  const noEnv = () => undefined;
  const parse = (readyUrl: string) =>
    holdCommand.parse(["--server", SERVER, "--readyUrl", readyUrl], noEnv);
  const parsed = parse("tcp://localhost:5432");
  assert.ok(parsed.action === "run");
  assert.equal(parsed.options.readyUrl.protocol, "tcp:");
  assert.equal(parsed.options.readyUrl.hostname, "localhost");
  assert.equal(parsed.options.readyUrl.port, "5432");
  const ipv6 = parse("tcp://[::1]:5432/");
  assert.ok(ipv6.action === "run");
  assert.equal(ipv6.options.readyUrl.href, "tcp://[::1]:5432");
  for (const bad of ["tcp://localhost", "tcp://localhost:0", "tcp://localhost:70000", "tcp://:5"]) {
    assert.throws(
      () => parse(bad),
      (e: Error) =>
        e.message === `Invalid --readyUrl "${bad}": ` +
            "expected tcp://HOST:PORT with a port from 1 to 65535",
      bad,
    );
  }
  assert.throws(
    () => parse("ftp://localhost/"),
    /Invalid --readyUrl "ftp:\/\/localhost\/": unsupported scheme "ftp": expected an http:\/\/, https:\/\/ or tcp:\/\/ URL/,
  );
});

Deno.test("parseListen() reads HOST:PORT, [IPv6]:PORT and :PORT", () => {
  assert.deepEqual(parseListen("127.0.0.1:0"), { hostname: "127.0.0.1", port: 0 });
  assert.deepEqual(parseListen("[::1]:9000"), { hostname: "::1", port: 9000 });
  assert.deepEqual(parseListen(":9000"), { hostname: "0.0.0.0", port: 9000 });
  for (const bad of ["9000", "host:", "host:70000", "a b:1"]) {
    assert.throws(() => parseListen(bad), RangeError, bad);
  }
});

Deno.test("createProbeHandler() answers /acquired 503 until the lock is held, then 200", async () => {
  let acquired = false;
  const handler = createProbeHandler(() => acquired);
  const get = (path: string, method = "GET") =>
    handler(new Request(`http://sidecar${path}`, { method }));
  assert.equal(get("/acquired").status, 503);
  assert.equal(get("/healthz").status, 200);
  acquired = true;
  const res = get("/acquired");
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "Lock acquired\n");
  assert.equal(get("/acquired", "HEAD").status, 200);
  assert.equal(get("/other").status, 404);
  const wrong = get("/acquired", "POST");
  assert.equal(wrong.status, 405);
  assert.equal(wrong.headers.get("Allow"), "GET, HEAD");
});

async function status(url: string): Promise<number> {
  const res = await fetch(url);
  await res.body?.cancel();
  return res.status;
}

Deno.test("hold reports the lock on /acquired, releases it once the app is ready, and exits 0 on SIGTERM", async () => {
  await using server = await startProgram();
  let ready = false;
  await using app = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(null, { status: ready ? 204 : 503 }),
  );
  const holder = await runProgram(["acquire", "--server", server.url, "--duration", "60s"]);
  assert.equal(holder.code, 0, holder.stderr);

  await using hold = startClient([
    "hold",
    "--server",
    server.url,
    "--id",
    "sidecar-1",
    "--duration",
    "60s",
    "--readyUrl",
    `http://127.0.0.1:${app.addr.port}/ready`,
    "--readyInterval",
    "100ms",
    "--listen",
    "127.0.0.1:0",
  ]);
  const listening = await hold.waitForLine("stderr", /Listening on http:\/\/127\.0\.0\.1:\d+\//);
  const probes = `http://127.0.0.1:${/:(\d+)\//.exec(listening)?.[1]}`;
  await hold.waitForLine("stderr", /Waiting: Locked: /);
  assert.equal(await status(`${probes}/acquired`), 503, "not held while another client holds it");
  assert.equal(await status(`${probes}/healthz`), 200);

  const released = await runProgram([
    "release",
    "--server",
    server.url,
    "--token",
    holder.stdout.trim(),
  ]);
  assert.equal(released.code, 0, released.stderr);
  await eventually(
    "/acquired answers 200",
    async () => (await status(`${probes}/acquired`)) === 200,
  );
  await server.waitForLog(/Lock granted to sidecar-1/);
  const whileStarting = await runProgram(["acquire", "--server", server.url, "--wait", "1s"]);
  assert.equal(whileStarting.code, 124, "hold keeps the lock until the app is ready");

  ready = true;
  await hold.waitForLine("stderr", /Released the lock: .* answered 2xx/);
  const next = await runProgram(["acquire", "--server", server.url, "--wait", "10s"]);
  assert.equal(next.code, 0, next.stderr);
  assert.equal(await status(`${probes}/acquired`), 200, "stays 200 after the release");

  hold.kill("SIGTERM");
  assert.equal(await hold.exited(), 0, hold.stderr.join("\n"));
});

Deno.test("hold with a tcp:// --readyUrl releases the lock once the app accepts a connection", async () => {
  await using server = await startProgram();
  const appPort = freePort();
  await using hold = startClient([
    "hold",
    "--server",
    server.url,
    "--duration",
    "60s",
    "--readyUrl",
    `tcp://127.0.0.1:${appPort}`,
    "--readyInterval",
    "100ms",
    "--listen",
    "127.0.0.1:0",
  ]);
  await hold.waitForLine("stderr", /Acquired the lock/);
  const whileStarting = await runProgram(["acquire", "--server", server.url, "--wait", "1s"]);
  assert.equal(whileStarting.code, 124, "nothing listens on the port yet: the lock is held");

  using app = Deno.listen({ hostname: "127.0.0.1", port: appPort });
  const accepted = app.accept();
  await hold.waitForLine(
    "stderr",
    new RegExp(`Released the lock: tcp://127\\.0\\.0\\.1:${appPort} accepted a connection`),
  );
  (await accepted).close();
  const next = await runProgram(["acquire", "--server", server.url, "--wait", "10s"]);
  assert.equal(next.code, 0, next.stderr);
  hold.kill("SIGTERM");
  assert.equal(await hold.exited(), 0, hold.stderr.join("\n"));
});

Deno.test("hold gives back the lock it still holds on SIGTERM and exits 0", async () => {
  await using server = await startProgram();
  await using app = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(null, { status: 503 }),
  );
  await using hold = startClient([
    "hold",
    "--server",
    server.url,
    "--duration",
    "60s",
    "--readyUrl",
    `http://127.0.0.1:${app.addr.port}/ready`,
    "--listen",
    "127.0.0.1:0",
  ]);
  await hold.waitForLine("stderr", /Acquired the lock/);
  hold.kill("SIGTERM");
  assert.equal(await hold.exited(), 0, hold.stderr.join("\n"));
  assert.ok(
    hold.stderr.some((l) => /Released the lock: received SIGTERM/.test(l)),
    hold.stderr.join("\n"),
  );
  const next = await runProgram(["acquire", "--server", server.url, "--wait", "5s"]);
  assert.equal(next.code, 0, next.stderr);
});
