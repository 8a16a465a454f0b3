/**
 * Facts of the README and the docs pages checked against the code: snippets
 * still copied from their files or read by a test, the Operations page's
 * tables of metrics (against a real scrape), alerts and log events, and the
 * Kubernetes snippets for the bearer token (against the manifests and the API
 * schemas). Links are checked in links_test.ts.
 */
import assert from "node:assert/strict";
import { DaemonSet, Deployment } from "npm:kubernetes-models@5.1.0/apps/v1";
import { Secret } from "npm:kubernetes-models@5.1.0/v1";
import { parse, parseAllDocuments } from "npm:yaml@2.9.1";
import {
  EVENT_TYPES,
  EventBus,
  type LockEvent,
  type LockEventType,
} from "../../lib/core/events.ts";
import { LockService } from "../../lib/core/service.ts";
import { checkAuthToken } from "../../lib/auth_token.ts";
import { Metrics } from "../../lib/observers/metrics.ts";
import { eventFields } from "../../lib/observers/event_log.ts";
import { SERVER_LOG_EVENTS } from "../../lib/log_events.ts";
import { ENV_VARIABLES } from "../../lib/commands/permissions.ts";
import { MemoryLockStore } from "../../lib/stores/memory.ts";
import { tokenPrefix } from "../../lib/token.ts";
import { familyOf, metricFamilies, type MetricFamily, unknownMetrics } from "../_exposition.ts";
import { startProgram } from "../_program.ts";
import {
  codeSpans,
  docFiles,
  docSection,
  docText,
  fileBlocks,
  readmeBlock,
  readmeBlocks,
  tableRows,
} from "../_readme.ts";
import { which } from "../_which.ts";

const ROOT = new URL("../../", import.meta.url);

/** Every `*_test.ts` below `dir`, in its folders by layer. */
function testFiles(dir: URL): URL[] {
  return [...Deno.readDirSync(dir)].flatMap((e) => {
    if (e.isDirectory) return testFiles(new URL(`${e.name}/`, dir));
    return e.name.endsWith("_test.ts") ? [new URL(e.name, dir)] : [];
  });
}

/** A file's text with shell-style comment markers removed, so commands kept as comments count. */
function uncommented(text: string): string {
  return text.split("\n").map((l) => l.replace(/^\s*#\s?/, "")).join("\n");
}

Deno.test("doc blocks marked 'from' are still copies of their files", () => {
  const from = readmeBlocks().filter((b) => b.mark?.kind === "from");
  assert.ok(from.length > 20, `only ${from.length} blocks marked 'from': is the pattern right?`);
  for (const block of from) {
    const path = block.mark!.value;
    const text = Deno.readTextFileSync(new URL(path, ROOT));
    assert.ok(
      text.includes(block.code) || uncommented(text).includes(block.code),
      `${block.file} line ${block.line}: the block is not a copy of ${path}`,
    );
  }
});

Deno.test("doc blocks marked 'block' are each read by a test", () => {
  const tests = testFiles(new URL("tests/", ROOT))
    .map((url) => Deno.readTextFileSync(url))
    .join("\n");
  for (const block of readmeBlocks().filter((b) => b.mark?.kind === "block")) {
    assert.ok(
      tests.includes(`readmeBlock("${block.mark!.value}")`),
      `${block.file} line ${block.line}: no test reads block "${block.mark!.value}"`,
    );
  }
});

/** The deployment pages, whose every snippet must be checked: whole pages, or one section. */
const DEPLOY_PAGES: { file: string; heading?: string }[] = [
  { file: "docs/install.md", heading: "Download the executable" },
  { file: "docs/systemd.md" },
  { file: "docs/container.md" },
  { file: "docs/kubernetes.md" },
];

Deno.test("every snippet of the deployment pages is checked by a test or copied from a checked file", () => {
  for (const { file, heading } of DEPLOY_PAGES) {
    const blocks = fileBlocks(file).filter((b) => heading === undefined || b.heading === heading);
    assert.ok(blocks.length > 0, `${file} has no snippet${heading ? ` under ${heading}` : ""}`);
    for (const block of blocks) {
      assert.ok(block.mark, `${file} line ${block.line}: an unmarked snippet`);
    }
  }
});

/** The text of the README and of every docs page. */
const DOCS_TEXT = docFiles().map(docText).join("\n");

/** The Operations page, which holds the tables of metrics, alerts and log events. */
const OPERATIONS = "docs/operations.md";

/** The metrics of the real program, scraped with a passing `--check` so every label shows. */
async function scrapeProgram(): Promise<string> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const connection of listener) connection.close();
  })().catch(() => {});
  try {
    const port = (listener.addr as Deno.NetAddr).port;
    // --locksPerCore, so that startup_lock_cores is exported too.
    await using server = await startProgram([
      "--check",
      `tcp://127.0.0.1:${port}`,
      "--locksPerCore",
      "1",
    ]);
    await server.waitForLog(/All dependencies are up/);
    const response = await fetch(`${server.url}/metrics`);
    assert.equal(response.status, 200);
    return await response.text();
  } finally {
    listener.close();
    await accepting;
  }
}

