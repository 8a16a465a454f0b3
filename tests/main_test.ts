import assert from "node:assert/strict";
import { envName } from "../lib/args.ts";
import { SERVER_FLAGS } from "../lib/cli.ts";
import { VERSION } from "../lib/version.ts";
import { runProgram } from "./_program.ts";

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

Deno.test("startup-lock --help exits 0 and lists every flag with its environment variable", async () => {
  const { code, stdout, stderr } = await runProgram(["--help"]);
  assert.equal(code, 0, stderr);
  assert.equal(stderr, "");
  assert.match(stdout, /^Usage: startup-lock /m);
  const lines = stdout.split("\n");
  for (const flag of SERVER_FLAGS) {
    const line = lines.find((l) => new RegExp(`^\\s+--${flag.name}(\\s|$)`).test(l));
    assert.ok(line, `--${flag.name} is listed`);
    if (flag.kind !== "boolean") {
      assert.ok(line.includes(`env: ${envName(flag.name)}`), `${envName(flag.name)} in: ${line}`);
    }
  }
});

Deno.test("startup-lock serve --help exits 0 like --help", async () => {
  const { code, stdout } = await runProgram(["serve", "--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /^Usage: startup-lock /m);
});

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
    { args: ["--timeout", "2h"], says: "must not exceed --maxDuration" },
    { args: ["--check", "ftp://x"], says: 'unsupported scheme "ftp"' },
    { args: ["--bogus"], says: 'Unknown flag "--bogus"' },
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
