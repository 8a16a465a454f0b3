/**
 * The node gates: `--cooldown` paces grants, `--maxLoad` and `--maxPressure`
 * hold grants back while the node is busy. Module tests drive each with an
 * injected source and a manual clock; one test reads the real sources, and
 * black-box tests run the program with the flags.
 */
import assert from "node:assert/strict";
import { EventBus } from "../../../lib/core/events.ts";
import { Gates } from "../../../lib/core/gates.ts";
import { LockService, type Outcome } from "../../../lib/core/service.ts";
import { CooldownGate } from "../../../lib/gates/cooldown.ts";
import {
  LOAD_SAMPLE_MS,
  loadGate,
  oneMinuteLoad,
  parsePressure,
  PRESSURE_SAMPLE_MS,
  pressureAvailable,
  pressureGate,
  readPressure,
} from "../../../lib/gates/host.ts";
import { createHandler } from "../../../lib/http/handler.ts";
import { MemoryLockStore } from "../../../lib/stores/memory.ts";
import { ManualClock } from "../../_clock.ts";
import { runProgram, startProgram } from "../../_program.ts";

async function flush() {
  for (let i = 0; i < 5; i++) await null;
}

Deno.test("CooldownGate closes for the pause after each grant, and opens by itself", () => {
  const clock = new ManualClock();
  const events = new EventBus();
  const gate = new CooldownGate({ cooldownMs: 5_000, events, clock });
  let changes = 0;
  gate.onChange(() => changes++);
  assert.deepEqual(gate.state(), { open: true });
  events.emit({
    type: "granted",
    id: "a",
    token: "abcdef",
    durationMs: 1,
    requestedMs: undefined,
    waitedMs: 0,
  });
  assert.deepEqual(gate.state(), {
    open: false,
    denial: { reason: "cooldown", cooldownMs: 5_000, retryAfterMs: 5_000 },
  });
  clock.advance(4_000);
  const state = gate.state();
  assert.ok(!state.open && state.denial.retryAfterMs === 1_000);
  clock.advance(1_000);
  assert.deepEqual(gate.state(), { open: true });
  assert.equal(changes, 2, "closed, then opened");
  gate.stop();
  assert.equal(clock.pending, 0);
});

Deno.test("CooldownGate paces waiting clients even while slots are free", async () => {
  const clock = new ManualClock();
  const events = new EventBus();
  const store = new MemoryLockStore(5, { clock });
  const cooldown = new CooldownGate({ cooldownMs: 10_000, events, clock });
  const service = new LockService({
    store,
    clock,
    events,
    maxDurationMs: 60_000,
    gates: new Gates([cooldown], events),
  });
  const granted: string[] = [];
  const waits = ["a", "b", "c"].map((id) =>
    Promise.resolve(service.acquire({ durationMs: 60_000, id, waitMs: 60_000 })).then(
      (o: Outcome) => o.granted && granted.push(id),
    )
  );
  await flush();
  assert.deepEqual(granted, ["a"], "one grant, then the pause");
  const now = await service.acquire({ durationMs: 1_000, id: "impatient" });
  assert.ok(!now.granted && now.denial.reason === "cooldown");
  clock.advance(10_000);
  await flush();
  assert.deepEqual(granted, ["a", "b"]);
  clock.advance(10_000);
  await flush();
  assert.deepEqual(granted, ["a", "b", "c"]);
  await Promise.all(waits);
  service.close();
  cooldown.stop();
  store.close();
});

Deno.test("loadGate() is closed while the sampled load is above the limit, and says so", () => {
  const clock = new ManualClock();
  let load = 1.5;
  const gate = loadGate(4, { read: () => load, clock });
  gate.start();
  assert.deepEqual(gate.state(), { open: true });
  load = 7.25;
  clock.advance(LOAD_SAMPLE_MS);
  assert.deepEqual(gate.state(), {
    open: false,
    denial: { reason: "load", load: 7.25, max: 4, retryAfterMs: LOAD_SAMPLE_MS },
  });
  load = 4;
  clock.advance(LOAD_SAMPLE_MS);
  assert.deepEqual(gate.state(), { open: true }, "at the limit is fine");
  gate.stop();
  assert.equal(clock.pending, 0);
});

Deno.test("loadGate() counts a reading that fails as open", () => {
  const clock = new ManualClock();
  const gate = loadGate(1, {
    read: () => {
      throw new Error("no loadavg");
    },
    clock,
  });
  gate.start();
  assert.deepEqual(gate.state(), { open: true });
  gate.stop();
});

