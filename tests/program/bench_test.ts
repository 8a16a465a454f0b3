/**
 * The benchmark's command line, its rows and their ratios, and its comparison
 * with a baseline checkout. The benchmarks measure when `deno task bench`
 * runs them; here they run once in a tiny configuration, to show that every
 * row and variant runs, not to measure.
 *
 * @module
 */
import assert from "node:assert/strict";
import { comparisonLines, figuresComparisonMarkdown } from "../../bench/compare.ts";
import type { Figure } from "../../bench/figures.ts";
import { HANDOFF_VARIANTS } from "../../bench/handoff.ts";
import { logCostLines, variantLines } from "../../bench/http.ts";
import { parseBenchArgs, PARTS, selectPrograms } from "../../bench/main.ts";
import { REDIS_SERVER } from "../_redis.ts";
import { COMPARED_NAMES } from "../../bench/program.ts";
import type { Summary } from "../../bench/report.ts";
import { BASELINE_MODES, DEFAULT_MODES, LOCK_MODES, MODES } from "../../bench/servers.ts";
import { allowFlags, PROGRAM_PERMISSIONS } from "../../lib/commands/permissions.ts";
import { which } from "../_which.ts";
import { loadedModules } from "../_module_graph.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("nothing under bench/ names /tmp: its files go under $TMPDIR (bench/_scratch.ts)", async () => {
  for await (const entry of Deno.readDir(`${ROOT}bench`)) {
    if (!entry.isFile || !entry.name.endsWith(".ts") || entry.name === "_scratch.ts") continue;
    const text = await Deno.readTextFile(`${ROOT}bench/${entry.name}`);
    assert.doesNotMatch(text, /["'`]\/tmp\b/, entry.name);
  }
});

Deno.test("nothing under bench/ loads a module of tests/", async () => {
  for await (const entry of Deno.readDir(`${ROOT}bench`)) {
    if (!entry.isFile || !entry.name.endsWith(".ts")) continue;
    const loaded = await loadedModules(`bench/${entry.name}`);
    assert.deepEqual(loaded.filter((m) => m.startsWith("tests/")), [], entry.name);
  }
});
const noEnv = () => undefined;

Deno.test("parseBenchArgs() reads --baseline and the names of benchmarks", async (t) => {
  const cases: [string[], Record<string, string>, { parts: string[]; baseline?: string }][] = [
    [[], {}, { parts: [...PARTS] }],
    [["--baseline", "/src/main"], {}, { parts: [...PARTS], baseline: "/src/main" }],
    [["--", "handoff,http", "--baseline=../main"], {}, {
      parts: ["handoff", "http"],
      baseline: "../main",
    }],
    [["memory"], { BENCH_BASELINE: "/b" }, { parts: ["memory"], baseline: "/b" }],
    [["--baseline", "/a"], { BENCH_BASELINE: "/b" }, { parts: [...PARTS], baseline: "/a" }],
  ];
  for (const [args, env, expected] of cases) {
    await t.step(JSON.stringify([args, env]), () => {
      assert.deepEqual(parseBenchArgs(args, (name) => env[name]), {
        parts: expected.parts,
        baseline: expected.baseline,
      });
    });
  }
});

Deno.test("parseBenchArgs() refuses a bad command line with one line saying what is allowed", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--baseline"], /^Missing value of --baseline: expected the directory of another/],
    [["--baseline="], /^Missing value of --baseline/],
    [["--baseline-dir", "x"], /^Unknown option "--baseline-dir": expected --baseline DIR and/],
    [
      ["cpu"],
      /^Unknown benchmark "cpu": expected some of startup, handoff, rollout, memory, http,/,
    ],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" "), () => {
      assert.throws(() => parseBenchArgs(args, noEnv), (error: unknown) => {
        assert.ok(error instanceof RangeError);
        assert.match(error.message, message);
        assert.ok(!error.message.includes("\n"));
        return true;
      });
    });
  }
});

Deno.test("selectPrograms() starts this checkout and the baseline the same way", () => {
  const [ours, theirs] = selectPrograms(ROOT);
  assert.ok(ours && theirs);
  assert.deepEqual([ours.name, theirs.name], [...COMPARED_NAMES]);
  assert.equal(ours.command, Deno.execPath());
  // Here the baseline is this very checkout: the same arguments, word for word.
  assert.deepEqual(theirs.args, ours.args);
  assert.deepEqual(ours.args, [
    "run",
    "--quiet",
    "--config",
    `${ROOT}deno.json`,
    ...allowFlags(PROGRAM_PERMISSIONS),
    `${ROOT}main.ts`,
  ]);
});

