/**
 * `startup-lock release`: its command line, and black-box runs against the
 * real server and a stand-in of the original server.
 */
import assert from "node:assert/strict";
import { releaseCommand, type ReleaseOptions } from "../../lib/commands/release.ts";
import { UsageError } from "../../lib/errors.ts";
import { freePort, startOriginalServer } from "../_client.ts";
import { runProgram, startProgram } from "../_program.ts";

const SERVER = "http://lock:8888";

function parse(argv: string[], vars: Record<string, string> = {}): ReleaseOptions {
  const parsed = releaseCommand.parse(argv, (name) => vars[name]);
  assert.equal(parsed.action, "run");
  if (parsed.action !== "run") throw new Error("unreachable");
  return parsed.options;
}

/** Tokens are 22 base64url characters. */
const FROM_ENV = "fromEnvAAAAAAAAAAAAAAA";
const WELL_FORMED = "abc-_1AAAAAAAAAAAAAAAA";

Deno.test("releaseCommand.parse() takes the token from --token or --tokenFile, the command line winning", () => {
  const env = { STARTUP_LOCK_TOKEN: FROM_ENV, STARTUP_LOCK_SERVER: SERVER };
  assert.deepEqual(parse([], env).from, { token: FROM_ENV });
  assert.deepEqual(parse(["--tokenFile", "/t"], env).from, {
    tokenFile: "/t",
    name: "--tokenFile",
  });
  assert.deepEqual(parse(["--token", WELL_FORMED], env).from, { token: WELL_FORMED });
  const read = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.throws(
    () => releaseCommand.parse(["--token", "a", "--tokenFile", "/t"], read(env)),
    /Both --token and --tokenFile are set: give only one/,
  );
  assert.throws(
    () => releaseCommand.parse(["--server", SERVER], read({})),
    /Missing --token TOKEN/,
  );
  assert.throws(
    () => releaseCommand.parse(["--token", "a/b"], read(env)),
    /Invalid --token \(3 characters, not shown; character 2 is not allowed\): expected the 22 /,
  );
});

/** Tokens are base64url: one in 64 starts with "-", and some with "--". */
const DASH_TOKEN = "-AAAAAAAAAAAAAAAAAAAAA";
const DOUBLE_DASH_TOKEN = "--AAAAAAAAAAAAAAAAAAAA";

Deno.test("releaseCommand.parse() takes a token that starts with - or --", () => {
  assert.deepEqual(parse(["--server", SERVER, "--token", DASH_TOKEN]).from, { token: DASH_TOKEN });
  assert.deepEqual(parse(["--token", DOUBLE_DASH_TOKEN, "--server", SERVER]).from, {
    token: DOUBLE_DASH_TOKEN,
  });
  assert.deepEqual(parse([`--token=${DOUBLE_DASH_TOKEN}`, "--server", SERVER]).from, {
    token: DOUBLE_DASH_TOKEN,
  });
  assert.deepEqual(parse(["--server", SERVER], { STARTUP_LOCK_TOKEN: DASH_TOKEN }).from, {
    token: DASH_TOKEN,
  });
  assert.throws(
    () => releaseCommand.parse(["--token", "--server", SERVER], () => undefined),
    (error: unknown) =>
      error instanceof UsageError && error.message === "Flag --token needs a value: TOKEN",
  );
});

Deno.test("releaseCommand.parse() refuses a token that is not 22 base64url characters", async (t) => {
  const bad: [string, string][] = [
    ["bogus", "5 characters, not shown"],
    [WELL_FORMED.slice(1), "21 characters, not shown"],
    [`${WELL_FORMED}A`, "23 characters, not shown"],
    ["a.bcdefghijklmnopqrstu", "22 characters, not shown; character 2 is not allowed"],
    [" ", "empty"],
  ];
  for (const [token, says] of bad) {
    await t.step(JSON.stringify(token), () => {
      assert.throws(
        () => releaseCommand.parse(["--server", SERVER, "--token", token], () => undefined),
        (error: unknown) =>
          error instanceof UsageError &&
          error.message.startsWith(`Invalid --token (${says}): expected the 22 characters `),
      );
    });
  }
});

Deno.test("releaseCommand.usage() says nothing of durations, which it does not take", () => {
  const usage = releaseCommand.usage();
  assert.match(
    usage,
    /^Usage: startup-lock release --server URL \(--token TOKEN \| --tokenFile PATH\)/,
  );
  assert.doesNotMatch(usage, /[Dd]uration|seconds/);
});

