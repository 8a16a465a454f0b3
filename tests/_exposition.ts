/**
 * Reading the Prometheus text exposition and PromQL, for tests that check
 * what docs/operations.md and the alert rules say about the metrics against what the
 * server exports.
 *
 * @module
 */

/** One metric as exported: its type and the label names its samples carry. */
export interface MetricFamily {
  type: string;
  /** Label names of its samples; `le` of histogram buckets left out. */
  labels: Set<string>;
}

/** The suffixes of a histogram's series. */
const HISTOGRAM_SUFFIXES = ["_bucket", "_sum", "_count"];

/** The metrics of an exposition, by name, from its `# TYPE` lines and samples. */
export function metricFamilies(text: string): Map<string, MetricFamily> {
  const families = new Map<string, MetricFamily>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) families.set(type[1]!, { type: type[2]!, labels: new Set() });
  }
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? /.exec(line);
    if (!sample) throw new Error(`Not a sample line: ${line}`);
    const family = familyOf(sample[1]!, families);
    if (!family) throw new Error(`A sample without a # TYPE: ${line}`);
    for (const [, label] of (sample[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) {
      if (!(family.type === "histogram" && label === "le")) family.labels.add(label!);
    }
  }
  return families;
}

/** The family a series name belongs to: itself, or a histogram's `_bucket`, `_sum`, `_count`. */
export function familyOf(
  name: string,
  families: ReadonlyMap<string, MetricFamily>,
): MetricFamily | undefined {
  const own = families.get(name);
  if (own) return own;
  for (const suffix of HISTOGRAM_SUFFIXES) {
    if (!name.endsWith(suffix)) continue;
    const family = families.get(name.slice(0, -suffix.length));
    if (family?.type === "histogram") return family;
  }
  return undefined;
}

/** A metric named in PromQL, with the label names its `{…}` matchers use. */
export interface MetricUse {
  name: string;
  labels: string[];
}

/**
 * The metrics a PromQL expression names (those with the server's prefixes,
 * `startup_lock_` and `process_`), with the labels of their matchers.
 */
export function metricsIn(expr: string): MetricUse[] {
  const uses: MetricUse[] = [];
  for (const match of expr.matchAll(/\b((?:startup_lock|process)_[a-zA-Z0-9_]+)(\{[^}]*\})?/g)) {
    const labels = [...(match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)]
      .map((m) => m[1]!);
    uses.push({ name: match[1]!, labels });
  }
  return uses;
}

/**
 * What is wrong with the metrics `expr` names, given what the server
 * exports: a metric that does not exist, or a label it does not carry.
 */
export function unknownMetrics(
  expr: string,
  families: ReadonlyMap<string, MetricFamily>,
): string[] {
  const problems: string[] = [];
  for (const use of metricsIn(expr)) {
    const family = familyOf(use.name, families);
    if (!family) {
      problems.push(`${use.name} is not a metric the server exports`);
      continue;
    }
    for (const label of use.labels) {
      const bucket = label === "le" && use.name.endsWith("_bucket");
      if (!family.labels.has(label) && !bucket) problems.push(`${use.name} has no label ${label}`);
    }
  }
  return problems;
}