Deno.test("selectPrograms() refuses a directory that is not a checkout", () => {
  assert.throws(() => selectPrograms("/nonexistent"), {
    name: "RangeError",
    message: 'Invalid --baseline "/nonexistent": expected a startup-lock checkout, with main.ts ' +
      "and deno.json",
  });
});

Deno.test("deno task bench --baseline exits 2 with one line for a directory that is not a checkout", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "task",
      "--quiet",
      "--config",
      `${ROOT}deno.json`,
      "bench",
      "--baseline",
      "/nonexistent",
    ],
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  assert.equal(out.code, 2);
  assert.equal(
    new TextDecoder().decode(out.stderr),
    'Invalid --baseline "/nonexistent": expected a startup-lock checkout, with main.ts and ' +
      "deno.json\n",
  );
  assert.equal(new TextDecoder().decode(out.stdout), "");
});

function summary(server: string, connections: number, rps: number, ratio: number): Summary {
  return {
    server,
    connections,
    requestsPerSecond: rps,
    p50Ms: 1,
    p99Ms: 2,
    non2xxPercent: 0,
    socketErrors: 0,
    ratio,
  };
}

Deno.test("comparisonLines() sets this checkout's figures next to the baseline's", () => {
  const [ours, theirs] = COMPARED_NAMES;
  const rows = [
    summary("bare Deno.serve (423)", 50, 50_000, 1),
    summary(`${ours} deny (423)`, 50, 40_000, 0.8),
    summary(`${ours} acquire (200)`, 50, 30_000, 0.6),
    summary(`${theirs} deny (423)`, 50, 35_000, 0.7),
    summary(`${theirs} acquire (200)`, 50, 25_000, 0.5),
  ];
  const figures: Figure[] = [
    { program: ours, benchmark: "Handoff latency", measure: "p99", value: "1.00 ms" },
    { program: theirs, benchmark: "Handoff latency", measure: "p99", value: "2.00 ms" },
    { program: ours, benchmark: "Memory (RSS)", measure: "bare", value: "30 MB" },
  ];
  assert.deepEqual(comparisonLines(rows, figures, ours, theirs), [
    "deny (423), 50 connections: 0.80 vs 0.70 of bare (40,000 vs 35,000 req/s)",
    "acquire (200), 50 connections: 0.60 vs 0.50 of bare (30,000 vs 25,000 req/s)",
    "Handoff latency, p99: 1.00 ms vs 2.00 ms",
  ]);
  assert.equal(
    figuresComparisonMarkdown(figures, [ours, theirs]),
    [
      `| Benchmark | Measure | ${ours} | ${theirs} |`,
      "| --- | --- | ---: | ---: |",
      "| Handoff latency | p99 | 1.00 ms | 2.00 ms |",
      "| Memory (RSS) | bare | 30 MB |  |",
    ].join("\n"),
  );
});

Deno.test("logCostLines() sets acquire at the default level and as JSON against --logLevel warn", () => {
  const row = (label: string, requestsPerSecond: number, connections = 50) =>
    summary(`startup-lock ${label}`, connections, requestsPerSecond, 1);
  assert.deepEqual(
    logCostLines([
      row(MODES.acquire.label, 9_000),
      row(MODES["acquire-warn"].label, 10_000),
      row(MODES["acquire-json"].label, 8_000),
      row(MODES.acquire.label, 8_000, 1000),
      row(MODES["acquire-warn"].label, 10_000, 1000),
    ]),
    [
      "default (text) at 50 connections: 0.90 of --logLevel warn (target 0.85): met",
      "--logFormat json at 50 connections: 0.80 of --logLevel warn",
      "default (text) at 1000 connections: 0.80 of --logLevel warn (target 0.85): NOT met",
    ],
  );
});

Deno.test("logCostLines() names the program of each line when a baseline is measured too", () => {
  const [ours, theirs] = COMPARED_NAMES;
  const rows = [ours, theirs].flatMap((program, i) => [
    summary(`${program} ${MODES.acquire.label}`, 50, 9_000 - 1_000 * i, 1),
    summary(`${program} ${MODES["acquire-warn"].label}`, 50, 10_000, 1),
  ]);
  assert.deepEqual(logCostLines(rows), [
    `${ours}: default (text) at 50 connections: 0.90 of --logLevel warn (target 0.85): met`,
    `${theirs}: default (text) at 50 connections: 0.80 of --logLevel warn (target 0.85): NOT met`,
  ]);
  assert.deepEqual(variantLines(rows), [
    `${ours}: --logLevel warn at 50 connections: 1.11 of the default (10,000 vs 9,000 req/s)`,
    `${theirs}: --logLevel warn at 50 connections: 1.25 of the default (10,000 vs 8,000 req/s)`,
  ]);
});

