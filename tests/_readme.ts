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
