/**
 * Metrics: the subscriber's counts after a known sequence on a manual clock,
 * the exposition format's escaping, the `/metrics` route, and the real
 * program scraped and checked by `promtool check metrics`.
 */
import assert from "node:assert/strict";
import { EventBus } from "../../../lib/core/events.ts";
import { Gates } from "../../../lib/core/gates.ts";
import { LockService, type Outcome } from "../../../lib/core/service.ts";
import { DependencyChecker } from "../../../lib/gates/dependencies.ts";
import { staticToken } from "../../../lib/http/auth.ts";
import { createHandler } from "../../../lib/http/handler.ts";
import {
  DURATION_BUCKETS_SECONDS,
  escapeHelp,
  escapeLabel,
  Metrics,
  METRICS_CONTENT_TYPE,
  processFigures,
} from "../../../lib/observers/metrics.ts";
import { parseCheckTarget } from "../../../lib/probes.ts";
import { MemoryLockStore } from "../../../lib/stores/memory.ts";
import { parse } from "npm:yaml@2.9.1";
import { ManualClock } from "../../_clock.ts";
import { metricFamilies, unknownMetrics } from "../../_exposition.ts";
import { startProgram } from "../../_program.ts";
import { which } from "../../_which.ts";
import { runWithInput } from "../../../scripts/_with_input.ts";

const ALERTS = new URL("../../../deploy/prometheus/alerts.yaml", import.meta.url).pathname;

const PROMTOOL = which("promtool");
/** CI installs promtool (`.ci/run`) and must never skip its tests. */
const IN_CI = Boolean(Deno.env.get("CI"));
if (!PROMTOOL && !IN_CI) {
  console.error("SKIPPED promtool tests: promtool not found (apt-get install -y prometheus)");
}

/** Runs promtool with `input` on stdin; its exit code and everything it wrote. */
async function promtool(args: string[], input = ""): Promise<{ code: number; output: string }> {
  assert.ok(PROMTOOL, "promtool not found: .ci/run installs it (apt-get install -y prometheus)");
  const out = await runWithInput(PROMTOOL, args, input);
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, output: (decode(out.stdout) + decode(out.stderr)).trim() };
}

/** Every sample of an exposition, by its series as written (`name{labels}`). */
function samples(text: string): Record<string, number> {
  const found: Record<string, number> = {};
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    const value = line.slice(space + 1);
    found[line.slice(0, space)] = value === "+Inf" ? Infinity : Number(value);
  }
  return found;
}

/** The samples of one histogram, from its cumulative bucket counts. */
function histogram(name: string, cumulative: number[], sum: number): Record<string, number> {
  assert.equal(cumulative.length, DURATION_BUCKETS_SECONDS.length);
  const count = cumulative.at(-1)!;
  return {
    ...Object.fromEntries(
      DURATION_BUCKETS_SECONDS.map((le, i) => [`${name}_bucket{le="${le}"}`, cumulative[i]!]),
    ),
    [`${name}_bucket{le="+Inf"}`]: count,
    [`${name}_sum`]: sum,
    [`${name}_count`]: count,
  };
}

const FIGURES = { startTimeSeconds: 1_767_225_600.5, residentMemoryBytes: 52_428_800, openFds: 9 };
const DB = "http://db:9200/health";

function setup() {
  const clock = new ManualClock();
  const events = new EventBus();
  const store = new MemoryLockStore(2, { clock });
  let dbUp = true;
  const checker = new DependencyChecker({
    targets: [parseCheckTarget(DB)],
    passIntervalMs: 60_000,
    failIntervalMs: 10_000,
    timeoutMs: 2_000,
    clock,
    events,
    // Each probe takes 250 ms of the manual clock, once the step that started it is over.
    probe: async () => {
      await Promise.resolve();
      clock.advance(250);
      if (!dbUp) throw new Error("HTTP 503");
    },
  });
  const gates = new Gates([checker], events);
  const service = new LockService({ store, gates, events, clock, maxDurationMs: 3_600_000 });
  const metrics = new Metrics(events, {
    status: () => service.status(),
    process: () => FIGURES,
    logLinesDropped: () => 3,
  });
  return {
    clock,
    events,
    checker,
    service,
    metrics,
    setDbUp: (up: boolean) => (dbUp = up),
    [Symbol.dispose]() {
      metrics.close();
      gates.stop();
      service.close();
    },
  };
}

