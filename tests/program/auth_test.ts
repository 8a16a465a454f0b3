/**
 * `--authToken`, `--authTokenFile` and `STARTUP_LOCK_AUTH_TOKEN` on the server
 * and the client commands (`lib/commands/_auth.ts`): parsing, and black-box
 * runs of the real program with a token, a token file that rotates, and client
 * commands with and without the token.
 */
import assert from "node:assert/strict";
import type { Command } from "../../lib/args.ts";
import { acquireCommand } from "../../lib/commands/acquire.ts";
import { holdCommand } from "../../lib/commands/hold.ts";
import { releaseCommand } from "../../lib/commands/release.ts";
import { runCommand } from "../../lib/commands/run.ts";
import { serveCommand } from "../../lib/commands/serve.ts";
import { UsageError } from "../../lib/errors.ts";
import { runProgram, startProgram } from "../_program.ts";

const SECRET = "s3cret-Token_1";
const LOCK_TOKEN = /^[A-Za-z0-9_-]{22}$/m;

function envOf(vars: Record<string, string>): (name: string) => string | undefined {
  return (name) => vars[name];
}

function serveAuth(argv: string[], env: Record<string, string> = {}) {
  const parsed = serveCommand.parse(argv, envOf(env));
  if (parsed.action !== "run" || parsed.options.action !== "serve") throw new Error("not serving");
  return parsed.options.config.auth;
}

