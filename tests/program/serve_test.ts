import assert from "node:assert/strict";
import { envName } from "../../lib/args.ts";
import { serveCommand, SERVER_FLAGS } from "../../lib/commands/serve.ts";
import * as defaults from "../../lib/config.ts";
import type { ServerConfig } from "../../lib/config.ts";
import { DURATION_HINT } from "../../lib/duration.ts";
import { UsageError } from "../../lib/errors.ts";
import { parseCheckTarget } from "../../lib/probes.ts";
import { VERSION } from "../../lib/version.ts";
import { runProgram } from "../_program.ts";

const noEnv = () => undefined;

function envOf(vars: Record<string, string>): (name: string) => string | undefined {
  return (name) => vars[name];
}

/** The config of a `serve` command; fails the test for `help` or `version`. */
function serve(argv: string[], env: Record<string, string> = {}): ServerConfig {
  const parsed = serveCommand.parse(argv, envOf(env));
  assert.equal(parsed.action, "run");
  if (parsed.action !== "run" || parsed.options.action !== "serve") {
    throw new Error(`not serving: ${JSON.stringify(parsed)}`);
  }
  return parsed.options.config;
}

const DEFAULT_CONFIG: ServerConfig = {
  host: defaults.DEFAULT_HOST,
  port: defaults.DEFAULT_PORT,
  locks: defaults.DEFAULT_LOCKS,
  timeoutMs: defaults.DEFAULT_LOCK_MS,
  checks: [],
  failHcMs: defaults.DEFAULT_FAIL_INTERVAL_MS,
  passHcMs: defaults.DEFAULT_PASS_INTERVAL_MS,
  checkTimeoutMs: defaults.DEFAULT_CHECK_TIMEOUT_MS,
  maxDurationMs: defaults.DEFAULT_MAX_DURATION_MS,
  maxWaitMs: defaults.DEFAULT_MAX_WAIT_MS,
  maxWaiters: defaults.DEFAULT_MAX_WAITERS,
  stateFile: undefined,
  store: { kind: "memory" },
  storeName: "default",
  cooldownMs: undefined,
  maxLoad: undefined,
  maxPressure: undefined,
  logLevel: defaults.DEFAULT_LOG_LEVEL,
  logFormat: defaults.DEFAULT_LOG_FORMAT,
};

Deno.test("serveCommand.parse() uses every DEFAULT_* constant when nothing is given", () => {
  assert.deepEqual(serveCommand.parse([], noEnv), {
    action: "run",
    options: { action: "serve", config: DEFAULT_CONFIG, warnings: [] },
  });
});

Deno.test("serveCommand.parse() ignores environment variables that are empty or blank", () => {
  const env = Object.fromEntries(SERVER_FLAGS.map((f) => [envName(f.name), " "]));
  assert.deepEqual(serve([], env), DEFAULT_CONFIG);
});

Deno.test("serveCommand.parse() reads every value flag", () => {
  const config = serve([
    "--host",
    "127.0.0.1",
    "--port",
    "9000",
    "--locks",
    "3",
    "--timeout",
    "30s",
    "--check",
    "http://es:9200/_cluster/health",
    "--failHc",
    "5",
    "--passHc",
    "2m",
    "--checkTimeout",
    "1500ms",
    "--maxDuration",
    "2h",
    "--maxWait",
    "90s",
    "--maxWaiters",
    "50",
    "--cooldown",
    "2s",
    "--maxLoad",
    "4.5",
    "--logLevel",
    "debug",
    "--logFormat",
    "json",
  ]);
  assert.deepEqual(config, {
    host: "127.0.0.1",
    port: 9000,
    locks: 3,
    timeoutMs: 30_000,
    checks: [{ kind: "http", url: "http://es:9200/_cluster/health" }],
    failHcMs: 5_000,
    passHcMs: 120_000,
    checkTimeoutMs: 1_500,
    maxDurationMs: 7_200_000,
    maxWaitMs: 90_000,
    maxWaiters: 50,
    stateFile: undefined,
    store: { kind: "memory" },
    storeName: "default",
    cooldownMs: 2_000,
    maxLoad: 4.5,
    maxPressure: undefined,
    logLevel: "debug",
    logFormat: "json",
  });
});

Deno.test("serveCommand.parse() accepts --flag=value", () => {
  const config = serve(["--port=9000", "--timeout=1m", "--check=tcp://db:5432"]);
  assert.equal(config.port, 9000);
  assert.equal(config.timeoutMs, 60_000);
  assert.deepEqual(config.checks, [
    { kind: "tcp", url: "tcp://db:5432", hostname: "db", port: 5432 },
  ]);
});

Deno.test("serveCommand.parse() accepts kebab-case spellings of camelCase flags", () => {
  const config = serve([
    "--fail-hc",
    "5",
    "--pass-hc=30s",
    "--check-timeout=2s",
    "--max-duration",
    "2h",
    "--log-level",
    "warn",
  ]);
  assert.equal(config.failHcMs, 5_000);
  assert.equal(config.passHcMs, 30_000);
  assert.equal(config.checkTimeoutMs, 2_000);
  assert.equal(config.maxDurationMs, 7_200_000);
  assert.equal(config.logLevel, "warn");
});

Deno.test("serveCommand.parse() accepts port 0 to pick a free port", () => {
  assert.equal(serve(["--port", "0"]).port, 0);
});

Deno.test("serveCommand.parse() takes the last of a repeated value flag", () => {
  assert.equal(serve(["--port", "1", "--port", "2"]).port, 2);
});

Deno.test("serveCommand.parse() collects a repeated --check in order", () => {
  assert.deepEqual(
    serve(["--check", "http://a/health", "--check=tcp://b:27017", "--check", "https://c/"]).checks,
    [
      { kind: "http", url: "http://a/health" },
      { kind: "tcp", url: "tcp://b:27017", hostname: "b", port: 27017 },
      { kind: "http", url: "https://c/" },
    ],
  );
});

