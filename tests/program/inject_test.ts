/**
 * `startup-lock inject`, the real program: bad flags, and the webhook over
 * HTTPS with a certificate made by `openssl`, as the API server would call it.
 */
import assert from "node:assert/strict";
import {
  admissionReview,
  applyPatch,
  assertValidPod,
  decodePatch,
  deploymentPod,
  readAnswer,
} from "../_admission.ts";
import { hasOpenssl, type RotatingCertificates, rotatingCertificates } from "../_image_tls.ts";
import { runProgram, startProgram } from "../_program.ts";
import { fingerprint, servedFingerprint } from "../_tls_probe.ts";

const REQUIRED = [
  ...["--server", "http://$(HOST_IP):8888", "--image", "registry.example.com/startup-lock:0.1.0"],
  ...["--tlsCert", "/nonexistent/tls.crt", "--tlsKey", "/nonexistent/tls.key"],
];

/** REQUIRED with `flag` set to `value`, or left out when `value` is undefined. */
function withFlag(flag: string, value: string | undefined): string[] {
  const args = [...REQUIRED];
  const at = args.indexOf(flag);
  if (at === -1) return value === undefined ? args : [...args, flag, value];
  if (value === undefined) args.splice(at, 2);
  else args[at + 1] = value;
  return args;
}

Deno.test("startup-lock inject refuses bad flags with one line and exit code 2", async (t) => {
  const cases: [string[], RegExp][] = [
    [
      withFlag("--server", undefined),
      /^startup-lock: Missing --server URL|Missing --server \(or STARTUP_LOCK_SERVER\)/,
    ],
    [
      withFlag("--image", undefined),
      /Missing --image \(or STARTUP_LOCK_IMAGE\): the startup-lock image to inject/,
    ],
    [withFlag("--tlsCert", undefined), /Missing --tlsCert \(or STARTUP_LOCK_TLS_CERT\)/],
    [withFlag("--tlsKey", undefined), /Missing --tlsKey \(or STARTUP_LOCK_TLS_KEY\)/],
    [
      withFlag("--server", "http://$(NODE_NAME):8888"),
      /Invalid --server "http:\/\/\$\(NODE_NAME\):8888": \$\(NODE_NAME\) is not set in the injected container/,
    ],
    [
      withFlag("--server", "startup-lock:8888"),
      /Invalid --server "startup-lock:8888": unsupported scheme/,
    ],
    [withFlag("--image", "my image"), /Invalid --image "my image": expected an image reference/],
    [withFlag("--port", "70000"), /Invalid --port "70000": expected an integer from 0 to 65535/],
    [withFlag("--duration", "-5m"), /Invalid --duration "-5m"/],
    [withFlag("--tlsCheckInterval", "0"), /Invalid --tlsCheckInterval "0"/],
    [withFlag("--locks", "3"), /Unknown flag "--locks"/],
    [
      [...withFlag("--port", "0"), "--authTokenSecret", "startup-lock-auth"],
      /Invalid --authTokenSecret "startup-lock-auth": expected a Secret's name and key as NAME\/KEY/,
    ],
    [
      [...withFlag("--port", "0"), "--authTokenSecret", "Auth_Secret/token"],
      /Invalid --authTokenSecret "Auth_Secret\/token": expected a Secret's name and key/,
    ],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" "), async () => {
      const { code, stdout, stderr } = await runProgram(["inject", ...args]);
      assert.equal(code, 2, stderr);
      assert.equal(stdout, "");
      assert.equal(stderr.trimEnd().split("\n").length, 1, stderr);
      assert.match(stderr, message);
    });
  }
  await t.step("a variable names itself", async () => {
    const { code, stderr } = await runProgram(["inject", ...withFlag("--image", undefined)], {
      env: { STARTUP_LOCK_IMAGE: "a b" },
    });
    assert.equal(code, 2);
    assert.match(stderr, /^startup-lock: Invalid STARTUP_LOCK_IMAGE "a b"/);
  });
});

