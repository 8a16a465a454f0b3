/**
 * Start-up and resident memory of each way startup-lock runs, each against
 * the runtime's own floor measured in the same run, in alternating rounds:
 *
 * - `healthcheck` (container probes run it every few seconds): wall time and
 *   peak memory against `deno run` of `fetch_once.ts`, a one-line fetch of
 *   the same URL (targets {@link HEALTHCHECK_TARGET}×);
 * - `hold` idling after it released its lock (it idles beside an application
 *   for its whole life): resident memory against `idle.ts`, a bare idle
 *   program (target {@link HOLD_TARGET}×);
 * - the server idle, after its first answer: resident memory against
 *   `bare_server.ts`, a bare `Deno.serve`, after its first answer (target
 *   {@link SERVER_IDLE_TARGET}×);
 * - the server's first answer: from its start to the first `200` of
 *   `/healthz`, against the bare `Deno.serve`'s first answer (target
 *   {@link FIRST_ANSWER_TARGET}×).
 *
 * startup-lock runs as users run it (`program.ts`), the floors with `deno
 * run` and only the permissions they need. Peak memory comes from GNU
 * `/usr/bin/time` (skipped where it is missing), resident memory from
 * `/proc/PID/status`; Linux only.
 *
 * @module
 */
import { atMost, type Figure, formatMs, labelText } from "./figures.ts";
import { readMemory } from "./memory.ts";
import { type ChildProcess, delay, freePort, spawnChild } from "./process.ts";
import { isFile, type Program } from "./program.ts";
import { median } from "./report.ts";

/** healthcheck's wall time and peak memory, at most this many times the one-line fetch's. */
export const HEALTHCHECK_TARGET = 1.2;
/** hold's resident memory once idle, at most this many times a bare idle program's. */
export const HOLD_TARGET = 1.2;
/** The idle server's resident memory, at most this many times a bare `Deno.serve`'s. */
export const SERVER_IDLE_TARGET = 1.2;
/** The server's first answer, at most this many times as long as a bare `Deno.serve`'s. */
export const FIRST_ANSWER_TARGET = 1.3;
/**
 * How long a program that has started sits before its memory is read: the
 * allocations of start-up settle within this (the figures stay the same
 * when read seconds later).
 */
const SETTLE_MS = 500;
/** How often a starting server is asked whether it answers yet. */
const POLL_MS = 2;
const GNU_TIME = "/usr/bin/time";
const NAME = "Start-up";

const here = (file: string) => new URL(file, import.meta.url).pathname;
const FETCH_ONCE = here("fetch_once.ts");
const IDLE = here("idle.ts");
const BARE_SERVER = here("bare_server.ts");

/** Options of {@linkcode runStartup}. */
export interface StartupOptions {
  /** The startup-lock to measure. */
  program: Program;
  /** Named in the heading when set: which of several programs this is. */
  label?: string;
  /** Rounds; each runs every subject and its floor once, the medians are shown. */
  rounds: number;
  /** Gets each process started, so that an interrupted run can stop it. */
  track: (child: ChildProcess) => void;
}

/** What a process that ran to its end took. */
interface Run {
  wallMs: number;
  /** Peak resident memory in bytes; `undefined` without GNU time. */
  peak: number | undefined;
}

