/**
 * `scripts/release.ts`: the targets and names, the SHA256SUMS it writes
 * (checked on small files against `sha256sum -c`), and the one line it fails
 * with when `deno compile` cannot get a target's runtime.
 */
import assert from "node:assert/strict";
import { compileArgs } from "../../scripts/compile.ts";
import {
  CHECKSUMS_FILE,
  describeCompileFailure,
  executableName,
  formatChecksums,
  sha256File,
  TARGETS,
  writeChecksums,
} from "../../scripts/release.ts";

const CONFIG = new URL("../../deno.json", import.meta.url).pathname;
const HAS_SHA256SUM = new Deno.Command("sh", {
  args: ["-c", "command -v sha256sum"],
  stdout: "null",
  stderr: "null",
}).outputSync().success;
if (!HAS_SHA256SUM) console.error("SKIPPED the sha256sum -c checks: sha256sum not found");

/** A temporary directory, removed on dispose. */
async function tempDir(): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "startup-lock-release-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

async function sha256sumCheck(dir: string): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command("sha256sum", { args: ["-c", CHECKSUMS_FILE], cwd: dir })
    .output();
  const text = new TextDecoder();
  return { code: out.code, output: text.decode(out.stdout) + text.decode(out.stderr) };
}

Deno.test("the release targets are Linux and macOS, x86_64 and arm64, with clear names", () => {
  assert.deepEqual([...TARGETS], [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
  ]);
  assert.equal(executableName("aarch64-apple-darwin"), "startup-lock-aarch64-apple-darwin");
});

Deno.test("compileArgs() builds without a code cache, for the host or a --target", () => {
  const host = compileArgs("out");
  assert.ok(host.includes("--no-code-cache"), "nothing is written at run time");
  assert.ok(!host.includes("--target"));
  const cross = compileArgs("out", "aarch64-apple-darwin");
  assert.deepEqual(cross.slice(cross.indexOf("--target"), cross.indexOf("--target") + 2), [
    "--target",
    "aarch64-apple-darwin",
  ]);
  assert.deepEqual(cross.slice(-3, -1), ["--output", "out"]);
});