Deno.test("serveCommand.parse() strips brackets from an IPv6 --host", () => {
  assert.equal(serve(["--host", "[::1]"]).host, "::1");
  assert.equal(serve(["--host", "::"]).host, "::");
});

Deno.test("serveCommand.parse() takes an empty --host as every interface, the original's default", () => {
  // The original's -host defaults to "", which Go binds on every interface.
  assert.equal(serve(["-host", ""]).host, defaults.DEFAULT_HOST);
  assert.equal(serve(["--host="]).host, defaults.DEFAULT_HOST);
});

Deno.test("serveCommand.parse() accepts the log level in any case", () => {
  assert.equal(serve(["--logLevel", "ERROR"]).logLevel, "error");
});

Deno.test("serveCommand.parse() accepts --timeout equal to --maxDuration", () => {
  const config = serve(["--timeout", "1m", "--maxDuration", "60s"]);
  assert.equal(config.timeoutMs, 60_000);
  assert.equal(config.maxDurationMs, 60_000);
});

Deno.test("serveCommand.parse() raises the default --maxDuration to a longer --timeout, as the original has no cap", async (t) => {
  // The original takes `-timeout 7200`; a drop-in replacement must start with it too.
  for (const argv of [["-timeout", "7200"], ["--timeout=2h"]]) {
    await t.step(argv.join(" "), () => {
      const config = serve(argv);
      assert.equal(config.timeoutMs, 7_200_000);
      assert.equal(config.maxDurationMs, 7_200_000);
    });
  }
  await t.step("STARTUP_LOCK_TIMEOUT=2h", () => {
    assert.equal(serve([], { STARTUP_LOCK_TIMEOUT: "2h" }).maxDurationMs, 7_200_000);
  });
  await t.step("a shorter --timeout keeps the default", () => {
    assert.equal(serve(["--timeout", "59m"]).maxDurationMs, defaults.DEFAULT_MAX_DURATION_MS);
  });
});

Deno.test("serveCommand.parse() reads every value flag from its STARTUP_LOCK_* variable", () => {
  const config = serve([], {
    STARTUP_LOCK_HOST: "127.0.0.1",
    STARTUP_LOCK_PORT: "9100",
    STARTUP_LOCK_LOCKS: "4",
    STARTUP_LOCK_TIMEOUT: "20",
    STARTUP_LOCK_CHECK: "http://a/health",
    STARTUP_LOCK_FAIL_HC: "3s",
    STARTUP_LOCK_PASS_HC: "90s",
    STARTUP_LOCK_CHECK_TIMEOUT: "250ms",
    STARTUP_LOCK_MAX_DURATION: "30m",
    STARTUP_LOCK_LOG_LEVEL: "error",
    STARTUP_LOCK_LOG_FORMAT: "JSON",
    STARTUP_LOCK_MAX_WAIT: "2m",
    STARTUP_LOCK_MAX_WAITERS: "7",
    STARTUP_LOCK_COOLDOWN: "1m",
    STARTUP_LOCK_MAX_LOAD: "8",
  });
  assert.deepEqual(config, {
    host: "127.0.0.1",
    port: 9100,
    locks: 4,
    timeoutMs: 20_000,
    checks: [{ kind: "http", url: "http://a/health" }],
    failHcMs: 3_000,
    passHcMs: 90_000,
    checkTimeoutMs: 250,
    maxDurationMs: 1_800_000,
    maxWaitMs: 120_000,
    maxWaiters: 7,
    stateFile: undefined,
    store: { kind: "memory" },
    storeName: "default",
    cooldownMs: 60_000,
    maxLoad: 8,
    maxPressure: undefined,
    logLevel: "error",
    logFormat: "json",
  });
});

Deno.test("serveCommand.parse() splits STARTUP_LOCK_CHECK on commas, skipping blanks", () => {
  const config = serve([], { STARTUP_LOCK_CHECK: " http://a/ , tcp://b:1,, ,https://c/x" });
  assert.deepEqual(config.checks, [
    { kind: "http", url: "http://a/" },
    { kind: "tcp", url: "tcp://b:1", hostname: "b", port: 1 },
    { kind: "http", url: "https://c/x" },
  ]);
});

Deno.test("serveCommand.parse() lets a flag win over its environment variable", async (t) => {
  await t.step("value flag", () => {
    const config = serve(["--port", "9000", "--fail-hc=7"], {
      STARTUP_LOCK_PORT: "9100",
      STARTUP_LOCK_FAIL_HC: "3",
      STARTUP_LOCK_LOCKS: "5",
    });
    assert.equal(config.port, 9000);
    assert.equal(config.failHcMs, 7_000);
    assert.equal(config.locks, 5, "a variable without a flag still applies");
  });
  await t.step("list flag replaces the whole list", () => {
    const config = serve(["--check", "tcp://flag:1"], {
      STARTUP_LOCK_CHECK: "http://env-a/,http://env-b/",
    });
    assert.deepEqual(config.checks.map((c) => c.url), ["tcp://flag:1"]);
  });
  await t.step("a valid flag hides an invalid variable", () => {
    assert.equal(serve(["--port", "9000"], { STARTUP_LOCK_PORT: "abc" }).port, 9000);
  });
});

Deno.test("serveCommand.parse() returns the help and version actions", async (t) => {
  await t.step("--help and -h", () => {
    assert.deepEqual(serveCommand.parse(["--help"], noEnv), { action: "help" });
    assert.deepEqual(serveCommand.parse(["-h"], noEnv), { action: "help" });
  });
  await t.step("--version", () => {
    assert.deepEqual(serveCommand.parse(["--version"], noEnv), {
      action: "run",
      options: { action: "version" },
    });
  });
  await t.step("--help wins over --version", () => {
    assert.deepEqual(serveCommand.parse(["--version", "--help"], noEnv), { action: "help" });
  });
  await t.step("--help wins over invalid values", () => {
    assert.deepEqual(
      serveCommand.parse(["--port", "x", "--help"], envOf({ STARTUP_LOCK_LOCKS: "0" })),
      { action: "help" },
    );
  });
});