Deno.test("variantLines() sets each variant of acquire against acquire with the default flags", () => {
  const rows = LOCK_MODES.map((mode, i) =>
    summary(`startup-lock ${MODES[mode].label}`, 50, 10_000 - 1_000 * i, 1)
  );
  assert.deepEqual(variantLines(rows), [
    "--logLevel warn at 50 connections: 0.89 of the default (8,000 vs 9,000 req/s)",
    "--logFormat json at 50 connections: 0.78 of the default (7,000 vs 9,000 req/s)",
    "--stateFile at 50 connections: 0.67 of the default (6,000 vs 9,000 req/s)",
    "/metrics scraped every 1 s at 50 connections: 0.56 of the default (5,000 vs 9,000 req/s)",
  ]);
});

Deno.test("the throughput rows are the default flags first, then variants that say what differs", () => {
  assert.deepEqual(LOCK_MODES.slice(0, 2), ["deny", "acquire"]);
  assert.deepEqual(DEFAULT_MODES, ["deny", "acquire"]);
  assert.deepEqual(BASELINE_MODES, ["deny", "acquire", "acquire-warn"]);
  for (const mode of DEFAULT_MODES) {
    assert.ok(!MODES[mode].flags.includes("--logLevel"), `${mode} runs at the default level`);
    assert.ok(!MODES[mode].flags.includes("--logFormat"), `${mode} runs in the default format`);
  }
  for (const mode of LOCK_MODES.filter((m) => !DEFAULT_MODES.includes(m))) {
    const { label, flags } = MODES[mode];
    const extra = flags.filter((f) => !MODES.acquire.flags.includes(f));
    // Each variant names in its label the flag it adds.
    if (extra[0]) assert.ok(label.includes(extra[0]), `${label} names ${extra[0]}`);
    if (mode !== "acquire-warn") {
      assert.ok(!flags.includes("--logLevel"), `${label}: default level`);
    }
  }
  for (const mode of LOCK_MODES.filter((m) => m.startsWith("acquire"))) {
    // Its locks of 1 s expire after its run, not during the next server's.
    assert.ok((MODES[mode].settleMs ?? 0) >= 1_000, mode);
  }
  assert.ok(MODES["acquire-scraped"].scrapeEveryMs);
  assert.ok((MODES["acquire-state"].lengthFactor ?? 1) > 1);
  assert.equal(HANDOFF_VARIANTS[0]?.name, undefined, "the handoff's first row is the default");
  assert.deepEqual(HANDOFF_VARIANTS[1]?.flags[0], "--stateFile");
});

const WRK = which("wrk");
/** CI installs wrk (`.ci/run`) and must never skip the run below. */
const IN_CI = Boolean(Deno.env.get("CI"));
if (!WRK && !IN_CI) {
  console.error("SKIPPED the tiny benchmark run: wrk not found (apt-get install -y wrk)");
}

Deno.test({
  name: "deno task bench runs every row and variant in a tiny configuration",
  ignore: !WRK && !IN_CI,
  async fn() {
    // The benchmark's TMPDIR: it must be left as empty as it was given (no state file, no token).
    const tmp = await Deno.makeTempDir({ prefix: "startup-lock-bench-test-" });
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "--quiet", "--config", `${ROOT}deno.json`, "bench", "--", "handoff,http"],
      env: {
        TMPDIR: tmp,
        NO_COLOR: "1",
        BENCH_BASELINE: "",
        BENCH_HANDOFFS: "5",
        BENCH_SECONDS: "1",
        BENCH_ROUNDS: "1",
        BENCH_WARMUP_SECONDS: "0",
        BENCH_THREADS: "1",
        BENCH_CONNECTIONS: "2",
      },
      stdin: "null",
    }).output();
    const left = [...Deno.readDirSync(tmp)].map((e) => e.name);
    await Deno.remove(tmp, { recursive: true });
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `${stdout}\n${stderr}`);
    assert.deepEqual(left, [], "the benchmark leaves nothing in its TMPDIR");
    const table = stdout.slice(stdout.indexOf("Results"), stdout.indexOf("Throughput target"));
    for (const mode of LOCK_MODES) {
      assert.match(table, new RegExp(`^startup-lock ${escape(MODES[mode].label)} +2 `, "m"));
    }
    // The state file runs twice as long; the scraped server is scraped, and every scrape works.
    assert.match(stdout, /^Runs: .*\(--stateFile: 2 s\)/m);
    assert.match(stdout, /^ {2}default \(text\) at 2 connections: [\d.]+ of --logLevel warn/m);
    assert.match(stdout, /^ {2}--logFormat json at 2 connections: [\d.]+ of --logLevel warn$/m);
    assert.match(stdout, /^ {2}--stateFile at 2 connections: [\d.]+ of the default/m);
    assert.match(stdout, /^ {2}\/metrics scraped every 1 s at 2 connections: [\d.]+ of the/m);
    const scrapes = /scraped every 1 s \(200\) at 2 connections: (\d+) scrapes?(.*)$/m.exec(stdout);
    assert.ok(scrapes && Number(scrapes[1]) >= 1, stdout);
    assert.doesNotMatch(scrapes[2] ?? "", /FAILED/);
    // Whether a server wrote less than it logged is said, either way.
    assert.match(stdout, /^(No server dropped a log line|Log lines DROPPED)/m);
    // The handoff: the default flags with the target, then --stateFile.
    assert.match(stdout, /^\| Handoff latency \| p99, release → waiter's 200 \(5 handoffs\) \|/m);
    assert.match(stdout, /^\| Handoff latency \| --stateFile: p50 \/ p99, release → waiter's/m);
  },
});

