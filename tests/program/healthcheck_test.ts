/**
 * `startup-lock healthcheck`: its command line, and black-box runs against a
 * real server, a closed port, a server answering 503 and one that never answers.
 */
import assert from "node:assert/strict";
import {
  DEFAULT_HEALTHCHECK_TIMEOUT_MS,
  DEFAULT_HEALTHCHECK_URL,
  HEALTHCHECK_FLAGS,
  healthcheckCommand,
  type HealthcheckOptions,
} from "../../lib/commands/healthcheck.ts";
import { UsageError } from "../../lib/errors.ts";
import { freePort } from "../_client.ts";
import { hasOpenssl, makeTestCertificates } from "../_image_tls.ts";
import { runProgram, startProgram } from "../_program.ts";

function parse(argv: string[], vars: Record<string, string> = {}): HealthcheckOptions {
  const parsed = healthcheckCommand.parse(argv, (name) => vars[name]);
  assert.equal(parsed.action, "run");
  if (parsed.action !== "run") throw new Error("unreachable");
  return parsed.options;
}

/** Asserts `stderr` is exactly one line, starting `startup-lock: `, and returns it. */
function oneLine(stderr: string): string {
  const lines = stderr.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${stderr}`);
  assert.ok(lines[0]!.startsWith("startup-lock: "), lines[0]);
  return lines[0]!;
}

Deno.test("healthcheckCommand.parse() defaults to the server's /healthz on 127.0.0.1:8888 and 5s", () => {
  const options = parse([]);
  assert.equal(options.url.href, DEFAULT_HEALTHCHECK_URL);
  assert.equal(options.url.href, "http://127.0.0.1:8888/healthz");
  assert.equal(options.timeoutMs, DEFAULT_HEALTHCHECK_TIMEOUT_MS);
  assert.equal(options.timeoutMs, 5_000);
});

Deno.test("healthcheckCommand.parse() reads --url, STARTUP_LOCK_URL and --timeout", async (t) => {
  await t.step("--url and --timeout", () => {
    const options = parse(["--url", "https://lock.internal/healthz", "--timeout", "500ms"]);
    assert.equal(options.url.href, "https://lock.internal/healthz");
    assert.equal(options.timeoutMs, 500);
  });
  await t.step("STARTUP_LOCK_URL, and --url wins over it", () => {
    const env = { STARTUP_LOCK_URL: "http://10.0.0.1:9000/healthz" };
    assert.equal(parse([], env).url.href, "http://10.0.0.1:9000/healthz");
    assert.equal(parse(["--url", "http://a/h"], env).url.href, "http://a/h");
  });
  await t.step("STARTUP_LOCK_PORT sets the default URL's port, as the server's variable", () => {
    assert.equal(
      parse([], { STARTUP_LOCK_PORT: "9000" }).url.href,
      "http://127.0.0.1:9000/healthz",
    );
    const env = { STARTUP_LOCK_PORT: "9000", STARTUP_LOCK_URL: "http://a:1/h" };
    assert.equal(parse([], env).url.href, "http://a:1/h", "an explicit URL wins");
  });
  await t.step("STARTUP_LOCK_TIMEOUT is the server's lock duration, not the probe's", () => {
    assert.equal(parse([], { STARTUP_LOCK_TIMEOUT: "60s" }).timeoutMs, 5_000);
    const timeout = HEALTHCHECK_FLAGS.find((f) => f.name === "timeout");
    assert.equal(timeout?.env, false);
  });
});

Deno.test("healthcheckCommand.parse() throws a UsageError naming the flag and the value", async (t) => {
  const cases: { argv: string[]; env?: Record<string, string>; says: string }[] = [
    { argv: ["--url", "ftp://x/healthz"], says: 'Invalid --url "ftp://x/healthz": unsupported' },
    { argv: ["--url", "not a url"], says: 'Invalid --url "not a url": expected an http://' },
    { argv: [], env: { STARTUP_LOCK_URL: "x" }, says: 'Invalid STARTUP_LOCK_URL "x"' },
    { argv: ["--timeout", "0"], says: 'Invalid --timeout "0"' },
    { argv: ["--timeout", "soon"], says: 'Invalid --timeout "soon"' },
    { argv: [], env: { STARTUP_LOCK_PORT: "0" }, says: 'Invalid STARTUP_LOCK_PORT "0"' },
    { argv: [], env: { STARTUP_LOCK_PORT: "http" }, says: 'Invalid STARTUP_LOCK_PORT "http"' },
    { argv: ["--server", "http://x"], says: 'Unknown flag "--server"' },
    { argv: ["http://x/healthz"], says: 'Unexpected argument "http://x/healthz"' },
  ];
  for (const { argv, env = {}, says } of cases) {
    await t.step([...argv, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(" "), () => {
      assert.throws(
        () => healthcheckCommand.parse(argv, (name) => env[name]),
        (error: unknown) => {
          assert.ok(error instanceof UsageError);
          assert.ok(error.message.includes(says), error.message);
          return true;
        },
      );
    });
  }
});

Deno.test("startup-lock healthcheck exits 0, silently, when the server answers 200", async (t) => {
  await using server = await startProgram();
  await t.step("--url", async () => {
    const res = await runProgram(["healthcheck", "--url", `${server.url}/healthz`]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, "");
    assert.equal(res.stderr, "");
  });
  await t.step("the default URL with the server's STARTUP_LOCK_PORT", async () => {
    const port = new URL(server.url).port;
    const res = await runProgram(["healthcheck"], { env: { STARTUP_LOCK_PORT: port } });
    assert.equal(res.code, 0, res.stderr);
  });
});

Deno.test("startup-lock healthcheck exits 1 with one line when the port is closed", async () => {
  const url = `http://127.0.0.1:${freePort()}/healthz`;
  const res = await runProgram(["healthcheck", "--url", url]);
  assert.equal(res.code, 1);
  assert.equal(res.stdout, "");
  const line = oneLine(res.stderr);
  assert.ok(line.startsWith(`startup-lock: Unhealthy: cannot reach ${url}: `), line);
});