Deno.test("serveCommand.usage() lists every flag with its default and environment variable", () => {
  const usage = serveCommand.usage();
  for (const flag of SERVER_FLAGS) {
    const line = usage.split("\n").find((l) =>
      l.trimStart().startsWith(`--${flag.name} `) ||
      l.trim() === `--${flag.name}`
    );
    assert.ok(line, `--${flag.name} is listed`);
    if (flag.kind !== "boolean") assert.ok(line.includes(`env: ${envName(flag.name)}`), line);
    if (flag.default !== undefined) assert.ok(line.includes(`default: ${flag.default}`), line);
  }
});

/** Password files for the tests of the Redis flags; removed when the tests end. */
const PASSWORD_DIR = Deno.makeTempDirSync({ prefix: "startup-lock-password-" });
addEventListener("unload", () => Deno.removeSync(PASSWORD_DIR, { recursive: true }));
const passwordFile = (name: string, text: string) => {
  const path = `${PASSWORD_DIR}/${name}`;
  Deno.writeTextFileSync(path, text);
  return path;
};
const PASSWORD_FILE = passwordFile("password", "fromFile\n");
const EMPTY_FILE = passwordFile("empty", "");
const NEWLINE_FILE = passwordFile("newline", "\n");

Deno.test("serveCommand.parse() reads --store: memory, or a Redis URL with its parts apart", async (t) => {
  const redis = (
    url: string,
    more: { username?: string; password?: string; tls?: boolean } = {},
  ): ServerConfig["store"] => ({
    kind: "redis",
    target: {
      url,
      username: more.username,
      password: more.password,
      tls: more.tls ?? false,
    },
  });
  const cases: [string, ServerConfig["store"]][] = [
    ["memory", { kind: "memory" }],
    ["redis://h:1", redis("redis://h:1")],
    ["redis://h", redis("redis://h:6379")],
    ["redis://h:1/0", redis("redis://h:1/0")],
    ["rediss://redis.example:6380", redis("rediss://redis.example:6380", { tls: true })],
    ["redis://user:pass@h:1/2", redis("redis://h:1/2", { username: "user", password: "pass" })],
    ["redis://:pass@h:1", redis("redis://h:1", { password: "pass" })],
    ["redis://:p%40ss%2Fw@h:1", redis("redis://h:1", { password: "p@ss/w" })],
    ["redis://[::1]:7000", redis("redis://[::1]:7000")],
    [" redis://h:1 ", redis("redis://h:1")],
  ];
  for (const [text, store] of cases) {
    await t.step(JSON.stringify(text), () => {
      assert.deepEqual(serve(["--store", text]).store, store);
    });
  }
});

Deno.test("serveCommand.parse() reads --name and the Redis password file beside a Redis store", async (t) => {
  await t.step("--name", () => {
    const config = serve(["--store", "redis://h:1", "--name", "web.pool-1_a"]);
    assert.equal(config.storeName, "web.pool-1_a");
    assert.equal(serve(["--store", "redis://h:1", "--name", "n".repeat(64)]).storeName.length, 64);
    assert.equal(serve(["--store", "redis://h:1"]).storeName, defaults.DEFAULT_STORE_NAME);
  });
  await t.step("--storePasswordFile, its last line break dropped", () => {
    const files: [string, string][] = [
      ["s3 cret\n", "s3 cret"],
      ["s3cret\r\n", "s3cret"],
      ["s3cret", "s3cret"],
    ];
    for (const [text, password] of files) {
      const file = passwordFile("variant", text);
      const config = serve(["--store", "redis://u@h:1", "--store-password-file", file]);
      assert.ok(config.store.kind === "redis");
      assert.equal(config.store.target.password, password);
      assert.equal(config.store.target.username, "u");
      assert.equal(config.store.target.url, "redis://h:1", "no password on display");
    }
  });
  await t.step(
    "from STARTUP_LOCK_STORE, STARTUP_LOCK_NAME and STARTUP_LOCK_STORE_PASSWORD_FILE",
    () => {
      const config = serve([], {
        STARTUP_LOCK_STORE: "rediss://h:6380/3",
        STARTUP_LOCK_NAME: "pool",
        STARTUP_LOCK_STORE_PASSWORD_FILE: PASSWORD_FILE,
      });
      assert.deepEqual(config.store, {
        kind: "redis",
        target: {
          url: "rediss://h:6380/3",
          username: undefined,
          password: "fromFile",
          tls: true,
        },
      });
      assert.equal(config.storeName, "pool");
    },
  );
  await t.step("a flag wins over its variable", () => {
    const config = serve(["--store", "redis://flag:1", "--name", "flag"], {
      STARTUP_LOCK_STORE: "redis://env:1",
      STARTUP_LOCK_NAME: "env",
    });
    assert.ok(config.store.kind === "redis");
    assert.equal(config.store.target.url, "redis://flag:1");
    assert.equal(config.storeName, "flag");
  });
  await t.step("--store memory given outright, with --stateFile", () => {
    const config = serve(["--store", "memory", "--stateFile", "/tmp/locks.json"]);
    assert.deepEqual(config.store, { kind: "memory" });
    assert.equal(config.stateFile, "/tmp/locks.json");
  });
});

Deno.test("startup-lock refuses a --storePasswordFile it cannot read with one line that asks for no flag of Deno's", async (t) => {
  const cases: { what: string; path: string; says: RegExp }[] = [
    { what: "a missing file", path: "/nonexistent/startup-lock-pw", says: /: no such file$/ },
    { what: "an empty path", path: "", says: /^Invalid --storePasswordFile "": expected a file/ },
  ];
  // Deno lets a program read device paths (/dev/shm, /dev/stdin) only with every permission.
  if (Deno.build.os === "linux") {
    cases.push({ what: "a path under /dev", path: "/dev/stdin", says: /use a file elsewhere$/ });
  }
  for (const { what, path, says } of cases) {
    await t.step(what, async () => {
      const res = await runProgram(["--store", "redis://127.0.0.1:1", "--storePasswordFile", path]);
      assert.equal(res.code, 2, res.stderr);
      const lines = res.stderr.trim().split("\n");
      assert.equal(lines.length, 1, res.stderr);
      assert.match(lines[0]!.replace(/^startup-lock: /, ""), says);
      assert.doesNotMatch(res.stderr, /--allow-all|os error|readfile/);
    });
  }
});

