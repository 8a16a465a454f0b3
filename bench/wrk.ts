/**
 * Runs `wrk --latency` and parses what it prints.
 *
 * @module
 */

/** Printed when `wrk` is not on PATH. */
export const WRK_MISSING = "wrk not found: install it with `apt-get install wrk`";

/** One wrk run. */
export interface WrkOptions {
  url: string;
  threads: number;
  connections: number;
  seconds: number;
}

/** What one wrk run measured. */
export interface WrkResult {
  requestsPerSecond: number;
  /** Median latency in milliseconds. */
  p50Ms: number;
  /** 99th percentile latency in milliseconds. */
  p99Ms: number;
  /** Completed requests. */
  requests: number;
  /** Responses whose status was not 2xx or 3xx. */
  non2xx: number;
  /** Connect, read, write and timeout errors together. */
  socketErrors: number;
}

/** Returns the first line of `wrk -v`, or `undefined` when wrk is not on PATH. */
export async function wrkVersion(): Promise<string | undefined> {
  try {
    // `wrk -v` prints its version and usage, then exits with 1.
    const out = await new Deno.Command("wrk", { args: ["-v"], stdin: "null" }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return text.split("\n")[0]?.replace(/\s*Copyright.*$/, "").trim() ?? "wrk";
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * Runs wrk once. It runs through `sh` so that the open-file limit can be raised
 * to the hard limit first: every connection is a file descriptor.
 */
export async function runWrk(options: WrkOptions): Promise<WrkResult> {
  const { url, threads, connections, seconds } = options;
  const args = [
    "-c",
    'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec wrk "$@"',
    "sh",
    `-t${threads}`,
    `-c${connections}`,
    `-d${seconds}s`,
    "--latency",
    url,
  ];
  const out = await new Deno.Command("sh", { args, stdin: "null" }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr);
    throw new Error(`wrk exited with ${out.code}:\n${stdout}${stderr}`);
  }
  return parseWrkOutput(stdout);
}

/** Parses the output of `wrk --latency`. */
export function parseWrkOutput(text: string): WrkResult {
  const sockets = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/
    .exec(text);
  return {
    requestsPerSecond: Number(match(text, /^Requests\/sec:\s+([\d.]+)/m)),
    p50Ms: latencyMs(text, "50"),
    p99Ms: latencyMs(text, "99"),
    requests: Number(match(text, /^\s*(\d+) requests in /m)),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0),
    socketErrors: sockets ? sockets.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
  };
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function latencyMs(text: string, percentile: string): number {
  const pattern = new RegExp(`^\\s*${percentile}(?:\\.0+)?%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, "m");
  const found = pattern.exec(text);
  const value = found?.[1];
  const unit = found?.[2];
  if (value === undefined || unit === undefined) {
    throw new Error(`No ${percentile}% latency in wrk output:\n${text}`);
  }
  return Number(value) * (UNIT_MS[unit] ?? NaN);
}

function match(text: string, pattern: RegExp): string {
  const value = pattern.exec(text)?.[1];
  if (value === undefined) throw new Error(`No ${pattern} in wrk output:\n${text}`);
  return value;
}
