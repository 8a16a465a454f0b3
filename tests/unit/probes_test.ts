/**
 * `probe()` against real servers: http(s) on ordinary ports and on the ports
 * `fetch` refuses, redirects between the two, and the real program checking a
 * dependency on such a port.
 *
 * @module
 */
import assert from "node:assert/strict";
import { FETCH_BLOCKED_PORTS } from "../../lib/_http_head.ts";
import { parseCheckTarget, probe } from "../../lib/probes.ts";
import { hasOpenssl, makeTestCertificates } from "../_image_tls.ts";
import { startProgram } from "../_program.ts";

/** Ports `fetch` refuses that an unprivileged test may bind, in the order they are tried. */
const CANDIDATE_PORTS = [...FETCH_BLOCKED_PORTS].filter((p) => p >= 1024).reverse();

function isFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

const SOME_BLOCKED_PORT_FREE = CANDIDATE_PORTS.some(isFree);
if (!SOME_BLOCKED_PORT_FREE) {
  console.error(
    `probes_test: every port fetch refuses from ${CANDIDATE_PORTS.join(", ")} is in use on ` +
      "127.0.0.1, so the tests that need one are skipped",
  );
}

type Handler = (request: Request) => Response;

/**
 * Binds with `bind` on the first free port that `fetch` refuses (another test
 * run may take one between the check above and this bind).
 */
function onBlockedPort<T>(bind: (port: number) => T): T {
  for (const port of CANDIDATE_PORTS) {
    try {
      return bind(port);
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    }
  }
  throw new Error(`Every port from ${CANDIDATE_PORTS.join(", ")} is in use`);
}

function serveOnBlockedPort(
  handler: Handler,
  tls?: { cert: string; key: string },
): Deno.HttpServer<Deno.NetAddr> {
  return onBlockedPort((port) =>
    Deno.serve({ hostname: "127.0.0.1", port, onListen() {}, ...tls }, handler)
  );
}

function serve(handler: Handler): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
}

function status(code: number): Handler {
  return () => new Response("a body the probe discards", { status: code });
}

function probeUrl(url: string, signal = AbortSignal.timeout(10_000)): Promise<void> {
  return probe(parseCheckTarget(url), signal);
}

const blockedPortTest = { ignore: !SOME_BLOCKED_PORT_FREE, sanitizeOps: true };

Deno.test("probe() counts a 2xx answer as up and another status as down", async (t) => {
  await t.step("200 is up", async () => {
    await using server = serve(status(200));
    await probeUrl(`http://127.0.0.1:${server.addr.port}/health`);
  });
  await t.step("503 is down, with the status in the reason", async () => {
    await using server = serve(status(503));
    await assert.rejects(probeUrl(`http://127.0.0.1:${server.addr.port}/`), {
      message: "HTTP 503 Service Unavailable",
    });
  });
});

Deno.test({
  name: "probe() reaches an http endpoint on a port fetch refuses",
  ...blockedPortTest,
  async fn(t) {
    await t.step("fetch itself refuses the port", async () => {
      await using server = serveOnBlockedPort(status(200));
      await assert.rejects(fetch(`http://127.0.0.1:${server.addr.port}/`), /blocked/);
    });
    await t.step("a 2xx answer is up", async () => {
      await using server = serveOnBlockedPort(status(202));
      await probeUrl(`http://127.0.0.1:${server.addr.port}/health?deep=1`);
    });
    await t.step("a 5xx answer is down, with the status in the reason", async () => {
      await using server = serveOnBlockedPort(status(503));
      await assert.rejects(probeUrl(`http://127.0.0.1:${server.addr.port}/`), {
        message: "HTTP 503 Service Unavailable",
      });
    });
    await t.step("it sends the path, the host and the URL's credentials", async () => {
      const seen: string[] = [];
      await using server = serveOnBlockedPort((request) => {
        seen.push(
          request.url,
          ...["host", "authorization"].map((h) => `${request.headers.get(h)}`),
        );
        return new Response("ok");
      });
      const { port } = server.addr;
      await probeUrl(`http://user:p%40ss@127.0.0.1:${port}/a/b?c=d`);
      assert.deepEqual(seen, [
        `http://127.0.0.1:${port}/a/b?c=d`,
        `127.0.0.1:${port}`,
        `Basic ${btoa("user:p@ss")}`,
      ]);
    });
  },
});

Deno.test({
  name: "probe() follows redirects between ordinary ports and ports fetch refuses",
  ...blockedPortTest,
  async fn(t) {
    await using blocked = serveOnBlockedPort((request) =>
      new URL(request.url).pathname === "/up"
        ? new Response("up")
        : Response.redirect(`http://127.0.0.1:${ordinary.addr.port}/up`, 302)
    );
    await using ordinary = serve((request) =>
      new URL(request.url).pathname === "/up"
        ? new Response("up")
        : Response.redirect(`http://127.0.0.1:${blocked.addr.port}/up`, 307)
    );
    await t.step("from an ordinary port to one fetch refuses", async () => {
      await probeUrl(`http://127.0.0.1:${ordinary.addr.port}/start`);
    });
    await t.step("from a port fetch refuses to an ordinary one", async () => {
      await probeUrl(`http://127.0.0.1:${blocked.addr.port}/start`);
    });
  },
});

