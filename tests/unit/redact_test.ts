import * as assert from "node:assert/strict";
import { redactPasswords, redactValue } from "../../lib/redact.ts";

Deno.test("redactPasswords hides the password of every URL in a text, and keeps the user name", () => {
  assert.equal(
    redactPasswords("cannot reach redis://u:pw@h:6379/0 nor https://a:b@c/x"),
    "cannot reach redis://u:***@h:6379/0 nor https://a:***@c/x",
  );
  assert.equal(redactPasswords("redis://:pw@h"), "redis://:***@h");
  // Up to the last "@" of the authority, as URL parsers read it.
  assert.equal(redactPasswords("redis://u:p@ss@h/0"), "redis://u:***@h/0");
});

Deno.test("redactPasswords hides user information without a colon whole: it may be the secret", () => {
  assert.equal(redactPasswords("redis://secret@h:6379"), "redis://***@h:6379");
  assert.equal(redactPasswords("https://ghp_token@example.com/x"), "https://***@example.com/x");
});

Deno.test("redactPasswords leaves URLs without credentials, and an @ after the path, alone", () => {
  for (
    const text of ["http://h:8080/healthz", "tcp://db:5432", "http://h/a@b", "mailto:a@b", "plain"]
  ) {
    assert.equal(redactPasswords(text), text);
  }
});

Deno.test("redactValue also hides the password of a value typed without its scheme", () => {
  assert.equal(redactValue("u:hunter2@db:6379"), "u:***@db:6379");
  assert.equal(redactValue("mysql://u:hunter2@db"), "mysql://u:***@db");
  assert.equal(redactValue("db:6379"), "db:6379");
});

Deno.test("redactValue hides a typed password with an unencoded / up to the last @", () => {
  assert.equal(redactValue("redis://u:pa55/w0rd@h:1"), "redis://u:***@h:1");
  assert.equal(redactValue(" rediss://pa55/w0rd@h"), " rediss://***@h");
});

Deno.test("redactValue hides the password of a mistyped URL, which is why it is quoted", () => {
  for (
    const [typed, shown] of [
      ["redis:/u:hunter2@h:6379", "redis:/u:***@h:6379"],
      ["redis//u:hunter2@h", "redis//u:***@h"],
      ["redis:/hunter2@h", "redis:/***@h"],
      ["redis://u:hun ter2@h/x", "redis://u:***@h/x"],
      ["redis:// u:hunter2@h", "redis:// u:***@h"],
      ["//:hunter2@h", "//:***@h"],
    ]
  ) {
    assert.equal(redactValue(typed!), shown);
  }
});

Deno.test("redactValue leaves a value whose @ follows no URL or user:password alone", () => {
  for (const text of ["web@1", "db:6379", "plain"]) assert.equal(redactValue(text), text);
});
