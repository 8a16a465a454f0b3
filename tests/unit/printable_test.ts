import assert from "node:assert/strict";
import { printable } from "../../lib/printable.ts";
import { echo } from "../../lib/http/request.ts";

Deno.test("printable() escapes control characters, C1 and the invisible ones that reorder text", () => {
  assert.equal(printable("a\nb\x1b[2J\x7f"), "a\\u000ab\\u001b[2J\\u007f");
  assert.equal(printable("\u009b31m \u202eabc \u200b"), "\\u009b31m \\u202eabc \\u200b");
  assert.equal(printable("plain <text> ü ✓"), "plain <text> ü ✓");
});

Deno.test("the server's echo of a bad value is printable() of it, cut short", () => {
  assert.equal(echo("x\u202e\n".repeat(3), 4), "x\\u202e\\u000ax");
});