Deno.test("Metrics counts a known sequence of grants, denials, releases and expiries exactly", async () => {
  using s = setup();
  const { clock, service, checker } = s;
  const acquire = (durationMs: number, id: string) => service.acquire({ durationMs, id });
  const denied = (outcome: unknown, reason: string) => {
    const o = outcome as Outcome;
    assert.ok(!o.granted && o.denial.reason === reason, JSON.stringify(o));
  };

  denied(acquire(10_000, "early"), "starting"); // before the first check round
  checker.start();
  await checker.settled(); // db up, in 250 ms; the dependencies gate opens
  const a = acquire(10_000, "a") as Outcome;
  const b = acquire(5_000, "b") as Outcome;
  assert.ok(a.granted && b.granted);
  denied(acquire(10_000, "c"), "busy");
  const d = service.acquire({ durationMs: 120_000, id: "d", waitMs: 30_000 });
  assert.ok(d instanceof Promise);
  denied(acquire(10_000, "e"), "queued");
  clock.advance(2_000);
  service.release(a.lease.token); // held 2 s; d is granted after waiting 2 s
  assert.ok((await d).granted);
  service.renew(b.lease.token, 5_000); // now expires 7 s after its grant
  clock.advance(5_000); // b expires
  s.setDbUp(false);
  clock.advance(53_000); // the next check round: db down, the gate closes
  await checker.settled();
  denied(acquire(10_000, "f"), "dependencies");

  const text = await s.metrics.render();
  assert.deepEqual(samples(text), {
    "startup_lock_slots": 2,
    "startup_lock_slots_held": 1,
    "startup_lock_waiting_clients": 0,
    "startup_lock_grants_total": 3,
    'startup_lock_denials_total{reason="starting"}': 1,
    'startup_lock_denials_total{reason="dependencies"}': 1,
    'startup_lock_denials_total{reason="recovering"}': 0,
    'startup_lock_denials_total{reason="cooldown"}': 0,
    'startup_lock_denials_total{reason="load"}': 0,
    'startup_lock_denials_total{reason="pressure"}': 0,
    'startup_lock_denials_total{reason="busy"}': 1,
    'startup_lock_denials_total{reason="queued"}': 1,
    'startup_lock_denials_total{reason="queue_full"}': 0,
    'startup_lock_denials_total{reason="shutting_down"}': 0,
    'startup_lock_denials_total{reason="store"}': 0,
    'startup_lock_denials_total{reason="superseded"}': 0,
    'startup_lock_denials_total{reason="cancelled"}': 0,
    'startup_lock_denials_total{reason="unauthorized"}': 0,
    'startup_lock_denials_total{reason="invalid"}': 0,
    'startup_lock_releases_total{how="released"}': 1,
    'startup_lock_releases_total{how="expired"}': 1,
    "startup_lock_log_lines_dropped_total": 3,
    "startup_lock_renewals_total": 1,
    "startup_lock_hand_backs_total": 0,
    // Waited 0, 0 and 2 s.
    ...histogram("startup_lock_wait_seconds", [2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3], 2),
    // Held 2 s (released) and 7 s (expired).
    ...histogram("startup_lock_hold_seconds", [0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2], 9),
    [`startup_lock_dependency_up{endpoint="${DB}"}`]: 0,
    [`startup_lock_dependency_check_duration_seconds{endpoint="${DB}"}`]: 0.25,
    [`startup_lock_dependency_checks_total{endpoint="${DB}",result="up"}`]: 1,
    [`startup_lock_dependency_checks_total{endpoint="${DB}",result="down"}`]: 1,
    'startup_lock_gate_open{gate="dependencies"}': 0,
    'startup_lock_gate_closures_total{gate="dependencies"}': 1,
    "startup_lock_store_up": 1,
    "startup_lock_store_failures_total": 0,
    "process_start_time_seconds": FIGURES.startTimeSeconds,
    "process_resident_memory_bytes": FIGURES.residentMemoryBytes,
    "process_open_fds": FIGURES.openFds,
  });
});

