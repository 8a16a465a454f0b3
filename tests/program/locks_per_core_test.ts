/**
 * `--locksPerCore`: the slots from an injected core count, the values and
 * combinations refused (exit 2, one line), and the real program under
 * `taskset -c 0`, which must count one core and show it at start, in
 * `/status` and in the metrics.
 */
import assert from "node:assert/strict";
import { parseFlags, Reader } from "../../lib/args.ts";
import { readSlots, serveCommand, SERVER_FLAGS } from "../../lib/commands/serve.ts";
import type { ServerConfig } from "../../lib/config.ts";
import { availableCores } from "../../lib/cores.ts";
import { UsageError } from "../../lib/errors.ts";
import { runProgram, startProgram } from "../_program.ts";
import { which } from "../_which.ts";

const TASKSET = which("taskset");
if (!TASKSET) {
  console.error("SKIPPED taskset tests: taskset not found (apt-get install util-linux)");
}

type Vars = Record<string, string>;

/** `readSlots()` on a command line and environment, with `cores` injected. */
function slots(argv: string[], cores: number, env: Vars = {}) {
  return readSlots(new Reader(parseFlags(argv, SERVER_FLAGS, (name) => env[name])), cores);
}

/** The config of a `serve` command line. */
function serve(argv: string[], env: Vars = {}): ServerConfig {
  const parsed = serveCommand.parse(argv, (name) => env[name]);
  if (parsed.action !== "run" || parsed.options.action !== "serve") {
    throw new Error(`not serving: ${JSON.stringify(parsed)}`);
  }
  return parsed.options.config;
}

/** The one line of a usage error from `serveCommand.parse()`. */
function usageError(argv: string[], env: Vars = {}): string {
  try {
    serveCommand.parse(argv, (name) => env[name]);
  } catch (error) {
    assert.ok(error instanceof UsageError, `a UsageError, not ${String(error)}`);
    assert.ok(!error.message.includes("\n"), `one line: ${error.message}`);
    return error.message;
  }
  throw new Error(`${argv.join(" ")} was accepted`);
}

Deno.test("readSlots() gives max(1, floor(--locksPerCore × cores)) slots, with the cores it counted", () => {
  assert.deepEqual(slots(["--locksPerCore", "1"], 8), {
    locks: 8,
    perCore: { locksPerCore: 1, cores: 8 },
  });
  assert.deepEqual(slots(["--locksPerCore", "0.67"], 3), {
    locks: 2,
    perCore: { locksPerCore: 0.67, cores: 3 },
  });
  assert.equal(slots(["--locksPerCore", "0.5"], 1).locks, 1, "never 0 slots");
  assert.equal(slots(["--locks-per-core=2"], 16).locks, 32, "kebab-case and =");
  assert.deepEqual(slots([], 8, { STARTUP_LOCK_LOCKS_PER_CORE: "0.5" }), {
    locks: 4,
    perCore: { locksPerCore: 0.5, cores: 8 },
  });
});

Deno.test("readSlots() without --locksPerCore is --locks, whatever the cores", () => {
  assert.deepEqual(slots([], 64), { locks: 1 });
  assert.deepEqual(slots(["--locks", "3"], 64), { locks: 3 });
});

Deno.test("readSlots() lets the flag win over its own variable, as every flag does", () => {
  const got = slots(["--locksPerCore", "2"], 4, { STARTUP_LOCK_LOCKS_PER_CORE: "abc" });
  assert.equal(got.locks, 8);
});

Deno.test("serveCommand.parse() counts this process's cores for --locksPerCore", () => {
  const config = serve(["--locksPerCore", "1"]);
  assert.equal(config.locks, availableCores());
  assert.deepEqual(config.perCore, { locksPerCore: 1, cores: availableCores() });
  assert.equal(serve([]).perCore, undefined, "no perCore without the flag");
});

Deno.test("serveCommand.parse() refuses --locks and --locksPerCore together, from any source", async (t) => {
  const cases: { argv: string[]; env?: Vars; says: string }[] = [
    {
      argv: ["--locks", "2", "--locksPerCore", "0.5"],
      says: "--locks 2 and --locksPerCore 0.5: give one of --locks (slots) and --locksPerCore " +
        "(slots per CPU core)",
    },
    {
      argv: ["--locksPerCore", "0.5"],
      env: { STARTUP_LOCK_LOCKS: "2" },
      says: "STARTUP_LOCK_LOCKS=2 and --locksPerCore 0.5: give one of",
    },
    {
      argv: [],
      env: { STARTUP_LOCK_LOCKS: "2", STARTUP_LOCK_LOCKS_PER_CORE: "1" },
      says: "STARTUP_LOCK_LOCKS=2 and STARTUP_LOCK_LOCKS_PER_CORE=1: give one of",
    },
  ];
  for (const { argv, env, says } of cases) {
    await t.step(says.split(":")[0]!, () => {
      const message = usageError(argv, env);
      assert.ok(message.startsWith(says), message);
    });
  }
});

Deno.test("serveCommand.parse() refuses --locksPerCore with a Redis store", () => {
  assert.equal(
    usageError(["--locksPerCore", "1", "--store", "redis://user:s3cret@redis:6379"]),
    "--locksPerCore counts this node's CPU cores, but with --store redis://redis:6379 every " +
      "replica shares one semaphore: give its slots with --locks",
  );
  assert.match(
    usageError(["--store", "redis://redis:6379"], { STARTUP_LOCK_LOCKS_PER_CORE: "1" }),
    /^STARTUP_LOCK_LOCKS_PER_CORE counts this node's CPU cores/,
  );
});

