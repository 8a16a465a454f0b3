/**
 * Black-box tests of what a new user, an original (Go) client and a hostile
 * client found: the route comes from the request target alone, durations over
 * the cap are granted cut, empty parameters mean "not given", a waiting
 * client keeps its place across its requests, and two failing dependencies
 * read as one sentence.
 */
import assert from "node:assert/strict";
import { startProgram } from "../_program.ts";
import { eventually } from "../_wait.ts";

const JSON_ACCEPT = { Accept: "application/json" };

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
  await t.step("a Host that hides the path gets 400, not 404", async () => {
    const res = await rawRequest(server.url, "GET /status HTTP/1.1\r\nHost: x/nope?");
    assert.equal(res.status, 400);
  });
  await t.step("a Host cannot reach the release route", async () => {
    const res = await rawRequest(server.url, "DELETE /healthz HTTP/1.1\r\nHost: x/locks/abc?");
    assert.equal(res.status, 400);
  });
  for (const host of ["a@b", "x y", "x#y", "x\\y"]) {
    await t.step(`Host ${JSON.stringify(host)} gets 400`, async () => {
      const res = await rawRequest(server.url, `GET /healthz HTTP/1.1\r\nHost: ${host}`);
      assert.equal(res.status, 400);
    });
  }
  for (const host of ["startup-lock", "startup-lock:8888", "10.0.0.1:80", "[::1]:8888"]) {
    await t.step(`Host ${JSON.stringify(host)} is fine`, async () => {
      const res = await rawRequest(server.url, `GET /healthz HTTP/1.1\r\nHost: ${host}`);
      assert.equal(res.status, 200);
      assert.equal(res.body, "OK\n");
    });
  }
  await t.step("HTTP/1.0 without a Host is fine", async () => {
    const res = await rawRequest(server.url, "GET /healthz HTTP/1.0");
    assert.equal(res.status, 200);
  });
  await t.step("an absolute-form target routes on its own path", async () => {
    const res = await rawRequest(server.url, "GET http://elsewhere/healthz HTTP/1.1\r\nHost: y");
    assert.equal(res.status, 200);
    assert.equal(await held(server.url), 0);
  });
});

Deno.test("server grants a duration over --maxDuration cut to it, and says so", async (t) => {
  await using server = await startProgram(["--maxDuration", "1h"]);
  await t.step("an original client's ?duration=7200 gets 200, not 400 forever", async () => {
    const res = await fetch(`${server.url}/?duration=7200&id=go-client`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("Lock-Duration"), "3600");
    assert.equal(res.headers.get("Lock-Duration-Requested"), "7200");
    assert.match(await res.text(), /^Lock acquired\nWarning: asked for 2h, cut to 1h/);
    await server.waitForLog(/WARN .*Lock granted to go-client for 1h: it asked for 2h/);
    const token = res.headers.get("Lock-Token");
    assert.equal((await fetch(`${server.url}/locks/${token}`, { method: "DELETE" })).status, 204);
  });
  await t.step("the JSON answer says what was asked and what was granted", async () => {
    const res = await fetch(`${server.url}/?duration=720h&id=json`, { headers: JSON_ACCEPT });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.duration, 3600);
    assert.equal(body.requestedDuration, 720 * 3600);
    assert.match(body.warning, /cut to 1h/);
    const left = Date.parse(body.expiresAt) - Date.now();
    assert.ok(left > 3500_000 && left <= 3600_000, body.expiresAt);
    await fetch(`${server.url}/locks/${body.token}`, { method: "DELETE" });
  });
  await t.step("a duration within the cap has no warning", async () => {
    const res = await fetch(`${server.url}/?duration=60`, { headers: JSON_ACCEPT });
    assert.equal(res.headers.get("Lock-Duration"), "60");
    assert.equal(res.headers.get("Lock-Duration-Requested"), null);
    const body = await res.json();
    assert.equal(body.warning, undefined);
    await fetch(`${server.url}/locks/${body.token}`, { method: "DELETE" });
  });
  await t.step("a malformed duration is still 400", async () => {
    const res = await fetch(`${server.url}/?duration=7200x`);
    assert.equal(res.status, 400);
    assert.match(await res.text(), /^Invalid duration "7200x"/);
  });
});

Deno.test("server treats an empty parameter as not given", async () => {
  await using server = await startProgram(["--timeout", "42s"]);
  const res = await fetch(`${server.url}/?duration=&id=&wait=`, { headers: JSON_ACCEPT });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("Lock-Duration"), "42");
  const body = await res.json();
  assert.equal(body.id, null);
  const renewed = await fetch(`${server.url}/locks/${body.token}?duration=`, { method: "PUT" });
  assert.equal(renewed.status, 200);
  assert.equal(renewed.headers.get("Lock-Duration"), "42");
  await renewed.body?.cancel();
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

Deno.test("server says two failing dependencies in one sentence", async () => {
  await using server = await startProgram([
    "--check",
    "tcp://127.0.0.1:1",
    "--check",
    "tcp://127.0.0.1:2",
  ]);
  await server.waitForLog(/A dependency is down/);
  const res = await fetch(`${server.url}/`);
  assert.equal(res.status, 423);
  assert.match(
    await res.text(),
    /^Locked: 2 dependencies are down: tcp:\/\/127\.0\.0\.1:1 \(.+\), tcp:\/\/127\.0\.0\.1:2 \(.+\)\n$/,
  );
});
