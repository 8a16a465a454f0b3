/**
 * This checkout against a baseline checkout measured in the same run
 * (`deno task bench --baseline DIR`): their figures side by side.
 *
 * @module
 */
import type { Figure } from "./figures.ts";
import type { Summary } from "./report.ts";

/** The throughput modes, as the servers' names in the tables end. */
const MODES = ["deny (423)", "acquire (200)"] as const;

/**
 * One line per throughput mode and concurrency (each program's share of the
 * bare handler, and its requests per second), then one per figure that both
 * programs have: `ours`'s value first.
 */
export function comparisonLines(
  rows: readonly Summary[],
  figures: readonly Figure[],
  ours: string,
  theirs: string,
): string[] {
  const lines: string[] = [];
  const concurrencies = [...new Set(rows.map((r) => r.connections))];
  for (const connections of concurrencies) {
    for (const mode of MODES) {
      const find = (name: string) =>
        rows.find((r) => r.server === `${name} ${mode}` && r.connections === connections);
      const [a, b] = [find(ours), find(theirs)];
      if (!a || !b) continue;
      lines.push(
        `${mode}, ${connections} connections: ${a.ratio.toFixed(2)} vs ${
          b.ratio.toFixed(2)
        } of bare ` +
          `(${formatRate(a.requestsPerSecond)} vs ${formatRate(b.requestsPerSecond)} req/s)`,
      );
    }
  }
  for (const [key, byProgram] of pairs(figures)) {
    const [a, b] = [byProgram.get(ours), byProgram.get(theirs)];
    if (a && b) lines.push(`${key}: ${a.value} vs ${b.value}`);
  }
  return lines;
}

/** A markdown table of `figures` with one column of values per program, in `programs` order. */
export function figuresComparisonMarkdown(
  figures: readonly Figure[],
  programs: readonly string[],
): string {
  const lines = [
    `| Benchmark | Measure | ${programs.join(" | ")} |`,
    `| --- | --- | ${programs.map(() => "---:").join(" | ")} |`,
  ];
  for (const [, byProgram] of pairs(figures)) {
    const first = [...byProgram.values()][0];
    if (!first) continue;
    const values = programs.map((p) => byProgram.get(p)?.value ?? "");
    lines.push(`| ${first.benchmark} | ${first.measure} | ${values.join(" | ")} |`);
  }
  return lines.join("\n");
}

/** The figures grouped by benchmark and measure (`"Handoff latency, p50, …"`), then by program. */
function pairs(figures: readonly Figure[]): Map<string, Map<string, Figure>> {
  const grouped = new Map<string, Map<string, Figure>>();
  for (const figure of figures) {
    const key = `${figure.benchmark}, ${figure.measure}`;
    const byProgram = grouped.get(key) ?? new Map<string, Figure>();
    byProgram.set(figure.program ?? "", figure);
    grouped.set(key, byProgram);
  }
  return grouped;
}

function formatRate(perSecond: number): string {
  return Math.round(perSecond).toLocaleString("en-US");
}