/** One row of the validation table. */
interface Invalid {
  /** What the row checks; the step is named "rejects <what>". */
  what: string;
  argv: string[];
  env?: Record<string, string>;
  /** The flag or variable the message must name. */
  names: string;
  /** The value the message must quote, when there is one. */
  value?: string;
  /** What the message must say is allowed (or what is wrong). */
  says: string;
  /** A secret (a password) the message must not contain. */
  hides?: string;
}

const PORT_RANGE = "expected an integer from 0 to 65535";
const LOCKS_RANGE = `expected an integer from 1 to ${defaults.MAX_LOCKS}`;
const NOT_ZERO = "expected a duration greater than zero";
const NOT_DURATION = `expected ${DURATION_HINT}`;
const TCP_FORM = "expected tcp://HOST:PORT with a port from 1 to 65535";
const URL_FORM =
  "expected a URL such as http://host:9200/health, https://host/ or tcp://host:27017";
const STORE_FORM = "expected memory, or redis://[USER:PASSWORD@]HOST:PORT[/DB] (rediss:// for TLS)";
const NAME_FORM = "expected 1 to 64 letters, digits, dots, dashes or underscores";
const REDIS_ONLY = "applies to a Redis store only: add --store redis://HOST:PORT";

const INVALID: Invalid[] = [
  {
    what: "a non-numeric port",
    argv: ["--port", "http"],
    names: "--port",
    value: "http",
    says: PORT_RANGE,
  },
  {
    what: "port 65536",
    argv: ["--port", "65536"],
    names: "--port",
    value: "65536",
    says: PORT_RANGE,
  },
  { what: "port -1", argv: ["--port", "-1"], names: "--port", value: "-1", says: PORT_RANGE },
  {
    what: "port -1 given as --port=-1",
    argv: ["--port=-1"],
    names: "--port",
    value: "-1",
    says: PORT_RANGE,
  },
  {
    what: "a fractional port",
    argv: ["--port", "80.5"],
    names: "--port",
    value: "80.5",
    says: PORT_RANGE,
  },
  { what: "an empty port", argv: ["--port="], names: "--port", value: "", says: PORT_RANGE },
  { what: "locks 0", argv: ["--locks", "0"], names: "--locks", value: "0", says: LOCKS_RANGE },
  { what: 'locks "x"', argv: ["--locks", "x"], names: "--locks", value: "x", says: LOCKS_RANGE },
  {
    what: "locks 1.5",
    argv: ["--locks", "1.5"],
    names: "--locks",
    value: "1.5",
    says: LOCKS_RANGE,
  },
  {
    what: "more locks than MAX_LOCKS",
    argv: ["--locks", String(defaults.MAX_LOCKS + 1)],
    names: "--locks",
    value: String(defaults.MAX_LOCKS + 1),
    says: LOCKS_RANGE,
  },
  { what: "timeout 0", argv: ["--timeout", "0"], names: "--timeout", value: "0", says: NOT_ZERO },
  {
    what: 'timeout "abc"',
    argv: ["--timeout", "abc"],
    names: "--timeout",
    value: "abc",
    says: NOT_DURATION,
  },
  {
    what: "timeout with an unknown unit",
    argv: ["--timeout", "1d"],
    names: "--timeout",
    value: "1d",
    says: NOT_DURATION,
  },
  { what: "failHc 0", argv: ["--failHc", "0"], names: "--failHc", value: "0", says: NOT_ZERO },
  {
    what: "fail-hc -5",
    argv: ["--fail-hc", "-5"],
    names: "--failHc",
    value: "-5",
    says: NOT_DURATION,
  },
  { what: "passHc 0s", argv: ["--passHc", "0s"], names: "--passHc", value: "0s", says: NOT_ZERO },
  {
    what: "pass-hc -1m",
    argv: ["--pass-hc=-1m"],
    names: "--passHc",
    value: "-1m",
    says: NOT_DURATION,
  },
  {
    what: "checkTimeout 0ms",
    argv: ["--checkTimeout", "0ms"],
    names: "--checkTimeout",
    value: "0ms",
    says: NOT_ZERO,
  },
  {
    what: "check-timeout -2s",
    argv: ["--check-timeout", "-2s"],
    names: "--checkTimeout",
    value: "-2s",
    says: NOT_DURATION,
  },
  {
    what: "maxDuration 0",
    argv: ["--maxDuration", "0"],
    names: "--maxDuration",
    value: "0",
    says: NOT_ZERO,
  },
  {
    what: "max-duration -1h",
    argv: ["--max-duration", "-1h"],
    names: "--maxDuration",
    value: "-1h",
    says: NOT_DURATION,
  },
  {
    what: "maxDuration above the timer limit",
    argv: ["--maxDuration", "1000h"],
    names: "--maxDuration",
    value: "1000h",
    says: "expected at most 2147483s (about 24 days)",
  },
  {
    what: "maxWait 0",
    argv: ["--maxWait", "0"],
    names: "--maxWait",
    value: "0",
    says: "expected a duration greater than zero",
  },
  {
    what: "maxWaiters not a number",
    argv: ["--max-waiters", "many"],
    names: "--maxWaiters",
    value: "many",
    says: "expected an integer from 0 to 1000000",
  },
  {
    what: "maxWait not a duration",
    argv: ["--maxWait", "soon"],
    names: "--maxWait",
    value: "soon",
    says: "expected",
  },
  {
    what: "maxWaiters a fraction",
    argv: ["--maxWaiters", "1.5"],
    names: "--maxWaiters",
    value: "1.5",
    says: "expected an integer from 0 to 1000000",
  },
  {
    what: "maxWaiters negative",
    argv: ["--maxWaiters", "-1"],
    names: "--maxWaiters",
    value: "-1",
    says: "expected an integer from 0 to 1000000",
  },
  {
    what: "--timeout bigger than --maxDuration",
    argv: ["--timeout", "2m", "--maxDuration", "1m"],
    names: "--timeout",
    value: "2m",
    says: "must not exceed --maxDuration (1m)",
  },
  {
    what: "--maxDuration shorter than the default --timeout",
    argv: ["--maxDuration", "5s"],
    names: "--maxDuration",
    value: "5s",
    says: "must not be shorter than the default lock duration (--timeout, 10s)",
  },
  {
    what: "--timeout bigger than a --maxDuration from the environment",
    argv: ["--timeout", "2h"],
    env: { STARTUP_LOCK_MAX_DURATION: "1h" },
    names: "--timeout",
    value: "2h",
    says: "must not exceed --maxDuration (1h)",
  },
  {
    what: "an unknown flag",
    argv: ["--verbose"],
    names: '"--verbose"',
    says: "see --help for the flags",
  },
  {
    what: "an unknown kebab-case flag, named as typed",
    argv: ["--no-such-flag=1"],
    names: '"--no-such-flag"',
    says: "see --help for the flags",
  },
  {
    what: "an unknown short flag",
    argv: ["-p", "80"],
    names: '"-p"',
    says: "see --help for the flags",
  },
  {
    what: "a missing value at the end",
    argv: ["--port"],
    names: "--port",
    says: "needs a value: PORT",
  },
  {
    what: "a flag where a value should be",
    argv: ["--timeout", "--locks", "2"],
    names: "--timeout",
    says: "needs a value: DURATION",
  },
  {
    what: "a value given to --help",
    argv: ["--help=yes"],
    names: "--help",
    says: "takes no value",
  },
  {
    what: "a value given to --version",
    argv: ["--version=1"],
    names: "--version",
    says: "takes no value",
  },
  { what: "a positional argument", argv: ["start"], names: '"start"', says: "takes only flags" },
  {
    what: "a positional argument after flags",
    argv: ["--port", "80", "extra"],
    names: '"extra"',
    says: "takes only flags",
  },
  {
    what: "a command after --",
    argv: ["--port", "80", "--", "sleep", "1"],
    names: '"--"',
    says: "takes no command to run",
  },
  {
    what: "a check with the ftp scheme",
    argv: ["--check", "ftp://files/x"],
    names: "--check",
    value: "ftp://files/x",
    says: 'unsupported scheme "ftp": expected http, https or tcp',
  },
  {
    what: "a tcp check without a port",
    argv: ["--check", "tcp://host"],
    names: "--check",
    value: "tcp://host",
    says: TCP_FORM,
  },
  {
    what: "a tcp check with port 0",
    argv: ["--check", "tcp://host:0"],
    names: "--check",
    value: "tcp://host:0",
    says: TCP_FORM,
  },
  {
    what: "a tcp check with port 70000",
    argv: ["--check", "tcp://host:70000"],
    names: "--check",
    value: "tcp://host:70000",
    says: TCP_FORM,
  },
  {
    what: "a tcp check with a path",
    argv: ["--check", "tcp://host:1/x"],
    names: "--check",
    value: "tcp://host:1/x",
    says: TCP_FORM,
  },
  {
    what: "a tcp check without a host",
    argv: ["--check", "tcp://:80"],
    names: "--check",
    value: "tcp://:80",
    says: TCP_FORM,
  },
  {
    what: "a URL without a colon",
    argv: ["--check", "http//x"],
    names: "--check",
    value: "http//x",
    says: URL_FORM,
  },
  {
    what: "text that is not a URL",
    argv: ["--check", "not a url"],
    names: "--check",
    value: "not a url",
    says: URL_FORM,
  },
  {
    what: "a bad check after a good one",
    argv: ["--check", "http://ok/", "--check", "ftp://bad"],
    names: "--check",
    value: "ftp://bad",
    says: "expected http, https or tcp",
  },
  {
    what: "an unknown log level",
    argv: ["--logLevel", "verbose"],
    names: "--logLevel",
    value: "verbose",
    says: "expected one of debug, info, warn, error",
  },
  {
    what: "an unknown log format",
    argv: ["--logFormat", "xml"],
    names: "--logFormat",
    value: "xml",
    says: "expected one of text, json",
  },
  {
    what: "a host with a space",
    argv: ["--host", "my host"],
    names: "--host",
    value: "my host",
    says: "expected a host name or an IP address",
  },
  {
    what: "a non-numeric STARTUP_LOCK_PORT",
    argv: [],
    env: { STARTUP_LOCK_PORT: "abc" },
    names: "STARTUP_LOCK_PORT",
    value: "abc",
    says: PORT_RANGE,
  },
  {
    what: "STARTUP_LOCK_LOCKS 0",
    argv: [],
    env: { STARTUP_LOCK_LOCKS: "0" },
    names: "STARTUP_LOCK_LOCKS",
    value: "0",
    says: LOCKS_RANGE,
  },
  {
    what: "STARTUP_LOCK_FAIL_HC 0",
    argv: [],
    env: { STARTUP_LOCK_FAIL_HC: "0" },
    names: "STARTUP_LOCK_FAIL_HC",
    value: "0",
    says: NOT_ZERO,
  },
  {
    what: "a bad item in STARTUP_LOCK_CHECK",
    argv: [],
    env: { STARTUP_LOCK_CHECK: "http://ok/,tcp://nope" },
    names: "STARTUP_LOCK_CHECK",
    value: "tcp://nope",
    says: TCP_FORM,
  },
  {
    what: "STARTUP_LOCK_TIMEOUT bigger than --maxDuration",
    argv: ["--maxDuration", "1m"],
    env: { STARTUP_LOCK_TIMEOUT: "90s" },
    names: "STARTUP_LOCK_TIMEOUT",
    value: "90s",
    says: "must not exceed --maxDuration (1m)",
  },
  {
    what: "a zero --cooldown",
    argv: ["--cooldown", "0"],
    names: "--cooldown",
    value: "0",
    says: NOT_ZERO,
  },
  {
    what: "a negative --maxLoad",
    argv: ["--maxLoad", "-1"],
    names: "--maxLoad",
    value: "-1",
    says: "expected a number from 0",
  },
  {
    what: "a --maxLoad that is no number",
    argv: ["--maxLoad", "high"],
    names: "--maxLoad",
    value: "high",
    says: "expected a number from 0",
  },
  {
    what: "a --maxPressure over 100",
    argv: ["--maxPressure", "101"],
    names: "--maxPressure",
    value: "101",
    says: "expected a percentage from 0 to 100",
  },
  {
    what: "a STARTUP_LOCK_MAX_PRESSURE with a percent sign",
    argv: [],
    env: { STARTUP_LOCK_MAX_PRESSURE: "20%" },
    names: "STARTUP_LOCK_MAX_PRESSURE",
    value: "20%",
    says: "expected a percentage from 0 to 100",
  },
  {
    what: "an unknown STARTUP_LOCK_LOG_LEVEL",
    argv: [],
    env: { STARTUP_LOCK_LOG_LEVEL: "loud" },
    names: "STARTUP_LOCK_LOG_LEVEL",
    value: "loud",
    says: "expected one of debug, info, warn, error",
  },
  {
    what: "an unknown STARTUP_LOCK_LOG_FORMAT",
    argv: [],
    env: { STARTUP_LOCK_LOG_FORMAT: "logfmt" },
    names: "STARTUP_LOCK_LOG_FORMAT",
    value: "logfmt",
    says: "expected one of text, json",
  },
  {
    what: "a store URL with one slash",
    argv: ["--store", "redis:/x"],
    names: "--store",
    value: "redis:/x",
    says: STORE_FORM,
  },
  {
    what: "a store URL of another scheme",
    argv: ["--store", "http://x"],
    names: "--store",
    value: "http://x",
    says: STORE_FORM,
  },
  {
    what: "a store URL whose database is no number",
    argv: ["--store", "redis://h:1/abc"],
    names: "--store",
    value: "redis://h:1/abc",
    says: `the database must be a number such as /0; ${STORE_FORM}`,
  },
  {
    what: "a store URL with port 0",
    argv: ["--store", "redis://h:0"],
    names: "--store",
    value: "redis://h:0",
    says: `port 0 is not a port to connect to; ${STORE_FORM}`,
  },
  {
    what: "a store URL with a query",
    argv: ["--store", "redis://h:1?x=1"],
    names: "--store",
    value: "redis://h:1?x=1",
    says: `no ?query or #fragment allowed; ${STORE_FORM}`,
  },
  {
    what: "a store URL with a fragment",
    argv: ["--store", "redis://h:1#x"],
    names: "--store",
    value: "redis://h:1#x",
    says: `no ?query or #fragment allowed; ${STORE_FORM}`,
  },
  { what: "an empty store", argv: ["--store="], names: "--store", value: "", says: STORE_FORM },
  {
    what: "a store URL with a bad port, without its password",
    argv: ["--store", "redis://u:s3cret@h:notaport"],
    names: "--store",
    value: "redis://u:***@h:notaport",
    says: `not a valid URL; ${STORE_FORM}`,
    hides: "s3cret",
  },
  {
    what: "a store URL with a port over 65535, without its password",
    argv: ["--store", "redis://:s3cret@h:65536"],
    names: "--store",
    value: "redis://:***@h:65536",
    says: `not a valid URL; ${STORE_FORM}`,
    hides: "s3cret",
  },
  {
    what: "a store URL with a bad database, without its password",
    argv: ["--store", "redis://u:s3cret@h:1/x"],
    names: "--store",
    value: "redis://u:***@h:1/x",
    says: "the database must be a number",
    hides: "s3cret",
  },
  {
    what: "a store URL whose password has a % that is no escape, without its password",
    argv: ["--store", "redis://u:s3cret%zz@h:1"],
    names: "--store",
    value: "redis://u:***@h:1",
    says: `the user or password has a % that is no %XX escape (write % as %25); ${STORE_FORM}`,
    hides: "s3cret",
  },
  {
    what: "a store URL whose password has an unencoded /, without any of it",
    argv: ["--store", "redis://u:pa55/w0rd@h:1"],
    names: "--store",
    value: "redis://u:***@h:1",
    says: `not a valid URL; ${STORE_FORM}`,
    hides: "pa55",
  },
  {
    what: "a store URL of another scheme, without its password",
    argv: ["--store", "http://u:s3cret@h:1"],
    names: "--store",
    value: "http://u:***@h:1",
    says: STORE_FORM,
    hides: "s3cret",
  },
  {
    what: "a STARTUP_LOCK_STORE with a bad port, without its password",
    argv: [],
    env: { STARTUP_LOCK_STORE: "redis://u:s3cret@h:notaport" },
    names: "STARTUP_LOCK_STORE",
    value: "redis://u:***@h:notaport",
    says: STORE_FORM,
    hides: "s3cret",
  },
  {
    what: "a name with a space",
    argv: ["--store", "redis://h:1", "--name", "a b"],
    names: "--name",
    value: "a b",
    says: NAME_FORM,
  },
  {
    what: "an empty name",
    argv: ["--store", "redis://h:1", "--name="],
    names: "--name",
    value: "",
    says: NAME_FORM,
  },
  {
    what: "a name with braces, which would break the Redis keys' hash tag",
    argv: ["--store", "redis://h:1", "--name", "{x}"],
    names: "--name",
    value: "{x}",
    says: NAME_FORM,
  },
  {
    what: "a name of 65 characters",
    argv: ["--store", "redis://h:1", "--name", "n".repeat(65)],
    names: "--name",
    value: "n".repeat(65),
    says: NAME_FORM,
  },
  {
    what: "a STARTUP_LOCK_NAME with a slash",
    argv: [],
    env: { STARTUP_LOCK_STORE: "redis://h:1", STARTUP_LOCK_NAME: "a/b" },
    names: "STARTUP_LOCK_NAME",
    value: "a/b",
    says: NAME_FORM,
  },
  {
    what: "--name with the memory store",
    argv: ["--name", "pool"],
    names: "--name",
    says: REDIS_ONLY,
  },
  {
    what: "--name with --store memory said outright",
    argv: ["--store", "memory", "--name", "pool"],
    names: "--name",
    says: REDIS_ONLY,
  },
  {
    what: "--storePasswordFile with the memory store",
    argv: ["--storePasswordFile", "/etc/hostname"],
    names: "--storePasswordFile",
    says: REDIS_ONLY,
  },
  {
    what: "STARTUP_LOCK_NAME with the memory store",
    argv: [],
    env: { STARTUP_LOCK_NAME: "pool" },
    names: "STARTUP_LOCK_NAME",
    says: REDIS_ONLY,
  },
  {
    what: "STARTUP_LOCK_STORE_PASSWORD_FILE with the memory store",
    argv: [],
    env: { STARTUP_LOCK_STORE_PASSWORD_FILE: "/etc/hostname" },
    names: "STARTUP_LOCK_STORE_PASSWORD_FILE",
    says: REDIS_ONLY,
  },
  {
    what: "--stateFile with a Redis store",
    argv: ["--store", "redis://u:s3cret@h:1", "--stateFile", "/var/lib/startup-lock/locks.json"],
    names: "--stateFile",
    says: "keeps the locks of a memory store; with --store redis://h:1 they live in Redis",
    hides: "s3cret",
  },
  {
    what: "STARTUP_LOCK_STATE_FILE with a Redis STARTUP_LOCK_STORE",
    argv: [],
    env: { STARTUP_LOCK_STORE: "redis://h:1", STARTUP_LOCK_STATE_FILE: "/tmp/locks.json" },
    names: "STARTUP_LOCK_STATE_FILE",
    says: "keeps the locks of a memory store",
  },
  {
    what: "a password file that does not exist",
    argv: ["--store", "redis://h:1", "--storePasswordFile", "/nonexistent/redis-password"],
    names: "--storePasswordFile",
    says: 'Cannot read --storePasswordFile "/nonexistent/redis-password": ',
  },
  {
    what: "a password file that is a directory",
    argv: ["--store", "redis://h:1", "--storePasswordFile", "/"],
    names: "--storePasswordFile",
    says: 'Cannot read --storePasswordFile "/": ',
  },
  {
    what: "an empty password file",
    argv: ["--store", "redis://h:1", "--storePasswordFile", EMPTY_FILE],
    names: "--storePasswordFile",
    says: `--storePasswordFile "${EMPTY_FILE}" is empty`,
  },
  {
    what: "a password file holding only a line break",
    argv: ["--store", "redis://h:1", "--storePasswordFile", NEWLINE_FILE],
    names: "--storePasswordFile",
    says: "is empty",
  },
  {
    what: "a password both in the store URL and in a file, without the password",
    argv: ["--store", "redis://u:s3cret@h:1", "--storePasswordFile", PASSWORD_FILE],
    names: "--storePasswordFile",
    says: "and a password in --store redis://u:***@h:1: give the password one way",
    hides: "s3cret",
  },
  {
    what: "a password both in STARTUP_LOCK_STORE and in STARTUP_LOCK_STORE_PASSWORD_FILE",
    argv: [],
    env: {
      STARTUP_LOCK_STORE: "redis://:s3cret@h:1",
      STARTUP_LOCK_STORE_PASSWORD_FILE: PASSWORD_FILE,
    },
    names: "STARTUP_LOCK_STORE_PASSWORD_FILE",
    says: "give the password one way",
    hides: "s3cret",
  },
];

