import assert from "node:assert/strict";
import { EventBus, type LockEvent } from "../../../lib/core/events.ts";
import { DependencyChecker } from "../../../lib/gates/dependencies.ts";
import { parseCheckTarget } from "../../../lib/probes.ts";
import { ManualClock } from "../../_clock.ts";

/** An HTTP endpoint on port 0 whose status the test sets. */
function httpEndpoint(initialStatus = 200) {
  let status = initialStatus;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("body that the checker discards", { status }),
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}/health`,
    setStatus: (s: number) => (status = s),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A TCP port that accepts connections and never says a word. */
function silentEndpoint() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) conns.push(conn);
    } catch { /* closed */ }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      for (const c of conns) c.close();
    },
  };
}

/** A port on which nothing listens. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

function checker(urls: string[], clock: ManualClock, timeoutMs = 2_000) {
  return new DependencyChecker({
    targets: urls.map(parseCheckTarget),
    passIntervalMs: 60_000,
    failIntervalMs: 10_000,
    timeoutMs,
    clock,
  });
}

Deno.test("DependencyChecker is open at once when no dependency is configured", () => {
  const c = checker([], new ManualClock());
  c.start();
  assert.deepEqual(c.state(), { open: true });
  c.stop();
});

Deno.test("DependencyChecker stays closed until the first round finishes", async () => {
  await using endpoint = httpEndpoint(200);
  const clock = new ManualClock();
  const c = checker([endpoint.url], clock);
  assert.equal(c.state().open, false);
  c.start();
  assert.equal(c.state().open, false);
  const state = c.state();
  assert.equal(!state.open && state.denial.reason, "starting");
  await c.settled();
  assert.deepEqual(c.state(), { open: true });
  const [dep] = c.dependencies;
  assert.equal(dep?.up, true);
  assert.equal(dep?.lastError, undefined);
  assert.equal(dep?.lastCheckedAt, clock.wallNow());
  c.stop();
});

Deno.test("DependencyChecker treats a non-2xx answer as down and reports it", async () => {
  await using endpoint = httpEndpoint(503);
  const c = checker([endpoint.url], new ManualClock());
  c.start();
  await c.settled();
  const gate = c.state();
  assert.ok(!gate.open && gate.denial.reason === "dependencies");
  assert.equal(gate.denial.failing[0]?.url, endpoint.url);
  assert.match(gate.denial.failing[0]?.error ?? "", /HTTP 503/);
  c.stop();
});

Deno.test("DependencyChecker probes tcp endpoints by connecting", async (t) => {
  await t.step("a listening port is up", async () => {
    await using endpoint = silentEndpoint();
    const c = checker([`tcp://127.0.0.1:${endpoint.port}`], new ManualClock());
    c.start();
    await c.settled();
    assert.deepEqual(c.state(), { open: true });
    c.stop();
  });
  await t.step("a closed port is down with the connection error", async () => {
    const c = checker([`tcp://127.0.0.1:${closedPort()}`], new ManualClock());
    c.start();
    await c.settled();
    const [dep] = c.dependencies;
    assert.equal(dep?.up, false);
    assert.match(dep?.lastError ?? "", /refused/i);
    c.stop();
  });
});

Deno.test("DependencyChecker counts an endpoint that accepts and never answers as down", async () => {
  await using endpoint = silentEndpoint();
  const c = checker([`http://127.0.0.1:${endpoint.port}/`], new ManualClock(), 300);
  c.start();
  await c.settled();
  const [dep] = c.dependencies;
  assert.equal(dep?.up, false);
  assert.match(dep?.lastError ?? "", /no answer within 300ms/);
  c.stop();
});

Deno.test("DependencyChecker runs every check of a round and needs all to pass", async () => {
  await using good = httpEndpoint(200);
  await using bad = httpEndpoint(500);
  const c = checker([good.url, bad.url], new ManualClock());
  c.start();
  await c.settled();
  assert.deepEqual(c.dependencies.map((d) => d.up), [true, false]);
  assert.equal(c.state().open, false);
  c.stop();
});

Deno.test("DependencyChecker schedules the next round by the last round's result", async () => {
  await using endpoint = httpEndpoint(200);
  const clock = new ManualClock();
  const c = checker([endpoint.url], clock);
  let changes = 0;
  c.onChange(() => changes++);
  c.start();
  await c.settled();
  assert.equal(c.rounds, 1);
  assert.equal(changes, 1);

  endpoint.setStatus(500);
  clock.advance(59_999);
  await c.settled();
  assert.equal(c.rounds, 1, "no round before --passHc has passed");
  clock.advance(1);
  await c.settled();
  assert.equal(c.rounds, 2);
  assert.equal(c.state().open, false, "a dependency going down closes the gate");
  assert.equal(changes, 2);

  endpoint.setStatus(200);
  clock.advance(9_999);
  await c.settled();
  assert.equal(c.rounds, 2, "no round before --failHc has passed");
  clock.advance(1);
  await c.settled();
  assert.equal(c.rounds, 3);
  assert.deepEqual(c.state(), { open: true }, "coming back up opens it again");
  assert.equal(changes, 3);
  c.stop();
});

Deno.test("DependencyChecker.stop() cancels the next round", async () => {
  await using endpoint = httpEndpoint(200);
  const clock = new ManualClock();
  const c = checker([endpoint.url], clock);
  c.start();
  await c.settled();
  assert.equal(clock.pending, 1);
  c.stop();
  assert.equal(clock.pending, 0);
});

Deno.test("DependencyChecker.stop() aborts a probe in flight", async () => {
  await using endpoint = silentEndpoint();
  const c = checker([`http://127.0.0.1:${endpoint.port}/`], new ManualClock(), 60_000);
  c.start();
  c.stop();
  await c.settled();
  assert.equal(c.rounds, 0);
});

Deno.test("DependencyChecker reports every probe as a dependency event, with the state before it", async () => {
  await using endpoint = httpEndpoint(503);
  const clock = new ManualClock();
  const events = new EventBus();
  const seen: LockEvent[] = [];
  events.on((e) => seen.push(e));
  const c = new DependencyChecker({
    targets: [parseCheckTarget(endpoint.url)],
    passIntervalMs: 60_000,
    failIntervalMs: 10_000,
    timeoutMs: 2_000,
    clock,
    events,
  });
  c.start();
  await c.settled();
  endpoint.setStatus(200);
  clock.advance(10_000);
  await c.settled();
  c.stop();
  const probes = seen.map((e) => e.type === "dependency" && [e.endpoint, e.up, e.was, e.error]);
  assert.deepEqual(probes, [
    [endpoint.url, false, undefined, "HTTP 503 Service Unavailable"],
    [endpoint.url, true, false, undefined],
  ]);
  assert.ok(seen.every((e) => e.type === "dependency" && e.durationMs >= 0));
});