Deno.test("Metrics never observes a negative hold time when the wall clock is set back under a lock", async () => {
  using s = setup();
  const { clock, service, checker } = s;
  checker.start();
  await checker.settled();
  const a = service.acquire({ durationMs: 10_000, id: "a" }) as Outcome;
  const b = service.acquire({ durationMs: 10_000, id: "b" }) as Outcome;
  assert.ok(a.granted && b.granted);
  clock.advance(1_000);
  clock.jumpWall(-60_000); // NTP steps the clock back a minute
  service.release(a.lease.token);
  clock.advance(9_000); // b expires
  const values = samples(await s.metrics.render());
  assert.equal(values["startup_lock_hold_seconds_count"], 2);
  // A histogram's sum only grows: a negative observation reads as a counter reset to rate().
  assert.ok(
    values["startup_lock_hold_seconds_sum"]! >= 0,
    String(values["startup_lock_hold_seconds_sum"]),
  );
  assert.equal(values['startup_lock_hold_seconds_bucket{le="0.1"}'], 2);
});

Deno.test("Metrics.render() gives every metric one # HELP and one # TYPE, before its samples", async () => {
  using s = setup();
  const text = await s.metrics.render();
  assert.ok(text.endsWith("\n"));
  const lines = text.split("\n").filter(Boolean);
  const declared = new Map<string, string>();
  for (const line of lines) {
    const help = /^# HELP (\S+) \S/.exec(line);
    const type = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line);
    if (help) {
      assert.ok(!declared.has(help[1]!), `HELP twice for ${help[1]}`);
      declared.set(help[1]!, "");
    } else if (type) {
      assert.equal(declared.get(type[1]!), "", `TYPE without HELP: ${line}`);
      declared.set(type[1]!, type[2]!);
    } else {
      const name = /^[a-z_]+/.exec(line)![0];
      const family = name.replace(/_(bucket|sum|count)$/, "");
      const type = declared.get(name) ?? declared.get(family);
      assert.ok(type, `a sample before its TYPE: ${line}`);
      assert.ok(name.startsWith("startup_lock_") || name.startsWith("process_"), name);
      assert.equal(name.endsWith("_total"), type === "counter", line);
    }
  }
});

Deno.test("Metrics leaves out process figures it does not have, and stops counting once closed", async () => {
  using s = setup();
  const metrics = new Metrics(s.events, { status: () => s.service.status(), process: () => ({}) });
  s.checker.start();
  await s.checker.settled();
  s.service.acquire({ durationMs: 1_000, id: "a" });
  metrics.close();
  s.service.acquire({ durationMs: 1_000, id: "b" });
  const text = await metrics.render();
  assert.doesNotMatch(text, /process_/);
  assert.equal(samples(text)["startup_lock_grants_total"], 1);
  assert.equal(samples(text)["startup_lock_slots_held"], 2);
});

