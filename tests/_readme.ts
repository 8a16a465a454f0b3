/**
 * The README's code blocks, for tests that check its snippets. A block is
 * marked by an HTML comment on the line before its opening fence:
 *
 * - `<!-- from: PATH -->`: the block is copied from that file (tests/readme_test.ts
 *   checks it still is);
 * - `<!-- block: ID -->`: a test runs or checks the block, reading it with
 *   {@linkcode readmeBlock}.
 *
 * @module
 */

/** A fenced code block of the README. */
export interface ReadmeBlock {
  /** `from` or `block`, or `undefined` when unmarked. */
  mark: { kind: "from" | "block"; value: string } | undefined;
  /** The section heading it stands under. */
  heading: string;
  code: string;
  /** 1-based line of the opening fence. */
  line: number;
}

const README = new URL("../README.md", import.meta.url);

/** Every fenced block of the README, in order. */
export function readmeBlocks(): ReadmeBlock[] {
  const lines = Deno.readTextFileSync(README).split("\n");
  const blocks: ReadmeBlock[] = [];
  let heading = "";
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^#{1,6} /.test(line)) heading = line.replace(/^#+ /, "");
    const fence = /^(`{3,})/.exec(line);
    if (!fence) continue;
    const end = lines.findIndex((l, j) => j > i && l.startsWith(fence[1]!));
    const previous = (lines[i - 1] ?? "").trim() || (lines[i - 2] ?? "").trim();
    const marked = /^<!-- (from|block): (\S+) -->$/.exec(previous);
    blocks.push({
      mark: marked ? { kind: marked[1] as "from" | "block", value: marked[2]! } : undefined,
      heading,
      code: lines.slice(i + 1, end).join("\n"),
      line: i + 1,
    });
    i = end;
  }
  return blocks;
}

/** The code of the block marked `<!-- block: ID -->`; throws when there is none. */
export function readmeBlock(id: string): string {
  const block = readmeBlocks().find((b) => b.mark?.kind === "block" && b.mark.value === id);
  if (!block) throw new Error(`README.md has no block marked <!-- block: ${id} -->`);
  return block.code;
}

/** A heading of the README, outside code blocks. */
export interface ReadmeHeading {
  /** 1 for `#`, 2 for `##`, … */
  level: number;
  text: string;
  /** 1-based line. */
  line: number;
}

/** Every heading of the README, in order, skipping lines inside fenced code blocks. */
export function readmeHeadings(): ReadmeHeading[] {
  const lines = Deno.readTextFileSync(README).split("\n");
  const headings: ReadmeHeading[] = [];
  let fence: string | undefined;
  lines.forEach((line, i) => {
    const opening = /^(`{3,})/.exec(line);
    if (fence !== undefined) {
      if (line.startsWith(fence)) fence = undefined;
      return;
    }
    if (opening) {
      fence = opening[1]!;
      return;
    }
    const heading = /^(#{1,6}) (.+)$/.exec(line);
    if (heading) headings.push({ level: heading[1]!.length, text: heading[2]!, line: i + 1 });
  });
  return headings;
}

/**
 * The text under a heading (given as written, such as `### Metrics`), up to
 * the next heading of the same or a higher level; throws when there is none.
 */
export function readmeSection(heading: string): string {
  const lines = Deno.readTextFileSync(README).split("\n");
  const headings = readmeHeadings();
  const i = headings.findIndex((h) => `${"#".repeat(h.level)} ${h.text}` === heading);
  if (i === -1) throw new Error(`README.md has no heading "${heading}"`);
  const start = headings[i]!;
  const end = headings.slice(i + 1).find((h) => h.level <= start.level);
  return lines.slice(start.line, end ? end.line - 1 : lines.length).join("\n");
}

/** The cells of a table row, trimmed; a `|` inside a code span does not split. */
function cells(row: string): string[] {
  const out: string[] = [];
  let cell = "";
  let code = false;
  for (const c of row.trim().replace(/^\||\|$/g, "")) {
    if (c === "`") code = !code;
    if (c === "|" && !code) {
      out.push(cell.trim());
      cell = "";
    } else cell += c;
  }
  out.push(cell.trim());
  return out;
}

/**
 * The body rows of the first table in `text` whose first header cell is
 * `firstHeader`, as cells; throws when there is none.
 */
export function tableRows(text: string, firstHeader: string): string[][] {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.startsWith("|") && cells(l)[0] === firstHeader);
  if (start === -1) throw new Error(`No table whose first column is "${firstHeader}"`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("|")) break;
    rows.push(cells(line));
  }
  return rows;
}

/** The code spans of a piece of markdown: "`a`, `b`" → `["a", "b"]`. */
export function codeSpans(text: string): string[] {
  return [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
}