Deno.test({
  name: "deno task bench -- startup sets each command against the runtime's floor",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "--quiet", "--config", `${ROOT}deno.json`, "bench", "--", "startup"],
      env: { NO_COLOR: "1", BENCH_BASELINE: "", BENCH_STARTS: "1" },
      stdin: "null",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `${stdout}\n${stderr}`);
    const ratio = String.raw`[\d.]+ (ms|MB) vs [\d.]+ (ms|MB) = [\d.]+× \| ≤ 1\.[23]×`;
    for (
      const measure of [
        "healthcheck wall time vs a one-line fetch",
        "hold idle after its release vs a bare idle program",
        "server idle after its first answer vs a bare Deno.serve",
        "server's first answer from its start vs a bare Deno.serve's",
      ]
    ) assert.match(stdout, new RegExp(`^\\| Start-up \\| ${escape(measure)} \\| ${ratio}`, "m"));
    if (which("/usr/bin/time")) {
      assert.match(
        stdout,
        new RegExp(
          `^\\| Start-up \\| healthcheck peak memory vs a one-line fetch \\| ${ratio}`,
          "m",
        ),
      );
    }
  },
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

Deno.test({
  name: "deno task bench -- redis measures the Redis store against its floor and the memory store",
  ignore: (!WRK || !REDIS_SERVER) && !IN_CI,
  async fn() {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "--quiet", "--config", `${ROOT}deno.json`, "bench", "--", "redis"],
      env: {
        NO_COLOR: "1",
        BENCH_BASELINE: "",
        BENCH_HANDOFFS: "5",
        BENCH_SECONDS: "1",
      },
      stdin: "null",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `${stdout}\n${stderr}`);
    for (
      const row of [
        /^\| Redis store \| p50 of a Redis PING round trip \| [\d.]+ ms \|/m,
        /^\| Redis store \| p50 of a Redis INCR round trip \(a write, fsynced\) \| [\d.]+ ms \|/m,
        /^\| Redis store \| p50 of the store's acquire, in PING round trips \| [\d.]+ ms = [\d.]+ \|/m,
        /^\| Redis store \| p50 of the store's acquire, in write round trips \| [\d.]+ ms = [\d.]+ \| ≤ 2 round trips/m,
        /^\| Redis store \| Redis calls per acquire over HTTP .*\| [\d.]+ \| ≤ 2/m,
        /^\| Redis store \| p50 acquire, memory store \/ Redis store \| [\d.]+ ms \/ [\d.]+ ms \|/m,
        /^\| Redis store \| acquires\/s at 50 connections, memory store \/ Redis store \| \d+ \/ \d+/m,
        /^\| Redis store \| p99, release on replica A → waiter's 200 on replica B \(5 handoffs\) \| [\d.]+ ms \| ≤ 5 ms/m,
        // The floor under a handoff that is not the store's, measured between the handoffs.
        /^\| Redis store \| p50 \/ p99 of 2 HTTP round trips to a bare Deno.serve, between the handoffs \(the floor\) \| [\d.]+ ms \/ [\d.]+ ms = [\d.]+ paced write round trips \|/m,
        // The yardstick of the handoff's target: a write as a handoff meets it, after a pause.
        /^\| Redis store \| p50 \/ p99 of a Redis INCR after a 2 ms pause, between the handoffs \(a write as a handoff meets it\) \| [\d.]+ ms \/ [\d.]+ ms = [\d.]+ back-to-back writes \|/m,
        /^\| Redis store \| p50, release on replica A → waiter's 200 on replica B, in paced write round trips \| [\d.]+ ms = [\d.]+ \([\d.]+ back-to-back writes\) \| ≤ 2 round trips/m,
      ]
    ) assert.match(stdout, row);
  },
});
