/**
 * The dispatcher: which command runs, help in every spelling users try, and
 * usage errors as exit code 2 with one line, for every command.
 */
import assert from "node:assert/strict";
import { envName } from "../../lib/args.ts";
import { UsageError } from "../../lib/errors.ts";
import { COMMANDS, selectCommand } from "../../main.ts";
import { loadedModules } from "../_module_graph.ts";
import { runProgram } from "../_program.ts";

const SERVER = "http://lock:8888";

/** Asserts `stderr` is exactly one line starting `startup-lock: `, with no stack trace. */
function assertOneLine(stderr: string): string {
  const lines = stderr.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${stderr}`);
  assert.ok(lines[0]!.startsWith("startup-lock: "), lines[0]);
  assert.doesNotMatch(stderr, /^\s*at /m, "no stack trace");
  return lines[0]!;
}

Deno.test("selectCommand() picks a command by its first word, else serve", () => {
  for (const command of COMMANDS) {
    const selected = selectCommand([command.name, "--x"]);
    assert.deepEqual(selected, { action: "run", command, args: ["--x"] });
  }
  const serve = COMMANDS.find((c) => c.name === "serve");
  assert.deepEqual(selectCommand([]), { action: "run", command: serve, args: [] });
  assert.deepEqual(selectCommand(["--port", "1"]), {
    action: "run",
    command: serve,
    args: ["--port", "1"],
  });
});

Deno.test("COMMANDS: each entry loads the command of its name", async () => {
  for (const entry of COMMANDS) {
    assert.equal((await entry.load()).name, entry.name);
  }
});

Deno.test("main.ts loads no command before one is chosen", async () => {
  const loaded = await loadedModules("main.ts");
  assert.deepEqual(loaded.filter((m) => m.startsWith("lib/commands/")), [], loaded.join("\n"));
});

/** What the server is made of: a client command that loaded any of it would pay its memory. */
const SERVER_MODULES =
  /^lib\/(stores|http|observers|gates)\/|^lib\/core\/(service|queue|events)\.ts$|^lib\/server\.ts$/;

Deno.test("the client commands load nothing of the server, and no node: built-in", async (t) => {
  for (const name of ["acquire", "release", "run", "hold", "healthcheck"]) {
    await t.step(name, async () => {
      const loaded = await loadedModules(`lib/commands/${name}.ts`);
      assert.ok(loaded.includes(`lib/commands/${name}.ts`), loaded.join("\n"));
      // Each node: module loads a part of Deno's Node compatibility: 4 to 7 MB of memory.
      const server = loaded.filter((m) => SERVER_MODULES.test(m) || m.startsWith("node:"));
      assert.deepEqual(server, [], `lib/commands/${name}.ts loads:\n${loaded.join("\n")}`);
    });
  }
});

Deno.test("the server loads the probing code only for --check, and the client never", async () => {
  // Every module loaded before the first answer delays it: the probes wait for a --check.
  for (const path of ["lib/commands/serve.ts", "lib/commands/hold.ts", "lib/commands/run.ts"]) {
    const loaded = await loadedModules(path);
    const probing = loaded.filter((m) => m === "lib/probes.ts" || m === "lib/_http_head.ts");
    assert.deepEqual(probing, [], `${path} loads:\n${loaded.join("\n")}`);
  }
});

Deno.test("selectCommand() reads help, help COMMAND and COMMAND help as asking for help", () => {
  const acquire = COMMANDS.find((c) => c.name === "acquire");
  const serve = COMMANDS.find((c) => c.name === "serve");
  assert.deepEqual(selectCommand(["help"]), { action: "help", command: serve });
  assert.deepEqual(selectCommand(["help", "acquire"]), { action: "help", command: acquire });
  assert.deepEqual(selectCommand(["acquire", "help"]), { action: "help", command: acquire });
  assert.throws(() => selectCommand(["help", "bogus"]), UsageError);
  assert.throws(() => selectCommand(["help", "acquire", "run"]), UsageError);
  assert.throws(() => selectCommand(["aquire"]), /Unexpected argument "aquire"/);
});

Deno.test("startup-lock prints help and exits 0 for -h, --help, help and help COMMAND", async (t) => {
  const top = await runProgram(["--help"]);
  assert.equal(top.code, 0, top.stderr);
  const acquire = await runProgram(["acquire", "--help"]);
  assert.equal(acquire.code, 0, acquire.stderr);
  assert.notEqual(top.stdout, acquire.stdout);
  const cases: { args: string[]; same: string }[] = [
    { args: ["-h"], same: top.stdout },
    { args: ["help"], same: top.stdout },
    { args: ["serve", "-h"], same: top.stdout },
    { args: ["help", "serve"], same: top.stdout },
    { args: ["help", "acquire"], same: acquire.stdout },
    { args: ["acquire", "-h"], same: acquire.stdout },
    { args: ["acquire", "help"], same: acquire.stdout },
    { args: ["acquire", "--server", SERVER, "-h"], same: acquire.stdout },
  ];
  for (const { args, same } of cases) {
    await t.step(args.join(" "), async () => {
      const { code, stdout, stderr } = await runProgram(args);
      assert.equal(code, 0, stderr);
      assert.equal(stderr, "");
      assert.equal(stdout, same);
    });
  }
});

Deno.test("the client commands exit 2 with one line on stderr for a usage error", async (t) => {
  const cases: { args: string[]; says: string }[] = [
    { args: ["acquire"], says: "Missing --server URL (or STARTUP_LOCK_SERVER)" },
    { args: ["acquire", "--server", SERVER, "--wait", "x"], says: 'Invalid --wait "x"' },
    { args: ["acquire", "--server", SERVER, "--duration", "0"], says: 'Invalid --duration "0"' },
    { args: ["acquire", "--server", SERVER, "--bogus"], says: 'Unknown flag "--bogus"' },
    { args: ["release", "--server", SERVER], says: "Missing --token TOKEN or --tokenFile PATH" },
    { args: ["run", "--server", SERVER], says: "Missing command" },
    { args: ["run", "--server", SERVER, "--", ""], says: "Missing command" },
    { args: ["hold", "--server", SERVER], says: "Missing --readyUrl URL" },
    {
      args: ["hold", "--server", SERVER, "--readyUrl", "http://x/", "--listen", "x"],
      says: 'Invalid --listen "x": expected HOST:PORT',
    },
    { args: ["aquire"], says: 'Unexpected argument "aquire": expected a command (serve, acquire' },
    { args: ["help", "aquire"], says: 'Unexpected argument "aquire" after help' },
  ];
  for (const { args, says } of cases) {
    await t.step(args.join(" "), async () => {
      const { code, stdout, stderr } = await runProgram(args);
      assert.equal(code, 2, stderr);
      assert.equal(stdout, "");
      const line = assertOneLine(stderr);
      assert.ok(line.includes(says), line);
    });
  }
});

Deno.test("startup-lock --help lists the client commands", async () => {
  const { code, stdout } = await runProgram(["--help"]);
  assert.equal(code, 0);
  for (const { name } of COMMANDS) {
    assert.match(stdout, new RegExp(`^  ${name} +\\S`, "m"), name);
  }
});

Deno.test("startup-lock COMMAND --help lists the command's flags with their variables", async (t) => {
  for (const entry of COMMANDS) {
    const { name, flags } = await entry.load();
    await t.step(name, async () => {
      const { code, stdout, stderr } = await runProgram([name, "--help"]);
      assert.equal(code, 0, stderr);
      assert.equal(stderr, "");
      const usage = name === "serve" ? "\\[serve\\]" : name;
      assert.match(stdout, new RegExp(`^Usage: startup-lock ${usage} `, "m"));
      for (const flag of flags) {
        const line = stdout.split("\n").find((l) =>
          new RegExp(`^\\s+--${flag.name}(\\s|$)`).test(l)
        );
        assert.ok(line, `--${flag.name} is listed`);
        if (flag.kind !== "boolean" && flag.env !== false) {
          assert.ok(line.includes(`env: ${envName(flag.name)}`), line);
        }
      }
    });
  }
});
