/**
 * The manifests of `deploy/kubernetes/`: every document is valid against the
 * Kubernetes API schemas (the `kubernetes-models` package: Kubernetes 1.34 or later),
 * with no field the API does not know; and what they ask of the program
 * exists in it: the image of this version and its entrypoint, commands and
 * flags, the ports it listens on, the paths its probes ask, and a server for
 * every client to reach; and where the server keeps its state file: a hostPath
 * its user can write, handed over by the one container that may run as root.
 */
import assert from "node:assert/strict";
import { DaemonSet, Deployment, type IDaemonSet } from "npm:kubernetes-models@5.1.0/apps/v1";
import {
  type IContainer,
  type IEnvVar,
  type IHostPathVolumeSource,
  type IPodSecurityContext,
  type IPodSpec,
  type IProbe,
  type IService,
  type IVolumeMount,
  Namespace,
  Service,
} from "npm:kubernetes-models@5.1.0/v1";
import { parseAllDocuments } from "npm:yaml@2.9.1";
import { createProbeHandler } from "../lib/commands/hold.ts";
import { silentLogger } from "../lib/log.ts";
import { buildServer } from "../lib/server.ts";
import { VERSION } from "../lib/version.ts";
import { parseCommandLine, type ParsedCommandLine } from "./_command_line.ts";
import { readImageSpec } from "./_image_dockerfile.ts";
import { assembleImage, imageRunSkipReason, runInImage, startInImage } from "./_image_root.ts";

const ROOT = new URL("../", import.meta.url);
const DIR = new URL("deploy/kubernetes/", ROOT);
const FILES = [...Deno.readDirSync(DIR)]
  .filter((e) => e.isFile && e.name.endsWith(".yaml"))
  .map((e) => e.name)
  .sort();
const SERVER_FILE = "daemonset.yaml";
const HOST_NETWORK_FILE = "daemonset-hostnetwork.yaml";
const NAMESPACE = "startup-lock";
/** Where on the node the DaemonSets keep the state file's directory. */
const STATE_HOST_DIR = "/var/lib/startup-lock";
/**
 * All the init container that hands the state directory over may add: CHOWN to
 * give it to the server's user, FOWNER to chmod it once it is no longer root's.
 */
const STATE_DIR_CAPABILITIES = ["CHOWN", "FOWNER"];

/**
 * The server's resident memory: idle, and per waiting client, as measured by
 * `deno task bench` (README, "Release on ready, the queue, and memory").
 */
const IDLE_BYTES = 44e6;
const WAITER_BYTES = 25 * 1024;

/** What the kubelet would put in the env of a pod on a node "node-1" (fieldRef). */
const FIELDS: Record<string, string> = {
  "metadata.name": "example-7c9d8f6b5-x2kfp",
  "metadata.namespace": "default",
  "spec.nodeName": "node-1",
  "status.hostIP": "10.0.0.7",
  "status.podIP": "10.244.1.5",
};

type Json = Record<string, unknown>;

/** One document of a manifest file. */
interface Manifest {
  file: string;
  /** "file.yaml #2 DaemonSet startup-lock", for messages. */
  where: string;
  object: Json;
}

function loadFile(file: string): Manifest[] {
  const text = Deno.readTextFileSync(new URL(file, DIR));
  return parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true }).map((doc, i) => {
    const problems = [...doc.errors, ...doc.warnings].map((e) => e.message);
    assert.deepEqual(problems, [], `${file} #${i + 1}: YAML errors`);
    const object = doc.toJS() as Json | null;
    assert.ok(object && typeof object === "object", `${file} #${i + 1}: an empty document`);
    const name = (object.metadata as { name?: string } | undefined)?.name;
    return { file, where: `${file} #${i + 1} ${object.kind} ${name}`, object };
  });
}

const MANIFESTS = FILES.flatMap(loadFile);

/** The classes of the kinds the manifests use, by `apiVersion/kind`. */
const MODELS: Record<string, { prototype: { validate(): void }; new (data: never): unknown }> = {
  "v1/Namespace": Namespace,
  "v1/Service": Service,
  "apps/v1/DaemonSet": DaemonSet,
  "apps/v1/Deployment": Deployment,
};

function modelOf(object: Json) {
  const model = MODELS[`${object.apiVersion}/${object.kind}`];
  assert.ok(model, `no schema for apiVersion ${object.apiVersion}, kind ${object.kind}`);
  return model;
}

/** Throws the schema's complaints about `object` (wrong types, missing or invalid values). */
function validate(object: Json): void {
  const Model = modelOf(object);
  (new Model(structuredClone(object) as never) as { validate(): void }).validate();
}

/**
 * The fields of `object` that its API schema does not know, as paths. The
 * compiled validators of kubernetes-models accept unknown fields (the schemas
 * do not forbid them), while the API server refuses them (`kubectl apply`
 * validates strictly), so a misspelt optional field such as
 * `readOnlyRootFileSystem` would pass unnoticed. A validator reads every
 * field its schema declares and lists the keys of maps (labels, resources):
 * run over a Proxy that records those reads, it shows which keys it never
 * looked at.
 */