/** Runs `command` to its end; its wall time, and its peak memory through GNU time. */
async function timeRun(command: string, args: readonly string[], gnuTime: boolean): Promise<Run> {
  const started = performance.now();
  const out = await new Deno.Command(gnuTime ? GNU_TIME : command, {
    args: gnuTime ? ["-f", "maxrss-kib %M", command, ...args] : [...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  const wallMs = performance.now() - started;
  const stderr = new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${command} ${args.join(" ")} failed:\n${stderr}`);
  const kib = /^maxrss-kib (\d+)$/m.exec(stderr)?.[1];
  return { wallMs, peak: kib === undefined ? undefined : Number(kib) * 1024 };
}

/** A long-running program: spawned, then read once it has said `ready` and settled. */
async function idleMemory(
  command: string,
  args: readonly string[],
  ready: RegExp,
  options: StartupOptions,
  then?: (line: string) => Promise<void>,
): Promise<number> {
  const child = spawnChild(command, args);
  options.track(child);
  try {
    const line = await child.waitForLine(ready);
    await then?.(line);
    await delay(SETTLE_MS);
    return (await readMemory(child.pid)).rss;
  } finally {
    await child.stop();
  }
}

/** From the spawn of `command` until `url` answers, in ms; then stops it. */
async function firstAnswer(
  command: string,
  args: readonly string[],
  url: (lines: readonly string[]) => string | undefined,
  options: StartupOptions,
): Promise<{ ms: number; rss: number }> {
  const started = performance.now();
  const child = spawnChild(command, args);
  options.track(child);
  try {
    for (;;) {
      if (child.exited()) throw new Error(`${command} exited:\n${child.lines.join("\n")}`);
      const target = url(child.lines);
      if (target !== undefined) {
        try {
          const response = await fetch(target);
          await response.body?.cancel();
          if (response.status === 200 || response.status === 423) break;
        } catch { /* not listening yet */ }
      }
      await delay(POLL_MS);
    }
    const ms = performance.now() - started;
    await delay(SETTLE_MS);
    return { ms, rss: (await readMemory(child.pid)).rss };
  } finally {
    await child.stop();
  }
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

/** A figure of `subject` against `floor`, with the ratio held to `limit`. */
function ratioFigure(
  measure: string,
  subject: number,
  floor: number,
  limit: number,
  unit: (value: number) => string,
): Figure {
  const ratio = subject / floor;
  return {
    benchmark: NAME,
    measure,
    value: `${unit(subject)} vs ${unit(floor)} = ${ratio.toFixed(2)}×`,
    target: atMost(ratio, limit, `${limit}×`),
  };
}

/** Runs the benchmark, printing as it goes; returns its figures. */
export async function runStartup(options: StartupOptions): Promise<Figure[]> {
  const { program, rounds } = options;
  console.log(
    `\nStart-up${labelText(options.label)}: each command against the runtime's floor, ` +
      `${rounds} alternating round${rounds === 1 ? "" : "s"}, medians`,
  );
  if (Deno.build.os !== "linux") {
    console.log("  skipped: reads /proc, Linux only");
    return [];
  }
  const gnuTime = isFile(GNU_TIME);
  if (!gnuTime) console.log(`  peak memory skipped: no GNU time at ${GNU_TIME}`);
  const deno = Deno.execPath();
  const { command, args } = program;

  // The server that healthcheck and hold talk to.
  const port = freePort();
  const server = spawnChild(command, [...args, "--host", "127.0.0.1", "--port", String(port)]);
  options.track(server);
  const base = `http://127.0.0.1:${port}/`;
  const samples = {
    fetchOnce: [] as Run[],
    healthcheck: [] as Run[],
    idle: [] as number[],
    hold: [] as number[],
    bareFirst: [] as number[],
    bareIdle: [] as number[],
    serverFirst: [] as number[],
    serverIdle: [] as number[],
  };
  try {
    await server.waitForLine(/Listening on/);
    const healthz = `${base}healthz`;
    for (let round = 0; round < rounds; round++) {
      samples.fetchOnce.push(
        await timeRun(deno, ["run", "--quiet", "--allow-net", FETCH_ONCE, healthz], gnuTime),
      );
      samples.healthcheck.push(
        await timeRun(command, [...args, "healthcheck", "--url", healthz], gnuTime),
      );
      samples.idle.push(await idleMemory(deno, ["run", "--quiet", IDLE], /^idle$/, options));
      samples.hold.push(
        await idleMemory(
          command,
          [
            ...args,
            ...["hold", "--server", base, "--readyUrl", healthz, "--listen", "127.0.0.1:0"],
            ...["--id", `bench-hold-${round}`],
          ],
          /Idling until/,
          options,
        ),
      );
      // Both on a port known before the spawn, polled the same way from it: the polls' own cost
      // (a refused connection every POLL_MS on a shared machine) falls on both alike.
      const barePort = freePort();
      const bare = await firstAnswer(
        deno,
        ["run", "--quiet", "--allow-net", BARE_SERVER, "--port", String(barePort)],
        () => `http://127.0.0.1:${barePort}/`,
        options,
      );
      samples.bareFirst.push(bare.ms);
      samples.bareIdle.push(bare.rss);
      const ownPort = freePort();
      const own = await firstAnswer(
        command,
        [...args, "--host", "127.0.0.1", "--port", String(ownPort)],
        () => `http://127.0.0.1:${ownPort}/healthz`,
        options,
      );
      samples.serverFirst.push(own.ms);
      samples.serverIdle.push(own.rss);
    }
  } finally {
    await server.stop();
  }

  const wall = (runs: readonly Run[]) => median(runs.map((r) => r.wallMs));
  const peak = (runs: readonly Run[]) => median(runs.map((r) => r.peak ?? NaN));
  const figures: Figure[] = [
    ratioFigure(
      "healthcheck wall time vs a one-line fetch",
      wall(samples.healthcheck),
      wall(samples.fetchOnce),
      HEALTHCHECK_TARGET,
      formatMs,
    ),
    ...gnuTime
      ? [ratioFigure(
        "healthcheck peak memory vs a one-line fetch",
        peak(samples.healthcheck),
        peak(samples.fetchOnce),
        HEALTHCHECK_TARGET,
        mb,
      )]
      : [],
    ratioFigure(
      "hold idle after its release vs a bare idle program",
      median(samples.hold),
      median(samples.idle),
      HOLD_TARGET,
      mb,
    ),
    ratioFigure(
      "server idle after its first answer vs a bare Deno.serve",
      median(samples.serverIdle),
      median(samples.bareIdle),
      SERVER_IDLE_TARGET,
      mb,
    ),
    ratioFigure(
      "server's first answer from its start vs a bare Deno.serve's",
      median(samples.serverFirst),
      median(samples.bareFirst),
      FIRST_ANSWER_TARGET,
      formatMs,
    ),
  ];
  for (const f of figures) console.log(`  ${`${f.measure}:`.padEnd(64)} ${f.value}`);
  return figures;
}
