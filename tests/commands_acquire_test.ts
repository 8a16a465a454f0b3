/**
 * Black-box tests of `startup-lock acquire`: the real program against the real
 * server, and against a stand-in of the original server's protocol.
 */
import assert from "node:assert/strict";
import { freePort, startClient, startOriginalServer, TOKEN } from "./_client.ts";
import { runProgram, startProgram } from "./_program.ts";

Deno.test("acquire prints the token on stdout, writes --tokenFile and exits 0", async () => {
  await using server = await startProgram();
  const dir = await Deno.makeTempDir();
  try {
    const tokenFile = `${dir}/token`;
    const { code, stdout, stderr } = await runProgram([
      "acquire",
      "--server",
      server.url,
      "--duration",
      "60s",
      "--id",
      "web-1",
      "--tokenFile",
      tokenFile,
    ]);
    assert.equal(code, 0, stderr);
    const token = stdout.trim();
    assert.match(token, TOKEN);
    assert.equal(stdout, `${token}\n`, "only the token on stdout");
    assert.equal((await Deno.readTextFile(tokenFile)).trim(), token);
    assert.match(stderr, /Acquired the lock as web-1 until \d{4}-/);
    await server.waitForLog(/Lock granted to web-1 for 1m/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("acquire with the same --id gets the same lock back, so retries are idempotent", async () => {
  await using server = await startProgram();
  const args = ["acquire", "--server", server.url, "--duration", "60", "--id", "retry-me"];
  const first = await runProgram(args);
  const again = await runProgram([...args, "--wait", "1s"]);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, first.stdout);
});

Deno.test("acquire exits 124 when --wait runs out while another client holds the lock", async () => {
  await using server = await startProgram();
  const holder = await runProgram(["acquire", "--server", server.url, "--duration", "60s"]);
  assert.equal(holder.code, 0, holder.stderr);
  const { code, stdout, stderr } = await runProgram([
    "acquire",
    "--server",
    server.url,
    "--wait",
    "1s",
  ]);
  assert.equal(code, 124, stderr);
  assert.equal(stdout, "");
  assert.match(stderr, /Waiting: Locked: the only slot is held/);
  assert.match(stderr, /Gave up: no lock within 1s \(--wait\); last reason: Locked: /);
});

Deno.test("a waiting acquire gets the lock as soon as the holder releases it", async () => {
  await using server = await startProgram();
  const first = await runProgram(["acquire", "--server", server.url, "--duration", "60s"]);
  assert.equal(first.code, 0, first.stderr);
  // Waiting at most 30 s for a lock held for 60 s: only the release can explain success.
  await using waiter = startClient(["acquire", "--duration", "60s", "--wait", "30s"], {
    STARTUP_LOCK_SERVER: server.url,
  });
  await waiter.waitForLine("stderr", /Waiting: Locked: /);
  const release = await runProgram([
    "release",
    "--server",
    server.url,
    "--token",
    first.stdout.trim(),
  ]);
  assert.equal(release.code, 0, release.stderr);
  assert.equal(await waiter.exited(), 0, waiter.stderr.join("\n"));
  assert.match(waiter.stdout.join("\n"), TOKEN);
  assert.notEqual(waiter.stdout[0], first.stdout.trim());
});

Deno.test("acquire exits 1 with the server's reason when the server refuses the request", async () => {
  await using server = await startProgram(["--maxDuration", "1m"]);
  const { code, stdout, stderr } = await runProgram([
    "acquire",
    "--server",
    server.url,
    "--duration",
    "2m",
  ]);
  assert.equal(code, 1, stderr);
  assert.equal(stdout, "");
  assert.match(
    stderr,
    /^startup-lock: The server refused the request \(HTTP 400\): Invalid duration "120": expected at most 60 seconds/m,
  );
  assert.doesNotMatch(stderr, /Waiting/, "a refused request is not retried");
});

Deno.test("acquire retries an unreachable server until --wait runs out, then exits 124", async () => {
  const url = `http://127.0.0.1:${freePort()}`;
  const { code, stdout, stderr } = await runProgram([
    "acquire",
    "--server",
    url,
    "--wait",
    "2s",
    "--pollInterval",
    "200ms",
  ]);
  assert.equal(code, 124, stderr);
  assert.equal(stdout, "");
  const waiting = stderr.split("\n").filter((l) => l.includes(`Waiting: cannot reach ${url}/`));
  assert.ok(waiting.length >= 2, `retried:\n${stderr}`);
  assert.match(stderr, /Gave up: no lock within 2s \(--wait\); last reason: cannot reach /);
});

Deno.test("acquire gets the lock once an unreachable server comes up", async () => {
  const port = freePort();
  await using client = startClient([
    "acquire",
    "--server",
    `http://127.0.0.1:${port}`,
    "--wait",
    "30s",
    "--pollInterval",
    "200ms",
  ]);
  await client.waitForLine("stderr", /Waiting: cannot reach/);
  await using _server = await startProgram(["--port", String(port)]);
  assert.equal(await client.exited(), 0, client.stderr.join("\n"));
  assert.match(client.stdout[0] ?? "", TOKEN);
});

Deno.test("acquire polls a server of the original protocol until it grants, and says there is no token", async () => {
  await using original = startOriginalServer(3);
  const { code, stdout, stderr } = await runProgram([
    "acquire",
    "--server",
    original.url,
    "--duration",
    "60",
    "--pollInterval",
    "100ms",
  ]);
  assert.equal(code, 0, stderr);
  assert.equal(stdout, "", "no token to print");
  const waiting = stderr.split("\n").filter((l) => l === "startup-lock: Waiting: Locked");
  assert.equal(waiting.length, 3, stderr);
  assert.match(stderr, /the server gave no token .*it will expire by its duration/);
  assert.equal(original.requests.length, 4);
  for (const url of original.requests) assert.equal(url.searchParams.get("duration"), "60");
});

Deno.test("acquire writes an empty --tokenFile when the server gives no token", async () => {
  await using original = startOriginalServer(0);
  const dir = await Deno.makeTempDir();
  try {
    const tokenFile = `${dir}/token`;
    await Deno.writeTextFile(tokenFile, "stale-token-of-an-earlier-run\n");
    const { code, stderr } = await runProgram([
      "acquire",
      "--server",
      original.url,
      "--tokenFile",
      tokenFile,
    ]);
    assert.equal(code, 0, stderr);
    assert.equal(await Deno.readTextFile(tokenFile), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("acquire gives the lock back and exits 1 when it cannot write --tokenFile", async () => {
  await using server = await startProgram();
  const { code, stdout, stderr } = await runProgram([
    "acquire",
    "--server",
    server.url,
    "--duration",
    "60s",
    "--tokenFile",
    "/nonexistent-dir/token",
  ]);
  assert.equal(code, 1, stderr);
  assert.equal(stdout, "");
  assert.match(
    stderr,
    /Cannot write --tokenFile "\/nonexistent-dir\/token": .*; released the lock/,
  );
  const next = await runProgram(["acquire", "--server", server.url, "--wait", "5s"]);
  assert.equal(next.code, 0, next.stderr);
});

Deno.test("acquire names itself after HOSTNAME with a random suffix when no --id is given", async () => {
  await using server = await startProgram(["--locks", "2"]);
  const env = { HOSTNAME: "node-7" };
  const a = await runProgram(["acquire", "--server", server.url], { env });
  const b = await runProgram(["acquire", "--server", server.url], { env });
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  const idA = /Acquired the lock as (\S+)/.exec(a.stderr)?.[1];
  const idB = /Acquired the lock as (\S+)/.exec(b.stderr)?.[1];
  assert.match(idA ?? "", /^node-7-[0-9a-f]{8}$/);
  assert.match(idB ?? "", /^node-7-[0-9a-f]{8}$/);
  assert.notEqual(idA, idB, "two invocations on one host never share a lock");
  assert.notEqual(a.stdout, b.stdout);
});
