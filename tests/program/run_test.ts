/**
 * Black-box tests of `startup-lock run`: the real program supervising a small
 * Deno app, against the real server.
 */
import assert from "node:assert/strict";
import { DEFAULT_READY_INTERVAL_MS } from "../../lib/commands/_client.ts";
import { runCommand, type RunOptions } from "../../lib/commands/run.ts";
import { freePort, startClient, startStandIn, TOKEN } from "../_client.ts";
import { runProgram, startProgram } from "../_program.ts";

const SERVER = "http://lock:8888";

function parse(argv: string[]): RunOptions {
  const parsed = runCommand.parse(argv, () => undefined);
  assert.equal(parsed.action, "run");
  if (parsed.action !== "run") throw new Error("unreachable");
  return parsed.options;
}

Deno.test("runCommand.parse() takes the command after --, untouched", () => {
  const options = parse(
    ["--server", SERVER, "--readyUrl", "http://localhost:8080/ready", "--", "app", "--port", "1"],
  );
  assert.equal(options.command, "app");
  assert.deepEqual(options.args, ["--port", "1"]);
  assert.equal(options.readyUrl?.href, "http://localhost:8080/ready");
  assert.equal(options.readyIntervalMs, DEFAULT_READY_INTERVAL_MS);
  assert.equal(options.acquire.server.href, "http://lock:8888/");
  const noEnv = () => undefined;
  assert.equal(
    parse(["--server", SERVER, "--readyUrl", "tcp://localhost:5432", "--", "app"]).readyUrl?.href,
    "tcp://localhost:5432",
    "run shares hold's tcp ready check",
  );
  assert.throws(() => runCommand.parse(["--server", SERVER], noEnv), /Missing command: put the/);
  assert.throws(() => runCommand.parse(["--server", SERVER, "--"], noEnv), /Missing command/);
  assert.throws(
    () => runCommand.parse(["--server", SERVER, "app"], noEnv),
    /Unexpected argument "app": put the command after "--"/,
  );
  assert.throws(
    () => runCommand.parse(["--server", SERVER, "sh", "-c", "echo -x"], noEnv),
    /Unexpected argument "sh": put the command after "--"/,
    "the forgotten -- is the mistake, not sh's -c",
  );
});

/**
 * The app: prints the token it got, serves `/ready` (503, then 200 after
 * READY_AFTER_MS) when PORT is not 0, exits with EXIT_CODE after EXIT_AFTER_MS
 * unless that is negative, and exits 42 on SIGTERM.
 */
const APP_SOURCE = `
const [port, readyAfterMs, exitAfterMs, exitCode] = Deno.args.map(Number);
console.log("app: token=" + (Deno.env.get("STARTUP_LOCK_TOKEN") ?? ""));
const started = performance.now();
Deno.addSignalListener("SIGTERM", () => {
  console.log("app: got SIGTERM");
  Deno.exit(42);
});
if (port) {
  Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, () =>
    performance.now() - started >= readyAfterMs
      ? new Response("ready\\n")
      : new Response("starting\\n", { status: 503 }));
}
if (exitAfterMs >= 0) setTimeout(() => Deno.exit(exitCode), exitAfterMs);
`;

const dir = await Deno.makeTempDir({ prefix: "startup-lock-run-" });
const APP = `${dir}/app.ts`;
await Deno.writeTextFile(APP, APP_SOURCE);
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

/** The command line that runs the app. */
function app(port: number, readyAfterMs: number, exitAfterMs: number, exitCode = 0): string[] {
  return [
    Deno.execPath(),
    "run",
    "--quiet",
    "--allow-net",
    "--allow-env=STARTUP_LOCK_TOKEN",
    APP,
    ...[port, readyAfterMs, exitAfterMs, exitCode].map(String),
  ];
}

Deno.test("run releases the lock once the app is ready, hands it the token, and forwards SIGTERM", async () => {
  await using server = await startProgram();
  const port = freePort();
  const readyUrl = `http://127.0.0.1:${port}/ready`;
  await using run = startClient([
    "run",
    "--server",
    server.url,
    "--id",
    "run-1",
    "--duration",
    "60s",
    "--readyUrl",
    readyUrl,
    "--readyInterval",
    "100ms",
    "--",
    ...app(port, 500, -1),
  ]);
  const tokenLine = await run.waitForLine("stdout", /^app: token=/);
  assert.match(tokenLine.slice("app: token=".length), TOKEN);

  await run.waitForLine(
    "stderr",
    /Released the lock: http:\/\/127\.0\.0\.1:\d+\/ready answered 2xx/,
  );
  await server.waitForLog(/Lock of run-1 released/);
  // Held for 60 s, released after about half a second: another client gets it at once.
  const next = await runProgram(["acquire", "--server", server.url, "--wait", "10s"]);
  assert.equal(next.code, 0, next.stderr);
  const stillRunning = await fetch(readyUrl);
  assert.equal(stillRunning.status, 200, "the app is still running");
  await stillRunning.body?.cancel();

  run.kill("SIGTERM");
  assert.equal(await run.exited(), 42, "the app's exit code on SIGTERM");
  assert.ok(run.stdout.includes("app: got SIGTERM"), run.stdout.join("\n"));
});

