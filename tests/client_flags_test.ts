import assert from "node:assert/strict";
import { envName } from "../lib/args.ts";
import {
  ACQUIRE_FLAGS,
  type AcquireOptions,
  CLIENT_COMMANDS,
  DEFAULT_POLL_INTERVAL_MS,
  DEFAULT_READY_INTERVAL_MS,
  defaultId,
  HOLD_FLAGS,
  parseAcquireArgs,
  parseHoldArgs,
  parseListen,
  parseReleaseArgs,
  parseRunArgs,
  RELEASE_FLAGS,
  RUN_FLAGS,
} from "../lib/client/flags.ts";
import { UsageError } from "../lib/errors.ts";
import { runProgram } from "./_program.ts";

function envOf(vars: Record<string, string>): (name: string) => string | undefined {
  return (name) => vars[name];
}

function go<T>(parsed: { action: "help"; usage: string } | { action: "go"; options: T }): T {
  assert.equal(parsed.action, "go");
  if (parsed.action !== "go") throw new Error("unreachable");
  return parsed.options;
}

const SERVER = "http://lock:8888";

Deno.test("parseAcquireArgs() waits forever and lets the server pick the duration by default", () => {
  const options = go(parseAcquireArgs(["--server", SERVER], envOf({ HOSTNAME: "pod-a" })));
  assert.match(options.id, /^pod-a-[0-9a-f]{8}$/);
  assert.deepEqual(
    { ...options, id: "" },
    {
      server: new URL("http://lock:8888/"),
      durationMs: undefined,
      id: "",
      waitMs: undefined,
      tokenFile: undefined,
      pollIntervalMs: DEFAULT_POLL_INTERVAL_MS,
    } satisfies AcquireOptions,
  );
});

Deno.test("parseAcquireArgs() reads every flag, and each from its STARTUP_LOCK_* variable", () => {
  const values: Record<string, string> = {
    server: "https://lock.example/prefix?x=1",
    duration: "90s",
    id: "web-1",
    wait: "2m",
    tokenFile: "/run/app.token",
    pollInterval: "500ms",
  };
  assert.deepEqual(
    Object.keys(values).sort(),
    ACQUIRE_FLAGS.map((f) => f.name).sort(),
    "the test covers every flag",
  );
  const expected: AcquireOptions = {
    server: new URL("https://lock.example/prefix/"),
    durationMs: 90_000,
    id: "web-1",
    waitMs: 120_000,
    tokenFile: "/run/app.token",
    pollIntervalMs: 500,
  };
  const argv = Object.entries(values).flatMap(([k, v]) => [`--${k}`, v]);
  assert.deepEqual(go(parseAcquireArgs(argv, envOf({}))), expected);
  const env = Object.fromEntries(Object.entries(values).map(([k, v]) => [envName(k), v]));
  assert.deepEqual(go(parseAcquireArgs([], envOf(env))), expected);
});

Deno.test("parseAcquireArgs() prefers a flag over its variable", () => {
  const options = go(
    parseAcquireArgs(["--server", SERVER, "--wait", "5s"], envOf({ STARTUP_LOCK_WAIT: "1h" })),
  );
  assert.equal(options.waitMs, 5_000);
});