Deno.test("serveCommand.parse() rejects invalid input with a message naming the flag, the value and what is allowed", async (t) => {
  for (const row of INVALID) {
    await t.step(`rejects ${row.what}`, () => {
      let thrown: unknown;
      try {
        serveCommand.parse(row.argv, envOf(row.env ?? {}));
      } catch (error) {
        thrown = error;
      }
      assert.ok(thrown instanceof UsageError, `expected a UsageError, got ${String(thrown)}`);
      const { message } = thrown;
      assert.ok(message.includes(row.names), `names ${row.names}: ${message}`);
      if (row.value !== undefined) {
        assert.ok(
          message.startsWith(`Invalid ${row.names} "${row.value}": `),
          `quotes "${row.value}": ${message}`,
        );
      }
      assert.ok(message.includes(row.says), `says "${row.says}": ${message}`);
      assert.ok(!message.includes("\n"), `one line: ${message}`);
      if (row.hides !== undefined) {
        assert.ok(!message.includes(row.hides), `never shows "${row.hides}": ${message}`);
      }
    });
  }
});

Deno.test("parseCheckTarget() accepts http, https and tcp URLs", async (t) => {
  const cases: [string, ReturnType<typeof parseCheckTarget>][] = [
    ["http://es:9200/_cluster/health", { kind: "http", url: "http://es:9200/_cluster/health" }],
    ["https://api.example.com", { kind: "http", url: "https://api.example.com/" }],
    ["HTTPS://Host/Path?q=1", { kind: "http", url: "https://host/Path?q=1" }],
    ["tcp://host:1", { kind: "tcp", url: "tcp://host:1", hostname: "host", port: 1 }],
    ["tcp://db:65535/", { kind: "tcp", url: "tcp://db:65535", hostname: "db", port: 65535 }],
    ["tcp://10.0.0.5:27017", {
      kind: "tcp",
      url: "tcp://10.0.0.5:27017",
      hostname: "10.0.0.5",
      port: 27017,
    }],
    ["tcp://[::1]:80", { kind: "tcp", url: "tcp://[::1]:80", hostname: "::1", port: 80 }],
    ["TCP://db:5432", { kind: "tcp", url: "tcp://db:5432", hostname: "db", port: 5432 }],
    [" tcp://db:5432 ", { kind: "tcp", url: "tcp://db:5432", hostname: "db", port: 5432 }],
  ];
  for (const [text, target] of cases) {
    await t.step(JSON.stringify(text), () => {
      assert.deepEqual(parseCheckTarget(text), target);
    });
  }
});

