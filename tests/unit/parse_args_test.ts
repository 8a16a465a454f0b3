/**
 * `lib/_parse_args.ts` against `node:util` `parseArgs`, which it stands in for:
 * the same values and positionals, or the same error (code and message), for
 * every command line below.
 */
import assert from "node:assert/strict";
import { parseArgs as nodeParseArgs } from "node:util";
import { type OptionConfig, parseArgs } from "../../lib/_parse_args.ts";

const OPTIONS: Record<string, OptionConfig> = {
  server: { type: "string" },
  port: { type: "string", short: "p" },
  check: { type: "string", multiple: true },
  verbose: { type: "boolean", short: "v" },
  quiet: { type: "boolean", short: "q" },
  help: { type: "boolean", short: "h" },
};

const CASES: string[][] = [
  [],
  ["--server", "http://x/"],
  ["--server=http://x/", "--port=80"],
  ["--server=", "--port", ""],
  ["--check", "a", "--check=b", "--check", "c"],
  ["--port", "1", "--port", "2"],
  ["-h"],
  ["--help"],
  ["-vq"],
  ["-vp80"],
  ["-p80"],
  ["-p", "80"],
  ["-vp", "80"],
  ["word", "--verbose", "-", "other"],
  ["--verbose", "--", "--port", "-x"],
  ["--bogus"],
  ["--bogus=1"],
  ["-x"],
  ["-locks", "2"],
  ["-5"],
  ["--server"],
  ["-p"],
  ["--server", "--port=1"],
  ["--server", "-x"],
  ["-p", "-1"],
  ["--server", "-"],
  ["--help=yes"],
  ["-h=1"],
  ["--=x"],
  ["--__proto__"],
  ["--toString"],
];

function outcome(parse: () => { values: object; positionals: string[] }) {
  try {
    const { values, positionals } = parse();
    return { values: { ...values }, positionals };
  } catch (error) {
    const { code, message, name } = error as { code?: string; message: string; name: string };
    return { error: { code, message, name } };
  }
}

Deno.test("parseArgs() gives what node:util parseArgs gives, values or error", async (t) => {
  for (const args of CASES) {
    await t.step(JSON.stringify(args), () => {
      const config = { args, options: OPTIONS, strict: true, allowPositionals: true } as const;
      assert.deepEqual(
        outcome(() => parseArgs(config)),
        outcome(() => nodeParseArgs({ ...config, args: [...args] })),
      );
    });
  }
});
