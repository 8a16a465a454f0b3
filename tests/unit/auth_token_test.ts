/**
 * The bearer token as client and server read it (`lib/auth_token.ts`): its
 * form, and the file that holds it.
 */
import assert from "node:assert/strict";
import { checkAuthToken, readAuthTokenFile } from "../../lib/auth_token.ts";

const SECRET = "s3cret-Token_1";

Deno.test("checkAuthToken() refuses an empty token or one with whitespace, without showing it", () => {
  assert.equal(checkAuthToken(SECRET), SECRET);
  assert.throws(() => checkAuthToken(""), { name: "RangeError", message: "the token is empty" });
  for (const token of ["with space", "tab\there", "line\nbreak", " lead"]) {
    assert.throws(() => checkAuthToken(token), {
      name: "RangeError",
      message: "the token must not contain whitespace",
    });
  }
});

Deno.test("readAuthTokenFile() drops one line break at the end and checks the token", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(path, `${SECRET}\n`);
    assert.equal(readAuthTokenFile(path), SECRET);
    await Deno.writeTextFile(path, `${SECRET}\r\n`);
    assert.equal(readAuthTokenFile(path), SECRET);
    await Deno.writeTextFile(path, "");
    assert.throws(() => readAuthTokenFile(path), RangeError);
    await Deno.writeTextFile(path, "two words\n");
    assert.throws(() => readAuthTokenFile(path), RangeError);
  } finally {
    await Deno.remove(path);
  }
  assert.throws(() => readAuthTokenFile(path), Deno.errors.NotFound);
});