/**
 * What `Metrics` renders with every optional figure known: the process's, as
 * where `/proc/self/fd` can be read, and the cores, as with `--locksPerCore`.
 */
async function renderAllMetrics(): Promise<string> {
  const store = new MemoryLockStore(1);
  const service = new LockService({ store, maxDurationMs: 60_000 });
  const metrics = new Metrics(new EventBus(), {
    status: () => service.status(),
    process: () => ({ startTimeSeconds: 1, residentMemoryBytes: 1, openFds: 1 }),
    cores: 1,
  });
  try {
    return await metrics.render();
  } finally {
    metrics.close();
    service.close();
    store.close();
  }
}

/** The metrics table of docs/operations.md: metric → type and labels. */
function metricsTable(): Map<string, MetricFamily> {
  const rows = tableRows(docSection(OPERATIONS, "## Metrics"), "metric");
  const table = new Map<string, MetricFamily>();
  for (const [metric = "", type = "", labels = ""] of rows) {
    const [name] = codeSpans(metric);
    assert.ok(name, `a row of the metrics table names no metric: ${metric}`);
    assert.ok(!table.has(name), `${name} is listed twice in the metrics table`);
    table.set(name, { type, labels: new Set(codeSpans(labels)) });
  }
  return table;
}

Deno.test("The metrics table of docs/operations.md lists every metric the server exports, and only those", async (t) => {
  const scraped = metricFamilies(await scrapeProgram());
  // Metrics the program leaves out where it cannot measure them (process_open_fds).
  const possible = new Map([...metricFamilies(await renderAllMetrics()), ...scraped]);
  const table = metricsTable();

  await t.step("every metric of a real scrape is in the table, with its type and labels", () => {
    for (const [name, family] of scraped) {
      const row = table.get(name);
      assert.ok(
        row,
        `${name} is exported but missing from the metrics table of docs/operations.md`,
      );
      assert.equal(row.type, family.type, `${name}: the docs say ${row.type}`);
      assert.deepEqual([...row.labels].sort(), [...family.labels].sort(), `${name}: labels`);
    }
  });
  await t.step("every metric of the table exists", () => {
    for (const [name, row] of table) {
      const family = possible.get(name);
      assert.ok(
        family,
        `the metrics table of docs/operations.md lists ${name}, which the server never exports`,
      );
      assert.equal(row.type, family.type, `${name}: the docs say ${row.type}`);
    }
  });
  await t.step("every metric the docs name anywhere exists", () => {
    for (const [name] of DOCS_TEXT.matchAll(/\b(?:startup_lock|process)_[a-z0-9_]+\b/g)) {
      assert.ok(familyOf(name, possible), `the docs name ${name}, which is not a metric`);
    }
  });
  await t.step("the docs' queries use only metrics and labels that exist", () => {
    assert.deepEqual(unknownMetrics(readmeBlock("promql"), possible), []);
  });
});