function unknownFields(object: Json): string[] {
  const read = new Set<string>();
  const listed = new Set<string>();
  const track = (value: unknown, path: string): unknown => {
    if (value === null || typeof value !== "object") return value;
    return new Proxy(value, {
      get(target, key, receiver) {
        const child = Reflect.get(target, key, receiver);
        if (typeof key !== "string") return child;
        read.add(`${path}/${key}`);
        return track(child, `${path}/${key}`);
      },
      has(target, key) {
        if (typeof key === "string") read.add(`${path}/${key}`);
        return Reflect.has(target, key);
      },
      ownKeys(target) {
        listed.add(path);
        return Reflect.ownKeys(target);
      },
    });
  };
  try {
    modelOf(object).prototype.validate.call(track(structuredClone(object), "") as never);
  } catch {
    // Schema errors are validate()'s to report.
  }
  const unknown: string[] = [];
  const walk = (value: unknown, path: string) => {
    if (value === null || typeof value !== "object") return;
    for (const [key, child] of Object.entries(value)) {
      const at = `${path}/${key}`;
      if (!Array.isArray(value) && !listed.has(path) && !read.has(at)) unknown.push(at);
      walk(child, at);
    }
  };
  walk(object, "");
  return unknown;
}

/** Deno's assert wants an Error; the validators throw their own. */
function schemaError(object: Json): string | undefined {
  try {
    validate(object);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

// ---------------------------------------------------------------------------
// Pods, containers and what the program makes of their command lines.

interface Pod {
  manifest: Manifest;
  namespace: string;
  labels: Record<string, string>;
  spec: IPodSpec;
}

interface Ours {
  where: string;
  pod: Pod;
  container: IContainer;
  /** The variables the container sees, `fieldRef`s filled in as on node-1. */
  env: Map<string, string>;
  argv: string[];
  parsed: ParsedCommandLine;
}

function podOf(manifest: Manifest): Pod | undefined {
  const object = manifest.object as {
    metadata?: { namespace?: string };
    spec?: { template?: { metadata?: { labels?: Record<string, string> }; spec?: IPodSpec } };
  };
  const template = object.spec?.template;
  if (!template?.spec) return undefined;
  return {
    manifest,
    namespace: object.metadata?.namespace ?? "default",
    labels: template.metadata?.labels ?? {},
    spec: template.spec,
  };
}

function containersOf(pod: Pod): { container: IContainer; init: boolean }[] {
  return [
    ...(pod.spec.initContainers ?? []).map((container) => ({ container, init: true })),
    ...pod.spec.containers.map((container) => ({ container, init: false })),
  ];
}

/** The pod's hostPath volumes, by name. */
function hostPathVolumes(pod: Pod): Map<string, IHostPathVolumeSource> {
  return new Map(
    (pod.spec.volumes ?? []).flatMap((v) => v.hostPath ? [[v.name, v.hostPath] as const] : []),
  );
}

/**
 * Whether `container` claims the one exception to the "restricted" context: an
 * init container of another image than ours that mounts a hostPath volume, as
 * the one that hands the state directory to the server's user. Known by what
 * it is rather than by name, so that the test of its exact shape sees every
 * container that claims the exception.
 */
function isStateDirInit(pod: Pod, container: IContainer): boolean {
  const hostPaths = hostPathVolumes(pod);
  return (pod.spec.initContainers ?? []).includes(container) && !isOurImage(container.image) &&
    (container.volumeMounts ?? []).some((m) => hostPaths.has(m.name));
}

/** The directory part of an absolute path. */
function dirname(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

/** `$(NAME)` as Kubernetes expands it in `env` values, `command` and `args`; `$$` is `$`. */
function expand(text: string, vars: Map<string, string>, where: string): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (match, name?: string) => {
    if (match === "$$") return "$";
    const value = vars.get(name!);
    if (value === undefined) throw new Error(`${where}: $(${name}) is not in the container's env`);
    return value;
  });
}

function envOf(env: readonly IEnvVar[], where: string): Map<string, string> {
  const vars = new Map([["HOSTNAME", FIELDS["metadata.name"]!]]);
  for (const v of env) {
    const path = v.valueFrom?.fieldRef?.fieldPath;
    if (path !== undefined) {
      const value = FIELDS[path];
      assert.ok(value !== undefined, `${where}: env ${v.name}: no sample value for ${path}`);
      vars.set(v.name, value);
    } else {
      assert.ok(v.value !== undefined, `${where}: env ${v.name} has neither value nor fieldRef`);
      vars.set(v.name, expand(v.value, vars, `${where}: env ${v.name}`));
    }
  }
  return vars;
}

function isOurImage(image: string | undefined): boolean {
  return /(^|\/)startup-lock([:@]|$)/.test(image ?? "");
}

/** The image every manifest runs: one name, tagged with this version. */
function ourImage(): string {
  const images = new Set(
    MANIFESTS.map(podOf).filter((p) => p !== undefined)
      .flatMap((p) => containersOf(p).map((c) => c.container.image))
      .filter(isOurImage),
  );
  assert.equal(images.size, 1, `one startup-lock image in all manifests, not ${[...images]}`);
  return [...images][0]!;
}

/** The startup-lock containers of the manifests, their command lines parsed by the program. */
function ours(manifests: readonly Manifest[] = MANIFESTS): Ours[] {
  const found: Ours[] = [];
  for (const pod of manifests.map(podOf)) {
    if (!pod) continue;
    for (const { container } of containersOf(pod)) {
      if (!isOurImage(container.image)) continue;
      const where: string = `${pod.manifest.where}, container ${container.name}`;
      // The image's entrypoint is the executable; a command would replace it.
      assert.equal(container.command, undefined, `${where}: args only, no command`);
      const env = envOf(container.env ?? [], where);
      const args = (container.args ?? []).map((a) => expand(a, env, where));
      const programEnv = Object.fromEntries(
        [...env].filter(([k]) => k.startsWith("STARTUP_LOCK_") || k === "HOSTNAME"),
      );
      let parsed: ParsedCommandLine;
      try {
        parsed = parseCommandLine(args, programEnv);
      } catch (error) {
        throw new Error(`${where}: startup-lock ${args.join(" ")}: ${(error as Error).message}`);
      }
      found.push({ where, pod, container, env, argv: args, parsed });
    }
  }
  return found;
}

/** A server that keeps a state file, with the volume mounted at the file's directory. */
interface StatefulServer {
  server: Ours;
  stateFile: string;
  mount: IVolumeMount;
  volume: IHostPathVolumeSource;
}

/**
 * The servers of the manifests, each with its state file and the hostPath
 * volume mounted at the file's directory; throws for a server without them.
 */
function statefulServers(): StatefulServer[] {
  return ours().flatMap((server) => {
    if (server.parsed.command !== "serve") return [];
    const stateFile = server.parsed.config.stateFile;
    assert.ok(stateFile, `${server.where}: no --stateFile: a restart would forget the holders`);
    const dir = dirname(stateFile);
    const mounts = (server.container.volumeMounts ?? []).filter((m) => m.mountPath === dir);
    assert.equal(mounts.length, 1, `${server.where}: one volume mounted at ${dir}`);
    const mount = mounts[0]!;
    const volume = hostPathVolumes(server.pod).get(mount.name);
    assert.ok(volume, `${server.where}: volume ${mount.name} is not a hostPath, kept on the node`);
    return [{ server, stateFile, mount, volume }];
  });
}

/** A probe's or Service's port, by number or by the name of a container port. */
function portNumber(port: number | string, container: IContainer, where: string): number {
  if (typeof port === "number") return port;
  const named = container.ports?.find((p) => p.name === port);
  assert.ok(named, `${where}: container ${container.name} has no port named ${port}`);
  return named.containerPort;
}

function probesOf(container: IContainer): [string, IProbe][] {
  const probes: [string, IProbe | undefined][] = [
    ["startupProbe", container.startupProbe],
    ["livenessProbe", container.livenessProbe],
    ["readinessProbe", container.readinessProbe],
  ];
  return probes.filter((p): p is [string, IProbe] => p[1] !== undefined);
}

/** What the program answers a probe: the server's handler, or hold's before and after the lock. */
async function probeStatus(
  parsed: ParsedCommandLine,
  path: string,
  acquired: boolean,
): Promise<number> {
  const request = new Request(`http://10.244.1.5${path}`);
  if (parsed.command === "hold") return createProbeHandler(() => acquired)(request).status;
  assert.equal(parsed.command, "serve", `a probe on "startup-lock ${parsed.command}"`);
  const { store, handler } = buildServer(parsed.config, silentLogger);
  try {
    return (await handler(request)).status;
  } finally {
    await store.close();
  }
}

/** The port the program listens on, or undefined for a command that does not listen. */
function listenPort(parsed: ParsedCommandLine): number | undefined {
  if (parsed.command === "serve") return parsed.config.port;
  if (parsed.command === "hold") return parsed.options.listen.port;
  return undefined;
}

function serverUrl(parsed: ParsedCommandLine): URL | undefined {
  switch (parsed.command) {
    case "acquire":
      return parsed.options.server;
    case "run":
    case "hold":
      return parsed.options.acquire.server;
    case "release":
      return parsed.options.server;
    default:
      return undefined;
  }
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/**
 * Checks that a client's `--server` reaches a server of `manifests`: the
 * node-local Service by its cluster DNS name, or a hostNetwork DaemonSet on the
 * node's IP.
 */
function assertReachesServer(url: URL, where: string, manifests: readonly Manifest[]): void {
  const servers = ours(manifests).filter((o) => o.parsed.command === "serve");
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  const dns = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?$/.exec(url.hostname);
  if (dns) {
    const [, name, namespace] = dns;
    const service = manifests.find((m) =>
      m.object.kind === "Service" &&
      (m.object.metadata as { name: string; namespace?: string }).name === name &&
      (m.object.metadata as { namespace?: string }).namespace === namespace
    )?.object as IService | undefined;
    assert.ok(service, `${where}: --server ${url}: no Service ${name} in namespace ${namespace}`);
    const servicePort = service.spec?.ports?.find((p) => p.port === port);
    assert.ok(servicePort, `${where}: --server ${url}: Service ${name} has no port ${port}`);
    assert.equal(service.spec?.internalTrafficPolicy, "Local", `Service ${name}: node-local`);
    const backends = servers.filter((s) =>
      s.pod.namespace === namespace && matches(service.spec?.selector ?? {}, s.pod.labels)
    );
    assert.ok(backends.length > 0, `Service ${name}: its selector matches no server pod`);
    for (const server of backends) {
      const target = portNumber(servicePort.targetPort ?? port, server.container, server.where);
      assert.equal(target, listenPort(server.parsed), `Service ${name}: targetPort ${target}`);
    }
    return;
  }
  assert.equal(
    url.hostname,
    FIELDS["status.hostIP"],
    `${where}: --server ${url}: expected a Service's name or $(HOST_IP) from status.hostIP`,
  );
  const onNode = servers.filter((s) =>
    s.pod.spec.hostNetwork === true && listenPort(s.parsed) === port &&
    s.parsed.command === "serve" && ["0.0.0.0", url.hostname].includes(s.parsed.config.host)
  );
  assert.ok(onNode.length > 0, `${where}: --server ${url}: no hostNetwork server on port ${port}`);
}

function quantityBytes(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?$/.exec(text);
  assert.ok(match, `unsupported memory quantity "${text}"`);
  const unit = { "": 1, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, k: 1e3, M: 1e6, G: 1e9 }[
    match[2] ?? ""
  ]!;
  return Number(match[1]) * unit;
}

/** The final ENTRYPOINT and USER of the Dockerfile that builds the image. */
function dockerfile(): { entrypoint: string[]; uid: number; gid: number | undefined } {
  const lines = Deno.readTextFileSync(new URL("Dockerfile", ROOT)).split("\n");
  const last = (pattern: RegExp) => lines.map((l) => pattern.exec(l)).filter((m) => m).at(-1);
  const entrypoint = last(/^ENTRYPOINT\s+(\[.*\])\s*$/);
  const user = last(/^USER\s+(\d+)(?::(\d+))?\s*$/);
  assert.ok(entrypoint, "Dockerfile: no ENTRYPOINT in exec form");
  assert.ok(user, "Dockerfile: no numeric USER");
  return {
    entrypoint: JSON.parse(entrypoint[1]!),
    uid: Number(user[1]),
    gid: user[2] === undefined ? undefined : Number(user[2]),
  };
}

/** The leading comment of a manifest file, without its `# ` markers. */
function header(file: string): string {
  const lines = Deno.readTextFileSync(new URL(file, DIR)).split("\n");
  const end = lines.findIndex((l) => !l.startsWith("#"));
  return lines.slice(0, end).map((l) => l.replace(/^#\s?/, "")).join("\n");
}

// ---------------------------------------------------------------------------

Deno.test("deploy/kubernetes holds the server, its hostNetwork variant and two example workloads", () => {
  for (const file of [SERVER_FILE, HOST_NETWORK_FILE]) {
    const kinds = loadFile(file).map((m) => m.object.kind);
    assert.ok(kinds.includes("Namespace") && kinds.includes("DaemonSet"), `${file}: ${kinds}`);
  }
  assert.ok(loadFile(SERVER_FILE).some((m) => m.object.kind === "Service"));
  const examples = FILES.filter((f) => f.startsWith("example-"));
  assert.deepEqual(examples, ["example-init-container.yaml", "example-sidecar.yaml"]);
  for (const file of examples) {
    assert.deepEqual(loadFile(file).map((m) => m.object.kind), ["Deployment"]);
  }
});

Deno.test("every manifest is valid against the Kubernetes API schemas, with no unknown field", async (t) => {
  for (const file of FILES) {
    await t.step(file, () => {
      for (const { where, object } of loadFile(file)) {
        assert.equal(schemaError(object), undefined, where);
        assert.deepEqual(unknownFields(object), [], `${where}: fields the API does not know`);
      }
    });
  }
});

Deno.test("the schema check refuses a wrong type, a missing field and an unknown field", () => {
  const daemonSet = MANIFESTS.find((m) => m.object.kind === "DaemonSet")!.object;
  const changed = (change: (container: Json, pod: Json) => void): Json => {
    const copy = structuredClone(daemonSet);
    const pod = ((copy.spec as Json).template as Json).spec as Json;
    change((pod.containers as Json[])[0]!, pod);
    return copy;
  };
  assert.match(
    schemaError(changed((c) => (c.ports as Json[])[0]!.containerPort = "http")) ?? "",
    /containerPort must be integer/,
  );
  assert.match(schemaError(changed((_, pod) => delete pod.containers)) ?? "", /containers/);
  const misspelt = changed((c) => {
    const context = c.securityContext as Json;
    context.readOnlyRootFileSystem = context.readOnlyRootFilesystem;
    delete context.readOnlyRootFilesystem;
  });
  assert.equal(schemaError(misspelt), undefined, "the schemas alone accept unknown fields");
  assert.deepEqual(unknownFields(misspelt), [
    "/spec/template/spec/containers/0/securityContext/readOnlyRootFileSystem",
  ]);
});

Deno.test("every startup-lock container runs this version's image with a command line the program accepts", () => {
  const image = ourImage();
  assert.ok(image.endsWith(`:${VERSION}`), `${image}: expected the tag ${VERSION}`);
  const { entrypoint } = dockerfile();
  assert.equal(entrypoint.length, 1, "the Dockerfile's ENTRYPOINT is the executable alone");
  const commands = ours().map((o) => `${o.pod.manifest.file}: ${o.parsed.command}`);
  assert.deepEqual(commands.sort(), [
    "daemonset-hostnetwork.yaml: serve",
    "daemonset.yaml: serve",
    "example-init-container.yaml: acquire",
    "example-sidecar.yaml: hold",
  ]);
});

Deno.test("probes ask the ports the program listens on and paths it serves", async () => {
  for (const o of ours()) {
    const port = listenPort(o.parsed);
    const probes = probesOf(o.container);
    if (port === undefined) {
      assert.deepEqual(probes, [], `${o.where}: "${o.parsed.command}" serves no probe`);
      continue;
    }
    assert.ok(
      o.container.ports?.some((p) => p.containerPort === port),
      `${o.where}: no containerPort ${port}, where the program listens`,
    );
    assert.ok(probes.some(([kind]) => kind === "livenessProbe"), `${o.where}: a livenessProbe`);
    for (const [kind, probe] of probes) {
      const get = probe.httpGet;
      assert.ok(get?.path, `${o.where}: ${kind} is an httpGet with a path`);
      assert.equal(portNumber(get.port, o.container, o.where), port, `${o.where}: ${kind} port`);
      // Liveness and readiness must pass while the pod waits for its lock; the startupProbe
      // of hold is the gate: it passes only once the lock is held.
      const gate = kind === "startupProbe" && o.parsed.command === "hold";
      const what = `${o.where}: ${kind} GET ${get.path}`;
      assert.equal(await probeStatus(o.parsed, get.path, true), 200, what);
      assert.equal(
        await probeStatus(o.parsed, get.path, false),
        gate ? 503 : 200,
        `${what}, waiting`,
      );
    }
  }
});

Deno.test("every client reaches a server of the manifests", () => {
  const clients = ours().filter((o) => serverUrl(o.parsed));
  assert.ok(clients.length >= 2);
  for (const o of clients) assertReachesServer(serverUrl(o.parsed)!, o.where, MANIFESTS);
});

Deno.test("the acquire init container and the hold sidecar wait for the lock before the app", () => {
  for (const o of ours().filter((o) => o.parsed.command !== "serve")) {
    const init = o.pod.spec.initContainers?.includes(o.container) ?? false;
    assert.ok(init, `${o.where}: an init container, so it runs before the app`);
    // The pod name: a restarted container gets its own lock back.
    assert.equal(o.argv[o.argv.indexOf("--id") + 1], FIELDS["metadata.name"], `${o.where}: --id`);
    if (o.parsed.command !== "hold") continue;
    assert.equal(o.container.restartPolicy, "Always", `${o.where}: a native sidecar`);
    assert.ok(o.container.startupProbe, `${o.where}: a startupProbe holds the app back`);
    // Released once the app is ready: the ready URL is the app's readiness probe.
    const ready = o.parsed.options.readyUrl;
    assert.ok(["127.0.0.1", "localhost"].includes(ready.hostname), `${o.where}: --readyUrl`);
    const apps = o.pod.spec.containers.filter((c) => {
      const get = c.readinessProbe?.httpGet;
      return get && get.path === ready.pathname &&
        portNumber(get.port, c, o.where) === Number(ready.port || 80);
    });
    assert.equal(apps.length, 1, `${o.where}: --readyUrl ${ready} is no app's readinessProbe`);
  }
});

Deno.test("every container runs with a restricted securityContext, and ours with resources", () => {
  const { uid } = dockerfile();
  for (const pod of MANIFESTS.map(podOf)) {
    if (!pod) continue;
    const hostNetwork = pod.manifest.file === HOST_NETWORK_FILE;
    assert.equal(pod.spec.hostNetwork ?? false, hostNetwork, `${pod.manifest.where}: hostNetwork`);
    assert.ok(!pod.spec.hostPID && !pod.spec.hostIPC, `${pod.manifest.where}: host namespaces`);
    for (const { container } of containersOf(pod)) {
      // The state directory's init container: checked to the letter by the next test.
      if (isStateDirInit(pod, container)) continue;
      const where: string = `${pod.manifest.where}, container ${container.name}`;
      const own = container.securityContext ?? {};
      const inherited: IPodSecurityContext = pod.spec.securityContext ?? {};
      assert.equal(own.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
      assert.equal(own.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
      assert.ok(own.capabilities?.drop?.includes("ALL"), `${where}: capabilities drop ALL`);
      assert.ok(!own.capabilities?.add?.length, `${where}: no capabilities added`);
      assert.ok(!own.privileged, `${where}: not privileged`);
      assert.equal(own.runAsNonRoot ?? inherited.runAsNonRoot, true, `${where}: runAsNonRoot`);
      assert.equal(
        (own.seccompProfile ?? inherited.seccompProfile)?.type,
        "RuntimeDefault",
        `${where}: seccompProfile`,
      );
      const user = own.runAsUser ?? inherited.runAsUser;
      if (!isOurImage(container.image)) continue;
      assert.equal(user, uid, `${where}: runAsUser is the image's USER`);
      const { requests, limits } = container.resources ?? {};
      assert.ok(requests?.cpu && requests.memory && limits?.memory, `${where}: requests, limits`);
    }
  }
});

Deno.test("the state directory's init container is the one exception: root with CHOWN and FOWNER, handing the directory to the server's user and nothing else", () => {
  const claiming = MANIFESTS.map(podOf).filter((p) => p !== undefined)
    .flatMap((pod) => containersOf(pod).filter((c) => isStateDirInit(pod, c.container)));
  const servers = statefulServers();
  assert.ok(servers.length > 0, "no server keeps a state file");
  assert.equal(claiming.length, servers.length, "one such init container per server, no other");
  for (const { server, stateFile, mount } of servers) {
    const dir = dirname(stateFile);
    const inits = containersOf(server.pod).filter((c) => isStateDirInit(server.pod, c.container));
    assert.equal(inits.length, 1, `${server.pod.manifest.where}: one init container for ${dir}`);
    const init = inits[0]!.container;
    const where = `${server.pod.manifest.where}, container ${init.name}`;
    const pod: IPodSecurityContext = server.pod.spec.securityContext ?? {};
    const own = server.container.securityContext ?? {};
    const user = own.runAsUser ?? pod.runAsUser;
    const group = own.runAsGroup ?? pod.runAsGroup;
    assert.ok(
      user !== undefined && group !== undefined,
      `${server.where}: runAsUser and runAsGroup`,
    );
    assert.deepEqual(
      init.command,
      ["sh", "-c", `chown ${user}:${group} ${dir} && chmod 0700 ${dir}`],
      `${where}: it only hands ${dir} to the server's user`,
    );
    for (const field of ["args", "env", "envFrom", "ports", "restartPolicy"] as const) {
      assert.equal(init[field], undefined, `${where}: no ${field}`);
    }
    assert.deepEqual(probesOf(init), [], `${where}: no probes`);
    assert.deepEqual(
      init.volumeMounts,
      [{ name: mount.name, mountPath: dir }],
      `${where}: the server's state directory, and nothing else`,
    );
    assert.deepEqual(init.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: false,
      runAsUser: 0,
      runAsGroup: 0,
      capabilities: { drop: ["ALL"], add: STATE_DIR_CAPABILITIES },
      seccompProfile: { type: "RuntimeDefault" },
    }, `${where}: root with only ${STATE_DIR_CAPABILITIES.join(" and ")}`);
    const { requests, limits } = init.resources ?? {};
    assert.ok(requests?.cpu && requests.memory && limits?.memory, `${where}: requests, limits`);
  }
});

Deno.test("the server keeps its state file on a read-write hostPath under /var/lib/startup-lock, its root filesystem read-only", () => {
  const servers = statefulServers();
  assert.deepEqual(
    servers.map((s) => s.server.pod.manifest.file).sort(),
    [HOST_NETWORK_FILE, SERVER_FILE],
    "both DaemonSets keep a state file",
  );
  for (const { server, stateFile, mount, volume } of servers) {
    const where = `${server.where}: --stateFile ${stateFile}`;
    assert.ok(stateFile.startsWith("/"), `${where}: an absolute path`);
    assert.equal(mount.mountPath, dirname(stateFile), `${where}: mounted at its directory`);
    assert.equal(mount.subPath ?? mount.subPathExpr, undefined, `${where}: the whole volume`);
    assert.notEqual(mount.readOnly, true, `${where}: the mount is read-write`);
    assert.equal(
      server.container.securityContext?.readOnlyRootFilesystem,
      true,
      `${where}: the root filesystem stays read-only`,
    );
    assert.ok(
      volume.path === STATE_HOST_DIR || volume.path.startsWith(`${STATE_HOST_DIR}/`),
      `${where}: hostPath ${volume.path} is under ${STATE_HOST_DIR}`,
    );
    assert.equal(volume.type, "DirectoryOrCreate", `${where}: the kubelet creates the directory`);
  }
});

Deno.test("a server with a state file is replaced on its node only once the old pod has stopped", () => {
  for (const { server } of statefulServers()) {
    const daemonSet = server.pod.manifest.object as unknown as IDaemonSet;
    const where = server.pod.manifest.where;
    assert.equal(daemonSet.kind, "DaemonSet", `${where}: one pod per node`);
    const strategy = daemonSet.spec?.updateStrategy;
    assert.equal(strategy?.type, "RollingUpdate", `${where}: updateStrategy`);
    // With a surge the new pod would start beside the old one, both writing the file.
    assert.equal(strategy?.rollingUpdate?.maxSurge, 0, `${where}: maxSurge 0`);
    // The controller waits for a terminating pod, unless its grace period is 0.
    const grace = server.pod.spec.terminationGracePeriodSeconds ?? 30;
    assert.ok(grace > 0, `${where}: terminationGracePeriodSeconds ${grace}`);
  }
});

Deno.test("each namespace enforces the Pod Security Standard its pods need (privileged iff hostPath or hostNetwork), warning and auditing at restricted", () => {
  const namespaces = MANIFESTS.filter((m) => m.object.kind === "Namespace");
  assert.ok(namespaces.length > 0);
  for (const namespace of namespaces) {
    const { name, labels = {} } = namespace.object.metadata as {
      name: string;
      labels?: Record<string, string>;
    };
    const pods = loadFile(namespace.file).map(podOf)
      .filter((p) => p !== undefined && p.namespace === name) as Pod[];
    assert.ok(pods.length > 0, `${namespace.where}: no pod of its file runs in it`);
    const needs = pods.flatMap((p) => [
      ...(p.spec.hostNetwork ? ["hostNetwork"] : []),
      ...[...hostPathVolumes(p).keys()].map(() => "hostPath"),
    ]);
    const level = needs.length > 0 ? "privileged" : "restricted";
    assert.equal(
      labels["pod-security.kubernetes.io/enforce"],
      level,
      `${namespace.where}: enforce ${level}, for ${needs.join(" and ") || "pods that meet it"}`,
    );
    assert.equal(
      labels["pod-security.kubernetes.io/warn"],
      "restricted",
      `${namespace.where}: warn`,
    );
    assert.equal(
      labels["pod-security.kubernetes.io/audit"],
      "restricted",
      `${namespace.where}: audit`,
    );
    // The comment above the enforce label says why.
    const lines = Deno.readTextFileSync(new URL(namespace.file, DIR)).split("\n");
    const at = lines.findIndex((l) => l.trim().startsWith("pod-security.kubernetes.io/enforce:"));
    let start = at;
    while (start > 0 && lines[start - 1]!.trim().startsWith("#")) start--;
    const comment = lines.slice(start, at).join(" ");
    for (const need of new Set(needs)) {
      assert.ok(comment.includes(need), `${namespace.where}: the comment on enforce names ${need}`);
    }
  }
});

const imageSkip = await imageRunSkipReason();

Deno.test({
  name:
    "daemonset.yaml's server, as the image's user: exits 2 in the directory the kubelet creates, keeps its holders once the init container has handed it over",
  ignore: imageSkip !== undefined,
  async fn(t) {
    const stateful = statefulServers().find((s) => s.server.pod.manifest.file === SERVER_FILE);
    assert.ok(stateful, `${SERVER_FILE}: no server with a state file`);
    const { server, stateFile } = stateful;
    const dir = dirname(stateFile);
    const init = containersOf(server.pod).find((c) => isStateDirInit(server.pod, c.container));
    const handOver = /^chown (\d+):(\d+) (\S+) && chmod ([0-7]+) (\S+)$/.exec(
      init?.container.command?.[2] ?? "",
    );
    assert.ok(handOver, `${SERVER_FILE}: the init container's chown and chmod`);
    const [, uid, gid, chownPath, mode, chmodPath] = handOver;
    // Its own command line, on any free port.
    const args = server.argv.map((a, i) => server.argv[i - 1] === "--port" ? "0" : a);
    const work = await Deno.makeTempDir({ prefix: "startup-lock-k8s-state-" });
    try {
      const image = await assembleImage(`${work}/root`, readImageSpec());
      // What the kubelet makes of a DirectoryOrCreate hostPath: root:root 0755.
      await Deno.mkdir(`${image.dir}${dir}`, { recursive: true });
      await Deno.chmod(`${image.dir}${dir}`, 0o755);

      await t.step(
        "in the kubelet's directory: exit 2 with the reason, before listening",
        async () => {
          const { code, stderr } = await runInImage(image, [...image.program, ...args]);
          assert.equal(code, 2, stderr);
          assert.ok(
            stderr.includes(`Cannot use --stateFile "${stateFile}": cannot write in its directory`),
            stderr,
          );
          assert.doesNotMatch(stderr, /Listening/);
        },
      );

      await t.step(
        "after the init container's chown and chmod: a lock outlives a restart",
        async () => {
          await Deno.chown(`${image.dir}${chownPath}`, Number(uid), Number(gid));
          await Deno.chmod(`${image.dir}${chmodPath}`, parseInt(mode!, 8));
          let token: string | null;
          {
            await using first = await startInImage(image, args);
            await first.waitForLog(/does not exist yet: starting with no locks held/);
            const granted = await fetch(`${first.url}/?id=web-1&duration=10m`);
            await granted.body?.cancel();
            assert.equal(granted.status, 200);
            token = granted.headers.get("Lock-Token");
            assert.ok(token);
            assert.equal(await first.stop("SIGTERM"), 0);
          }
          const written = await Deno.stat(`${image.dir}${stateFile}`);
          assert.equal(written.uid, Number(uid), "the state file is the server's user's");

          await using second = await startInImage(image, args);
          await second.waitForLog(/State file .*: 1 lock still held/);
          const refused = await fetch(`${second.url}/`);
          await refused.body?.cancel();
          assert.equal(refused.status, 423, "the holder from before the restart keeps the slot");
          const released = await fetch(`${second.url}/locks/${token}`, { method: "DELETE" });
          await released.body?.cancel();
          assert.equal(released.status, 204, "its token still releases it");
          assert.equal(await second.stop("SIGTERM"), 0);
        },
      );
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test("the server's memory limit covers --maxWaiters waiting clients", () => {
  for (const o of ours().filter((o) => o.parsed.command === "serve")) {
    if (o.parsed.command !== "serve") continue;
    const limit = quantityBytes(String(o.container.resources!.limits!.memory));
    const needed = IDLE_BYTES + o.parsed.config.maxWaiters * WAITER_BYTES;
    assert.ok(needed < limit, `${o.where}: ${needed} bytes needed, the limit is ${limit}`);
  }
});

Deno.test("the hostNetwork variant: node network, cluster DNS, and the client change its header describes", () => {
  const [server] = ours(loadFile(HOST_NETWORK_FILE));
  assert.ok(server && server.parsed.command === "serve");
  assert.equal(server.pod.spec.hostNetwork, true);
  assert.equal(server.pod.spec.dnsPolicy, "ClusterFirstWithHostNet");
  assert.equal(server.parsed.config.host, FIELDS["status.hostIP"], "--host $(HOST_IP)");

  // Apply the header's instructions to the example workloads: replace --server, add the env.
  const text = header(HOST_NETWORK_FILE);
  const change = /replace --server (\S+)\s+with --server (\S+)/.exec(text);
  assert.ok(change, `${HOST_NETWORK_FILE}: the header says which --server to use instead`);
  const [, before, after] = change;
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.trim() === "env:");
  const end = lines.findIndex((l, i) => i > start && l.trim() === "");
  const snippet = parseAllDocuments(lines.slice(start, end).join("\n"))[0]!.toJS() as {
    env: IEnvVar[];
  };
  const hostNetworkServer = loadFile(HOST_NETWORK_FILE);
  for (const file of FILES.filter((f) => f.startsWith("example-"))) {
    const changed = loadFile(file).map((m) => {
      const object = structuredClone(m.object);
      const pod = podOf({ ...m, object })!;
      for (const { container } of containersOf(pod)) {
        if (!isOurImage(container.image)) continue;
        const args = container.args ?? [];
        assert.ok(args.includes(before!), `${file}: no --server ${before} to replace`);
        container.args = args.map((a) => a === before ? after! : a);
        container.env = [...snippet.env, ...container.env ?? []];
      }
      return { ...m, where: `${m.where} (hostNetwork)`, object };
    });
    for (const { where, object } of changed) {
      assert.equal(schemaError(object), undefined, where);
      assert.deepEqual(unknownFields(object), [], where);
    }
    for (const o of ours(changed)) {
      assertReachesServer(serverUrl(o.parsed)!, o.where, [...hostNetworkServer, ...changed]);
    }
  }
});

Deno.test("the server's objects live in their own namespace", () => {
  for (const file of [SERVER_FILE, HOST_NETWORK_FILE]) {
    for (const { where, object } of loadFile(file)) {
      const metadata = object.metadata as { name: string; namespace?: string };
      if (object.kind === "Namespace") assert.equal(metadata.name, NAMESPACE, where);
      else assert.equal(metadata.namespace, NAMESPACE, where);
    }
  }
});

Deno.test("the files' comments name files that exist and apply themselves", () => {
  for (const file of FILES) {
    const text = header(file);
    assert.match(text, new RegExp(`kubectl apply -f deploy/kubernetes/${file}\n`), file);
    for (const [path] of text.matchAll(/deploy\/kubernetes\/[\w.-]+/g)) {
      assert.ok(FILES.includes(path.slice("deploy/kubernetes/".length)), `${file}: ${path}`);
    }
  }
});