Deno.test("Metrics exports startup_lock_cores only when --locksPerCore counted the cores", async () => {
  using s = setup();
  const perCore = new Metrics(s.events, { status: () => s.service.status(), cores: 3 });
  const fixed = new Metrics(s.events, { status: () => s.service.status() });
  try {
    const text = await perCore.render();
    assert.equal(samples(text)["startup_lock_cores"], 3);
    assert.match(text, /^# TYPE startup_lock_cores gauge$/m);
    assert.equal(samples(text)["startup_lock_slots"], 2);
    assert.doesNotMatch(await fixed.render(), /startup_lock_cores/);
  } finally {
    perCore.close();
    fixed.close();
  }
});

Deno.test("processFigures() reads the start time and resident memory; open fds only where /proc is readable", () => {
  const figures = processFigures();
  const now = Date.now() / 1000;
  assert.ok(figures.startTimeSeconds! <= now && figures.startTimeSeconds! > now - 3_600);
  assert.ok(figures.residentMemoryBytes! > 1_000_000);
  // Deno asks for --allow-all to read /proc/self/fd; the tests, like the program, lack it.
  let readable = true;
  try {
    Deno.readDirSync("/proc/self/fd");
  } catch {
    readable = false;
  }
  assert.equal(figures.openFds !== undefined, readable);
});

Deno.test("escapeLabel() and escapeHelp() escape as the exposition format asks", () => {
  assert.equal(escapeLabel('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assert.equal(escapeLabel("http://db:9200/?x=1"), "http://db:9200/?x=1");
  assert.equal(escapeHelp('a\\b"c\nd'), 'a\\\\b"c\\nd');
});

Deno.test("GET /metrics answers the exposition format and never takes a slot", async (t) => {
  using s = setup();
  const handler = createHandler({
    service: s.service,
    defaultDurationMs: 10_000,
    metrics: () => s.metrics.render(),
  });
  const call = async (method: string, path = "/metrics") =>
    await handler(new Request(`http://localhost${path}`, { method }));
  await t.step("GET", async () => {
    const response = await call("GET");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), METRICS_CONTENT_TYPE);
    const values = samples(await response.text());
    assert.equal(values["startup_lock_slots_held"], 0);
    assert.equal(values["startup_lock_grants_total"], 0);
  });
  await t.step("HEAD", async () => {
    const response = await call("HEAD");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), METRICS_CONTENT_TYPE);
    assert.equal(await response.text(), "");
    // RFC 9110: a HEAD answer's Content-Length is the GET's, never 0 for a body that is not empty.
    const get = new TextEncoder().encode(await s.metrics.render()).byteLength;
    assert.equal(response.headers.get("content-length"), String(get));
  });
  await t.step("another method is 405", async () => {
    const response = await call("POST");
    assert.equal(response.status, 405);
    assert.equal(response.headers.get("allow"), "GET, HEAD");
    await response.body?.cancel();
  });
  await t.step("no slot was taken", async () => {
    assert.equal((await s.service.status()).leases?.length, 0);
  });
  await t.step("without metrics the path is 404", async () => {
    const bare = createHandler({ service: s.service, defaultDurationMs: 10_000 });
    const response = await bare(new Request("http://localhost/metrics"));
    assert.equal(response.status, 404);
    await response.body?.cancel();
  });
});

Deno.test({
  name: "the program's /metrics counts real requests and passes promtool check metrics",
  ignore: !PROMTOOL && !IN_CI,
  fn: async () => {
    const dependency = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response("ok"),
    );
    await using _ = { [Symbol.asyncDispose]: () => dependency.shutdown() };
    const db = `http://127.0.0.1:${dependency.addr.port}/health`;
    await using server = await startProgram(["--locks", "1", "--check", db]);
    await server.waitForLog(/All dependencies are up/);
    const get = async (path: string, method = "GET") => {
      const response = await fetch(`${server.url}${path}`, { method });
      await response.body?.cancel();
      return response;
    };

    assert.equal((await get("/?id=a&duration=200ms")).status, 200);
    assert.equal((await get("/?id=b")).status, 423); // busy
    await server.waitForLog(/Lock of a expired/);
    const c = await get("/?id=c&duration=60");
    assert.equal(c.status, 200);
    const token = c.headers.get("lock-token");
    assert.equal((await get(`/locks/${token}?duration=60`, "PUT")).status, 200);
    assert.equal((await get("/?id=d")).status, 423); // busy
    assert.equal((await get(`/locks/${token}`, "DELETE")).status, 204);
    assert.equal((await get("/metrics", "HEAD")).status, 200);

    const response = await fetch(`${server.url}/metrics`);
    assert.equal(response.headers.get("content-type"), METRICS_CONTENT_TYPE);
    const text = await response.text();
    const values = samples(text);
    const expected: Record<string, number> = {
      "startup_lock_slots": 1,
      "startup_lock_slots_held": 0,
      "startup_lock_waiting_clients": 0,
      "startup_lock_grants_total": 2,
      'startup_lock_denials_total{reason="busy"}': 2,
      'startup_lock_denials_total{reason="starting"}': 0,
      'startup_lock_releases_total{how="released"}': 1,
      'startup_lock_releases_total{how="expired"}': 1,
      "startup_lock_renewals_total": 1,
      "startup_lock_wait_seconds_count": 2,
      "startup_lock_hold_seconds_count": 2,
      'startup_lock_hold_seconds_bucket{le="+Inf"}': 2,
      [`startup_lock_dependency_up{endpoint="${db}"}`]: 1,
      [`startup_lock_dependency_checks_total{endpoint="${db}",result="up"}`]: 1,
      'startup_lock_gate_open{gate="dependencies"}': 1,
      "startup_lock_store_up": 1,
    };
    for (const [series, value] of Object.entries(expected)) {
      assert.equal(values[series], value, series);
    }
    const started = values["process_start_time_seconds"]!;
    assert.ok(started > Date.now() / 1000 - 600 && started <= Date.now() / 1000, `${started}`);
    assert.ok(values["startup_lock_hold_seconds_sum"]! >= 0.2); // a held its 200 ms
    assert.ok(values["process_resident_memory_bytes"]! > 1_000_000);
    assert.ok(values[`startup_lock_dependency_check_duration_seconds{endpoint="${db}"}`]! >= 0);

    assert.deepEqual(await promtool(["check", "metrics"], text), { code: 0, output: "" });
  },
});