Deno.test({
  name: "probe() gives up after 20 redirects, on any port",
  ...blockedPortTest,
  async fn() {
    await using blocked = serveOnBlockedPort(() =>
      new Response(null, { status: 301, headers: { location: "/again" } })
    );
    await assert.rejects(probeUrl(`http://127.0.0.1:${blocked.addr.port}/`), {
      message: "more than 20 redirects",
    });
  },
});

Deno.test({
  name: "probe() on a port fetch refuses stops when its signal aborts",
  ...blockedPortTest,
  async fn() {
    // Accepts connections and never answers.
    const listener = onBlockedPort((port) => Deno.listen({ hostname: "127.0.0.1", port }));
    const accepted: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const conn of listener) accepted.push(conn);
    })().catch(() => {});
    try {
      const controller = new AbortController();
      const { port } = listener.addr as Deno.NetAddr;
      const probing = probeUrl(`http://127.0.0.1:${port}/`, controller.signal);
      // Abort once the probe is connected and waits for an answer.
      while (accepted.length === 0) await new Promise((r) => setTimeout(r, 10));
      controller.abort(new Error("the test gave up"));
      await assert.rejects(probing, { message: "the test gave up" });
    } finally {
      listener.close();
      await accepting;
      for (const conn of accepted) conn.close();
    }
  },
});

Deno.test({
  name: "the program grants a lock when its --check on a port fetch refuses is up",
  ...blockedPortTest,
  async fn() {
    await using dependency = serveOnBlockedPort(status(200));
    const check = `http://127.0.0.1:${dependency.addr.port}/`;
    await using server = await startProgram(["--check", check, "--checkTimeout", "10s"]);
    await server.waitForLog(/All dependencies are up/);
    const response = await fetch(`${server.url}/`);
    await response.body?.cancel();
    assert.equal(response.status, 200);
  },
});

Deno.test({
  name: "the program checks https on a port fetch refuses with the system's certificates",
  ignore: !SOME_BLOCKED_PORT_FREE || !hasOpenssl(),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "startup-lock-probes-" });
    try {
      const certs = await makeTestCertificates(dir);
      await using dependency = serveOnBlockedPort(status(200), certs);
      const check = `https://localhost:${dependency.addr.port}/`;
      // As in the image: DENO_TLS_CA_STORE=system reads the bundle SSL_CERT_FILE names.
      await Deno.writeTextFile(`${dir}/bundle.pem`, certs.ca);
      await using server = await startProgram(["--check", check], {
        env: { DENO_TLS_CA_STORE: "system", SSL_CERT_FILE: `${dir}/bundle.pem` },
      });
      await server.waitForLog(/All dependencies are up/);
      const response = await fetch(`${server.url}/`);
      await response.body?.cancel();
      assert.equal(response.status, 200);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("FETCH_BLOCKED_PORTS lists the ports this Deno's fetch refuses, and not their neighbours", async () => {
  const refused = async (port: number) => {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/`, {
        signal: AbortSignal.timeout(5_000),
      });
      await response.body?.cancel();
      return false;
    } catch (error) {
      return /blocked/.test(String(error));
    }
  };
  const neighbours = [...FETCH_BLOCKED_PORTS].flatMap((p) => [p - 1, p + 1])
    .filter((p) => p >= 0 && !FETCH_BLOCKED_PORTS.has(p));
  for (const port of FETCH_BLOCKED_PORTS) assert.ok(await refused(port), `port ${port} is refused`);
  for (const port of neighbours) assert.ok(!(await refused(port)), `port ${port} is not refused`);
});

Deno.test("parseCheckTarget() refuses port 0 of an http URL", () => {
  assert.throws(() => parseCheckTarget("http://127.0.0.1:0/"), {
    name: "RangeError",
    message: "expected a port from 1 to 65535",
  });
});

Deno.test("an http check with a password shows *** and still sends the password", async () => {
  const seen: (string | null)[] = [];
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    seen.push(req.headers.get("authorization"));
    return new Response("ok");
  });
  const target = parseCheckTarget(`http://u:s3cret@127.0.0.1:${server.addr.port}/health`);
  assert.equal(target.url, `http://u:***@127.0.0.1:${server.addr.port}/health`);
  await probe(target, AbortSignal.timeout(5_000));
  assert.deepEqual(seen, [`Basic ${btoa("u:s3cret")}`]);
  const plain = parseCheckTarget("http://db:9200/health");
  assert.deepEqual(plain, { kind: "http", url: "http://db:9200/health" }, "no password, no copy");
});