/** The queries of docs/operations.md, one per comment: each comment line starts the next one. */
function readmeQueries(): string[] {
  const queries: string[] = [];
  for (const line of readmeBlock("promql").split("\n")) {
    if (line.startsWith("#")) queries.push("");
    else if (queries.length) queries[queries.length - 1] += ` ${line.trim()}`;
  }
  return queries.map((q) => q.trim());
}

const PROMTOOL = which("promtool");

Deno.test({
  name: "The PromQL queries of docs/operations.md parse (promtool check rules)",
  ignore: !PROMTOOL && !Deno.env.get("CI"),
  fn: async () => {
    const queries = readmeQueries();
    assert.equal(queries.length, 6);
    const rules = queries.map((expr, i) =>
      `      - record: readme:query_${i}\n        expr: ${expr}`
    );
    const file = await Deno.makeTempFile({ suffix: ".yaml" });
    try {
      await Deno.writeTextFile(
        file,
        `groups:\n  - name: readme\n    rules:\n${rules.join("\n")}\n`,
      );
      const out = await new Deno.Command(PROMTOOL!, { args: ["check", "rules", file] }).output();
      const decode = (b: Uint8Array) => new TextDecoder().decode(b);
      assert.equal(out.code, 0, decode(out.stdout) + decode(out.stderr));
    } finally {
      await Deno.remove(file);
    }
  },
});

/** One event of every type, with every field the type has. */
const SAMPLE_EVENTS: { [T in LockEventType]: Extract<LockEvent, { type: T }> } = {
  granted: {
    type: "granted",
    id: "web-1",
    token: "abcdef",
    durationMs: 60_000,
    requestedMs: 7_200_000,
    waitedMs: 1_500,
  },
  released: { type: "released", id: "web-1", token: "abcdef", heldMs: 42_000 },
  expired: { type: "expired", id: "web-1", token: "abcdef", heldMs: 60_000 },
  renewed: {
    type: "renewed",
    id: "web-1",
    token: "abcdef",
    durationMs: 120_000,
    requestedMs: undefined,
  },
  denied: { type: "denied", id: "web-2", reason: "busy", retryAfterMs: 1_000 },
  queued: { type: "queued", id: "web-3", position: 1, waiting: 1 },
  left_queue: { type: "left_queue", id: "web-3", why: "timeout", waitedMs: 30_000 },
  handed_back: { type: "handed_back", id: "web-1", token: "abcdef" },
  dependency: {
    type: "dependency",
    endpoint: "tcp://db:5432",
    up: false,
    was: true,
    error: "Connection refused",
    previousError: undefined,
    durationMs: 0.5,
  },
  gate: { type: "gate", gate: "load", open: false, reason: "load" },
  store: { type: "store", up: true, error: undefined },
  edge_refused: { type: "edge_refused", reason: "unauthorized" },
};

/**
 * Events that the log writer and the server's own lines add, beside the
 * core's: their fields besides `event`.
 */
const WRITER_EVENTS: Record<string, string[]> = {
  log_dropped: ["count"],
  ...Object.fromEntries(Object.keys(SERVER_LOG_EVENTS).map((event) => [event, []])),
};

