/**
 * The documentation's markdown, for tests that check it: the README and every
 * page under `docs/`. A code block is marked by an HTML comment on the line
 * before its opening fence:
 *
 * - `<!-- from: PATH -->`: the block is copied from that file
 *   (tests/docs/readme_test.ts checks it still is);
 * - `<!-- block: ID -->`: a test runs or checks the block, reading it with
 *   {@linkcode readmeBlock}.
 *
 * @module
 */

const ROOT = new URL("../", import.meta.url);

/** The documentation's files, relative to the repository: README.md, then docs/*.md by name. */
export function docFiles(): string[] {
  const pages = [...Deno.readDirSync(new URL("docs/", ROOT))]
    .filter((e) => e.isFile && e.name.endsWith(".md"))
    .map((e) => `docs/${e.name}`)
    .sort();
  return ["README.md", ...pages];
}

/** The text of a documentation file, given relative to the repository (`docs/operations.md`). */
export function docText(file: string): string {
  return Deno.readTextFileSync(new URL(file, ROOT));
}

/** A fenced code block of the documentation. */
export interface DocBlock {
  /** The file it is in, relative to the repository. */
  file: string;
  /** `from` or `block`, or `undefined` when unmarked. */
  mark: { kind: "from" | "block"; value: string } | undefined;
  /** The section heading it stands under. */
  heading: string;
  /** The info string after the opening fence (`sh`, `yaml`), or "". */
  lang: string;
  code: string;
  /** 1-based line of the opening fence. */
  line: number;
}

/** Every fenced block of one file, in order. */
export function fileBlocks(file: string): DocBlock[] {
  const lines = docText(file).split("\n");
  const blocks: DocBlock[] = [];
  let heading = "";
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^#{1,6} /.test(line)) heading = line.replace(/^#+ /, "");
    const fence = /^(`{3,})(.*)$/.exec(line);
    if (!fence) continue;
    const end = lines.findIndex((l, j) => j > i && l.startsWith(fence[1]!));
    const previous = (lines[i - 1] ?? "").trim() || (lines[i - 2] ?? "").trim();
    const marked = /^<!-- (from|block): (\S+) -->$/.exec(previous);
    blocks.push({
      file,
      mark: marked ? { kind: marked[1] as "from" | "block", value: marked[2]! } : undefined,
      heading,
      lang: fence[2]!.trim(),
      code: lines.slice(i + 1, end).join("\n"),
      line: i + 1,
    });
    i = end;
  }
  return blocks;
}

/** Every fenced block of the README and of every docs page. */
export function readmeBlocks(): DocBlock[] {
  return docFiles().flatMap(fileBlocks);
}

/**
 * The code of the block marked `<!-- block: ID -->`, in the README or any docs
 * page; throws when there is none, or more than one.
 */
export function readmeBlock(id: string): string {
  const found = readmeBlocks().filter((b) => b.mark?.kind === "block" && b.mark.value === id);
  if (found.length === 0) {
    throw new Error(`No block of README.md or docs/ is marked <!-- block: ${id} -->`);
  }
  if (found.length > 1) {
    const where = found.map((b) => `${b.file}:${b.line}`).join(", ");
    throw new Error(`Block "${id}" is marked more than once: ${where}`);
  }
  return found[0]!.code;
}

/** A heading of a documentation file, outside code blocks. */
export interface DocHeading {
  /** 1 for `#`, 2 for `##`, … */
  level: number;
  text: string;
  /** 1-based line. */
  line: number;
}

/**
 * The lines of `text` outside fenced code blocks, each with its 1-based
 * number: where headings and links of the prose are.
 */
export function proseLines(text: string): { text: string; line: number }[] {
  const prose: { text: string; line: number }[] = [];
  let fence: string | undefined;
  text.split("\n").forEach((line, i) => {
    const opening = /^(`{3,})/.exec(line);
    if (fence !== undefined) {
      if (line.startsWith(fence)) fence = undefined;
    } else if (opening) {
      fence = opening[1]!;
    } else {
      prose.push({ text: line, line: i + 1 });
    }
  });
  return prose;
}

/** Every heading of a file, in order, skipping lines inside fenced code blocks. */
export function docHeadings(file: string): DocHeading[] {
  return proseLines(docText(file)).flatMap(({ text, line }) => {
    const heading = /^(#{1,6}) (.+)$/.exec(text);
    return heading ? [{ level: heading[1]!.length, text: heading[2]!, line }] : [];
  });
}

/**
 * The text under a heading of `file` (given as written, such as `## Metrics`),
 * up to the next heading of the same or a higher level; throws when there is none.
 */
export function docSection(file: string, heading: string): string {
  const lines = docText(file).split("\n");
  const headings = docHeadings(file);
  const i = headings.findIndex((h) => `${"#".repeat(h.level)} ${h.text}` === heading);
  if (i === -1) throw new Error(`${file} has no heading "${heading}"`);
  const start = headings[i]!;
  const end = headings.slice(i + 1).find((h) => h.level <= start.level);
  return lines.slice(start.line, end ? end.line - 1 : lines.length).join("\n");
}

/**
 * The anchor GitHub gives a heading: lower case, punctuation dropped, spaces
 * as hyphens (a repeated one gets `-1`, `-2`, … in {@linkcode docAnchors}).
 */
export function slug(heading: string): string {
  return heading.trim().toLowerCase()
    .replace(/`/g, "")
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
    .replace(/ /g, "-");
}

/** Every anchor a file's headings give, as GitHub numbers repeated ones. */
export function docAnchors(file: string): Set<string> {
  const anchors = new Set<string>();
  for (const { text } of docHeadings(file)) {
    const base = slug(text);
    let anchor = base;
    for (let n = 1; anchors.has(anchor); n++) anchor = `${base}-${n}`;
    anchors.add(anchor);
  }
  return anchors;
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