Deno.test("release frees the lock at once; releasing again exits 0 with a note", async () => {
  await using server = await startProgram();
  const held = await runProgram(["acquire", "--server", server.url, "--duration", "60s"]);
  assert.equal(held.code, 0, held.stderr);
  const token = held.stdout.trim();

  // The token from the variable: --token on the command line adds a warning (tests/program/auth_test.ts).
  const release = () =>
    runProgram(["release", "--server", server.url], { env: { STARTUP_LOCK_TOKEN: token } });
  const first = await release();
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stdout, "");
  assert.equal(first.stderr, `startup-lock: Released lock ${token.slice(0, 6)}…\n`);
  assert.ok(!first.stderr.includes(token), "never the whole token");
  const next = await runProgram(["acquire", "--server", server.url, "--wait", "1s"]);
  assert.equal(next.code, 0, `the slot is free again: ${next.stderr}`);

  const again = await release();
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
      assert.match(res.stderr, /^startup-lock: Released lock /, "released, not already gone");
    });
    await t.step("STARTUP_LOCK_TOKEN, as run sets it for its command", async () => {
      const held = await runProgram(["acquire", "--server", server.url]);
      assert.equal(held.code, 0, held.stderr);
      const res = await runProgram(["release", "--server", server.url], {
        env: { STARTUP_LOCK_TOKEN: held.stdout.trim() },
      });
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stderr, /^startup-lock: Released lock /, "released, not already gone");
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
    await t.step("a --tokenFile with a malformed token exits 2 with one line", async () => {
      await Deno.writeTextFile(tokenFile, "bogus\n");
      const res = await runProgram(["release", "--server", server.url, "--tokenFile", tokenFile]);
      assert.equal(res.code, 2, res.stderr);
      assert.match(
        res.stderr,
        /^startup-lock: Invalid token in --tokenFile ".*\/token": expected the 22 characters [^\n]*\n$/,
      );
    });
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

Deno.test("release exits 2 with one line for a malformed token, and asks no server", async (t) => {
  const cases: { what: string; args: string[]; env?: Record<string, string>; says: string }[] = [
    {
      what: "--token bogus",
      args: ["--token", "bogus"],
      says: "Invalid --token (5 characters, not shown)",
    },
    {
      what: "STARTUP_LOCK_TOKEN, one character short",
      args: [],
      env: { STARTUP_LOCK_TOKEN: WELL_FORMED.slice(1) },
      says: "Invalid STARTUP_LOCK_TOKEN (21 characters, not shown)",
    },
  ];
  for (const { what, args, env, says } of cases) {
    await t.step(what, async () => {
      await using original = startOriginalServer(0);
      const res = await runProgram(["release", "--server", original.url, ...args], {
        ...(env ? { env } : {}),
      });
      assert.equal(res.code, 2, res.stderr);
      assert.equal(res.stdout, "");
      assert.match(res.stderr, /^startup-lock: [^\n]+\n$/);
      assert.ok(res.stderr.includes(says), res.stderr);
      assert.deepEqual(original.methods, [], "no request was sent");
    });
  }
});

Deno.test("release exits 1 with one line when the server cannot be reached", async () => {
  const url = `http://127.0.0.1:${freePort()}`;
  const { code, stdout, stderr } = await runProgram(["release", "--server", url], {
    env: { STARTUP_LOCK_TOKEN: "AAAAAAAAAAAAAAAAAAAAAA" },
  });
  assert.equal(code, 1);
  assert.equal(stdout, "");
  assert.match(stderr, new RegExp(`^startup-lock: Cannot release the lock at ${url}/: .+\\n$`));
});

Deno.test("release takes a token that starts with - or -- on the command line and from STARTUP_LOCK_TOKEN", async (t) => {
  await using server = await startProgram();
  const cases: { what: string; args: string[]; env?: Record<string, string> }[] = [
    { what: "--token -…", args: ["--token", DASH_TOKEN] },
    { what: "--token --…", args: ["--token", DOUBLE_DASH_TOKEN] },
    { what: "--token=--…", args: [`--token=${DOUBLE_DASH_TOKEN}`] },
    { what: "STARTUP_LOCK_TOKEN=-…", args: [], env: { STARTUP_LOCK_TOKEN: DASH_TOKEN } },
  ];
  for (const { what, args, env } of cases) {
    await t.step(what, async () => {
      const res = await runProgram(["release", "--server", server.url, ...args], {
        ...(env ? { env } : {}),
      });
      // The server knows no such lock: it got the token, whole, and answered 404.
      assert.equal(res.code, 0, res.stderr);
      assert.equal(
        res.stderr.split("\n").at(-2),
        "startup-lock: The lock was already released or expired",
      );
    });
  }
});

Deno.test("release exits 1 saying so when the server is the original, which has no release", async (t) => {
  const token = "AAAAAAAAAAAAAAAAAAAAAA";
  await t.step("it grants the DELETE as a lock request", async () => {
    await using original = startOriginalServer(0);
    const { code, stdout, stderr } = await runProgram(["release", "--server", original.url], {
      env: { STARTUP_LOCK_TOKEN: token },
    });
    assert.equal(code, 1, stderr);
    assert.equal(stdout, "");
    assert.equal(
      stderr,
      `startup-lock: Cannot release the lock at ${original.url}/: answered 200 "Lock acquired" ` +
        "to DELETE: not a startup-lock server (the original server has no release; its locks " +
        "expire)\n",
    );
    assert.deepEqual(original.methods, ["DELETE"]);
  });
  await t.step("it is locked", async () => {
    await using original = startOriginalServer(1);
    const { code, stderr } = await runProgram(["release", "--server", original.url], {
      env: { STARTUP_LOCK_TOKEN: token },
    });
    assert.equal(code, 1, stderr);
    assert.match(stderr, /: answered 423 "Locked" to DELETE: not a startup-lock server /);
  });
});