Deno.test("parseCheckTarget() throws a RangeError that does not repeat the input", () => {
  assert.throws(() => parseCheckTarget("ftp://x"), (error: unknown) => {
    assert.ok(error instanceof RangeError);
    assert.ok(!error.message.includes("ftp://x"), error.message);
    return true;
  });
});

/** Asserts `stderr` is exactly one line, starting `prefix`, with no stack trace. */
function assertOneLine(stderr: string, prefix: string | RegExp): string {
  const lines = stderr.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${stderr}`);
  const line = lines[0]!;
  if (typeof prefix === "string") assert.ok(line.startsWith(prefix), line);
  else assert.match(line, prefix);
  assert.doesNotMatch(stderr, /^\s*at /m, "no stack trace");
  assert.doesNotMatch(stderr, /\berror: Uncaught\b/i, "no uncaught error");
  return line;
}

Deno.test("startup-lock --version prints the version and exits 0", async () => {
  const { code, stdout, stderr } = await runProgram(["--version"]);
  assert.equal(code, 0, stderr);
  assert.equal(stderr, "");
  assert.match(stdout, new RegExp(`^startup-lock ${VERSION.replaceAll(".", "\\.")} `));
  assert.equal(stdout.trim().split("\n").length, 1);
});

Deno.test("startup-lock exits 2 with one line on stderr for a usage error", async (t) => {
  const cases: { args: string[]; says: string }[] = [
    { args: ["--port", "x"], says: 'Invalid --port "x": expected an integer from 0 to 65535' },
    { args: ["--port", "-1"], says: 'Invalid --port "-1"' },
    { args: ["--locks", "0"], says: 'Invalid --locks "0"' },
    { args: ["--timeout", "2h", "--maxDuration", "1h"], says: "must not exceed --maxDuration" },
    { args: ["--check", "ftp://x"], says: 'unsupported scheme "ftp"' },
    { args: ["--bogus"], says: 'Unknown flag "--bogus"' },
    { args: ["--lock", "2"], says: 'Unknown flag "--lock": did you mean --locks?' },
    { args: ["-locks=0"], says: 'Invalid --locks "0"' },
    { args: ["-locks", "0"], says: 'Invalid --locks "0"' },
    { args: ["--port"], says: "Flag --port needs a value" },
    { args: ["--help=yes"], says: "Flag --help takes no value" },
    { args: ["start"], says: 'Unexpected argument "start"' },
    { args: ["serve", "--locks", "x"], says: 'Invalid --locks "x"' },
  ];
  for (const { args, says } of cases) {
    await t.step(args.join(" "), async () => {
      const { code, stdout, stderr } = await runProgram(args);
      assert.equal(code, 2, stderr);
      assert.equal(stdout, "");
      const line = assertOneLine(stderr, "startup-lock: ");
      assert.ok(line.includes(says), line);
    });
  }
});

Deno.test("startup-lock exits 2 with one line for a bad store setting, and never shows the password", async (t) => {
  const cases: { args: string[]; env?: Record<string, string>; says: string }[] = [
    {
      args: ["--store", "redis://u:s3cret@h:notaport"],
      says: 'Invalid --store "redis://u:***@h:notaport": not a valid URL',
    },
    {
      args: [],
      env: { STARTUP_LOCK_STORE: "redis://:s3cret@h:1/abc" },
      says: 'Invalid STARTUP_LOCK_STORE "redis://:***@h:1/abc": the database must be a number',
    },
    {
      args: ["--store", "redis://:s3cret@h:1", "--storePasswordFile", PASSWORD_FILE],
      says: "give the password one way",
    },
    {
      args: ["--store", "redis://:s3cret@h:1", "--stateFile", `${PASSWORD_DIR}/locks.json`],
      says: "--stateFile keeps the locks of a memory store; with --store redis://h:1",
    },
    { args: ["--name", "pool"], says: "--name applies to a Redis store only" },
    {
      args: ["--store", "redis://h:1"],
      env: { STARTUP_LOCK_STORE_PASSWORD_FILE: EMPTY_FILE },
      says: `STARTUP_LOCK_STORE_PASSWORD_FILE "${EMPTY_FILE}" is empty`,
    },
  ];
  for (const { args, env, says } of cases) {
    await t.step(
      [...Object.entries(env ?? {}).map(([k, v]) => `${k}=${v}`), ...args].join(" "),
      async () => {
        const { code, stdout, stderr } = await runProgram(args, { env: env ?? {} });
        assert.equal(code, 2, stderr);
        assert.equal(stdout, "");
        const line = assertOneLine(stderr, "startup-lock: ");
        assert.ok(line.includes(says), line);
        assert.ok(!stderr.includes("s3cret"), `no password: ${line}`);
      },
    );
  }
});

Deno.test("startup-lock exits 2 naming the variable for an invalid environment variable", async () => {
  const { code, stdout, stderr } = await runProgram([], { env: { STARTUP_LOCK_PORT: "abc" } });
  assert.equal(code, 2, stderr);
  assert.equal(stdout, "");
  const line = assertOneLine(stderr, "startup-lock: ");
  assert.ok(line.includes('Invalid STARTUP_LOCK_PORT "abc"'), line);
});

Deno.test("startup-lock exits non-zero with one clear line when the port is already in use", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const { port } = listener.addr;
    const { code, stderr } = await runProgram(["--host", "127.0.0.1", "--port", String(port)]);
    assert.notEqual(code, 0);
    const line = assertOneLine(stderr, /Cannot listen on 127\.0\.0\.1:\d+/);
    assert.ok(line.includes(`127.0.0.1:${port}`), line);
    assert.ok(line.includes("already in use"), line);
  } finally {
    listener.close();
  }
});
