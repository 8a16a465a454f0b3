/**
 * The benchmark's command line and its comparison with a baseline checkout.
 * The benchmarks themselves measure and are run by `deno task bench`, not here.
 *
 * @module
 */
import assert from "node:assert/strict";
import { comparisonLines, figuresComparisonMarkdown } from "../bench/compare.ts";
import type { Figure } from "../bench/figures.ts";
import { logCostLines, parseBenchArgs, PARTS, selectPrograms } from "../bench/main.ts";
import { COMPARED_NAMES } from "../bench/program.ts";
import type { Summary } from "../bench/report.ts";
import { allowFlags, PROGRAM_PERMISSIONS } from "../lib/permissions.ts";

const ROOT = new URL("../", import.meta.url).pathname;
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
    [["cpu"], /^Unknown benchmark "cpu": expected some of handoff, rollout, memory, http$/],
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

Deno.test("logCostLines() sets each logged acquire variant against the same server at --logLevel warn", () => {
  const row = (server: string, requestsPerSecond: number): Summary => ({
    server,
    connections: 50,
    requestsPerSecond,
    p50Ms: 1,
    p99Ms: 2,
    non2xxPercent: 0,
    socketErrors: 0,
    ratio: 1,
  });
  assert.deepEqual(
    logCostLines([
      row("startup-lock acquire (200)", 10_000),
      row("startup-lock acquire, default log (200)", 9_000),
      row("startup-lock acquire, JSON log (200)", 8_000),
    ]),
    [
      "default log at 50 connections: 0.90 of --logLevel warn (target 0.85): met",
      "JSON log at 50 connections: 0.80 of --logLevel warn",
    ],
  );
});
