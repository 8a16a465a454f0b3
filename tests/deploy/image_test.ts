/**
 * The container image, without Docker (it cannot run on our build machines):
 * the Dockerfile's library list against `ldd`, its final stage, the build
 * context, and the program running in a folder that holds exactly the final
 * stage's files, under chroot as the image's user.
 */
import assert from "node:assert/strict";
import { dockerIgnores, hostTargetArch, readImageSpec } from "../_image_dockerfile.ts";
import {
  assembleImage,
  type ImageRoot,
  imageRunSkipReason,
  readProc,
  runInImage,
  startInImage,
} from "../_image_root.ts";
import { hasOpenssl, makeTestCertificates } from "../_image_tls.ts";
import { includedModules } from "../../scripts/compile.ts";

const ROOT = new URL("../../", import.meta.url);
const COMPILED = new URL("dist/startup-lock", ROOT).pathname;
const spec = readImageSpec();

/** What `ldd` lists for an executable: library names, and the loader (the ELF interpreter). */
async function ldd(path: string): Promise<{ libraries: string[]; loader: string | undefined }> {
  const out = await new Deno.Command("ldd", { args: [path], stderr: "inherit" }).output();
  assert.equal(out.code, 0, `ldd ${path} failed`);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => l.trim());
  return {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)", or "libfoo.so => not found"
    libraries: lines.filter((l) => l.includes(" => ")).map((l) => l.split(" ")[0]!),
    // "/lib64/ld-linux-x86-64.so.2 (0x…)"; linux-vdso.so.1 is the kernel's, not a file.
    loader: lines.find((l) => l.startsWith("/"))?.split(" ")[0],
  };
}

Deno.test("Dockerfile copies every library ldd lists for the Deno runtime, and its loader", async () => {
  const platform = spec.platforms[hostTargetArch()];
  assert.ok(
    platform,
    `The Dockerfile has no library folder for this machine (${hostTargetArch()})`,
  );
  assert.deepEqual(Object.keys(spec.platforms).sort(), ["amd64", "arm64"]);
  // The compiled executable is the Deno runtime (denort) plus the program: the same libraries.
  const executables = [Deno.execPath(), ...(isFile(COMPILED) ? [COMPILED] : [])];
  for (const executable of executables) {
    const needed = await ldd(executable);
    assert.ok(needed.libraries.length > 0, `ldd lists no library for ${executable}`);
    for (const library of needed.libraries) {
      assert.ok(
        spec.libraries.includes(library),
        `ldd ${executable} lists ${library}, missing from the Dockerfile's LIBRARIES`,
      );
      assert.ok(isFile(`${platform.libdir}/${library}`), `${library} is not in ${platform.libdir}`);
    }
    assert.equal(needed.loader, platform.loader, `the loader ${executable} asks for`);
  }
});

Deno.test("Dockerfile: the final stage is scratch plus the executable, run as nonroot with a HEALTHCHECK", () => {
  assert.equal(spec.base, "scratch");
  assert.deepEqual(spec.entrypoint, ["/startup-lock"]);
  assert.deepEqual(spec.healthcheck, ["/startup-lock", "healthcheck"]);
  assert.deepEqual(spec.expose, ["8888"]);
  assert.equal(spec.env.DENO_TLS_CA_STORE, "system");
  assert.equal(spec.user, "65532:65532");
  const file = (path: string) => {
    const copy = spec.copies.find((c) => c.dest === path);
    return copy?.kind === "heredoc" ? copy.content : "";
  };
  assert.match(file("/etc/passwd"), /^nonroot:x:65532:65532:/m);
  assert.match(file("/etc/group"), /^nonroot:x:65532:/m);
  assert.ok(spec.copies.some((c) => c.dest === "/etc/ssl/certs/ca-certificates.crt"));
});

Deno.test(".dockerignore lets in every module of the program and of the compile task", async () => {
  const config = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT)));
  const task: string = config.tasks.compile;
  // The modules loaded by a path Deno does not follow are entries of their own, as for compile.
  const entries = [
    "main.ts",
    ...(task.match(/\S+\.ts\b/g) ?? []),
    ...includedModules().map((path) => path.slice(ROOT.pathname.length)),
  ];
  assert.ok(entries.length > 1, `no script in the compile task: ${task}`);
  const files = new Set(["deno.json"]);
  for (const entry of entries) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: ROOT.pathname,
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const info: { modules: { specifier: string }[] } = JSON.parse(
      new TextDecoder().decode(out.stdout),
    );
    for (const { specifier } of info.modules) {
      if (specifier.startsWith(ROOT.href)) files.add(specifier.slice(ROOT.href.length));
    }
  }
  for (const file of files) assert.ok(!dockerIgnores(file), `.dockerignore leaves out ${file}`);
  assert.ok(dockerIgnores("README.md") && dockerIgnores(".git/HEAD") && dockerIgnores("dist/x"));
});

