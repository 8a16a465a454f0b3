/**
 * `deploy/install.sh` and the docs' download snippets, run against a local
 * HTTP server that serves a fake release: a tiny sh script per target that
 * prints a version, and a SHA256SUMS written by `scripts/release.ts`.
 */
import assert from "node:assert/strict";
import { VERSION } from "../../lib/version.ts";
import { CHECKSUMS_FILE, executableName, TARGETS, writeChecksums } from "../../scripts/release.ts";
import { readmeBlock } from "../_readme.ts";
import { which } from "../_which.ts";

const INSTALL_SH = new URL("../../deploy/install.sh", import.meta.url).pathname;
const PLACEHOLDER_URL = `https://example.com/startup-lock/releases/v${VERSION}`;
const HOST_TARGET = Deno.build.target;

/** The shell, by its full path: some tests run it with a PATH of a few commands only. */
const SH = which("sh") ?? "/bin/sh";
const missing = ["curl", "sha256sum"].filter((c) => !which(c));
const supported = (TARGETS as readonly string[]).includes(HOST_TARGET);
const skip = missing.length > 0 || !supported;
if (missing.length > 0) {
  console.error(`SKIPPED install.sh tests: ${missing.join(" and ")} not found on this machine`);
} else if (!supported) {
  console.error(`SKIPPED install.sh tests: no release executable for ${HOST_TARGET}`);
}

/** The fake executable for `target`: prints what `startup-lock --version` would. */
function fakeExecutable(target: string): string {
  return `#!/bin/sh\necho "startup-lock ${VERSION} (fake ${target})"\n`;
}

/** A release directory like `deno task release` makes, with fake executables. */
async function makeRelease(dir: string): Promise<void> {
  const names = [];
  for (const target of TARGETS) {
    await Deno.writeTextFile(`${dir}/${executableName(target)}`, fakeExecutable(target));
    names.push(executableName(target));
  }
  await Deno.copyFile(INSTALL_SH, `${dir}/install.sh`);
  names.push("install.sh");
  await writeChecksums(dir, names);
}