Deno.test("sha256File() hashes a file's bytes", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/abc`, "abc");
  await Deno.writeFile(`${dir.path}/empty`, new Uint8Array());
  assert.equal(
    await sha256File(`${dir.path}/abc`),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    await sha256File(`${dir.path}/empty`),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
});

Deno.test("formatChecksums() writes sha256sum lines sorted by name", () => {
  const a = "a".repeat(64);
  const b = "b".repeat(64);
  assert.equal(
    formatChecksums(new Map([["startup-lock-z", a], ["install.sh", b]])),
    `${b}  install.sh\n${a}  startup-lock-z\n`,
  );
  assert.equal(formatChecksums(new Map()), "");
});

Deno.test("formatChecksums() refuses names and digests sha256sum -c would misread", async (t) => {
  const ok = "0".repeat(64);
  const cases: [string, string, RegExp][] = [
    ["dir/file", ok, /Invalid file name "dir\/file"/],
    ["back\\slash", ok, /Invalid file name/],
    ["two\nlines", ok, /Invalid file name/],
    ["", ok, /Invalid file name ""/],
    ["file", "ABC", /Invalid SHA-256 "ABC" of "file"/],
  ];
  for (const [name, sha, message] of cases) {
    await t.step(JSON.stringify(name), () => {
      assert.throws(() => formatChecksums(new Map([[name, sha]])), message);
    });
  }
});

Deno.test("writeChecksums() writes a SHA256SUMS that sha256sum -c accepts", async (t) => {
  await using dir = await tempDir();
  const files: Record<string, Uint8Array> = {
    "startup-lock-x86_64-unknown-linux-gnu": new TextEncoder().encode("#!/bin/sh\necho 1\n"),
    "startup-lock-aarch64-apple-darwin": new Uint8Array([0, 1, 2, 255, 10, 13]),
    "with space": new TextEncoder().encode("spaces are fine"),
  };
  for (const [name, bytes] of Object.entries(files)) {
    await Deno.writeFile(`${dir.path}/${name}`, bytes);
  }
  const path = await writeChecksums(dir.path, Object.keys(files));
  assert.equal(path, `${dir.path}/${CHECKSUMS_FILE}`);
  const text = await Deno.readTextFile(path);
  const lines = text.split("\n");
  assert.equal(lines.pop(), "", "ends with a newline");
  assert.deepEqual(lines.map((l) => l.slice(66)), Object.keys(files).sort());
  for (const line of lines) assert.match(line, /^[0-9a-f]{64} {2}\S/);
  assert.deepEqual(
    [...Deno.readDirSync(dir.path)].map((e) => e.name).sort(),
    [
      CHECKSUMS_FILE,
      ...Object.keys(files),
    ].sort(),
    "no temporary file left",
  );

  await t.step({
    name: "the same digests as sha256sum, and sha256sum -c passes",
    ignore: !HAS_SHA256SUM,
    async fn() {
      const out = await new Deno.Command("sha256sum", {
        args: ["--", ...Object.keys(files).sort()],
        cwd: dir.path,
      }).output();
      assert.equal(text, new TextDecoder().decode(out.stdout));
      const check = await sha256sumCheck(dir.path);
      assert.equal(check.code, 0, check.output);
    },
  });

  await t.step({
    name: "sha256sum -c fails once a file changes",
    ignore: !HAS_SHA256SUM,
    async fn() {
      await Deno.writeTextFile(`${dir.path}/with space`, "changed");
      const check = await sha256sumCheck(dir.path);
      assert.notEqual(check.code, 0);
      assert.match(check.output, /with space: FAILED/);
    },
  });
});

Deno.test("describeCompileFailure() names the runtime that could not be downloaded", () => {
  const stderr = [
    "error: Writing deno compile executable to temporary file 'dist/x.tmp-1'",
    "",
    "Caused by:",
    "    0: Setting up base binary.",
    "    1: error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-apple-darwin.zip): client error (Connect): dns error: failed to lookup address information: Name or service not known",
    "    2: client error (Connect)",
    "    3: dns error",
    "    4: failed to lookup address information: Name or service not known",
    "",
    "Stack backtrace:",
    "   0: <unknown>",
  ].join("\n");
  assert.equal(
    describeCompileFailure("x86_64-apple-darwin", stderr, "/cache/dl/release/v2.9.6/"),
    "Cannot build startup-lock-x86_64-apple-darwin: deno compile could not download the Deno " +
      "runtime for x86_64-apple-darwin (https://dl.deno.land/release/v2.9.6/" +
      "denort-x86_64-apple-darwin.zip: failed to lookup address information: Name or service " +
      "not known); it needs internet access, or denort-x86_64-apple-darwin.zip placed in " +
      "/cache/dl/release/v2.9.6/",
  );
  assert.equal(
    describeCompileFailure("x86_64-apple-darwin", 'error: Module not found "x.ts".\n', "/c/"),
    'Cannot build startup-lock-x86_64-apple-darwin: deno compile failed: Module not found "x.ts".',
  );
});

Deno.test("deno task release fails with one line naming the runtime it cannot download", async () => {
  await using denoDir = await tempDir();
  await using out = await tempDir();
  await Deno.writeTextFile(`${out.path}/${CHECKSUMS_FILE}`, "stale\n");
  // A proxy that refuses makes the runtime's download fail here as anywhere; a fresh DENO_DIR has
  // no runtime cached; DENORT_BIN must be ignored, as it names one runtime for every target.
  const proxy = "http://127.0.0.1:9";
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "--config", CONFIG, "release", out.path],
    env: {
      DENO_DIR: denoDir.path,
      HTTPS_PROXY: proxy,
      https_proxy: proxy,
      DENORT_BIN: `${denoDir.path}/no-such-denort`,
      NO_COLOR: "1",
    },
    stdin: "null",
  }).output();
  const stderr = new TextDecoder().decode(res.stderr);
  assert.equal(res.code, 1, stderr);
  const lines = stderr.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `one line, got:\n${stderr}`);
  const target = TARGETS[0];
  const url = `https://dl.deno.land/release/v${Deno.version.deno}/denort-${target}.zip`;
  assert.ok(
    lines[0]!.startsWith(
      `startup-lock: Cannot build startup-lock-${target}: deno compile could not download the ` +
        `Deno runtime for ${target} (${url}: `,
    ),
    lines[0],
  );
  assert.ok(lines[0]!.endsWith(`${denoDir.path}/dl/release/v${Deno.version.deno}/`), lines[0]);
  assert.deepEqual([...Deno.readDirSync(out.path)], [], "no SHA256SUMS for a failed release");
});
