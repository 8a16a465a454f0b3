/** The logger: levels, the text and JSON formats, and the flag values. */
import assert from "node:assert/strict";
import { createLogger, formatLine, parseLogFormat, parseLogLevel } from "../../lib/log.ts";

const TIME = new Date("2026-01-02T03:04:05.678Z");

Deno.test("formatLine() renders text as TIME LEVEL message, without the fields", () => {
  assert.equal(
    formatLine("text", "info", "Lock granted", { event: "granted" }, TIME),
    "2026-01-02T03:04:05.678Z INFO  Lock granted",
  );
});

Deno.test("formatLine() renders JSON as one object with time, level, msg and the fields", () => {
  const line = formatLine("json", "warn", 'Say "hi"\n', { id: "a", n: 1, gone: undefined }, TIME);
  assert.ok(!line.includes("\n"), "one line, whatever the message holds");
  assert.deepEqual(JSON.parse(line), {
    time: "2026-01-02T03:04:05.678Z",
    level: "warn",
    msg: 'Say "hi"\n',
    id: "a",
    n: 1,
  });
});

Deno.test("formatLine() writes JSON as JSON.stringify({ time, level, msg, ...fields }) would", async (t) => {
  const cases: [string, Record<string, unknown> | undefined][] = [
    ["no fields", undefined],
    ["empty fields", {}],
    ["only undefined", { gone: undefined }],
    ["every kind of value", {
      s: 'a"b\\\u2028',
      n: -0,
      nan: NaN,
      inf: -Infinity,
      t: true,
      f: false,
    }],
    ["null", { n: null }],
    ["a field named msg replaces the message in its place", { msg: "mine", z: 1 }],
    ["a field named level or time", { level: "x", time: "t" }],
    ["fields named like integers come first", { a: 2, "1": "one" }],
    ["a name that needs escaping", { 'é"k': "v", "": "empty" }],
    [
      "inherited fields are left out",
      Object.create({ inherited: 1 }, { own: { value: 2, enumerable: true } }),
    ],
  ];
  for (const [name, fields] of cases) {
    await t.step(name, () => {
      assert.equal(
        formatLine("json", "info", 'Say "hi"', fields as Record<string, string>, TIME),
        JSON.stringify({ time: TIME.toISOString(), level: "info", msg: 'Say "hi"', ...fields }),
      );
    });
  }
});

Deno.test("createLogger() writes lines at or above its level, in its format", () => {
  const lines: string[] = [];
  const log = createLogger("info", (line) => lines.push(line), { format: "json" });
  log.debug("hidden");
  log.info("shown", { event: "x" });
  assert.equal(log.enabled("debug"), false);
  assert.equal(lines.length, 1);
  assert.deepEqual({ ...JSON.parse(lines[0]!), time: "" }, {
    time: "",
    level: "info",
    msg: "shown",
    event: "x",
  });
});

Deno.test("parseLogFormat() and parseLogLevel() take any case and name the choices", () => {
  assert.equal(parseLogFormat(" JSON "), "json");
  assert.equal(parseLogLevel("Warn"), "warn");
  assert.throws(() => parseLogFormat("xml"), { message: "expected one of text, json" });
});

Deno.test("createLogger() builds lazy fields only for a format that shows them", () => {
  const lines: string[] = [];
  let built = 0;
  const fields = () => {
    built++;
    return { event: "granted" };
  };
  createLogger("info", (line) => lines.push(line)).info("text", fields);
  assert.equal(built, 0);
  createLogger("info", (line) => lines.push(line), { format: "json" }).info("json", fields);
  assert.equal(built, 1);
  assert.equal(JSON.parse(lines[1]!).event, "granted");
});