Deno.test("serveCommand.parse() refuses a bad --locksPerCore, naming the flag, the value and what is allowed", () => {
  const allowed = "expected a number above 0 and at most 1000, such as 0.5 or 2 " +
    "(slots per CPU core)";
  for (const value of ["0", "-1", "abc", "1001", " "]) {
    assert.equal(
      usageError(["--locksPerCore", value]),
      `Invalid --locksPerCore "${value}": ${allowed}`,
    );
  }
  assert.equal(
    usageError([], { STARTUP_LOCK_LOCKS_PER_CORE: "-0.5" }),
    `Invalid STARTUP_LOCK_LOCKS_PER_CORE "-0.5": ${allowed}`,
  );
});

Deno.test("startup-lock exits 2 with one line for a bad --locksPerCore or a conflicting flag", async (t) => {
  const cases: { args: string[]; env?: Vars; says: string }[] = [
    {
      args: ["--locksPerCore", "0"],
      says: 'Invalid --locksPerCore "0": expected a number above 0',
    },
    { args: ["--locksPerCore", "-2"], says: 'Invalid --locksPerCore "-2": expected a number' },
    { args: ["--locksPerCore", "many"], says: 'Invalid --locksPerCore "many": expected a number' },
    { args: ["--locksPerCore"], says: "Flag --locksPerCore needs a value: X" },
    {
      args: [],
      env: { STARTUP_LOCK_LOCKS_PER_CORE: "0" },
      says: 'Invalid STARTUP_LOCK_LOCKS_PER_CORE "0": expected a number above 0',
    },
    { args: ["--locks", "4", "--locksPerCore", "1"], says: "--locks 4 and --locksPerCore 1: give" },
    {
      args: ["--locksPerCore", "1", "--store", "redis://:s3cret@127.0.0.1:1"],
      says: "--locksPerCore counts this node's CPU cores, but with --store redis://127.0.0.1:1",
    },
  ];
  for (const { args, env, says } of cases) {
    await t.step(
      [...Object.entries(env ?? {}).map(([k, v]) => `${k}=${v}`), ...args].join(" "),
      async () => {
        const { code, stdout, stderr } = await runProgram(args, { env: env ?? {} });
        assert.equal(code, 2, stderr);
        assert.equal(stdout, "");
        const lines = stderr.split("\n").filter((l) => l !== "");
        assert.equal(lines.length, 1, `one line on stderr, got:\n${stderr}`);
        assert.ok(lines[0]!.startsWith(`startup-lock: ${says}`), lines[0]);
        assert.ok(!stderr.includes("s3cret"), "no password");
      },
    );
  }
});

/** The slots and cores the running server shows at start, in `/status` and in its metrics. */
async function shown(wrapper: string[], args: string[]) {
  await using server = await startProgram(args, { wrapper });
  const line = await server.waitForLog(/Listening on /);
  const status = await (await fetch(`${server.url}/status`)).json();
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const gauge = (name: string) => {
    const sample = metrics.split("\n").find((l) => l.startsWith(`${name} `));
    return sample === undefined ? undefined : Number(sample.slice(name.length + 1));
  };
  return {
    line,
    slots: status.slots,
    metrics: { slots: gauge("startup_lock_slots"), cores: gauge("startup_lock_cores") },
  };
}

Deno.test({
  name:
    "startup-lock under taskset -c 0 counts 1 core: --locksPerCore 2 gives 2 slots, shown everywhere",
  ignore: !TASKSET,
  async fn() {
    const got = await shown([TASKSET!, "-c", "0"], ["--locksPerCore", "2"]);
    assert.match(got.line, / with 2 locks \(--locksPerCore 2 × 1 core\), default duration /);
    assert.deepEqual(got.slots, { total: 2, held: 0, free: 2, locksPerCore: 2, cores: 1 });
    assert.deepEqual(got.metrics, { slots: 2, cores: 1 });
  },
});

Deno.test({
  name: "startup-lock under taskset -c 0 with --locksPerCore 0.5 still has 1 slot",
  ignore: !TASKSET,
  async fn() {
    const got = await shown([TASKSET!, "-c", "0"], ["--locksPerCore", "0.5"]);
    assert.match(got.line, / with 1 lock \(--locksPerCore 0\.5 × 1 core\), /);
    assert.equal(got.slots.total, 1);
  },
});

Deno.test("startup-lock --locksPerCore 1 on every core this test may use has one slot per core", async () => {
  // The program inherits this process's affinity, so it counts what availableCores() counts here.
  const cores = availableCores();
  const got = await shown([], ["--locksPerCore", "1"]);
  assert.ok(got.line.includes(`with ${cores} lock`), got.line);
  assert.deepEqual(got.slots, { total: cores, held: 0, free: cores, locksPerCore: 1, cores });
  assert.deepEqual(got.metrics, { slots: cores, cores });
});

Deno.test("startup-lock with --locks shows no cores: /status has no per-core fields, no startup_lock_cores", async () => {
  const got = await shown([], ["--locks", "3"]);
  assert.match(got.line, / with 3 locks, default duration /);
  assert.deepEqual(got.slots, { total: 3, held: 0, free: 3 });
  assert.deepEqual(got.metrics, { slots: 3, cores: undefined });
});