const skip = (await imageRunSkipReason()) ??
  (hasOpenssl() ? undefined : "openssl is not installed (apt-get install openssl)");
if (skip) console.error(`SKIPPED running the image's files under chroot: ${skip}`);

/** GETs `url` and returns the status and the body. */
async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

/** The first dependency in the server's `/status`. */
async function firstDependency(
  server: { url: string },
): Promise<{ up: boolean; lastError: string }> {
  const status = JSON.parse((await get(`${server.url}/status`)).body);
  return status.dependencies[0];
}

/** The program's real uid and its pid in its namespace, from `/proc/PID/status`. */
async function processIds(
  pid: number,
): Promise<{ uid: string | undefined; nspid: string | undefined }> {
  const status = await readProc(`${pid}/status`);
  const field = (name: string) =>
    new RegExp(`^${name}:\\s+(.*)$`, "m").exec(status)?.[1]?.split(/\s+/);
  return { uid: field("Uid")?.[0], nspid: field("NSpid")?.at(-1) };
}

Deno.test({
  name:
    "the image's files run the server as uid 65532: /healthz, an https check via the image's CA bundle, HEALTHCHECK, SIGTERM",
  ignore: skip !== undefined,
  async fn(t) {
    const work = await Deno.makeTempDir({ prefix: "startup-lock-image-" });
    try {
      const certs = await makeTestCertificates(await mkdir(`${work}/pki`));
      const image = await assembleImage(`${work}/root`, spec);
      console.error(
        `The image's program here: ${
          image.compiled ? "the compiled executable" : "deno run (no dist/startup-lock)"
        }`,
      );
      await using dependency = Deno.serve(
        { hostname: "127.0.0.1", port: 0, cert: certs.cert, key: certs.key, onListen() {} },
        () => new Response("up"),
      );
      const check = `https://localhost:${dependency.addr.port}/`;
      const serve = (image: ImageRoot) =>
        startInImage(image, ["--host", "127.0.0.1", "--port", "0", "--check", check]);

      await t.step(
        "the https check fails while the test CA is not in the image's bundle",
        async () => {
          await using server = await serve(image);
          await server.waitForLog(/A dependency is down/);
          const dependencyState = await firstDependency(server);
          assert.equal(dependencyState.up, false);
          assert.match(dependencyState.lastError, /certificate|UnknownIssuer/i);
          assert.equal((await get(`${server.url}/`)).status, 423);
          assert.equal(await server.stop("SIGTERM"), 0);
        },
      );

      // As an operator adds a private CA: into the bundle DENO_TLS_CA_STORE=system reads.
      const bundle = `${image.dir}/etc/ssl/certs/ca-certificates.crt`;
      await Deno.writeTextFile(bundle, `\n${certs.ca}`, { append: true });

      await t.step(
        "with the test CA in the bundle: /healthz, a lock, HEALTHCHECK, SIGTERM exits 0",
        async () => {
          await using server = await serve(image);
          assert.deepEqual(await processIds(server.pid), { uid: "65532", nspid: "1" });
          await server.waitForLog(/All dependencies are up/);
          assert.deepEqual(await get(`${server.url}/healthz`), { status: 200, body: "OK\n" });
          assert.equal((await firstDependency(server)).up, true);
          assert.equal((await get(`${server.url}/`)).status, 200);

          const healthz = `${server.url}/healthz`;
          const healthy = await runInImage(image, [...image.healthcheck, "--url", healthz]);
          assert.equal(healthy.code, 0, healthy.stderr);

          assert.equal(await server.stop("SIGTERM"), 0);
          assert.match(server.log.join("\n"), /Received SIGTERM/);
          const stopped = await runInImage(image, [...image.healthcheck, "--url", healthz]);
          assert.notEqual(stopped.code, 0, "healthcheck passes with no server");
          assert.match(stopped.stderr, /Unhealthy/);
        },
      );
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  },
});

async function mkdir(path: string): Promise<string> {
  await Deno.mkdir(path);
  return path;
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}
