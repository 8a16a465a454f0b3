/**
 * docs/command-line.md against the code: its flag tables are what
 * `deno task docs:flags` makes from the flags each command parses, so every
 * flag of every command is in the reference, with its default and variable.
 */
import assert from "node:assert/strict";
import { envNames } from "../../lib/args.ts";
import {
  BEGIN_MARK,
  COMMAND_LINE_PAGE,
  COMMANDS,
  END_MARK,
  expectedPage,
} from "../../scripts/flag_reference.ts";
import { docSection, tableRows } from "../_readme.ts";

const PAGE = "docs/command-line.md";

Deno.test("docs/command-line.md's flag tables are those deno task docs:flags makes from the code", async () => {
  const page = await Deno.readTextFile(COMMAND_LINE_PAGE);
  const expected = await expectedPage(page);
  assert.ok(
    expected === page,
    "docs/command-line.md differs from the flag tables of the code: run `deno task docs:flags`",
  );
});

Deno.test("the generator notices a flag missing from the page", async () => {
  const page = await Deno.readTextFile(COMMAND_LINE_PAGE);
  const withoutRow = page.split("\n").filter((l) => !l.startsWith("| `--maxWaiters N`")).join(
    "\n",
  );
  assert.notEqual(withoutRow, page);
  assert.notEqual(await expectedPage(withoutRow), withoutRow);
  await assert.rejects(() => expectedPage(page.replace(BEGIN_MARK, "")), /must hold the lines/);
  await assert.rejects(() => expectedPage(page.replace(END_MARK, "")), /must hold the lines/);
});

Deno.test("every flag of every command is in its table, with its variable", () => {
  for (const command of COMMANDS) {
    const rows = tableRows(docSection(PAGE, `### ${command.name}`), "flag");
    const flags = rows.map(([flag = ""]) => /`--([A-Za-z]+)/.exec(flag)?.[1]);
    assert.deepEqual(flags, command.flags.map((f) => f.name), `the flags of ${command.name}`);
    rows.forEach(([, , variable = ""], i) => {
      const spec = command.flags[i]!;
      assert.equal(variable.replaceAll("`", ""), envNames([spec])[0] ?? "", `--${spec.name}`);
    });
  }
});

Deno.test("the page's opening synopsis names every command", async () => {
  const page = await Deno.readTextFile(COMMAND_LINE_PAGE);
  // The first code block, before the generated tables: a newcomer reads it as the list of commands.
  const synopsis = /```\n([\s\S]*?)```/.exec(page)?.[1] ?? "";
  const named = new Set(synopsis.match(/[a-z]+/g) ?? []);
  const missing = COMMANDS.map((command) => command.name).filter((name) => !named.has(name));
  assert.deepEqual(missing, [], `the synopsis at the top of ${PAGE} does not name ${missing}`);
});