Deno.test("parseAcquireArgs() throws a UsageError naming the flag or variable, the value and what is allowed", async (t) => {
  const cases: { argv: string[]; env?: Record<string, string>; says: string }[] = [
    { argv: [], says: "Missing --server URL (or STARTUP_LOCK_SERVER)" },
    { argv: ["--server", "lock:8888"], says: 'Invalid --server "lock:8888": unsupported scheme' },
    {
      argv: ["--server", "nope"],
      says: 'Invalid --server "nope": expected an http:// or https://',
    },
    { argv: ["--wait", "soon"], says: 'Invalid --wait "soon": expected a positive number' },
    { argv: ["--wait", "0"], says: 'Invalid --wait "0": expected a duration greater than zero' },
    { argv: ["--duration", "-5"], says: 'Invalid --duration "-5"' },
    { argv: ["--id", "has space"], says: 'Invalid --id "has space": expected 1 to 128 printable' },
    { argv: ["--id", "x".repeat(129)], says: "Invalid --id" },
    {
      argv: [],
      env: { STARTUP_LOCK_POLL_INTERVAL: "often" },
      says: "Invalid STARTUP_LOCK_POLL_INTERVAL",
    },
    { argv: ["--bogus"], says: 'Unknown flag "--bogus"' },
    { argv: ["extra"], says: 'Unexpected argument "extra"' },
  ];
  for (const { argv, env, says } of cases) {
    await t.step(says, () => {
      const withServer = argv.includes("--server") || says.startsWith("Missing --server")
        ? argv
        : [...argv, "--server", SERVER];
      assert.throws(() => parseAcquireArgs(withServer, envOf(env ?? {})), (error) => {
        assert.ok(error instanceof UsageError);
        assert.ok(error.message.includes(says), error.message);
        return true;
      });
    });
  }
});

Deno.test("parseReleaseArgs() takes the token from --token or --tokenFile, the command line winning", () => {
  const env = envOf({ STARTUP_LOCK_TOKEN: "fromEnv", STARTUP_LOCK_SERVER: SERVER });
  assert.deepEqual(go(parseReleaseArgs([], env)).from, { token: "fromEnv" });
  assert.deepEqual(go(parseReleaseArgs(["--tokenFile", "/t"], env)).from, { tokenFile: "/t" });
  assert.deepEqual(go(parseReleaseArgs(["--token", "abc-_1"], env)).from, { token: "abc-_1" });
  assert.throws(
    () => parseReleaseArgs(["--token", "a", "--tokenFile", "/t"], env),
    /Both --token and --tokenFile are set: give only one/,
  );
  assert.throws(() => parseReleaseArgs(["--server", SERVER], envOf({})), /Missing --token TOKEN/);
  assert.throws(() => parseReleaseArgs(["--token", "a/b"], env), /Invalid --token "a\/b"/);
});

Deno.test("parseRunArgs() takes the command after --, untouched", () => {
  const options = go(
    parseRunArgs(
      ["--server", SERVER, "--readyUrl", "http://localhost:8080/ready", "--", "app", "--port", "1"],
      envOf({}),
    ),
  );
  assert.equal(options.command, "app");
  assert.deepEqual(options.args, ["--port", "1"]);
  assert.equal(options.readyUrl?.href, "http://localhost:8080/ready");
  assert.equal(options.readyIntervalMs, DEFAULT_READY_INTERVAL_MS);
  assert.throws(() => parseRunArgs(["--server", SERVER], envOf({})), /Missing command: put the/);
  assert.throws(() => parseRunArgs(["--server", SERVER, "--"], envOf({})), /Missing command/);
  assert.throws(
    () => parseRunArgs(["--server", SERVER, "app"], envOf({})),
    /Unexpected argument "app": put the command after "--"/,
  );
});

Deno.test("parseHoldArgs() needs --readyUrl and listens on 0.0.0.0:8889 by default", () => {
  const options = go(
    parseHoldArgs(["--server", SERVER, "--readyUrl", "http://localhost:8080/ready"], envOf({})),
  );
  assert.deepEqual(options.listen, { hostname: "0.0.0.0", port: 8889 });
  assert.throws(() => parseHoldArgs(["--server", SERVER], envOf({})), /Missing --readyUrl URL/);
});

Deno.test("parseListen() reads HOST:PORT, [IPv6]:PORT and :PORT", () => {
  assert.deepEqual(parseListen("127.0.0.1:0"), { hostname: "127.0.0.1", port: 0 });
  assert.deepEqual(parseListen("[::1]:9000"), { hostname: "::1", port: 9000 });
  assert.deepEqual(parseListen(":9000"), { hostname: "0.0.0.0", port: 9000 });
  for (const bad of ["9000", "host:", "host:70000", "a b:1"]) {
    assert.throws(() => parseListen(bad), RangeError, bad);
  }
});