/** Serves the files of `dir` at `http://127.0.0.1:PORT/releases/v…/`; 404 for anything else. */
function serveDir(dir: string): AsyncDisposable & { url: string } {
  const prefix = `/releases/v${VERSION}/`;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    const name = path.slice(prefix.length);
    if (!path.startsWith(prefix) || name.includes("/") || name === "") {
      return new Response("Not found", { status: 404 });
    }
    try {
      return new Response(await Deno.readFile(`${dir}/${name}`));
    } catch {
      return new Response("Not found", { status: 404 });
    }
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}${prefix.slice(0, -1)}`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A temporary directory, removed on dispose. */
async function tempDir(): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "startup-lock-install-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

async function sh(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(SH, {
    args,
    env: { STARTUP_LOCK_RELEASE_URL: "", STARTUP_LOCK_INSTALL_DIR: "", ...options.env },
    ...(options.cwd ? { cwd: options.cwd } : {}),
    stdin: "null",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

function listDir(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

/** A directory of links to only these commands, for a PATH without the others. */
function pathWith(dir: string, commands: readonly string[]): string {
  Deno.mkdirSync(dir);
  for (const command of commands) {
    const path = which(command);
    if (path) Deno.symlinkSync(path, `${dir}/${command}`);
  }
  return dir;
}

/** What install.sh runs, besides the downloader and the checksum tool. */
const BASE_COMMANDS = ["uname", "mktemp", "rm", "awk", "mkdir", "cp", "chmod", "mv", "cat"];

Deno.test({
  name: "install.sh installs the executable for this machine after checking its checksum",
  ignore: skip,
  async fn(t) {
    await using release = await tempDir();
    await makeRelease(release.path);
    await using server = serveDir(release.path);
    await using work = await tempDir();
    const expected = `startup-lock ${VERSION} (fake ${HOST_TARGET})\n`;

    await t.step("from the base URL given as its argument", async () => {
      const bin = `${work.path}/arg/bin`;
      const res = await sh([INSTALL_SH, server.url], { env: { STARTUP_LOCK_INSTALL_DIR: bin } });
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout, expected, "prints startup-lock --version");
      assert.deepEqual(listDir(bin), ["startup-lock"]);
      assert.equal((await Deno.stat(`${bin}/startup-lock`)).mode! & 0o777, 0o755);
      assert.equal(
        await Deno.readTextFile(`${bin}/startup-lock`),
        fakeExecutable(HOST_TARGET),
      );
    });

    await t.step("from STARTUP_LOCK_RELEASE_URL, replacing an installed one", async () => {
      const bin = `${work.path}/env/bin`;
      await Deno.mkdir(bin, { recursive: true });
      await Deno.writeTextFile(`${bin}/startup-lock`, "old");
      const res = await sh([INSTALL_SH], {
        env: { STARTUP_LOCK_RELEASE_URL: `${server.url}/`, STARTUP_LOCK_INSTALL_DIR: bin },
      });
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout, expected);
      assert.deepEqual(listDir(bin), ["startup-lock"], "no temporary file left");
      assert.equal(await Deno.readTextFile(`${bin}/startup-lock`), fakeExecutable(HOST_TARGET));
    });

    await t.step("with wget when there is no curl", async (t) => {
      if (!which("wget")) {
        console.error("SKIPPED the wget step: wget not found");
        return;
      }
      const path = pathWith(`${work.path}/wget-path`, [...BASE_COMMANDS, "wget", "sha256sum"]);
      const bin = `${work.path}/wget/bin`;
      const res = await sh([INSTALL_SH, server.url], {
        env: { PATH: path, STARTUP_LOCK_INSTALL_DIR: bin },
      });
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout, expected);
      await t.step("and fails clearly with neither", async () => {
        const none = pathWith(`${work.path}/no-download`, [...BASE_COMMANDS, "sha256sum"]);
        const res = await sh([INSTALL_SH, server.url], {
          env: { PATH: none, STARTUP_LOCK_INSTALL_DIR: `${work.path}/none/bin` },
        });
        assert.equal(res.code, 1);
        assert.equal(res.stderr, "install.sh: needs curl or wget to download\n");
      });
    });

    await t.step("with shasum when there is no sha256sum (as on macOS)", async () => {
      if (!which("shasum")) {
        console.error("SKIPPED the shasum step: shasum not found");
        return;
      }
      const path = pathWith(`${work.path}/shasum-path`, [...BASE_COMMANDS, "curl", "shasum"]);
      const bin = `${work.path}/shasum/bin`;
      const res = await sh([INSTALL_SH, server.url], {
        env: { PATH: path, STARTUP_LOCK_INSTALL_DIR: bin },
      });
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout, expected);
    });
  },
});

Deno.test({
  name: "install.sh installs nothing when the download does not match SHA256SUMS",
  ignore: skip,
  async fn(t) {
    await using release = await tempDir();
    await makeRelease(release.path);
    await using server = serveDir(release.path);
    await using work = await tempDir();
    const host = `${release.path}/${executableName(HOST_TARGET)}`;

    await t.step("a tampered executable", async () => {
      await Deno.writeTextFile(host, fakeExecutable(HOST_TARGET).replace("fake", "evil"));
      const bin = `${work.path}/tampered/bin`;
      await Deno.mkdir(bin, { recursive: true });
      await Deno.writeTextFile(`${bin}/startup-lock`, "old");
      const res = await sh([INSTALL_SH, server.url], { env: { STARTUP_LOCK_INSTALL_DIR: bin } });
      assert.notEqual(res.code, 0);
      assert.equal(res.stdout, "");
      assert.match(res.stderr, /install\.sh: checksum mismatch: .* nothing installed\n$/);
      assert.deepEqual(listDir(bin), ["startup-lock"]);
      assert.equal(await Deno.readTextFile(`${bin}/startup-lock`), "old", "the old one stays");
    });

    await t.step("an executable that does not run here", async () => {
      await Deno.writeTextFile(host, "#!/bin/sh\necho 'cannot execute' >&2\nexit 126\n");
      await writeChecksums(release.path, [executableName(HOST_TARGET)]);
      const bin = `${work.path}/broken/bin`;
      await Deno.mkdir(bin, { recursive: true });
      await Deno.writeTextFile(`${bin}/startup-lock`, "old");
      const res = await sh([INSTALL_SH, server.url], { env: { STARTUP_LOCK_INSTALL_DIR: bin } });
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, /cannot execute\ninstall\.sh: .* does not run on this machine/);
      assert.deepEqual(listDir(bin), ["startup-lock"], "no temporary file left");
      assert.equal(await Deno.readTextFile(`${bin}/startup-lock`), "old", "the old one stays");
    });

    await t.step("SHA256SUMS without a line for this machine", async () => {
      const sums = await Deno.readTextFile(`${release.path}/${CHECKSUMS_FILE}`);
      const others = sums.split("\n").filter((l) => !l.endsWith(executableName(HOST_TARGET)));
      await Deno.writeTextFile(`${release.path}/${CHECKSUMS_FILE}`, others.join("\n"));
      const bin = `${work.path}/unlisted/bin`;
      const res = await sh([INSTALL_SH, server.url], { env: { STARTUP_LOCK_INSTALL_DIR: bin } });
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, /SHA256SUMS has no line for startup-lock-/);
      assert.deepEqual(listDir(bin), []);
    });

    await t.step("a release that is not there", async () => {
      const bin = `${work.path}/missing/bin`;
      const res = await sh([INSTALL_SH, `${server.url}/nothing`], {
        env: { STARTUP_LOCK_INSTALL_DIR: bin },
      });
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, /install\.sh: cannot download http:\/\/127\.0\.0\.1:\d+\//);
      assert.deepEqual(listDir(bin), []);
    });
  },
});

Deno.test("install.sh defaults to the placeholder release URL of this version", async () => {
  const script = await Deno.readTextFile(INSTALL_SH);
  assert.match(script, /^#!\/bin\/sh\n/);
  assert.ok(script.includes(`DEFAULT_RELEASE_URL=${PLACEHOLDER_URL}\n`), PLACEHOLDER_URL);
});

Deno.test({
  name: "the docs' download snippets install the executable from a release",
  ignore: skip,
  async fn(t) {
    await using release = await tempDir();
    await makeRelease(release.path);
    await using server = serveDir(release.path);
    await using work = await tempDir();
    const path = `${Deno.env.get("PATH")}`;

    await t.step("install.sh", async () => {
      const block = readmeBlock("install");
      assert.ok(block.includes(PLACEHOLDER_URL), block);
      const cwd = `${work.path}/install`;
      const bin = `${cwd}/bin`;
      await Deno.mkdir(cwd);
      const res = await sh(["-e", "-c", block.replaceAll(PLACEHOLDER_URL, server.url)], {
        cwd,
        env: { STARTUP_LOCK_INSTALL_DIR: bin },
      });
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout, `startup-lock ${VERSION} (fake ${HOST_TARGET})\n`);
      assert.deepEqual(listDir(bin), ["startup-lock"]);
    });

    await t.step("by hand, checking the file against its line of SHA256SUMS", async (t) => {
      const block = readmeBlock("download");
      assert.ok(block.includes(PLACEHOLDER_URL), block);
      const target = /file=startup-lock-(\S+)/.exec(block)?.[1];
      assert.ok(target, "the block names a file");
      const run = async (name: string) => {
        const cwd = `${work.path}/${name}`;
        const bin = `${cwd}/bin`;
        await Deno.mkdir(bin, { recursive: true });
        const script = block.replaceAll(PLACEHOLDER_URL, server.url)
          .replaceAll("/usr/local/bin", bin);
        const res = await sh(["-c", script], { cwd, env: { PATH: `${bin}:${path}` } });
        return { ...res, installed: listDir(bin) };
      };

      const res = await run("by-hand");
      assert.equal(res.code, 0, res.stderr);
      assert.ok(res.stdout.endsWith(`startup-lock ${VERSION} (fake ${target})\n`), res.stdout);
      assert.deepEqual(res.installed, ["startup-lock"]);

      await t.step("and installs nothing when the file was tampered with", async () => {
        const file = `${release.path}/startup-lock-${target}`;
        await Deno.writeTextFile(file, "#!/bin/sh\necho evil\n");
        const res = await run("by-hand-tampered");
        assert.notEqual(res.code, 0);
        assert.doesNotMatch(res.stdout, /evil/);
        assert.deepEqual(res.installed, []);
      });
    });
  },
});
