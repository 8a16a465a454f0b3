import assert from "node:assert/strict";
import {
  envName,
  envNames,
  type FlagSpec,
  formatFlags,
  HELP_FLAG,
  parseFlags,
  parseInteger,
  Reader,
  renderUsage,
} from "../../lib/args.ts";
import { UsageError } from "../../lib/errors.ts";

const SPECS: readonly FlagSpec[] = [
  { name: "server", kind: "value", valueName: "URL", description: "The server" },
  { name: "token", kind: "value", valueName: "TOKEN", description: "The token" },
  { name: "failHc", kind: "value", valueName: "DURATION", description: "A pause" },
  { name: "check", kind: "list", valueName: "URL", description: "A check" },
  { name: "quiet", kind: "boolean", description: "No output", env: false },
  HELP_FLAG,
];

const noEnv = () => undefined;

function values(argv: string[], env: Record<string, string> = {}) {
  return Object.fromEntries(parseFlags(argv, SPECS, (n) => env[n]).values);
}

function usageError(argv: string[]): string {
  try {
    parseFlags(argv, SPECS, noEnv);
  } catch (error) {
    assert.ok(error instanceof UsageError, String(error));
    assert.ok(!error.message.includes("\n"), error.message);
    return error.message;
  }
  assert.fail(`accepted ${argv.join(" ")}`);
}

Deno.test("envName() turns a camelCase flag into its STARTUP_LOCK_ variable", () => {
  assert.equal(envName("failHc"), "STARTUP_LOCK_FAIL_HC");
  assert.deepEqual(envNames(SPECS), [
    "STARTUP_LOCK_SERVER",
    "STARTUP_LOCK_TOKEN",
    "STARTUP_LOCK_FAIL_HC",
    "STARTUP_LOCK_CHECK",
  ]);
});

Deno.test("parseFlags() gives a value flag the next argument, whatever it starts with", async (t) => {
  const token = "-abcdefghijklmnopqrstu";
  const cases: [string[], Record<string, unknown>][] = [
    [["--token", token], { token }],
    [["--token", `-${token}`], { token: `-${token}` }],
    [[`--token=--${token}`], { token: `--${token}` }],
    [["--token", "-"], { token: "-" }],
    [["--token", "--abc-def"], { token: "--abc-def" }],
    [["--fail-hc", "-5"], { failHc: "-5" }],
    [["--check", "-x", "--check", "--y"], { check: ["-x", "--y"] }],
    [["--token", "-h", "--quiet"].slice(1), { help: true, quiet: true }],
  ];
  for (const [argv, expected] of cases) {
    await t.step(argv.join(" "), () => assert.deepEqual(values(argv), expected));
  }
});

Deno.test("parseFlags() counts only the command's own flags as a missing value", async (t) => {
  const cases: [string[], string][] = [
    [["--token", "--server"], "Flag --token needs a value: TOKEN"],
    [["--token", "--server=http://x"], "Flag --token needs a value: TOKEN"],
    [["--token", "--fail-hc", "5"], "Flag --token needs a value: TOKEN"],
    [["--token", "--failHc=5"], "Flag --token needs a value: TOKEN"],
    [["--token", "-h"], "Flag --token needs a value: TOKEN"],
    [["--token", "--quiet"], "Flag --token needs a value: TOKEN"],
    [["--token"], "Flag --token needs a value: TOKEN"],
  ];
  for (const [argv, says] of cases) {
    await t.step(argv.join(" "), () => assert.equal(usageError(argv), says));
  }
  await t.step("-- ends the flags, so it is no value either", () => {
    assert.throws(
      () => parseFlags(["--token", "--", "x"], SPECS, noEnv, { rest: true }),
      /Flag --token needs a value: TOKEN/,
    );
  });
});

Deno.test("parseFlags() names unknown flags as typed and refuses values of boolean flags", () => {
  assert.match(usageError(["--no-such-flag=1"]), /^Unknown flag "--no-such-flag": see --help/);
  assert.match(usageError(["-p"]), /^Unknown flag "-p"/);
  assert.equal(usageError(["--quiet=yes"]), "Flag --quiet takes no value");
  assert.equal(usageError(["--help=yes"]), "Flag --help takes no value");
  assert.match(
    usageError(["extra"]),
    /^Unexpected argument "extra": this command takes only flags/,
  );
  assert.match(usageError(["--", "x"]), /^Unexpected "--": this command takes no command/);
});

Deno.test("parseFlags() accepts kebab-case spellings and reads -h as --help", () => {
  assert.deepEqual(values(["--fail-hc", "5", "-h"]), { failHc: "5", help: true });
});

Deno.test("parseFlags() takes long flags after one dash, as the original's Go flag package does", async (t) => {
  const cases: [string[], Record<string, unknown>][] = [
    [["-server", "http://x"], { server: "http://x" }],
    [["-server=http://x"], { server: "http://x" }],
    [["-fail-hc", "5", "-failHc=6"], { failHc: "6" }],
    [["-check", "a", "-check=b"], { check: ["a", "b"] }],
    [["-quiet", "-help"], { quiet: true, help: true }],
    [["-token", "-abc"], { token: "-abc" }],
    [["-h"], { help: true }],
  ];
  for (const [argv, expected] of cases) {
    await t.step(argv.join(" "), () => assert.deepEqual(values(argv), expected));
  }
  await t.step("a single-dash flag is no value either", () => {
    assert.equal(usageError(["--token", "-server", "x"]), "Flag --token needs a value: TOKEN");
  });
  await t.step("-quiet=yes is refused like --quiet=yes, and -h=1 like --help=1", () => {
    assert.equal(usageError(["-quiet=yes"]), "Flag --quiet takes no value");
    assert.equal(usageError(["-h=1"]), "Flag --help takes no value");
  });
});

