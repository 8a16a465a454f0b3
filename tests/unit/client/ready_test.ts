/**
 * `appIsReady()` and `readyEvent()` against real listeners: an http(s) ready
 * URL answers 2xx, a `tcp://` one accepts a connection.
 */
import assert from "node:assert/strict";
import { appIsReady, readyEvent } from "../../../lib/client/ready.ts";
import { freePort } from "../../_client.ts";

const signal = () => AbortSignal.timeout(10_000);

Deno.test("appIsReady() is true for a tcp:// URL once something accepts a connection there", async () => {
  const port = freePort();
  const url = new URL(`tcp://127.0.0.1:${port}`);
  assert.equal(await appIsReady(url, 5_000, signal()), false, "nothing listens yet");
  using listener = Deno.listen({ hostname: "127.0.0.1", port });
  const accepted = listener.accept();
  assert.equal(await appIsReady(url, 5_000, signal()), true);
  (await accepted).close();
});

/** Whether this machine has an IPv6 loopback to listen on. */
const HAS_IPV6 = (() => {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "appIsReady() connects to an IPv6 address given in brackets",
  ignore: !HAS_IPV6,
  async fn() {
    using listener = Deno.listen({ hostname: "::1", port: 0 });
    const url = new URL(`tcp://[::1]:${listener.addr.port}`);
    const accepted = listener.accept();
    assert.equal(await appIsReady(url, 5_000, signal()), true);
    (await accepted).close();
  },
});

Deno.test("appIsReady() asks an http:// URL for 2xx", async () => {
  let status = 503;
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(null, { status }),
  );
  const url = new URL(`http://127.0.0.1:${server.addr.port}/ready`);
  assert.equal(await appIsReady(url, 5_000, signal()), false);
  status = 200;
  assert.equal(await appIsReady(url, 5_000, signal()), true);
});

Deno.test("appIsReady() is false when the signal has aborted, without connecting", async () => {
  const port = freePort();
  using _listener = Deno.listen({ hostname: "127.0.0.1", port });
  assert.equal(
    await appIsReady(new URL(`tcp://127.0.0.1:${port}`), 5_000, AbortSignal.abort()),
    false,
  );
});

Deno.test("readyEvent() says what made the app count as ready", () => {
  assert.equal(
    readyEvent(new URL("tcp://localhost:5432")),
    "tcp://localhost:5432 accepted a connection",
  );
  assert.equal(
    readyEvent(new URL("http://localhost:8080/ready")),
    "http://localhost:8080/ready answered 2xx",
  );
});
