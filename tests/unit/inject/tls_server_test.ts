import assert from "node:assert/strict";
import { serveTlsReloading } from "../../../lib/inject/tls_server.ts";
import { hasOpenssl, type RotatingCertificates, rotatingCertificates } from "../../_image_tls.ts";
import { fingerprint, servedFingerprint } from "../../_tls_probe.ts";

const ignore = !hasOpenssl();

/** GET /healthz on a new connection that trusts only `ca`: its status, or the error. */
async function healthz(port: number, ca: string): Promise<number | string> {
  using client = Deno.createHttpClient({ caCerts: [ca] });
  try {
    const response = await fetch(`https://localhost:${port}/healthz`, { client });
    await response.body?.cancel();
    return response.status;
  } catch (error) {
    return String((error as Error).cause ?? error);
  }
}

const handler = () => new Response("OK\n");

const setUp = () => rotatingCertificates("startup-lock-tls-reload-");

/** The server under test on the files of `files`; `options` add to or change its defaults. */
function serve(
  files: RotatingCertificates,
  options: Partial<Parameters<typeof serveTlsReloading>[0]> = {},
) {
  return serveTlsReloading({
    hostname: "127.0.0.1",
    port: 0,
    certFile: files.certFile,
    keyFile: files.keyFile,
    checkIntervalMs: 3_600_000,
    handler,
    ...options,
  });
}

Deno.test({
  name: "serveTlsReloading() serves a rotated certificate to new connections without a restart",
  ignore,
  fn: async () => {
    await using files = await setUp();
    const errors: unknown[] = [];
    await using server = await serve(files, { onReloadError: (e) => errors.push(e) });
    const { port } = server.addr;
    assert.equal(await servedFingerprint(port), await fingerprint(files.one.cert));
    assert.equal(await healthz(port, files.one.ca), 200);
    assert.equal(await server.check(), false, "nothing changed");

    // The kubelet swaps the files; between the two the pair does not match: the old one serves on.
    await Deno.writeTextFile(files.certFile, files.two.cert);
    assert.equal(await server.check(), false);
    assert.equal(errors.length, 1);
    assert.equal(await servedFingerprint(port), await fingerprint(files.one.cert));
    assert.equal(await server.check(), false, "a rejected pair is reported once");
    assert.equal(errors.length, 1);

    await Deno.writeTextFile(files.keyFile, files.two.key);
    assert.equal(await server.check(), true);
    assert.equal(server.addr.port, port, "the same port");
    assert.equal(await servedFingerprint(port), await fingerprint(files.two.cert));
    assert.equal(await healthz(port, files.two.ca), 200);
    assert.match(String(await healthz(port, files.one.ca)), /certificate|UnknownIssuer/i);
  },
});

Deno.test({
  name: "serveTlsReloading() reads the files again on its own every checkIntervalMs",
  ignore,
  fn: async () => {
    await using files = await setUp();
    const reloaded = Promise.withResolvers<void>();
    await using server = await serve(files, {
      checkIntervalMs: 50,
      onReload: () => reloaded.resolve(),
    });
    await files.install(files.two);
    await reloaded.promise;
    assert.equal(await servedFingerprint(server.addr.port), await fingerprint(files.two.cert));
  },
});

Deno.test({
  name: "serveTlsReloading() keeps the old certificate when the files are missing or broken",
  ignore,
  fn: async () => {
    await using files = await setUp();
    const errors: string[] = [];
    await using server = await serve(files, { onReloadError: (e) => errors.push(String(e)) });
    await Deno.remove(files.keyFile);
    assert.equal(await server.check(), false);
    assert.match(errors[0]!, /NotFound/);
    // Told once, not at every check, while the file stays missing.
    assert.equal(await server.check(), false);
    assert.equal(errors.length, 1);
    await Deno.writeTextFile(files.keyFile, "not a key");
    assert.equal(await server.check(), false);
    assert.equal(errors.length, 2);
    assert.equal(await healthz(server.addr.port, files.one.ca), 200);
  },
});

Deno.test({
  name: "serveTlsReloading() refuses to start with a key that is not the certificate's",
  ignore,
  fn: async () => {
    await using files = await setUp();
    await Deno.writeTextFile(files.keyFile, files.two.key);
    await assert.rejects(
      serve(files),
      /KeyMismatch|not be consistent/,
    );
  },
});
