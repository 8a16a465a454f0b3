/**
 * Summaries and tables of `deno task bench`.
 *
 * @module
 */
import type { WrkResult } from "./wrk.ts";

/** The share of the bare handler's throughput startup-lock should reach. */
export const TARGET_RATIO = 0.9;

/** The name of the bare `Deno.serve` baseline in the tables. */
export const BARE_NAME = "bare Deno.serve (423)";

/** The medians of the rounds of one server at one concurrency. */
export interface Summary {
  server: string;
  connections: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Share of responses that were not 2xx/3xx, in percent. */
  non2xxPercent: number;
  /** Socket errors over all rounds. */
  socketErrors: number;
  /** Throughput relative to the bare handler at the same concurrency. */
  ratio: number;
}

/** The median of `values` (the mean of the middle two when there is an even number). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const upper = sorted[mid] ?? NaN;
  return sorted.length % 2 ? upper : ((sorted[mid - 1] ?? NaN) + upper) / 2;
}

/** Sums up the rounds of one server at one concurrency. */
export function summarize(
  server: string,
  connections: number,
  runs: readonly WrkResult[],
  bareRequestsPerSecond: number,
): Summary {
  const requests = runs.reduce((sum, r) => sum + r.requests, 0);
  const non2xx = runs.reduce((sum, r) => sum + r.non2xx, 0);
  const requestsPerSecond = median(runs.map((r) => r.requestsPerSecond));
  return {
    server,
    connections,
    requestsPerSecond,
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    non2xxPercent: requests ? (100 * non2xx) / requests : 0,
    socketErrors: runs.reduce((sum, r) => sum + r.socketErrors, 0),
    ratio: requestsPerSecond / bareRequestsPerSecond,
  };
}

/** A plain-text table of every summary, columns aligned. */
export function textTable(rows: readonly Summary[]): string {
  const header = ["server", "conns", "req/s", "p50 ms", "p99 ms", "non-2xx", "sock err", "vs bare"];
  const body = rows.map((r) => [
    r.server,
    String(r.connections),
    formatRate(r.requestsPerSecond),
    formatMs(r.p50Ms),
    formatMs(r.p99Ms),
    `${r.non2xxPercent.toFixed(1)}%`,
    String(r.socketErrors),
    r.ratio.toFixed(2),
  ]);
  const widths = header.map((h, i) =>
    Math.max(h.length, ...body.map((row) => row[i]?.length ?? 0))
  );
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join("  ");
  return [line(header), ...body.map(line)].join("\n");
}

/** A markdown table for docs/performance.md. */
export function markdownTable(rows: readonly Summary[]): string {
  const lines = [
    "| Server | Connections | Requests/s | p50 | p99 | vs bare |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.server} | ${r.connections.toLocaleString("en-US")} | ` +
        `${formatRate(r.requestsPerSecond)} | ${formatMs(r.p50Ms)} ms | ` +
        `${formatMs(r.p99Ms)} ms | ${r.ratio.toFixed(2)} |`,
    );
  }
  return lines.join("\n");
}

/** One line per startup-lock summary: is the throughput target met? */
export function targetLines(rows: readonly Summary[]): string[] {
  return rows.filter((r) => r.server !== BARE_NAME).map((r) =>
    `${r.server} at ${r.connections} connections: ${r.ratio.toFixed(2)} of bare ` +
    `(target ${TARGET_RATIO}): ${r.ratio >= TARGET_RATIO ? "met" : "NOT met"}`
  );
}

function formatRate(perSecond: number): string {
  return Math.round(perSecond).toLocaleString("en-US");
}

function formatMs(ms: number): string {
  return ms < 10 ? ms.toFixed(2) : ms.toFixed(1);
}