Deno.test("run exits with the command's exit code and releases the lock when the command exits", async () => {
  await using server = await startProgram();
  const { code, stdout, stderr } = await runProgram([
    "run",
    "--server",
    server.url,
    "--duration",
    "60s",
    "--",
    ...app(0, 0, 0, 3),
  ]);
  assert.equal(code, 3, stderr);
  assert.match(stdout, /^app: token=[A-Za-z0-9_-]{22}$/m);
  assert.match(stderr, /Released the lock: .* exited with code 3/);
  const next = await runProgram(["acquire", "--server", server.url, "--wait", "5s"]);
  assert.equal(next.code, 0, next.stderr);
});

Deno.test("run exits 128 + the signal number when a signal ends the command", async () => {
  await using server = await startProgram();
  const { code, stderr } = await runProgram([
    "run",
    "--server",
    server.url,
    "--",
    "sh",
    "-c",
    "kill -KILL $$",
  ]);
  assert.equal(code, 137, stderr);
});

Deno.test("run exits 127 with one clear line when the command does not exist, and gives the lock back", async () => {
  await using server = await startProgram();
  const { code, stdout, stderr } = await runProgram([
    "run",
    "--server",
    server.url,
    "--duration",
    "60s",
    "--",
    "no-such-command-for-startup-lock",
  ]);
  assert.equal(code, 127, stderr);
  assert.equal(stdout, "");
  assert.match(stderr, /^startup-lock: Command not found: "no-such-command-for-startup-lock"$/m);
  const next = await runProgram(["acquire", "--server", server.url, "--wait", "5s"]);
  assert.equal(next.code, 0, next.stderr);
});

Deno.test("run stops waiting on SIGTERM before it holds a lock, without starting the command", async () => {
  await using server = await startProgram();
  const holder = await runProgram(["acquire", "--server", server.url, "--duration", "60s"]);
  assert.equal(holder.code, 0, holder.stderr);
  await using run = startClient(["run", "--server", server.url, "--", ...app(0, 0, 0)]);
  await run.waitForLine("stderr", /Waiting: Locked: /);
  run.kill("SIGTERM");
  assert.equal(await run.exited(), 143);
  assert.deepEqual(run.stdout, [], "the command never ran");
});

Deno.test("run exits 124 without starting the command when --wait runs out", async () => {
  await using server = await startProgram();
  const holder = await runProgram(["acquire", "--server", server.url, "--duration", "60s"]);
  assert.equal(holder.code, 0, holder.stderr);
  const { code, stdout } = await runProgram([
    "run",
    "--server",
    server.url,
    "--wait",
    "1s",
    "--",
    ...app(0, 0, 0),
  ]);
  assert.equal(code, 124);
  assert.equal(stdout, "", "the command never ran");
});

Deno.test("run counts the lock's expiry from the duration the server granted, not the one asked", async () => {
  // A server that grants 1 s whatever is asked, as when it cuts ?duration= to its --maxDuration.
  await using stub = startStandIn((request) => {
    if (request.method === "DELETE") return new Response(null, { status: 204 });
    return Response.json({
      status: "acquired",
      token: "AAAAAAAAAAAAAAAAAAAAAA",
      expiresAt: new Date(Date.now() + 1_000).toISOString(),
      duration: 1,
      requestedDuration: 7200,
    }, { headers: { "Lock-Duration": "1", "Lock-Duration-Requested": "7200" } });
  });
  // The app answers /ready 503 for an hour.
  const port = freePort();
  await using run = startClient([
    "run",
    "--server",
    stub.url,
    "--duration",
    "2h",
    "--readyUrl",
    `http://127.0.0.1:${port}/ready`,
    "--readyInterval",
    "100ms",
    "--",
    ...app(port, 3_600_000, -1),
  ]);
  try {
    await run.waitForLine("stderr", /The server granted 1s, less than --duration 2h/);
    // Asked for 2 h: only the granted second explains an expiry within the test.
    await run.waitForLine(
      "stderr",
      /The lock expired before http:\/\/127\.0\.0\.1:\d+\/ready answered 2xx/,
    );
  } finally {
    // run forwards it to the app, which would otherwise outlive a failed test.
    run.kill("SIGTERM");
    await run.exited();
  }
  assert.equal(await run.exited(), 42, "the app's exit code on SIGTERM");
});