Deno.test("parseFlags() names the nearest flag for a misspelt one", async (t) => {
  const cases: [string[], string][] = [
    [["--serve", "x"], 'Unknown flag "--serve": did you mean --server? (see --help)'],
    [["-servr=x"], 'Unknown flag "-servr": did you mean --server? (see --help)'],
    [["--fail-hx", "5"], 'Unknown flag "--fail-hx": did you mean --failHc? (see --help)'],
    [["--tokne", "x"], 'Unknown flag "--tokne": did you mean --token? (see --help)'],
    [["--checks", "x"], 'Unknown flag "--checks": did you mean --check? (see --help)'],
    [["--port", "1"], 'Unknown flag "--port": see --help for the flags this command takes'],
    [["-x"], 'Unknown flag "-x": see --help for the flags this command takes'],
  ];
  for (const [argv, says] of cases) {
    await t.step(argv.join(" "), () => assert.equal(usageError(argv), says));
  }
});

Deno.test("parseFlags() fills unset value flags from the environment, the command line winning", () => {
  const env = {
    STARTUP_LOCK_TOKEN: "-fromEnv",
    STARTUP_LOCK_CHECK: " a, ,b ",
    STARTUP_LOCK_SERVER: " ",
  };
  assert.deepEqual(values([], env), { token: "-fromEnv", check: ["a", "b"] });
  assert.deepEqual(values(["--token", "x"], env), { token: "x", check: ["a", "b"] });
  const raw = parseFlags(["--token", "x"], SPECS, (n) => env[n as keyof typeof env]);
  assert.equal(raw.sources.get("token"), "--token");
  assert.equal(raw.sources.get("check"), "STARTUP_LOCK_CHECK");
});

Deno.test("parseFlags() names the first stray argument, not a flag-like one after it", () => {
  assert.equal(
    usageError(["--server", "x", "sh", "-c", "echo -x"]),
    'Unexpected argument "sh": this command takes only flags (see --help)',
  );
  const run = (argv: string[]) =>
    parseFlags(argv, SPECS, noEnv, { rest: true, unexpected: (a) => `"${a}" goes after --` });
  assert.throws(
    () => run(["--server", "x", "sh", "-c", "true"]),
    /^UsageError: "sh" goes after --$/,
  );
  assert.throws(() => run(["app"]), /^UsageError: "app" goes after --$/);
  assert.throws(() => run(["-c", "app"]), /^UsageError: Unknown flag "-c"/);
});

Deno.test("parseFlags() keeps what follows -- untouched", () => {
  const raw = parseFlags(["--token", "t", "--", "app", "--token", "-h"], SPECS, noEnv, {
    rest: true,
  });
  assert.deepEqual(raw.rest, ["app", "--token", "-h"]);
  assert.equal(raw.values.get("token"), "t");
});

Deno.test("Reader names the flag or variable and the value in every error", () => {
  const read = new Reader(
    parseFlags(["--fail-hc", "soon"], SPECS, (n) => ({ STARTUP_LOCK_TOKEN: "t" })[n]),
  );
  assert.throws(
    () => read.value("failHc", 0, (t) => parseInteger(t, 1, 9)),
    (error: unknown) =>
      error instanceof UsageError &&
      error.message === 'Invalid --failHc "soon": expected an integer from 1 to 9',
  );
  assert.equal(read.said("failHc"), "--failHc soon");
  assert.equal(read.said("token"), "STARTUP_LOCK_TOKEN=t");
  assert.equal(read.said("server"), "--server");
  assert.equal(read.value("server", "fallback", () => "parsed"), "fallback");
});

Deno.test("parseInteger() accepts decimal digits in range only", () => {
  assert.equal(parseInteger(" 42 ", 0, 100), 42);
  for (const bad of ["-1", "1.5", "1e3", "0x10", "", "101"]) {
    assert.throws(() => parseInteger(bad, 0, 100), RangeError, bad);
  }
});

Deno.test("formatFlags() lists each flag with its default and variable", () => {
  const table = formatFlags([
    { name: "port", kind: "value", valueName: "PORT", default: "8888", description: "Port" },
    HELP_FLAG,
  ]).split("\n");
  assert.match(table[0]!, /^ {2}--port PORT +Port \(default: 8888; env: STARTUP_LOCK_PORT\)$/);
  assert.match(table[1]!, /^ {2}--help +Print this help and exit \(also -h\)$/);
});

Deno.test("renderUsage() explains durations only when a flag takes one", () => {
  const about = { synopsis: "startup-lock x", about: ["Does x."] };
  const withDuration = renderUsage({ ...about, flags: SPECS });
  assert.match(withDuration, /^Usage: startup-lock x\n\nDoes x\.\n\nDurations are /);
  const without = renderUsage({ ...about, flags: SPECS.filter((s) => s.name !== "failHc") });
  assert.doesNotMatch(without, /Durations|seconds/);
  assert.match(without, /Flags on the command line win over their environment variables/);
  assert.match(renderUsage({ ...about, title: "T", flags: [HELP_FLAG] }), /^T\n\nUsage: /);
});
