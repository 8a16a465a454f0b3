/**
 * Figures of the handoff, rollout and memory benchmarks: percentiles, targets
 * and the markdown table for docs/performance.md.
 *
 * @module
 */

/** A target a figure is held to; printed as met or NOT met, never failing the run. */
export interface Target {
  /** The target in words, such as `≤ 5 ms`. */
  text: string;
  met: boolean;
}

/** One measured figure. */
export interface Figure {
  /** The program measured, when several are (`startup-lock`, `baseline`). */
  program?: string;
  /** The benchmark, such as `Handoff latency`. */
  benchmark: string;
  /** What was measured, such as `p99, release → waiter's 200`. */
  measure: string;
  /** The value with its unit. */
  value: string;
  target?: Target;
}

/**
 * The `p`th percentile of `values` (0 < p ≤ 100) by the nearest-rank method:
 * a value that was measured, never an interpolation.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] ?? NaN;
}

/** ` (label)` for a heading, or nothing. */
export function labelText(label: string | undefined): string {
  return label ? ` (${label})` : "";
}

/** Milliseconds with two decimals below 10, one above. */
export function formatMs(ms: number): string {
  return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`;
}

/** Seconds with two decimals. */
export function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

/** `≤ limit`: met when `value` is at most `limit`. */
export function atMost(value: number, limit: number, text: string): Target {
  return { text: `≤ ${text}`, met: value <= limit };
}

/** One line per figure that has a target. */
export function targetLines(figures: readonly Figure[]): string[] {
  return figures.flatMap((f) =>
    f.target
      ? [
        `${f.benchmark}${
          labelText(f.program)
        }, ${f.measure}: ${f.value} (target ${f.target.text}): ${f.target.met ? "met" : "NOT met"}`,
      ]
      : []
  );
}

/** A markdown table of `figures` for docs/performance.md. */
export function figuresMarkdown(figures: readonly Figure[]): string {
  const lines = [
    "| Benchmark | Measure | Result | Target |",
    "| --- | --- | ---: | --- |",
  ];
  for (const f of figures) {
    const target = f.target ? `${f.target.text} (${f.target.met ? "met" : "NOT met"})` : "";
    lines.push(`| ${f.benchmark} | ${f.measure} | ${f.value} | ${target} |`);
  }
  return lines.join("\n");
}
