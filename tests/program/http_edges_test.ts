/**
 * Black-box tests of the HTTP edges that need the real program's sockets: the
 * route comes from the request target alone (Deno builds the URL from `Host`),
 * a large body and a long URL are refused on the wire, and a waiting client
 * keeps its place across its own requests with real timers. What the handler
 * answers to each request is tests/unit/http/handler_test.ts.
 */
import assert from "node:assert/strict";
import { startProgram } from "../_program.ts";
import { eventually } from "../_wait.ts";

/** Sends raw bytes (fetch cannot set `Host`) and returns the status line and body. */
async function rawRequest(url: string, head: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  await conn.write(new TextEncoder().encode(`${head}\r\nConnection: close\r\n\r\n`));
  const response = await new Response(conn.readable).text();
  const [statusLine = "", ...rest] = response.split("\r\n");
  const body = response.slice(response.indexOf("\r\n\r\n") + 4);
  assert.ok(rest.length > 0, response);
  return { status: Number(statusLine.split(" ")[1]), body };
}

async function held(url: string): Promise<number | null> {
  const res = await fetch(`${url}/status`);
  return (await res.json()).slots.held;
}

Deno.test("server routes on the request target, never on the Host header", async (t) => {
  // Deno builds request.url from the Host header: only raw requests to the real
  // program show it. Which Host values are valid is tested through the handler.
  await using server = await startProgram(["--timeout", "60s"]);
  await t.step(
    "a Host that smuggles a query into a health probe gets 400 and no slot",
    async () => {
      const res = await rawRequest(
        server.url,
        "GET /healthz HTTP/1.1\r\nHost: x/?duration=5&id=hostinj",
      );
      assert.equal(res.status, 400);
      assert.match(res.body, /^Invalid Host header "x\/\?duration=5&id=hostinj"/);
      assert.equal(await held(server.url), 0);
    },
  );
  await t.step("a Host cannot reach the release route", async () => {
    const res = await rawRequest(server.url, "DELETE /healthz HTTP/1.1\r\nHost: x/locks/abc?");
    assert.equal(res.status, 400);
  });
  await t.step("HTTP/1.0 without a Host is fine", async () => {
    const res = await rawRequest(server.url, "GET /healthz HTTP/1.0");
    assert.equal(res.status, 200);
    assert.equal(res.body, "OK\n");
  });
  await t.step("an absolute-form target routes on its own path", async () => {
    const res = await rawRequest(server.url, "GET http://elsewhere/healthz HTTP/1.1\r\nHost: y");
    assert.equal(res.status, 200);
    assert.equal(await held(server.url), 0);
  });
});

Deno.test("server refuses a 10 MB acquire body with 413 and a long URL with 414", async () => {
  await using server = await startProgram();
  const big = await fetch(`${server.url}/`, {
    method: "POST",
    body: new Uint8Array(10 * 1024 * 1024),
  });
  assert.equal(big.status, 413);
  await big.body?.cancel();
  // Deno hands a GET's body to no one (request.body is null): its Content-Length still counts.
  // The body is never sent, so only the answer's first bytes are read.
  const { hostname, port } = new URL(server.url);
  {
    using conn = await Deno.connect({ hostname, port: Number(port) });
    await conn.write(
      new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n"),
    );
    const buffer = new Uint8Array(4096);
    const read = await conn.read(buffer);
    const answer = new TextDecoder().decode(buffer.subarray(0, read ?? 0));
    assert.match(answer, /^HTTP\/1\.1 413 /, answer);
  }
  const long = await fetch(`${server.url}/?id=${"a".repeat(9000)}`);
  assert.equal(long.status, 414);
  await long.body?.cancel();
  assert.equal(await held(server.url), 0);
});

Deno.test("server keeps a waiting client's place across requests shorter than the queue's drain", async () => {
  // The reproduction: waits cut to 2 s, one slot held 4 s, four clients arriving 0.6 s apart,
  // each asking again with its id as soon as its wait runs out. Served in arrival order.
  await using server = await startProgram(["--maxWait", "2s", "--locks", "1"]);
  const first = await fetch(`${server.url}/?duration=4&id=holder`);
  assert.equal(first.status, 200);
  await first.body?.cancel();
  const served: string[] = [];
  const client = async (id: string) => {
    for (let tries = 0; tries < 40; tries++) {
      const res = await fetch(`${server.url}/?wait=30s&duration=1&id=${id}`);
      await res.body?.cancel();
      if (res.status === 200) {
        served.push(id);
        await fetch(`${server.url}/locks/${res.headers.get("Lock-Token")}`, { method: "DELETE" })
          .then((r) => r.body?.cancel());
        return;
      }
      assert.equal(res.status, 423);
    }
    assert.fail(`${id} was never served`);
  };
  const clients: Promise<void>[] = [];
  for (const id of ["w1", "w2", "w3", "w4"]) {
    clients.push(client(id));
    await eventually(`${id} waits`, async () => {
      const status = await (await fetch(`${server.url}/status`)).json();
      return [...status.waiters.ids, ...status.returning.ids].includes(id);
    });
    await new Promise((r) => setTimeout(r, 600));
  }
  await Promise.all(clients);
  assert.deepEqual(served, ["w1", "w2", "w3", "w4"]);
});