Deno.test("startup-lock inject exits 1 with one line when it cannot read its certificate", async () => {
  const { code, stderr } = await runProgram(["inject", "--port", "0", ...REQUIRED]);
  assert.equal(code, 1);
  assert.equal(stderr.trimEnd().split("\n").length, 1, stderr);
  assert.match(
    stderr,
    /^startup-lock: Cannot serve HTTPS on 0\.0\.0\.0:0 with --tlsCert \/nonexistent\/tls\.crt/,
  );
});

async function withCertificates(fn: (files: RotatingCertificates) => Promise<void>) {
  await using files = await rotatingCertificates("startup-lock-inject-");
  await fn(files);
}

Deno.test({
  name:
    "startup-lock inject answers AdmissionReviews over HTTPS, survives bad input and serves a rotated certificate",
  ignore: !hasOpenssl(),
  fn: () =>
    withCertificates(async ({ certFile, keyFile, one, two }) => {
      await using webhook = await startProgram([
        ...withFlag("--tlsCert", certFile).slice(0, -2),
        ...["--tlsKey", keyFile, "--tlsCheckInterval", "100ms"],
      ], { command: "inject" });
      const port = Number(new URL(webhook.url).port);
      const url = (path: string) => `https://localhost:${port}${path}`;
      const call = async (ca: string, path: string, init: RequestInit = {}) => {
        // A new client each time: a new connection, which sees the certificate of now.
        using client = Deno.createHttpClient({ caCerts: [ca] });
        const response = await fetch(url(path), { ...init, client });
        return { status: response.status, text: await response.text() };
      };
      const mutate = (ca: string, body: BodyInit) =>
        call(ca, "/mutate", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body,
        });

      await t_step("a Deployment's pod gets the sidecar", async () => {
        const pod = deploymentPod();
        const review = admissionReview(pod);
        const { status, text } = await mutate(one.ca, JSON.stringify(review));
        assert.equal(status, 200, text);
        const patched = applyPatch(pod, decodePatch(readAnswer(review, JSON.parse(text))));
        assertValidPod(patched);
        await webhook.waitForLog(/Injected the hold sidecar into shop\/web-7c9d8f6b5-\*/);
      });

      await t_step("bad input gets a 4xx, and the webhook serves on", async () => {
        assert.equal((await mutate(one.ca, "")).status, 400);
        assert.equal((await mutate(one.ca, "{not json")).status, 400);
        const other = JSON.stringify({ apiVersion: "v1", kind: "Pod" });
        assert.equal((await mutate(one.ca, other)).status, 400);
        const big = await mutate(one.ca, "x".repeat(4 * 1024 * 1024));
        assert.equal(big.status, 413);
        assert.equal((await call(one.ca, "/mutate")).status, 405);
        assert.equal((await call(one.ca, "/nope")).status, 404);
        assert.equal((await call(one.ca, "/healthz")).status, 200);
      });

      await t_step("plain HTTP is not served", async () => {
        await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
      });

      await t_step("a rotated certificate serves new connections, without a restart", async () => {
        assert.equal(await servedFingerprint(port), await fingerprint(one.cert));
        await Deno.writeTextFile(certFile, two.cert);
        await Deno.writeTextFile(keyFile, two.key);
        await webhook.waitForLog(/Serving the new certificate of /);
        assert.equal(await servedFingerprint(port), await fingerprint(two.cert));
        assert.equal((await call(two.ca, "/healthz")).status, 200);
        const review = admissionReview(deploymentPod());
        const { status, text } = await mutate(two.ca, JSON.stringify(review));
        assert.equal(status, 200);
        assert.ok(readAnswer(review, JSON.parse(text)).patch);
      });

      assert.equal(await webhook.stop("SIGTERM"), 0);
      assert.ok(webhook.log.some((l) => /Received SIGTERM: stopping/.test(l)));
    }),
});

/** A labelled step, for the failure message; the steps share one webhook process. */
async function t_step(name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (error) {
    throw new Error(`${name}: ${(error as Error).message}`, { cause: error });
  }
}