Deno.test({
  name: "promtool check rules accepts deploy/prometheus/alerts.yaml",
  ignore: !PROMTOOL && !IN_CI,
  fn: async () => {
    const { code, output } = await promtool(["check", "rules", ALERTS]);
    assert.equal(code, 0, output);
    assert.match(output, new RegExp(`SUCCESS: ${alertRules().length} rules found`));
  },
});

/** The rules of deploy/prometheus/alerts.yaml. */
function alertRules(): { alert: string; expr: string }[] {
  const doc = parse(Deno.readTextFileSync(ALERTS)) as {
    groups: { rules: { alert: string; expr: string }[] }[];
  };
  return doc.groups.flatMap((g) => g.rules);
}

Deno.test("the alert rules name only metrics and labels that the server exports", async () => {
  using s = setup();
  s.checker.start();
  await s.checker.settled(); // so the dependency metrics have samples, with their labels
  const families = metricFamilies(await s.metrics.render());
  const rules = alertRules();
  assert.ok(rules.length >= 2);
  for (const rule of rules) {
    assert.deepEqual(unknownMetrics(rule.expr, families), [], `${rule.alert}: ${rule.expr}`);
  }
  // The check itself sees a misspelt metric and a label the metric does not have.
  assert.deepEqual(
    unknownMetrics('startup_lock_grant_total + startup_lock_slots{gate="x"}', families),
    [
      "startup_lock_grant_total is not a metric the server exports",
      "startup_lock_slots has no label gate",
    ],
  );
});

Deno.test("GET /metrics stays open with a token, and counts requests refused at the edge", async () => {
  using s = setup();
  const handler = createHandler({
    service: s.service,
    defaultDurationMs: 10_000,
    metrics: () => s.metrics.render(),
    auth: staticToken("s3cret"),
  });
  const call = async (path: string, headers: Record<string, string> = {}) => {
    const response = await handler(new Request(`http://localhost${path}`, { headers }));
    await response.body?.cancel();
    return response.status;
  };
  assert.equal(await call("/"), 401);
  assert.equal(await call("/?duration=abc", { Authorization: "Bearer s3cret" }), 400);
  const scrape = await handler(new Request("http://localhost/metrics"));
  assert.equal(scrape.status, 200, "no token needed");
  const values = samples(await scrape.text());
  assert.equal(values['startup_lock_denials_total{reason="unauthorized"}'], 1);
  assert.equal(values['startup_lock_denials_total{reason="invalid"}'], 1);
  assert.equal(values["startup_lock_grants_total"], 0);
});