async function withTokenFile<T>(
  content: string,
  fn: (path: string) => T | Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/token`, content);
    return await fn(`${dir}/token`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("serveCommand.parse() reads --authToken, STARTUP_LOCK_AUTH_TOKEN and --authTokenFile", async () => {
  assert.equal(serveAuth([]), undefined);
  assert.deepEqual(serveAuth(["--authToken", SECRET]), { token: SECRET });
  assert.deepEqual(serveAuth([], { STARTUP_LOCK_AUTH_TOKEN: SECRET }), { token: SECRET });
  await withTokenFile(`${SECRET}\n`, (path) => {
    assert.deepEqual(serveAuth(["--authTokenFile", path]), { tokenFile: path });
    assert.deepEqual(serveAuth([], { STARTUP_LOCK_AUTH_TOKEN_FILE: path }), { tokenFile: path });
  });
});

Deno.test("the client commands read --authToken, STARTUP_LOCK_AUTH_TOKEN and --authTokenFile", async () => {
  const server = ["--server", "http://lock:8888"];
  type Options = { authToken?: string; acquire?: { authToken?: string } };
  const token = (command: Command<unknown>, argv: string[], env = {}) => {
    const parsed = command.parse(argv, envOf(env));
    if (parsed.action !== "run") throw new Error("help");
    const options = parsed.options as Options;
    return options.acquire ? options.acquire.authToken : options.authToken;
  };
  await withTokenFile(`${SECRET}\n`, (path) => {
    const commands = [acquireCommand, releaseCommand, runCommand, holdCommand];
    for (const command of commands as Command<unknown>[]) {
      const extra = command === releaseCommand as Command<unknown>
        ? ["--token", "A".repeat(22)]
        : command === holdCommand as Command<unknown>
        ? ["--readyUrl", "http://localhost:8080/ready"]
        : [];
      const rest = command === runCommand as Command<unknown> ? ["--", "true"] : [];
      const argv = [...server, ...extra];
      assert.equal(token(command, [...argv, ...rest]), undefined, command.name);
      assert.equal(token(command, [...argv, "--authToken", SECRET, ...rest]), SECRET);
      assert.equal(token(command, [...argv, ...rest], { STARTUP_LOCK_AUTH_TOKEN: SECRET }), SECRET);
      assert.equal(token(command, [...argv, "--authTokenFile", path, ...rest]), SECRET);
    }
  });
});

Deno.test("--authToken and --authTokenFile refuse bad values with a UsageError that never shows the token", async (t) => {
  await withTokenFile("", async (empty) => {
    const cases: { argv: string[]; env?: Record<string, string>; says: string }[] = [
      { argv: ["--authToken="], says: "Invalid --authToken: the token is empty" },
      {
        argv: ["--authToken", "has space"],
        says: "Invalid --authToken: the token must not contain whitespace",
      },
      {
        argv: [],
        env: { STARTUP_LOCK_AUTH_TOKEN: "tab\there" },
        says: "Invalid STARTUP_LOCK_AUTH_TOKEN: the token must not contain whitespace",
      },
      {
        argv: ["--authToken", SECRET, "--authTokenFile", empty],
        says: "Both --authToken and --authTokenFile are set: give only one",
      },
      {
        argv: ["--authTokenFile", empty],
        env: { STARTUP_LOCK_AUTH_TOKEN: SECRET },
        says: "Both STARTUP_LOCK_AUTH_TOKEN and --authTokenFile are set: give only one",
      },
      {
        argv: ["--authTokenFile", `${empty}.missing`],
        says: `Invalid --authTokenFile "${empty}.missing": no such file`,
      },
      {
        argv: ["--authTokenFile", empty],
        says: `Invalid --authTokenFile "${empty}": the token is empty in the file`,
      },
    ];
    for (const { argv, env = {}, says } of cases) {
      await t.step(says, () => {
        for (const command of [serveCommand, acquireCommand]) {
          const full = command === serveCommand ? argv : ["--server", "http://lock/", ...argv];
          assert.throws(() => command.parse(full, envOf(env)), (error: unknown) => {
            assert.ok(error instanceof UsageError);
            assert.equal(error.message, says);
            assert.ok(!error.message.includes("has space") && !error.message.includes(SECRET));
            return true;
          });
        }
      });
    }
  });
});

Deno.test("startup-lock exits 2 with one line for a bad --authToken or --authTokenFile", async () => {
  for (const args of [["--authToken", "two words"], ["--authTokenFile", "/nonexistent/token"]]) {
    for (const lead of [[], ["acquire", "--server", "http://127.0.0.1:1/"]]) {
      const { code, stdout, stderr } = await runProgram([...lead, ...args]);
      assert.equal(code, 2, stderr);
      assert.equal(stdout, "");
      assert.equal(stderr.trim().split("\n").length, 1, stderr);
      assert.ok(!stderr.includes("two words"), stderr);
    }
  }
});

Deno.test("startup-lock --help never shows the token from the environment", async () => {
  for (const args of [["--help"], ["acquire", "--help"], ["release", "--help"]]) {
    const { code, stdout } = await runProgram(args, { env: { STARTUP_LOCK_AUTH_TOKEN: SECRET } });
    assert.equal(code, 0);
    assert.match(stdout, /--authToken TOKEN/);
    assert.match(stdout, /--authTokenFile PATH/);
    assert.ok(!stdout.includes(SECRET));
  }
});

Deno.test("startup-lock --authToken asks for the token on the lock API and never logs it", async () => {
  // Which routes need the token and what a refusal says: tests/unit/http/auth_test.ts.
  await using server = await startProgram(["--authToken", SECRET, "--logLevel", "debug"]);
  const missing = await fetch(`${server.url}/?id=a`);
  assert.equal(missing.status, 401);
  await missing.body?.cancel();
  const right = await fetch(`${server.url}/?id=a`, {
    headers: { Authorization: `Bearer ${SECRET}` },
  });
  assert.equal(right.status, 200);
  await right.body?.cancel();
  await server.stop();
  assert.ok(!server.log.join("\n").includes(SECRET));
  assert.match(server.log.join("\n"), /bearer token required/);
});

Deno.test("the client commands send the token, and exit 1 with one line on a 401 without retrying", async () => {
  await using server = await startProgram([], { env: { STARTUP_LOCK_AUTH_TOKEN: SECRET } });
  const acquire = ["acquire", "--server", server.url, "--wait", "30s"];

  const missing = await runProgram(acquire);
  assert.equal(missing.code, 1, missing.stderr);
  assert.match(missing.stderr, /The server needs a bearer token \(HTTP 401\): give --authToken/);
  assert.doesNotMatch(missing.stderr, /Waiting/);

  const wrong = await runProgram([...acquire, "--authToken", "wrong-token"]);
  assert.equal(wrong.code, 1, wrong.stderr);
  assert.match(wrong.stderr, /The server refused the token \(HTTP 401\)/);
  assert.ok(!wrong.stderr.includes("wrong-token"));

  const ok = await runProgram(acquire, { env: { STARTUP_LOCK_AUTH_TOKEN: SECRET } });
  assert.equal(ok.code, 0, ok.stderr);
  const token = ok.stdout.trim();
  assert.match(token, LOCK_TOKEN);

  const releaseArgs = ["release", "--server", server.url, "--token", token];
  const refused = await runProgram(releaseArgs);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^startup-lock: The server needs a bearer token \(HTTP 401\)/m);
  await withTokenFile(`${SECRET}\n`, async (path) => {
    const released = await runProgram([...releaseArgs, "--authTokenFile", path]);
    assert.equal(released.code, 0, released.stderr);
  });

  const run = await runProgram([
    "run",
    "--server",
    server.url,
    "--authToken",
    SECRET,
    "--",
    "true",
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /Released the lock/);
});

Deno.test("startup-lock --authTokenFile takes a rotated token without a restart and refuses the old one", async () => {
  await withTokenFile("first-token\n", async (path) => {
    await using server = await startProgram(["--authTokenFile", path]);
    const statusWith = async (token: string) => {
      const res = await fetch(`${server.url}/status`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      await res.body?.cancel();
      return res.status;
    };
    assert.equal(await statusWith("first-token"), 200);
    await Deno.writeTextFile(`${path}.new`, "second-token\n");
    await Deno.rename(`${path}.new`, path);
    const deadline = Date.now() + 10_000;
    while (await statusWith("second-token") !== 200) {
      assert.ok(Date.now() < deadline, "the new token is taken within 10 s");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(await statusWith("first-token"), 401);
    await server.waitForLog(/Reloaded the auth token from --authTokenFile/);

    const acquired = await runProgram(
      ["acquire", "--server", server.url, "--authTokenFile", path],
    );
    assert.equal(acquired.code, 0, acquired.stderr);
    assert.ok(!server.log.join("\n").includes("-token\n"));
  });
});

const FLAG_WARNING =
  /is visible to other users in ps and in the shell history \(deno task also echoes its command line\)/;

Deno.test("a secret given as a flag gets one WARN line pointing to the file flag and the variable, never the secret", async (t) => {
  await t.step("the server's --authToken, in the log format", async () => {
    for (const format of ["text", "json"]) {
      await using server = await startProgram(["--authToken", SECRET, "--logFormat", format]);
      assert.equal(await server.stop(), 0);
      const warnings = server.log.filter((l) => FLAG_WARNING.test(l));
      assert.equal(warnings.length, 1, server.log.join("\n"));
      const line = warnings[0]!;
      assert.ok(line.includes("--authTokenFile PATH or STARTUP_LOCK_AUTH_TOKEN"), line);
      if (format === "text") assert.match(line, /^\S+ WARN {2}--authToken /);
      else {
        const entry = JSON.parse(line);
        assert.equal(entry.level, "warn");
        assert.equal(entry.event, "secret_in_flag");
      }
      assert.ok(!server.log.join("\n").includes(SECRET));
    }
  });
  await t.step("no warning when the token comes from the variable", async () => {
    await using server = await startProgram([], { env: { STARTUP_LOCK_AUTH_TOKEN: SECRET } });
    assert.equal(await server.stop(), 0);
    assert.ok(!server.log.some((l) => FLAG_WARNING.test(l)), server.log.join("\n"));
  });
  await t.step("a password in --store", async () => {
    const args = ["--store", `redis://user:${SECRET}@127.0.0.1:1`, "--locks", "1"];
    const { serveCommand } = await import("../../lib/commands/serve.ts");
    const parsed = serveCommand.parse(args, () => undefined);
    assert.ok(parsed.action === "run" && parsed.options.action === "serve");
    const { warnings } = parsed.options;
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /^--store has a password, which is visible /);
    assert.ok(
      warnings[0]!.includes("--storePasswordFile PATH or STARTUP_LOCK_STORE_PASSWORD_FILE"),
    );
    assert.ok(!warnings[0]!.includes(SECRET));
  });
  await using server = await startProgram([], { env: { STARTUP_LOCK_AUTH_TOKEN: SECRET } });
  await t.step("the client's --authToken and release's --token, on stderr", async () => {
    const acquired = await runProgram([
      "acquire",
      "--server",
      server.url,
      "--authToken",
      SECRET,
      "--logFormat",
      "json",
    ]);
    assert.equal(acquired.code, 0, acquired.stderr);
    const lines = acquired.stderr.trim().split("\n").map((l) => JSON.parse(l));
    const warnings = lines.filter((l) => l.event === "secret_in_flag");
    assert.equal(warnings.length, 1, acquired.stderr);
    assert.equal(warnings[0].level, "warn");
    assert.ok(!acquired.stderr.includes(SECRET));
    const token = acquired.stdout.trim();
    const released = await runProgram(["release", "--server", server.url, "--token", token], {
      env: { STARTUP_LOCK_AUTH_TOKEN: SECRET },
    });
    assert.equal(released.code, 0, released.stderr);
    const [warning, ...rest] = released.stderr.trim().split("\n");
    assert.match(warning!, /^startup-lock: --token is visible to other users in ps /);
    assert.ok(warning!.includes("--tokenFile PATH or STARTUP_LOCK_TOKEN"), warning);
    assert.ok(!released.stderr.includes(token));
    assert.equal(rest.length, 1, released.stderr);
  });
});

Deno.test({
  name:
    "startup-lock refuses a token file under /dev with one line that asks for no flag of Deno's",
  // Deno lets a program read device paths (/dev/shm included) only with every permission.
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const path = `/dev/shm/startup-lock-test-token-${Deno.pid}`;
    // Written by the test, which may: the program, with its own permissions, may not read it.
    await Deno.writeTextFile(path, `${SECRET}\n`).catch(() => {});
    try {
      for (
        const args of [
          ["--authTokenFile", path],
          ["release", "--server", "http://127.0.0.1:1/", "--tokenFile", path],
        ]
      ) {
        const { stderr } = await runProgram(args);
        assert.equal(stderr.trim().split("\n").length, 1, stderr);
        assert.match(stderr, /--(authT|t)okenFile "\/dev\/shm\/startup-lock-test-token-\d+": /);
        assert.match(stderr, /use a file elsewhere/);
        assert.doesNotMatch(stderr, /--allow-all/);
      }
    } finally {
      await Deno.remove(path).catch(() => {});
    }
  },
});