Deno.test("The log tables of docs/operations.md list every event with its fields", async (t) => {
  const logs = docSection(OPERATIONS, "## Logs");
  const rows = tableRows(logs, "`event`");
  const table = new Map(rows.map(([event = "", , , fields = ""]) => {
    const [name] = codeSpans(event);
    assert.ok(name, `a row of the log table names no event: ${event}`);
    return [name, codeSpans(fields)];
  }));

  await t.step("every event type of the core has a row with its fields", () => {
    for (const type of EVENT_TYPES) {
      const fields = table.get(type);
      assert.ok(fields, `event ${type} is missing from the log table of docs/operations.md`);
      // `event` is the type; `type` is left undefined, so a line never carries it.
      const expected = Object.keys(eventFields(SAMPLE_EVENTS[type]))
        .filter((f) => f !== "event" && f !== "type");
      assert.deepEqual([...fields].sort(), expected.sort(), `the fields of ${type}`);
    }
  });
  await t.step("the server's own lines have rows at their levels", () => {
    for (const [event, level] of Object.entries(SERVER_LOG_EVENTS)) {
      const row = rows.find(([name = ""]) => codeSpans(name)[0] === event);
      assert.ok(row, `event ${event} is missing from the log table of docs/operations.md`);
      assert.deepEqual(codeSpans(row[1] ?? ""), [level], `the level of ${event}`);
    }
  });
  await t.step("the log writer's events have rows too, and no other event does", () => {
    for (const [event, fields] of Object.entries(WRITER_EVENTS)) {
      assert.deepEqual(table.get(event), fields, `the fields of ${event}`);
    }
    const known = new Set<string>([...EVENT_TYPES, ...Object.keys(WRITER_EVENTS)]);
    for (const event of table.keys()) assert.ok(known.has(event), `${event} is not an event`);
  });
  await t.step("the field table explains every field, and only those", () => {
    const explained = tableRows(logs, "field").flatMap(([field = ""]) => codeSpans(field));
    const used = new Set([...table.values()].flat());
    assert.deepEqual([...new Set(explained)].sort(), [...used].sort());
  });
  await t.step("it gives the length of the token prefix that events carry", () => {
    const n = tokenPrefix("x".repeat(22)).length;
    assert.match(logs, new RegExp(`the first ${n} characters of (its|the lock's) token`));
  });
});

type Json = Record<string, unknown>;

/** Parses a YAML snippet of the docs, which may be indented as in its file. */
function yamlSnippet(code: string): Json {
  const indent = Math.min(
    ...code.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#")).map((l) =>
      l.length - l.trimStart().length
    ),
  );
  return parse(code.split("\n").map((l) => l.slice(indent)).join("\n")) as Json;
}

/** A strategic merge patch, as `kubectl patch` applies it: lists of objects merge by name. */
function strategicMerge(base: unknown, patch: unknown): unknown {
  const key = (item: unknown) => {
    const o = item as Json | null;
    return o && typeof o === "object" ? (o.name ?? o.mountPath) : undefined;
  };
  if (Array.isArray(base) && Array.isArray(patch)) {
    const merged = [...base];
    for (const item of patch) {
      const i = key(item) === undefined ? -1 : merged.findIndex((b) => key(b) === key(item));
      if (i === -1) merged.push(item);
      else merged[i] = strategicMerge(merged[i], item);
    }
    return merged;
  }
  const isObject = (v: unknown): v is Json => !!v && typeof v === "object" && !Array.isArray(v);
  if (isObject(base) && isObject(patch)) {
    const merged: Json = { ...base };
    for (const [k, v] of Object.entries(patch)) merged[k] = strategicMerge(base[k], v);
    return merged;
  }
  return patch;
}

/** The first document of `file` under deploy/kubernetes/ of the given kind. */
function manifest(file: string, kind: string): Json {
  const text = Deno.readTextFileSync(new URL(`deploy/kubernetes/${file}`, ROOT));
  const doc = parseAllDocuments(text).map((d) => d.toJS() as Json).find((d) => d.kind === kind);
  assert.ok(doc, `${file} has no ${kind}`);
  return doc;
}

type Container = {
  name: string;
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: Json } }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
};
type PodSpec = {
  containers: Container[];
  initContainers?: Container[];
  volumes?: { name: string; secret?: { secretName: string } }[];
};
const podSpec = (workload: Json) =>
  (workload as { spec: { template: { spec: PodSpec } } }).spec.template.spec;

