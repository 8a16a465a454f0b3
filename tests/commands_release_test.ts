/**
 * Black-box tests of `startup-lock release`.
 */
import assert from "node:assert/strict";
import { freePort } from "./_client.ts";
import { runProgram, startProgram } from "./_program.ts";

Deno.test("release frees the lock at once; releasing again exits 0 with a note", async () => {
  await using server = await startProgram();
  const held = await runProgram(["acquire", "--server", server.url, "--duration", "60s"]);
  assert.equal(held.code, 0, held.stderr);
  const token = held.stdout.trim();

  const first = await runProgram(["release", "--server", server.url, "--token", token]);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stdout, "");
  assert.equal(first.stderr, "");
  const next = await runProgram(["acquire", "--server", server.url, "--wait", "1s"]);
  assert.equal(next.code, 0, `the slot is free again: ${next.stderr}`);

  const again = await runProgram(["release", "--server", server.url, "--token", token]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stderr, "startup-lock: The lock was already released or expired\n");
});

Deno.test("release reads the token from --tokenFile or STARTUP_LOCK_TOKEN", async (t) => {
  await using server = await startProgram(["--locks", "2"]);
  const dir = await Deno.makeTempDir();
  try {
    const tokenFile = `${dir}/token`;
    await t.step("--tokenFile as written by acquire", async () => {
      const held = await runProgram(["acquire", "--server", server.url, "--tokenFile", tokenFile]);
      assert.equal(held.code, 0, held.stderr);
      const res = await runProgram(["release", "--tokenFile", tokenFile], {
        env: { STARTUP_LOCK_SERVER: server.url },
      });
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stderr, "", "released, not already gone");
    });
    await t.step("STARTUP_LOCK_TOKEN, as run sets it for its command", async () => {
      const held = await runProgram(["acquire", "--server", server.url]);
      assert.equal(held.code, 0, held.stderr);
      const res = await runProgram(["release", "--server", server.url], {
        env: { STARTUP_LOCK_TOKEN: held.stdout.trim() },
      });
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stderr, "", "released, not already gone");
    });
    await t.step(
      "an empty --tokenFile (the server gave no token) is nothing to release",
      async () => {
        await Deno.writeTextFile(tokenFile, "");
        const res = await runProgram(["release", "--server", server.url, "--tokenFile", tokenFile]);
        assert.equal(res.code, 0, res.stderr);
        assert.match(res.stderr, /No token in --tokenFile .*the lock only expires/);
      },
    );
    await t.step("a missing --tokenFile exits 1", async () => {
      const res = await runProgram([
        "release",
        "--server",
        server.url,
        "--tokenFile",
        `${dir}/missing`,
      ]);
      assert.equal(res.code, 1);
      assert.match(res.stderr, /^startup-lock: Cannot read --tokenFile ".*\/missing": /);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("release exits 1 with one line when the server cannot be reached", async () => {
  const url = `http://127.0.0.1:${freePort()}`;
  const { code, stdout, stderr } = await runProgram([
    "release",
    "--server",
    url,
    "--token",
    "AAAAAAAAAAAAAAAAAAAAAA",
  ]);
  assert.equal(code, 1);
  assert.equal(stdout, "");
  assert.match(stderr, new RegExp(`^startup-lock: Cannot release the lock at ${url}/: .+\\n$`));
});