Deno.test({
  name: "startup-lock healthcheck names DENO_CERT when the https server's issuer is not trusted",
  ignore: !hasOpenssl(),
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const { ca, cert, key } = await makeTestCertificates(dir);
      await using server = Deno.serve(
        { hostname: "127.0.0.1", port: 0, cert, key, onListen() {} },
        () => new Response("OK"),
      );
      const url = `https://localhost:${server.addr.port}/healthz`;
      const untrusted = await runProgram(["healthcheck", "--url", url]);
      assert.equal(untrusted.code, 1);
      const line = oneLine(untrusted.stderr);
      assert.match(
        line,
        /^startup-lock: Unhealthy: cannot reach https:\/\/localhost:\d+\/healthz: /,
      );
      assert.match(
        line,
        /: the server's certificate is not signed by a trusted CA: give the CA's certificate in DENO_CERT=PATH$/,
      );
      // What the line says works.
      await Deno.writeTextFile(`${dir}/ca.pem`, ca);
      const trusted = await runProgram(["healthcheck", "--url", url], {
        env: { DENO_CERT: `${dir}/ca.pem` },
      });
      assert.equal(trusted.code, 0, trusted.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("startup-lock healthcheck exits 1 when the answer is not 200", async (t) => {
  const statuses = [
    { path: "/unavailable", status: 503, says: "answered HTTP 503 Service Unavailable" },
    { path: "/accepted", status: 202, says: "answered HTTP 202 Accepted" },
    { path: "/moved", status: 302, says: "answered HTTP 302 Found" },
  ];
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const found = statuses.find((s) => new URL(req.url).pathname === s.path);
    return found?.status === 302
      ? Response.redirect("http://127.0.0.1:1/healthz", 302)
      : new Response("no", { status: found?.status ?? 404 });
  });
  for (const { path, says } of statuses) {
    await t.step(says, async () => {
      const url = `http://127.0.0.1:${server.addr.port}${path}`;
      const res = await runProgram(["healthcheck", "--url", url]);
      assert.equal(res.code, 1);
      const line = oneLine(res.stderr);
      assert.equal(line, `startup-lock: Unhealthy: ${url} ${says}, expected 200`);
    });
  }
});

Deno.test("startup-lock healthcheck exits 1 when the server does not answer within --timeout", async () => {
  // Accepts connections and never answers, as a hung server does.
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connections: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) connections.push(conn);
    } catch { /* closed */ }
  })();
  try {
    const url = `http://127.0.0.1:${listener.addr.port}/healthz`;
    const started = performance.now();
    const res = await runProgram(["healthcheck", "--url", url, "--timeout", "300ms"]);
    assert.equal(res.code, 1);
    assert.equal(
      oneLine(res.stderr),
      `startup-lock: Unhealthy: ${url} did not answer within 300ms (--timeout)`,
    );
    assert.ok(performance.now() - started < 10_000, "gave up by its timeout");
  } finally {
    listener.close();
    await accepting;
    for (const conn of connections) conn.close();
  }
});

Deno.test("startup-lock healthcheck exits 2 with one line for a bad flag or URL", async (t) => {
  const cases = [
    { args: ["--url", "ftp://x/healthz"], says: 'Invalid --url "ftp://x/healthz"' },
    { args: ["--url", "::"], says: 'Invalid --url "::"' },
    { args: ["--timeout", "-1"], says: 'Invalid --timeout "-1"' },
    { args: ["--bogus"], says: 'Unknown flag "--bogus"' },
    { args: ["--url"], says: "Flag --url needs a value" },
  ];
  for (const { args, says } of cases) {
    await t.step(args.join(" "), async () => {
      const res = await runProgram(["healthcheck", ...args]);
      assert.equal(res.code, 2, res.stderr);
      assert.equal(res.stdout, "");
      const line = oneLine(res.stderr);
      assert.ok(line.includes(says), line);
    });
  }
  await t.step("STARTUP_LOCK_URL", async () => {
    const res = await runProgram(["healthcheck"], { env: { STARTUP_LOCK_URL: "nope" } });
    assert.equal(res.code, 2, res.stderr);
    assert.ok(oneLine(res.stderr).includes('Invalid STARTUP_LOCK_URL "nope"'));
  });
});