Deno.test("pressureGate() is closed while any resource is above the limit, naming the first", () => {
  const clock = new ManualClock();
  let pressure = { cpu: 5, io: 1, memory: 0 };
  const gate = pressureGate(20, { read: () => pressure, clock });
  let changes = 0;
  gate.onChange(() => changes++);
  gate.start();
  assert.deepEqual(gate.state(), { open: true });
  pressure = { cpu: 5, io: 35.5, memory: 40 };
  clock.advance(PRESSURE_SAMPLE_MS);
  assert.deepEqual(gate.state(), {
    open: false,
    denial: {
      reason: "pressure",
      resource: "io",
      percent: 35.5,
      max: 20,
      retryAfterMs: PRESSURE_SAMPLE_MS,
    },
  });
  pressure = { cpu: 0, io: 0, memory: 0 };
  clock.advance(PRESSURE_SAMPLE_MS);
  assert.deepEqual(gate.state(), { open: true });
  assert.ok(changes >= 2);
  gate.stop();
});

Deno.test("parsePressure() reads some avg10 from a /proc/pressure file", () => {
  const text = "some avg10=14.40 avg60=14.32 avg300=7.53 total=792103640\n" +
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
  assert.equal(parsePressure(text), 14.4);
  assert.throws(() => parsePressure("nonsense"), /not pressure stall information/);
});

Deno.test("the node gates read the real load average and /proc/pressure where they exist", async (t) => {
  await t.step("Deno.loadavg()", () => {
    const load = oneMinuteLoad();
    assert.ok(Number.isFinite(load) && load >= 0, String(load));
  });
  await t.step({
    name: "/proc/pressure",
    ignore: !pressureAvailable(),
    fn: () => {
      const pressure = readPressure();
      for (const percent of Object.values(pressure)) {
        assert.ok(percent >= 0 && percent <= 100, JSON.stringify(pressure));
      }
    },
  });
  if (!pressureAvailable()) {
    console.error("SKIPPED /proc/pressure: this kernel reports no pressure stall information");
  }
});

Deno.test("handler answers a closed node gate 423 with its reason and Retry-After", async () => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(1, { clock });
  const gate = loadGate(2, { read: () => 3.5, clock });
  gate.start();
  const service = new LockService({
    store,
    clock,
    maxDurationMs: 60_000,
    gates: new Gates([gate]),
  });
  const handler = createHandler({ service, defaultDurationMs: 10_000 });
  const res = await handler(new Request("http://localhost/"));
  assert.equal(res.status, 423);
  assert.equal(res.headers.get("Retry-After"), "5");
  assert.equal(await res.text(), "Locked: the node's load average is 3.50, above 2\n");
  gate.stop();
  service.close();
  store.close();
});

Deno.test("server paces grants with --cooldown and shows its gates in /status", async () => {
  await using server = await startProgram([
    "--locks",
    "5",
    "--cooldown",
    "30s",
    "--maxLoad",
    "100000",
  ]);
  const first = await fetch(`${server.url}/?id=a`);
  assert.equal(first.status, 200);
  await first.body?.cancel();
  const second = await fetch(`${server.url}/?id=b`, { headers: { Accept: "application/json" } });
  assert.equal(second.status, 423);
  const retryAfter = Number(second.headers.get("Retry-After"));
  assert.ok(retryAfter >= 29 && retryAfter <= 30, `Retry-After ${retryAfter}`);
  const body = await second.json();
  assert.equal(body.reason, "cooldown");
  assert.match(body.message, /^Locked: at most one grant every 30s; the next in /);
  const status = await (await fetch(`${server.url}/status`)).json();
  assert.deepEqual(
    status.gates.map((g: { name: string; open: boolean }) => [g.name, g.open]),
    [["dependencies", true], ["load", true], ["cooldown", false]],
  );
  assert.equal(status.locking.reason, "cooldown");
});

Deno.test("server refuses --maxPressure where the kernel has no pressure stall information, else runs with it", async () => {
  if (pressureAvailable()) {
    await using server = await startProgram(["--maxPressure", "100"]);
    const res = await fetch(`${server.url}/`);
    assert.equal(res.status, 200);
    await res.body?.cancel();
    return;
  }
  const { code, stderr } = await runProgram(["--maxPressure", "20"]);
  assert.equal(code, 2);
  assert.match(stderr, /^startup-lock: Cannot use --maxPressure: this kernel reports no pressure/);
});
