import assert from "node:assert/strict";
import { readmeBlocks } from "./_readme.ts";

const ROOT = new URL("../", import.meta.url);

/** A file's text with shell-style comment markers removed, so commands kept as comments count. */
function uncommented(text: string): string {
  return text.split("\n").map((l) => l.replace(/^\s*#\s?/, "")).join("\n");
}

Deno.test("README blocks marked 'from' are still copies of their files", () => {
  const from = readmeBlocks().filter((b) => b.mark?.kind === "from");
  for (const block of from) {
    const path = block.mark!.value;
    const text = Deno.readTextFileSync(new URL(path, ROOT));
    assert.ok(
      text.includes(block.code) || uncommented(text).includes(block.code),
      `README.md line ${block.line}: the block is not a copy of ${path}`,
    );
  }
});

Deno.test("README blocks marked 'block' are each read by a test", () => {
  const tests = [...Deno.readDirSync(new URL("tests/", ROOT))]
    .filter((e) => e.name.endsWith("_test.ts"))
    .map((e) => Deno.readTextFileSync(new URL(`tests/${e.name}`, ROOT)))
    .join("\n");
  for (const block of readmeBlocks().filter((b) => b.mark?.kind === "block")) {
    assert.ok(
      tests.includes(`readmeBlock("${block.mark!.value}")`),
      `README.md line ${block.line}: no test reads block "${block.mark!.value}"`,
    );
  }
});

Deno.test("every snippet of the Deploy section is checked by a test or copied from a checked file", () => {
  const text = Deno.readTextFileSync(new URL("README.md", ROOT));
  const start = text.indexOf("\n## Deploy");
  if (start === -1) return;
  const deployLines = text.slice(0, start).split("\n").length;
  const next = text.indexOf("\n## ", start + 1);
  const endLine = next === -1 ? Infinity : text.slice(0, next).split("\n").length;
  for (const block of readmeBlocks()) {
    if (block.line < deployLines || block.line > endLine) continue;
    assert.ok(block.mark, `README.md line ${block.line}: an unmarked snippet in Deploy`);
  }
});