Deno.test("defaultId() makes an id the server accepts from any HOSTNAME", () => {
  assert.match(defaultId(undefined), /^client-[0-9a-f]{8}$/);
  assert.match(defaultId("my host\t1"), /^my-host-1-[0-9a-f]{8}$/);
  const long = defaultId("h".repeat(300));
  assert.equal(long.length, 128);
  assert.notEqual(defaultId("a"), defaultId("a"));
});

/** Asserts `stderr` is exactly one line starting `startup-lock: `, with no stack trace. */
function assertOneLine(stderr: string): string {
  const lines = stderr.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${stderr}`);
  assert.ok(lines[0]!.startsWith("startup-lock: "), lines[0]);
  assert.doesNotMatch(stderr, /^\s*at /m, "no stack trace");
  return lines[0]!;
}

Deno.test("the client commands exit 2 with one line on stderr for a usage error", async (t) => {
  const cases: { args: string[]; says: string }[] = [
    { args: ["acquire"], says: "Missing --server URL (or STARTUP_LOCK_SERVER)" },
    { args: ["acquire", "--server", SERVER, "--wait", "x"], says: 'Invalid --wait "x"' },
    { args: ["acquire", "--server", SERVER, "--duration", "0"], says: 'Invalid --duration "0"' },
    { args: ["acquire", "--server", SERVER, "--bogus"], says: 'Unknown flag "--bogus"' },
    { args: ["release", "--server", SERVER], says: "Missing --token TOKEN or --tokenFile PATH" },
    { args: ["run", "--server", SERVER], says: "Missing command" },
    { args: ["run", "--server", SERVER, "--", ""], says: "Missing command" },
    { args: ["hold", "--server", SERVER], says: "Missing --readyUrl URL" },
    {
      args: ["hold", "--server", SERVER, "--readyUrl", "http://x/", "--listen", "x"],
      says: 'Invalid --listen "x": expected HOST:PORT',
    },
    { args: ["aquire"], says: 'Unexpected argument "aquire": expected a command (serve, acquire' },
  ];
  for (const { args, says } of cases) {
    await t.step(args.join(" "), async () => {
      const { code, stdout, stderr } = await runProgram(args);
      assert.equal(code, 2, stderr);
      assert.equal(stdout, "");
      const line = assertOneLine(stderr);
      assert.ok(line.includes(says), line);
    });
  }
});

Deno.test("startup-lock --help lists the client commands", async () => {
  const { code, stdout } = await runProgram(["--help"]);
  assert.equal(code, 0);
  for (const name of ["serve", ...Object.keys(CLIENT_COMMANDS)]) {
    assert.match(stdout, new RegExp(`^  ${name} +\\S`, "m"), name);
  }
});

Deno.test("startup-lock COMMAND --help lists the command's flags with their variables", async (t) => {
  const commands = {
    acquire: ACQUIRE_FLAGS,
    release: RELEASE_FLAGS,
    run: RUN_FLAGS,
    hold: HOLD_FLAGS,
  };
  for (const [name, flags] of Object.entries(commands)) {
    await t.step(name, async () => {
      const { code, stdout, stderr } = await runProgram([name, "--help"]);
      assert.equal(code, 0, stderr);
      assert.equal(stderr, "");
      assert.match(stdout, new RegExp(`^Usage: startup-lock ${name} `));
      for (const flag of flags) {
        const line = stdout.split("\n").find((l) =>
          new RegExp(`^\\s+--${flag.name}(\\s|$)`).test(l)
        );
        assert.ok(line, `--${flag.name} is listed`);
        if (flag.kind !== "boolean") assert.ok(line.includes(`env: ${envName(flag.name)}`), line);
      }
    });
  }
});
