/**
 * The README's commands, run: its curl transcript against the real server
 * (each command's status line, header names and messages), and its client
 * example with the program standing in for the installed `startup-lock`
 * command (`deno task install` itself is tested with the install task).
 */
import assert from "node:assert/strict";
import { TOKEN } from "../_client.ts";
import { runProgram, startProgram } from "../_program.ts";
import { docText, readmeBlock } from "../_readme.ts";
import { which } from "../_which.ts";

/** The address the README's examples use, which the tests swap for the test server's. */
const README_ADDRESS = /(?:http:\/\/)?(?:localhost|127\.0\.0\.1):8888/g;

/** A message with its figures masked, as they differ from run to run: "frees in 2m" → "frees in N". */
function masked(line: string): string {
  return line.replace(/\d[\d.]*(?:ms|s|m|h)?(?: \d[\d.]*(?:ms|s|m|h)?)*/g, "N").trim();
}

/** A transcript's commands (`$ …`), each with the lines shown after it. */
function transcript(block: string): { command: string; shown: string[] }[] {
  const steps: { command: string; shown: string[] }[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("$ ")) steps.push({ command: line.slice(2), shown: [] });
    else steps.at(-1)?.shown.push(line);
  }
  return steps;
}

const CURL = which("curl");

Deno.test({
  name: "the README's curl transcript is what the server answers",
  ignore: !CURL && !Deno.env.get("CI"),
  fn: async () => {
    await using server = await startProgram();
    const steps = transcript(readmeBlock("readme-curl"));
    assert.equal(steps.length, 2);
    for (const { command, shown } of steps) {
      const line = command.replace(README_ADDRESS, server.url);
      assert.notEqual(line, command, `the command names no localhost:8888: ${command}`);
      const out = await new Deno.Command("sh", { args: ["-c", line], stderr: "inherit" }).output();
      assert.equal(out.code, 0, line);
      const answer = new TextDecoder().decode(out.stdout).replaceAll("\r", "").split("\n");
      const headers = new Set(
        answer.map((l) => /^([A-Za-z-]+): /.exec(l)?.[1]?.toLowerCase()).filter((h) => h),
      );
      for (const expected of shown) {
        const header = /^([A-Za-z-]+): /.exec(expected)?.[1];
        if (header && !expected.startsWith("Locked: ")) {
          assert.ok(headers.has(header.toLowerCase()), `${line}: no ${header} header`);
        } else {
          assert.ok(
            answer.some((l) => masked(l) === masked(expected)),
            `${line}: no line like "${expected}" in\n${answer.join("\n")}`,
          );
        }
      }
    }
  },
});

Deno.test("the README's client example acquires a lock from a running server", async () => {
  await using server = await startProgram();
  const lines = readmeBlock("readme-client").split("\n").filter((l) => l.trim());
  assert.deepEqual(lines.filter((l) => !l.startsWith("startup-lock ")), ["deno task install"]);
  const commands = lines.filter((l) => l.startsWith("startup-lock "));
  assert.ok(commands.length > 0);
  for (const line of commands) {
    const args = line.replace(README_ADDRESS, server.url).split(/\s+/).slice(1);
    const result = await runProgram(args);
    assert.equal(result.code, 0, `${line}\n${result.stderr}`);
    if (args[0] === "acquire") assert.match(result.stdout.trim(), TOKEN);
  }
});

Deno.test("the README's test command is the one .ci/run runs, verbatim", () => {
  const ci = Deno.readTextFileSync(new URL("../../.ci/run", import.meta.url));
  const marked = /# The README's test command, verbatim\.\n(?:.*\n)*?(npx [^|\n]*?task test)/.exec(
    ci,
  );
  assert.ok(marked, ".ci/run has no line after its comment that runs the README's test command");
  const command = marked[1]!.trim();
  assert.ok(
    docText("README.md").includes(`\`${command}\``),
    `README.md does not show \`${command}\`, which .ci/run runs`,
  );
});
