/**
 * No secret in any output: a lock token or a password in a URL, mistyped or
 * not, is never echoed in an error, a note or a log line. Black-box: the real
 * program's stderr and stdout.
 */
import assert from "node:assert/strict";
import { freePort } from "../_client.ts";
import { runProgram, startProgram } from "../_program.ts";

/** A password no message may contain. */
const PASSWORD = "hunter2pw";
/** A real token with one character too many, as a sloppy paste gives: its 22 first are the secret. */
const TOKEN_PLUS_ONE = "tMYIJqftBXyUZdV0n8Y8rwx";

function assertNoSecret(output: string, secret: string): void {
  assert.ok(!output.includes(secret), `the secret is in the output:\n${output}`);
}

Deno.test("release refuses a malformed token with one line that does not show it", async (t) => {
  const server = `http://127.0.0.1:${freePort()}`;
  const cases: { what: string; args: string[]; env?: Record<string, string>; says: RegExp }[] = [
    {
      what: "--token one character too long",
      args: ["--token", TOKEN_PLUS_ONE],
      says: /^startup-lock: Invalid --token \(23 characters, not shown\): expected the 22 /,
    },
    {
      what: "--token with a character outside base64url",
      args: [`-token=${TOKEN_PLUS_ONE.slice(0, 21)}!`],
      says: /^startup-lock: Invalid --token \(22 characters, not shown; character 22 is not /,
    },
    {
      what: "an empty --token",
      args: ["--token", ""],
      says: /^startup-lock: Invalid --token \(empty\): expected the 22 /,
    },
    {
      what: "STARTUP_LOCK_TOKEN one character too long",
      args: [],
      env: { STARTUP_LOCK_TOKEN: TOKEN_PLUS_ONE },
      says: /^startup-lock: Invalid STARTUP_LOCK_TOKEN \(23 characters, not shown\): expected /,
    },
  ];
  for (const { what, args, env, says } of cases) {
    await t.step(what, async () => {
      const res = await runProgram(["release", "--server", server, ...args], {
        ...(env ? { env } : {}),
      });
      assert.equal(res.code, 2, res.stderr);
      assert.equal(res.stdout, "");
      assert.match(res.stderr, /^startup-lock: [^\n]+\n$/);
      assert.match(res.stderr, says);
      assertNoSecret(res.stderr, TOKEN_PLUS_ONE.slice(0, 21));
    });
  }
});

Deno.test("a password in a URL flag never appears in an error", async (t) => {
  const cases: { what: string; args: string[]; env?: Record<string, string> }[] = [
    { what: "serve --store of another scheme", args: ["--store", `mysql://u:${PASSWORD}@db:3306`] },
    { what: "serve --store without a scheme", args: ["--store", `u:${PASSWORD}@db:6379`] },
    {
      what: "serve --store with a space before it",
      args: ["--store", ` redis://u:${PASSWORD}@db/x`],
    },
    // Mistyped: no valid URL, so it is quoted, and URL parsers do not find its password.
    { what: "serve --store with one slash", args: ["--store", `redis:/u:${PASSWORD}@db:6379`] },
    { what: "serve --store without a colon", args: ["--store", `redis//u:${PASSWORD}@db`] },
    {
      what: "serve --store with a space in the password and a bad database",
      args: ["--store", `redis://u:x ${PASSWORD}@db/x`],
    },
    {
      what: "STARTUP_LOCK_STORE with one slash",
      args: [],
      env: { STARTUP_LOCK_STORE: `rediss:/u:${PASSWORD}@db` },
    },
    { what: "serve --check", args: ["--check", `http://u:${PASSWORD}@db:99999/`] },
    { what: "serve -check of another scheme", args: ["-check", `ftp://u:${PASSWORD}@db/`] },
    {
      what: "acquire --server",
      args: ["acquire", "--server", `ftp://u:${PASSWORD}@lock:8888`],
    },
    {
      what: "hold --readyUrl",
      args: ["hold", "--server", "http://lock:8888", "--readyUrl", `http://u:${PASSWORD}@x:99999/`],
    },
    { what: "healthcheck --url", args: ["healthcheck", "--url", `ftp://u:${PASSWORD}@x/`] },
    {
      what: "inject --server",
      args: [
        "inject",
        ...["--server", `http://u:${PASSWORD}@x:99999/`, "--image", "i"],
        ...["--tlsCert", "c.pem", "--tlsKey", "k.pem"],
      ],
    },
  ];
  for (const { what, args, env } of cases) {
    await t.step(what, async () => {
      const res = await runProgram(args, { ...(env ? { env } : {}) });
      assert.equal(res.code, 2, res.stderr);
      assert.match(res.stderr, /^startup-lock: [^\n]+\n$/);
      assert.match(res.stderr, /:\*\*\*@/, "the password's place is marked");
      assertNoSecret(res.stderr + res.stdout, PASSWORD);
    });
  }
});

Deno.test("a client's notes never show the password of its --server or --url", async (t) => {
  const down = `127.0.0.1:${freePort()}`;
  const cases: { what: string; args: string[] }[] = [
    { what: "healthcheck", args: ["healthcheck", "--url", `http://u:${PASSWORD}@${down}/healthz`] },
    {
      what: "acquire, text",
      args: ["acquire", "--server", `http://u:${PASSWORD}@${down}`, "--wait", "0"],
    },
    {
      what: "acquire, json",
      args: ["acquire", "--server", `http://u:${PASSWORD}@${down}`, "-wait=0", "-logFormat=json"],
    },
  ];
  for (const { what, args } of cases) {
    await t.step(what, async () => {
      const res = await runProgram(args);
      assert.notEqual(res.code, 0, res.stderr);
      assert.match(res.stderr, /u:\*\*\*@127\.0\.0\.1/);
      assertNoSecret(res.stderr + res.stdout, PASSWORD);
    });
  }
});

Deno.test("the server never shows the password of a --check URL: log, refusal, status, metrics", async () => {
  const check = `http://u:${PASSWORD}@127.0.0.1:${freePort()}/health`;
  await using server = await startProgram(["--check", check, "--failHc", "1"]);
  await server.waitForLog(/Dependency .* is down/);
  const body = await (await fetch(`${server.url}/?wait=0`)).text();
  const status = await (await fetch(`${server.url}/status`, {
    headers: { Accept: "application/json" },
  })).text();
  const page = await (await fetch(`${server.url}/status`, { headers: { Accept: "text/html" } }))
    .text();
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const log = server.log.join("\n");
  assert.match(log, /Dependency http:\/\/u:\*\*\*@127\.0\.0\.1:\d+\/health is down/);
  assert.match(status, /"url":"http:\/\/u:\*\*\*@127\.0\.0\.1:\d+\/health"/);
  assert.match(metrics, /endpoint="http:\/\/u:\*\*\*@127\.0\.0\.1:\d+\/health"/);
  for (const output of [log, body, status, page, metrics]) assertNoSecret(output, PASSWORD);
});
