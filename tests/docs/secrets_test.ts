/**
 * The docs never show a secret as a flag: no code block of README.md or
 * docs/*.md gives `--authToken` or `--token` a value (a placeholder such as
 * `TOKEN` in a synopsis is not one), and none holds a Redis URL with a
 * password. Secrets go in files (`--authTokenFile`, `--tokenFile`,
 * `--storePasswordFile`) or `STARTUP_LOCK_*` variables, which `ps` does not show.
 */
import assert from "node:assert/strict";
import { readmeBlocks } from "../_readme.ts";

/** Flags whose value is a secret, in any spelling the parser takes. */
const SECRET_FLAG = /^-{1,2}(authToken|auth-token|token)(?:=(.*))?$/;

/** A value that only names what goes there, as in a synopsis: `TOKEN`. */
const PLACEHOLDER = /^[A-Z][A-Z_]*$/;

/** A Redis URL with a password in it: `redis://user:pw@host`, `rediss://:pw@host`. */
const REDIS_PASSWORD = /rediss?:\/\/[^@/\s]*:[^@/\s]+@/;

/** The secrets a piece of code shows on a command line or in a URL, as found. */
function secretsIn(code: string): string[] {
  // Words of shell lines, ini lines and YAML lists alike: `- --token` then `- abc`.
  const words = code.split(/[\s"']+/)
    .map((w) => w.replace(/^[([]+|[)\]]+$/g, ""))
    .filter((w) => w !== "" && w !== "-" && w !== "\\");
  const found: string[] = [];
  words.forEach((word, i) => {
    const flag = SECRET_FLAG.exec(word);
    if (flag) {
      const value = flag[2] ?? words[i + 1];
      if (value !== undefined && !PLACEHOLDER.test(value)) found.push(`${word} ${value}`);
    }
    const redis = REDIS_PASSWORD.exec(word);
    if (redis) found.push(redis[0]);
  });
  return found;
}

Deno.test("secretsIn finds a secret given as a flag, and leaves files, variables and synopses alone", () => {
  assert.deepEqual(secretsIn("deno task start --authToken s3cret"), ["--authToken s3cret"]);
  assert.deepEqual(secretsIn('startup-lock release --token "$TOKEN"'), ["--token $TOKEN"]);
  assert.deepEqual(secretsIn("startup-lock release -token=abc"), ["-token=abc abc"]);
  assert.deepEqual(secretsIn("args:\n  - --auth-token\n  - 6f1c0e9d"), ["--auth-token 6f1c0e9d"]);
  assert.deepEqual(secretsIn("--store redis://app:hunter2@redis:6379/0"), [
    "redis://app:hunter2@",
  ]);
  assert.deepEqual(secretsIn("Environment=STARTUP_LOCK_STORE=rediss://:pw@r:6380"), [
    "rediss://:pw@",
  ]);
  assert.deepEqual(
    secretsIn(
      "startup-lock release --server URL (--token TOKEN | --tokenFile PATH)\n" +
        "--authTokenFile /etc/startup-lock/token --store redis://redis.internal:6379/0\n" +
        "STARTUP_LOCK_AUTH_TOKEN=$TOKEN startup-lock acquire --server http://127.0.0.1:8888",
    ),
    [],
  );
});

Deno.test("no code block of README.md or docs/*.md shows a secret as a flag or in a URL", () => {
  const blocks = readmeBlocks();
  assert.ok(blocks.length > 50, `only ${blocks.length} code blocks found: is the reader right?`);
  for (const block of blocks) {
    assert.deepEqual(
      secretsIn(block.code),
      [],
      `${block.file} line ${block.line}: use a *File flag or a STARTUP_LOCK_* variable instead`,
    );
  }
});
