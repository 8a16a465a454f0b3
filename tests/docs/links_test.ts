/**
 * The README is a door: short, and every link of it and of the docs pages
 * leads somewhere (a file that exists, a heading of the page it names), and
 * every docs page is one click from the README.
 */
import assert from "node:assert/strict";
import { docAnchors, docFiles, docText, proseLines } from "../_readme.ts";

const ROOT = new URL("../../", import.meta.url);

/** The README stays a door, not the manual. */
const README_MAX_LINES = 400;

/** A link of a markdown file: its target as written, and its 1-based line. */
interface Link {
  target: string;
  line: number;
}

/** The inline links and images of `text`, outside fenced blocks and code spans. */
function links(text: string): Link[] {
  return proseLines(text).flatMap(({ text: line, line: number }) =>
    [...line.replace(/`[^`]*`/g, "").matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)]
      .map((m) => ({ target: m[1]!, line: number }))
  );
}

/** Whether `url` names a file or directory that exists. */
function exists(url: URL): boolean {
  try {
    Deno.statSync(url);
    return true;
  } catch {
    return false;
  }
}

/** The repository-relative path of `url`. */
function relative(url: URL): string {
  return url.pathname.slice(ROOT.pathname.length);
}

Deno.test("links finds inline links and images, and skips code", () => {
  const text = [
    "See [a](a.md#x) and ![b](b.png), not `[c](c.md)`.",
    "```",
    "[d](d.md)",
    "```",
    '[e](https://example.com) [f](#g "title")',
  ].join("\n");
  assert.deepEqual(links(text).map((l) => l.target), [
    "a.md#x",
    "b.png",
    "https://example.com",
    "#g",
  ]);
});

Deno.test("every relative link of README.md and docs/*.md resolves, anchors included", async (t) => {
  for (const file of docFiles()) {
    await t.step(file, () => {
      const base = new URL(file, ROOT);
      const found = links(docText(file));
      for (const { target, line } of found) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https://…, mailto:…
        const [path = "", anchor] = target.split("#");
        const url = path === "" ? base : new URL(path, base);
        const where = `${file}:${line} links to ${target}`;
        assert.ok(url.href.startsWith(ROOT.href), `${where}: outside the repository`);
        assert.ok(exists(url), `${where}: no such file`);
        if (anchor === undefined) continue;
        const target_ = relative(url);
        assert.ok(target_.endsWith(".md"), `${where}: an anchor in a file that is not markdown`);
        assert.ok(docAnchors(target_).has(anchor), `${where}: ${target_} has no such heading`);
      }
    });
  }
});

Deno.test(`README.md has at most ${README_MAX_LINES} lines`, () => {
  const lines = docText("README.md").replace(/\n$/, "").split("\n").length;
  assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines`);
});

Deno.test("every docs page is linked from README.md and from docs/README.md", () => {
  const fromReadme = new Set(
    links(docText("README.md")).map((l) => relative(new URL(l.target.split("#")[0]!, ROOT))),
  );
  const fromToc = new Set(
    links(docText("docs/README.md")).map((l) =>
      relative(new URL(l.target.split("#")[0]!, new URL("docs/", ROOT)))
    ),
  );
  for (const page of docFiles().filter((f) => f.startsWith("docs/"))) {
    assert.ok(fromReadme.has(page), `README.md does not link to ${page}`);
    if (page !== "docs/README.md") {
      assert.ok(fromToc.has(page), `docs/README.md does not link to ${page}`);
    }
  }
});