Deno.test("The Kubernetes auth snippets of docs/access-control.md give the server and the clients one token from Secrets", async (t) => {
  const secrets = parseAllDocuments(readmeBlock("auth-kubernetes-secret")).map((d) =>
    d.toJS() as { metadata: { name: string; namespace: string }; stringData: { token: string } }
  );
  const daemonSet = manifest("daemonset.yaml", "DaemonSet");

  await t.step("the Secrets are valid and hold one valid token", () => {
    assert.ok(secrets.length >= 2);
    for (const secret of secrets) new Secret(secret as never).validate();
    const names = new Set(secrets.map((s) => s.metadata.name));
    assert.equal(names.size, 1, "one name in every namespace");
    const tokens = new Set(secrets.map((s) => s.stringData.token));
    assert.equal(tokens.size, 1, "the same token everywhere");
    checkAuthToken([...tokens][0]!);
    const namespace = (daemonSet.metadata as { namespace: string }).namespace;
    assert.ok(secrets.some((s) => s.metadata.namespace === namespace), `one in ${namespace}`);
  });
  const secret = secrets[0]!;

  await t.step("the server's patch mounts the Secret where its variable points", () => {
    const patched = strategicMerge(daemonSet, yamlSnippet(readmeBlock("auth-kubernetes-server")));
    new DaemonSet(patched as never).validate();
    const spec = podSpec(patched as Json);
    assert.equal(spec.containers.length, podSpec(daemonSet).containers.length, "no new container");
    const server = spec.containers.find((c) => c.name === "startup-lock")!;
    const variable = server.env?.find((e) => e.name === "STARTUP_LOCK_AUTH_TOKEN_FILE");
    assert.ok(variable && ENV_VARIABLES.includes(variable.name));
    const mount = server.volumeMounts?.find((m) => variable.value?.startsWith(`${m.mountPath}/`));
    assert.ok(mount?.readOnly, `a read-only mount holds ${variable.value}`);
    const volume = spec.volumes?.find((v) => v.name === mount.name);
    assert.equal(volume?.secret?.secretName, secret.metadata.name);
    const key = variable.value!.slice(mount.mountPath.length + 1);
    assert.ok(key in secret.stringData, `the Secret has a key ${key}`);
  });

  await t.step("the client's variable comes from the same Secret", () => {
    const example = manifest("example-init-container.yaml", "Deployment");
    const snippet = yamlSnippet(readmeBlock("auth-kubernetes-client"));
    const patched = strategicMerge(example, { spec: { template: { spec: snippet } } });
    new Deployment(patched as never).validate();
    const client = podSpec(patched as Json).initContainers?.find((c) => c.name === "startup-lock");
    assert.ok(client, "the example's init container");
    assert.equal(
      podSpec(patched as Json).initContainers?.length,
      podSpec(example).initContainers?.length,
      "no new init container",
    );
    const variable = client.env?.find((e) => e.name === "STARTUP_LOCK_AUTH_TOKEN");
    assert.ok(variable && ENV_VARIABLES.includes(variable.name));
    assert.deepEqual(variable.valueFrom?.secretKeyRef, {
      name: secret.metadata.name,
      key: Object.keys(secret.stringData)[0],
    });
  });
});

Deno.test("The alert table of docs/operations.md lists every rule of deploy/prometheus/alerts.yaml, and only those", () => {
  const file = parse(Deno.readTextFileSync(new URL("deploy/prometheus/alerts.yaml", ROOT))) as {
    groups: { rules: { alert: string }[] }[];
  };
  const rules = file.groups.flatMap((g) => g.rules.map((r) => r.alert));
  const table = tableRows(docSection(OPERATIONS, "## Alerts"), "alert").map(([alert = ""]) =>
    codeSpans(alert)[0]
  );
  assert.deepEqual(table, rules);
});
