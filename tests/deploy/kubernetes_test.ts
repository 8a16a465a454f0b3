/**
 * The manifests of `deploy/kubernetes/`: every document is valid against the
 * Kubernetes API schemas (the `kubernetes-models` package: Kubernetes 1.34 or later),
 * with no field the API does not know; and what they ask of the program
 * exists in it: the image of this version and its entrypoint, commands and
 * flags, the ports it listens on, the paths its probes ask, and a server for
 * every client to reach. The per-node servers keep their state file on a
 * hostPath its user can write, handed over by the one container that may run
 * as root; the cluster-wide servers share their locks in a Redis of the
 * manifests, with the password from a Secret and the persistence that keeps
 * every grant.
 */
import assert from "node:assert/strict";
import {
  DaemonSet,
  Deployment,
  type IDaemonSet,
  type IStatefulSet,
  StatefulSet,
} from "npm:kubernetes-models@5.1.0/apps/v1";
import {
  type IPodDisruptionBudget,
  PodDisruptionBudget,
} from "npm:kubernetes-models@5.1.0/policy/v1";
import {
  ConfigMap,
  type IContainer,
  type IEnvVar,
  type IHostPathVolumeSource,
  type IKeyToPath,
  type IPodSecurityContext,
  type IPodSpec,
  type IProbe,
  type IService,
  type IVolumeMount,
  Namespace,
  Secret,
  Service,
} from "npm:kubernetes-models@5.1.0/v1";
import { parseAllDocuments } from "npm:yaml@2.9.1";
import { createProbeHandler } from "../../lib/commands/hold.ts";
import { injectCommand } from "../../lib/commands/inject.ts";
import { planInjection } from "../../lib/inject/patch.ts";
import { silentLogger } from "../../lib/log.ts";
import type { ServerConfig } from "../../lib/config.ts";
import { buildServer } from "../../lib/server.ts";
import type { RedisTarget } from "../../lib/stores/settings.ts";
import { VERSION } from "../../lib/version.ts";
import { parseCommandLine, type ParsedCommandLine } from "../_command_line.ts";
import { readImageSpec } from "../_image_dockerfile.ts";
import { assembleImage, imageRunSkipReason, runInImage, startInImage } from "../_image_root.ts";
import { startProgram } from "../_program.ts";
import { freePort, REDIS_SERVER, SKIP_REDIS } from "../_redis.ts";
import { which } from "../_which.ts";
import {
  type Model,
  schemaError as schemaErrorOf,
  unknownFields as unknownFieldsOf,
} from "../_kubernetes_schema.ts";

const ROOT = new URL("../../", import.meta.url);
const DIR = new URL("deploy/kubernetes/", ROOT);
const FILES = [...Deno.readDirSync(DIR)]
  .filter((e) => e.isFile && e.name.endsWith(".yaml"))
  .map((e) => e.name)
  .sort();
const SERVER_FILE = "daemonset.yaml";
const HOST_NETWORK_FILE = "daemonset-hostnetwork.yaml";
const NAMESPACE = "startup-lock";
/** The cluster-wide servers, which share their locks in Redis, and the example Redis. */
const CLUSTER_FILE = "cluster-wide.yaml";
const REDIS_FILE = "redis.yaml";
const CLUSTER_NAMESPACE = "startup-lock-cluster";
/** Where on the node the DaemonSets keep the state file's directory. */
const STATE_HOST_DIR = "/var/lib/startup-lock";
/**
 * All the init container that hands the state directory over may add: CHOWN to
 * give it to the server's user, FOWNER to chmod it once it is no longer root's.
 */
const STATE_DIR_CAPABILITIES = ["CHOWN", "FOWNER"];

/**
 * The server's resident memory: idle, and per waiting client, as measured by
 * `deno task bench` (docs/performance.md, "Release on ready, the queue, and memory").
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
const MODELS: Record<string, Model> = {
  "v1/Namespace": Namespace,
  "v1/Service": Service,
  "v1/ConfigMap": ConfigMap,
  "v1/Secret": Secret,
  "apps/v1/DaemonSet": DaemonSet,
  "apps/v1/Deployment": Deployment,
  "apps/v1/StatefulSet": StatefulSet,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
};

function modelOf(object: Json) {
  const model = MODELS[`${object.apiVersion}/${object.kind}`];
  assert.ok(model, `no schema for apiVersion ${object.apiVersion}, kind ${object.kind}`);
  return model;
}

/** The fields of `object` that its API schema does not know (see tests/_kubernetes_schema.ts). */
function unknownFields(object: Json): string[] {
  return unknownFieldsOf(modelOf(object), object);
}

/** The schema's complaint about `object` (wrong types, missing or invalid values), if any. */
function schemaError(object: Json): string | undefined {
  return schemaErrorOf(modelOf(object), object);
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

/** A file that a Secret volume puts in a container. */
interface SecretFile {
  /** Its path in the container. */
  path: string;
  namespace: string;
  secretName: string;
  key: string;
  /** Its mode, as the kubelet sets it. */
  mode: number;
  /**
   * What it holds in these tests, where the Secret is the user's: the Secret's
   * name and key, so a value read from it says where it came from.
   */
  content: string;
}

/** The manifest of `kind` named `name` in `namespace`, if any. */
function findObject(
  manifests: readonly Manifest[],
  kind: string,
  name: string,
  namespace: string,
): Json | undefined {
  return manifests.find((m) => {
    const metadata = m.object.metadata as { name?: string; namespace?: string } | undefined;
    return m.object.kind === kind && metadata?.name === name &&
      (metadata?.namespace ?? "default") === namespace;
  })?.object;
}

/**
 * The files the container's Secret volumes hold: the keys its `items` name,
 * or, without them, the keys of the Secret if the manifests hold it.
 */
function secretFiles(
  pod: Pod,
  container: IContainer,
  manifests: readonly Manifest[],
): SecretFile[] {
  const volumes = new Map((pod.spec.volumes ?? []).map((v) => [v.name, v]));
  return (container.volumeMounts ?? []).flatMap((mount) => {
    const secret = volumes.get(mount.name)?.secret;
    if (!secret?.secretName) return [];
    const secretName = secret.secretName;
    const stored = findObject(manifests, "Secret", secretName, pod.namespace) as
      | { data?: Record<string, string>; stringData?: Record<string, string> }
      | undefined;
    const items: IKeyToPath[] = secret.items ??
      Object.keys({ ...stored?.data, ...stored?.stringData }).map((key) => ({ key, path: key }));
    const dir = mount.mountPath.replace(/\/$/, "");
    return items
      .filter((item) => mount.subPath === undefined || item.path === mount.subPath)
      .map((item) => ({
        path: mount.subPath === undefined ? `${dir}/${item.path}` : mount.mountPath,
        namespace: pod.namespace,
        secretName,
        key: item.key,
        mode: item.mode ?? secret.defaultMode ?? 0o644,
        content: `placeholder of Secret ${pod.namespace}/${secretName}, key ${item.key}`,
      }));
  });
}

/** Where the tests put the files that Secret volumes hold, as the kubelet would mount them. */
const SECRET_DIR = Deno.makeTempDirSync({ prefix: "startup-lock-k8s-secrets-" });
addEventListener("unload", () => Deno.removeSync(SECRET_DIR, { recursive: true }));

/**
 * `text` (an argument or a variable's value), with a path of a Secret's file
 * (alone, or after `--flag=`) replaced by the path of a copy of that file on
 * this machine, written for the program to read as it parses its command line.
 */
function localSecretPath(text: string, files: readonly SecretFile[]): string {
  for (const file of files) {
    if (text !== file.path && !text.endsWith(`=${file.path}`)) continue;
    const local = `${SECRET_DIR}/${file.namespace}/${file.secretName}/${file.key}`;
    Deno.mkdirSync(dirname(local), { recursive: true });
    Deno.writeTextFileSync(local, file.content);
    return text.slice(0, text.length - file.path.length) + local;
  }
  return text;
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
    assert.ok(
      !v.valueFrom?.secretKeyRef,
      `${where}: env ${v.name} from a Secret, which kubectl describe and /proc/PID/environ ` +
        "show: mount the Secret as a file and pass its path instead",
    );
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
      assert.equal(container.envFrom, undefined, `${where}: env only, no envFrom`);
      const env = envOf(container.env ?? [], where);
      const args = (container.args ?? []).map((a) => expand(a, env, where));
      const programEnv = Object.fromEntries(
        [...env].filter(([k]) => k.startsWith("STARTUP_LOCK_") || k === "HOSTNAME"),
      );
      // The program reads some files as it parses (--storePasswordFile): give it
      // those of the Secret volumes, as the kubelet would.
      const secrets = secretFiles(pod, container, manifests);
      const local = (text: string) => localSecretPath(text, secrets);
      let parsed: ParsedCommandLine;
      try {
        parsed = parseCommandLine(
          args.map(local),
          Object.fromEntries(Object.entries(programEnv).map(([k, v]) => [k, local(v)])),
        );
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
 * The per-node servers of the manifests (those that keep their locks in
 * memory, their own), each with its state file and the hostPath volume mounted
 * at the file's directory; throws for such a server without them.
 */
function statefulServers(): StatefulServer[] {
  return ours().flatMap((server) => {
    if (server.parsed.command !== "serve" || server.parsed.config.store.kind !== "memory") {
      return [];
    }
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
  const { store, handler } = await buildServer(parsed.config, silentLogger);
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
 * Checks that a client's `--server` reaches a server of `manifests`: by its
 * Service's cluster DNS name (node-local for servers of their own, not for
 * servers that share Redis), or a hostNetwork DaemonSet on the node's IP.
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
    const backends = servers.filter((s) =>
      s.pod.namespace === namespace && matches(service.spec?.selector ?? {}, s.pod.labels)
    );
    assert.ok(backends.length > 0, `Service ${name}: its selector matches no server pod`);
    const shared = backends.filter((s) =>
      s.parsed.command === "serve" && s.parsed.config.store.kind === "redis"
    );
    if (shared.length === 0) {
      // Servers of their own, one per node: the client's node's one answers.
      assert.equal(service.spec?.internalTrafficPolicy, "Local", `Service ${name}: node-local`);
    } else {
      assert.equal(
        shared.length,
        backends.length,
        `Service ${name}: both servers that share Redis and servers of their own`,
      );
      // Any replica answers for every node; Local would leave nodes without one unanswered.
      assert.notEqual(
        service.spec?.internalTrafficPolicy,
        "Local",
        `Service ${name}: not node-local, its servers share Redis and answer for every node`,
      );
    }
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

/**
 * The example workloads as the header of `file` tells to change them: its
 * "replace --server A with --server B" applied to their startup-lock
 * containers, and `change` to each of those containers. Every document
 * changed is still valid, with no unknown field.
 */
function changedClients(
  file: string,
  label: string,
  change: (container: IContainer) => void = () => {},
): Manifest[][] {
  const instruction = /replace --server (\S+)\s+with --server (\S+)/.exec(header(file));
  assert.ok(instruction, `${file}: the header says which --server to use instead`);
  const [, before, after] = instruction;
  return FILES.filter((f) => f.startsWith("example-")).map((example) => {
    const changed = loadFile(example).map((m) => {
      const object = structuredClone(m.object);
      const pod = podOf({ ...m, object })!;
      for (const { container } of containersOf(pod)) {
        if (!isOurImage(container.image)) continue;
        const args = container.args ?? [];
        assert.ok(args.includes(before!), `${example}: no --server ${before} to replace`);
        container.args = args.map((a) => a === before ? after! : a);
        change(container);
      }
      return { ...m, where: `${m.where} (${label})`, object };
    });
    for (const { where, object } of changed) {
      assert.equal(schemaError(object), undefined, where);
      assert.deepEqual(unknownFields(object), [], where);
    }
    return changed;
  });
}

/** The leading comment of a manifest file, without its `# ` markers. */
function header(file: string): string {
  const lines = Deno.readTextFileSync(new URL(file, DIR)).split("\n");
  const end = lines.findIndex((l) => !l.startsWith("#"));
  return lines.slice(0, end).map((l) => l.replace(/^#\s?/, "")).join("\n");
}

// ---------------------------------------------------------------------------
// The cluster-wide servers, which share their locks in Redis, and the Redis.
// Each rule is a function of the manifests, so that a test can show it failing.

/** A server that keeps its locks in Redis, shared with every replica of its `--name`. */
interface SharedServer {
  server: Ours;
  config: ServerConfig;
  target: RedisTarget;
}

function sharedServers(manifests: readonly Manifest[]): SharedServer[] {
  return ours(manifests).flatMap((server) => {
    const parsed = server.parsed;
    if (parsed.command !== "serve" || parsed.config.store.kind !== "redis") return [];
    return [{ server, config: parsed.config, target: parsed.config.store.target }];
  });
}

/** A Redis server container of the manifests, with its config file read. */
interface RedisInstance {
  where: string;
  pod: Pod;
  container: IContainer;
  /** `command` and `args`, as one line. */
  commandLine: string;
  /** The config file's directives by lower-case name, the last of a name winning (as in Redis). */
  config: Map<string, string[]>;
  /** The port it listens on. */
  port: number;
}

function isRedisImage(image: string | undefined): boolean {
  return /(^|\/)redis([:@]|$)/.test(image ?? "");
}

/** The file at `path` in `container`, from a ConfigMap of the manifests. */
function configMapFile(
  pod: Pod,
  container: IContainer,
  path: string,
  manifests: readonly Manifest[],
  where: string,
): string {
  const mount = (container.volumeMounts ?? [])
    .find((m) => path.startsWith(`${m.mountPath.replace(/\/$/, "")}/`));
  assert.ok(mount, `${where}: nothing is mounted at ${path}`);
  const source = pod.spec.volumes?.find((v) => v.name === mount.name)?.configMap;
  assert.ok(source?.name, `${where}: ${path} is not from a ConfigMap`);
  const name = path.slice(mount.mountPath.replace(/\/$/, "").length + 1);
  const key = source.items ? source.items.find((i) => i.path === name)?.key : name;
  const configMap = findObject(manifests, "ConfigMap", source.name, pod.namespace);
  assert.ok(configMap, `${where}: no ConfigMap ${source.name} in namespace ${pod.namespace}`);
  const text = (configMap.data as Record<string, string> | undefined)?.[key ?? ""];
  assert.ok(text !== undefined, `${where}: ConfigMap ${source.name} has no ${name}`);
  return text;
}

/** redis.conf's directives: a lower-case name, its arguments (quotes removed). */
function parseRedisConfig(text: string): Map<string, string[]> {
  const config = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const words = [...trimmed.matchAll(/"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g)]
      .map((m) => m[1] ?? m[2] ?? m[3]!);
    config.set(words[0]!.toLowerCase(), words.slice(1));
  }
  return config;
}

/** A Redis memory size: `128mb`, `1gb`, `100000` (bytes); k, m, g are powers of 1000. */
function redisBytes(text: string): number {
  const match = /^(\d+)(k|kb|m|mb|g|gb)?$/i.exec(text);
  assert.ok(match, `unsupported Redis memory size "${text}"`);
  const units: Record<string, number> = {
    "": 1,
    k: 1e3,
    kb: 2 ** 10,
    m: 1e6,
    mb: 2 ** 20,
    g: 1e9,
    gb: 2 ** 30,
  };
  return Number(match[1]) * units[(match[2] ?? "").toLowerCase()]!;
}

/** The Redis containers of the manifests: `redis-server` run with a config file from a ConfigMap. */
function redisInstances(manifests: readonly Manifest[]): RedisInstance[] {
  return manifests.map(podOf).filter((p) => p !== undefined).flatMap((pod) =>
    pod.spec.containers.filter((c) => isRedisImage(c.image)).map((container) => {
      const where = `${pod.manifest.where}, container ${container.name}`;
      const commandLine = [...container.command ?? [], ...container.args ?? []].join(" ");
      const path = /redis-server\s+(\/\S+\.conf)(\s|$)/.exec(commandLine)?.[1];
      assert.ok(path, `${where}: redis-server without a config file`);
      const config = parseRedisConfig(configMapFile(pod, container, path, manifests, where));
      const port = Number(config.get("port")?.[0] ?? 6379);
      return { where, pod, container, commandLine, config, port };
    })
  );
}

/** The Service a host name reaches from `namespace`: NAME, NAME.NS, NAME.NS.svc[.cluster.local]. */
function serviceOfHost(
  host: string,
  namespace: string,
  manifests: readonly Manifest[],
): IService | undefined {
  const name = /^([a-z0-9-]+)(?:\.([a-z0-9-]+)(?:\.svc(?:\.cluster\.local)?)?)?$/.exec(host);
  if (!name) return undefined;
  return findObject(manifests, "Service", name[1]!, name[2] ?? namespace) as IService | undefined;
}

/** The Redis instances a shared server's `--store` reaches, through a Service of the manifests. */
function redisOf(shared: SharedServer, manifests: readonly Manifest[]): RedisInstance[] {
  const { server, target } = shared;
  const url = new URL(target.url);
  const where = `${server.where}: --store ${target.url}`;
  const service = serviceOfHost(url.hostname, server.pod.namespace, manifests);
  assert.ok(service, `${where}: no Service ${url.hostname} in the manifests`);
  const name = service.metadata?.name;
  const port = Number(url.port || 6379);
  const servicePort = service.spec?.ports?.find((p) => p.port === port);
  assert.ok(servicePort, `${where}: Service ${name} has no port ${port}`);
  const selector = service.spec?.selector ?? {};
  const backends = redisInstances(manifests).filter((r) =>
    r.pod.namespace === service.metadata?.namespace && Object.keys(selector).length > 0 &&
    matches(selector, r.pod.labels)
  );
  assert.ok(backends.length > 0, `${where}: Service ${name}'s selector matches no Redis pod`);
  for (const redis of backends) {
    const target = portNumber(servicePort.targetPort ?? port, redis.container, redis.where);
    assert.ok(
      redis.container.ports?.some((p) => p.containerPort === target),
      `${where}: ${redis.where} declares no containerPort ${target}`,
    );
    assert.equal(
      target,
      redis.port,
      `${where}: Service ${name} sends port ${port} to ${target}, Redis listens on ${redis.port}`,
    );
  }
  return backends;
}

/** A Deployment or StatefulSet's replicas, or undefined for other kinds. */
function replicasOf(workload: Json): number | undefined {
  if (workload.kind !== "Deployment" && workload.kind !== "StatefulSet") return undefined;
  return (workload.spec as { replicas?: number }).replicas ?? 1;
}

/**
 * A server that shares its locks in Redis runs as 2 or more replicas of a
 * Deployment or StatefulSet, without a state file, spread across nodes, and a
 * PodDisruptionBudget lets drains take them one by one.
 */
function checkSharedReplicas(manifests: readonly Manifest[]): void {
  const shared = sharedServers(manifests);
  assert.ok(shared.length > 0, "no server shares its locks in Redis");
  for (const { server, config } of shared) {
    const where = server.pod.manifest.where;
    assert.equal(config.stateFile, undefined, `${where}: --stateFile, while Redis keeps the locks`);
    const replicas = replicasOf(server.pod.manifest.object);
    assert.ok(replicas !== undefined, `${where}: a Deployment or StatefulSet, which has replicas`);
    assert.ok(
      replicas >= 2,
      `${where}: ${replicas} replica: 2 or more keep the locks served while one is down`,
    );
    const labels = server.pod.labels;
    const selects = (selector: { matchLabels?: Record<string, string> } | undefined) =>
      Object.keys(selector?.matchLabels ?? {}).length > 0 &&
      matches(selector?.matchLabels ?? {}, labels);
    const spread = (server.pod.spec.topologySpreadConstraints ?? []).some((c) =>
      c.topologyKey === "kubernetes.io/hostname" && c.maxSkew === 1 &&
      c.whenUnsatisfiable === "DoNotSchedule" && selects(c.labelSelector)
    );
    const apart = (server.pod.spec.affinity?.podAntiAffinity
      ?.requiredDuringSchedulingIgnoredDuringExecution ?? [])
      .some((term) => term.topologyKey === "kubernetes.io/hostname" && selects(term.labelSelector));
    assert.ok(
      spread || apart,
      `${where}: replicas spread across nodes (topologySpreadConstraints on ` +
        "kubernetes.io/hostname, maxSkew 1, DoNotSchedule, or a required podAntiAffinity)",
    );
    const budgets = manifests
      .filter((m) => m.object.kind === "PodDisruptionBudget")
      .map((m) => m.object as unknown as IPodDisruptionBudget)
      .filter((b) => b.metadata?.namespace === server.pod.namespace && selects(b.spec?.selector));
    assert.equal(budgets.length, 1, `${where}: one PodDisruptionBudget selects its pods`);
    const { maxUnavailable, minAvailable } = budgets[0]!.spec ?? {};
    const unavailable = maxUnavailable ??
      (typeof minAvailable === "number" ? replicas - minAvailable : undefined);
    assert.ok(typeof unavailable === "number", `${where}: a PodDisruptionBudget in pods, not %`);
    assert.ok(unavailable >= 1, `${where}: the PodDisruptionBudget lets no pod go: drains hang`);
    assert.ok(
      unavailable < replicas,
      `${where}: the PodDisruptionBudget lets all ${replicas} replicas go at once`,
    );
  }
}

/** Every shared server's `--store` reaches a Redis of the manifests through a Service. */
function checkStoreReachesRedis(manifests: readonly Manifest[]): void {
  const shared = sharedServers(manifests);
  assert.ok(shared.length > 0, "no server shares its locks in Redis");
  for (const server of shared) redisOf(server, manifests);
}

/**
 * The Redis password: read by the server from a file of a Secret volume, not
 * readable by every user, and the very key that the Redis it reaches requires;
 * never in args, env, the `--store` URL or a ConfigMap.
 */
function checkRedisPassword(manifests: readonly Manifest[]): void {
  for (const shared of sharedServers(manifests)) {
    const { server, target } = shared;
    const where = `${server.where}: the Redis password`;
    const file = secretFiles(server.pod, server.container, manifests)
      .find((f) => f.content === target.password);
    assert.ok(
      file,
      `${where}: not from a file of a Secret volume (--storePasswordFile): in args, env or ` +
        "the --store URL it would show in kubectl describe and /proc",
    );
    assert.equal(file.mode & 0o007, 0, `${where}: ${file.path} is readable by every user`);
    for (const redis of redisOf(shared, manifests)) {
      assert.ok(!redis.config.has("requirepass"), `${redis.where}: requirepass in a ConfigMap`);
      for (const v of redis.container.env ?? []) {
        assert.ok(!v.valueFrom?.secretKeyRef, `${redis.where}: env ${v.name} from a Secret`);
      }
      assert.equal(redis.container.envFrom, undefined, `${redis.where}: envFrom`);
      const passed = /--requirepass\s+"\$\(cat (\S+)\)"/.exec(redis.commandLine)?.[1];
      const source = secretFiles(redis.pod, redis.container, manifests)
        .find((f) => f.path === passed);
      assert.ok(source, `${redis.where}: --requirepass "$(cat FILE)" of a Secret volume's file`);
      assert.equal(source.mode & 0o007, 0, `${redis.where}: ${source.path} readable by every user`);
      assert.deepEqual(
        [source.namespace, source.secretName, source.key],
        [file.namespace, file.secretName, file.key],
        `${where}: Redis requires another Secret's key than the server reads`,
      );
    }
  }
}

/**
 * The Redis keeps every grant: the append-only file synced on every write, on
 * a PersistentVolumeClaim, no eviction, a memory limit it meets before the
 * kernel's, one pod; its probes ask its port.
 */
function checkRedisKeepsGrants(manifests: readonly Manifest[]): void {
  const instances = redisInstances(manifests);
  assert.ok(instances.length > 0, "no Redis in the manifests");
  for (const { where, pod, container, config, port } of instances) {
    const value = (name: string) => config.get(name)?.join(" ");
    assert.equal(value("appendonly"), "yes", `${where}: appendonly: a restart would forget`);
    assert.equal(
      value("appendfsync"),
      "always",
      `${where}: appendfsync: with everysec a crash loses up to about 1 s of grants`,
    );
    assert.notEqual(value("no-appendfsync-on-rewrite"), "yes", `${where}: no fsync on rewrites`);
    assert.equal(
      value("maxmemory-policy"),
      "noeviction",
      `${where}: maxmemory-policy: an eviction would free a slot still held`,
    );
    const limit = quantityBytes(String(container.resources?.limits?.memory ?? ""));
    const maxmemory = redisBytes(value("maxmemory") ?? "0");
    assert.ok(
      maxmemory > 0 && maxmemory < limit,
      `${where}: maxmemory ${value("maxmemory")}: below the memory limit ${limit}, so that ` +
        "Redis refuses writes before the kernel kills it",
    );
    const dir = value("dir");
    const mount = (container.volumeMounts ?? []).find((m) => m.mountPath === dir);
    const workload = pod.manifest.object as unknown as IStatefulSet;
    const claims = (workload.spec?.volumeClaimTemplates ?? []).map((c) => c.metadata?.name);
    assert.ok(
      mount && mount.readOnly !== true && claims.includes(mount.name),
      `${where}: dir ${dir} is not a PersistentVolumeClaim: the append-only file would go ` +
        "with the pod",
    );
    assert.equal(workload.kind, "StatefulSet", `${where}: a StatefulSet, for its claim`);
    assert.equal(
      workload.spec?.replicas ?? 1,
      1,
      `${where}: one Redis pod: more would be separate Redis servers, each handing out every slot`,
    );
    assert.ok(container.livenessProbe && container.readinessProbe, `${where}: probes`);
    for (const [kind, probe] of probesOf(container)) {
      const asked = probe.tcpSocket?.port ?? probe.httpGet?.port;
      if (asked === undefined) continue;
      assert.equal(portNumber(asked, container, where), port, `${where}: ${kind} port`);
    }
  }
}

/**
 * The example workloads, changed as the cluster-wide file's header says, reach
 * one of its servers through its Service.
 */
function checkClusterClients(servers: readonly Manifest[]): void {
  for (const changed of changedClients(CLUSTER_FILE, "cluster-wide")) {
    const clients = ours(changed);
    assert.ok(clients.length > 0);
    for (const o of clients) {
      assertReachesServer(serverUrl(o.parsed)!, o.where, [...servers, ...changed]);
    }
  }
}

// ---------------------------------------------------------------------------

Deno.test("deploy/kubernetes holds the server, its hostNetwork variant, the cluster-wide server, its example Redis and two example workloads", () => {
  for (const file of [SERVER_FILE, HOST_NETWORK_FILE]) {
    const kinds = loadFile(file).map((m) => m.object.kind);
    assert.ok(kinds.includes("Namespace") && kinds.includes("DaemonSet"), `${file}: ${kinds}`);
  }
  assert.ok(loadFile(SERVER_FILE).some((m) => m.object.kind === "Service"));
  assert.deepEqual(loadFile(CLUSTER_FILE).map((m) => m.object.kind), [
    "Namespace",
    "Deployment",
    "PodDisruptionBudget",
    "Service",
  ]);
  assert.deepEqual(loadFile(REDIS_FILE).map((m) => m.object.kind), [
    "ConfigMap",
    "StatefulSet",
    "Service",
  ]);
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
    "cluster-wide.yaml: serve",
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

Deno.test("the webhook's injected containers reach a server of daemonset.yaml, the file docs/kubernetes.md applies with it", async (t) => {
  // docs/kubernetes.md: apply daemonset.yaml, then inject/webhook.yaml; not the hostNetwork variant.
  const webhook = loadFile("inject/webhook.yaml");
  const pod = webhook.map(podOf).find((p) => p?.manifest.object.kind === "Deployment")!;
  const container = pod.spec.containers[0]!;
  const where = `${pod.manifest.where}, container ${container.name}`;
  const args = (container.args ?? []).map((a) =>
    expand(a, envOf(container.env ?? [], where), where)
  );
  const parsed = injectCommand.parse(args.slice(1), () => undefined);
  assert.equal(parsed.action, "run");
  const options = parsed.options.inject;
  const app: IContainer = {
    name: "app",
    image: "registry.example.com/shop-web:2.4.1",
    readinessProbe: { httpGet: { path: "/ready", port: 8080 } },
  };
  for (const mode of ["sidecar", "init"]) {
    await t.step(mode, () => {
      const plan = planInjection(
        {
          metadata: { generateName: "web-7c9d8f6b5-", annotations: { "startup-lock/mode": mode } },
          spec: { containers: [app] },
        },
        "shop",
        options,
      );
      const injected = plan.patch.find((op) => op.path.startsWith("/spec/initContainers"));
      assert.ok(injected, `${mode}: injected`);
      const value = injected.value as IContainer | IContainer[];
      const initContainers = Array.isArray(value) ? value : [value];
      const [client] = ours([{
        file: "inject/webhook.yaml",
        where: `the pod ${where} injects in ${mode} mode`,
        object: {
          kind: "Deployment",
          metadata: { namespace: "shop" },
          spec: { template: { spec: { initContainers, containers: [app] } } },
        },
      }]);
      assert.ok(client);
      assertReachesServer(serverUrl(client.parsed)!, client.where, loadFile(SERVER_FILE));
    });
  }
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

Deno.test("every container runs with a restricted securityContext and resources, ours as the image's user", () => {
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
      assert.ok(user === undefined || user > 0, `${where}: runAsUser ${user}`);
      const { requests, limits } = container.resources ?? {};
      assert.ok(requests?.cpu && requests.memory && limits?.memory, `${where}: requests, limits`);
      if (isOurImage(container.image)) {
        assert.equal(user, uid, `${where}: runAsUser is the image's USER`);
      }
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
    // Its file's pods, and those of files that leave the namespace to another
    // (redis.yaml); the two DaemonSet files are alternatives, each with its own.
    const files = new Set(namespaces.map((n) => n.file));
    const pods = MANIFESTS.filter((m) => m.file === namespace.file || !files.has(m.file))
      .map(podOf).filter((p) => p !== undefined && p.namespace === name) as Pod[];
    assert.ok(pods.length > 0, `${namespace.where}: no pod runs in it`);
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
          // --locksPerCore gives a slot per core of this machine: hold every one of them.
          assert.equal(server.parsed.command, "serve");
          const slots = server.parsed.command === "serve" ? server.parsed.config.locks : 1;
          const tokens: string[] = [];
          {
            await using first = await startInImage(image, args);
            await first.waitForLog(/does not exist yet: starting with no locks held/);
            for (let i = 1; i <= slots; i++) {
              const granted = await fetch(`${first.url}/?id=web-${i}&duration=10m`);
              await granted.body?.cancel();
              assert.equal(granted.status, 200, `slot ${i} of ${slots}`);
              const token = granted.headers.get("Lock-Token");
              assert.ok(token);
              tokens.push(token);
            }
            assert.equal(await first.stop("SIGTERM"), 0);
          }
          const written = await Deno.stat(`${image.dir}${stateFile}`);
          assert.equal(written.uid, Number(uid), "the state file is the server's user's");

          await using second = await startInImage(image, args);
          await second.waitForLog(new RegExp(`State file .*: ${slots} locks? still held`));
          const refused = await fetch(`${second.url}/`);
          await refused.body?.cancel();
          assert.equal(refused.status, 423, "the holders from before the restart keep the slots");
          const released = await fetch(`${second.url}/locks/${tokens[0]}`, { method: "DELETE" });
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

/**
 * The per-node servers (their locks in memory) size their slots to their node
 * with --locksPerCore, and have no CPU limit, which the server would count as
 * its cores instead of the node's.
 */
function checkPerNodeSlots(manifests: readonly Manifest[]): void {
  const perNode = ours(manifests).filter((o) =>
    o.parsed.command === "serve" && o.parsed.config.store.kind === "memory"
  );
  assert.ok(perNode.length > 0, "no per-node server");
  for (const o of perNode) {
    if (o.parsed.command !== "serve") continue;
    assert.ok(
      o.parsed.config.perCore,
      `${o.where}: --locks gives every node the same slots; --locksPerCore sizes them to the node`,
    );
    const cpu = o.container.resources?.limits?.cpu;
    assert.equal(
      cpu,
      undefined,
      `${o.where}: a CPU limit (${cpu}) would be counted as the cores, not the node's`,
    );
  }
}

/** The two per-node server files, with `change` made to `file`'s DaemonSet: a copy. */
function brokenPerNode(file: string, change: (pod: IPodSpec) => void): Manifest[] {
  const manifests = [...loadFile(SERVER_FILE), ...loadFile(HOST_NETWORK_FILE)];
  const target = manifests.find((m) => m.file === file && m.object.kind === "DaemonSet");
  assert.ok(target, `no DaemonSet in ${file}`);
  change(podOf(target)!.spec);
  return manifests;
}

Deno.test("the per-node servers have a slot per CPU core of their node, and no CPU limit", () => {
  checkPerNodeSlots(MANIFESTS);
});

Deno.test("the per-node slots rule fails on manifests broken its way", async (t) => {
  const cases: [string, Manifest[], RegExp][] = [
    [
      "--locks instead of --locksPerCore",
      brokenPerNode(SERVER_FILE, (pod) => {
        const args = first(pod).args!;
        args[args.indexOf("--locksPerCore")] = "--locks";
      }),
      /daemonset\.yaml .*: --locks gives every node the same slots/,
    ],
    [
      "a CPU limit",
      brokenPerNode(HOST_NETWORK_FILE, (pod) => {
        first(pod).resources!.limits!.cpu = "500m";
      }),
      /daemonset-hostnetwork\.yaml .*: a CPU limit \(500m\) would be counted as the cores/,
    ],
    [
      "--locks beside --locksPerCore",
      brokenPerNode(SERVER_FILE, (pod) => first(pod).args!.push("--locks", "2")),
      /--locks 2 and --locksPerCore 1: give one of/,
    ],
  ];
  for (const [name, manifests, error] of cases) {
    await t.step(name, () => {
      assert.throws(() => checkPerNodeSlots(manifests), error);
    });
  }
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
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.trim() === "env:");
  const end = lines.findIndex((l, i) => i > start && l.trim() === "");
  const snippet = parseAllDocuments(lines.slice(start, end).join("\n"))[0]!.toJS() as {
    env: IEnvVar[];
  };
  const hostNetworkServer = loadFile(HOST_NETWORK_FILE);
  for (
    const changed of changedClients(HOST_NETWORK_FILE, "hostNetwork", (container) => {
      container.env = [...snippet.env, ...container.env ?? []];
    })
  ) {
    for (const o of ours(changed)) {
      assertReachesServer(serverUrl(o.parsed)!, o.where, [...hostNetworkServer, ...changed]);
    }
  }
});

Deno.test("the servers' objects live in their own namespaces, the cluster-wide one's with its Redis", () => {
  const files: [string, string][] = [
    [SERVER_FILE, NAMESPACE],
    [HOST_NETWORK_FILE, NAMESPACE],
    [CLUSTER_FILE, CLUSTER_NAMESPACE],
    [REDIS_FILE, CLUSTER_NAMESPACE],
  ];
  for (const [file, namespace] of files) {
    for (const { where, object } of loadFile(file)) {
      const metadata = object.metadata as { name: string; namespace?: string };
      if (object.kind === "Namespace") assert.equal(metadata.name, namespace, where);
      else assert.equal(metadata.namespace, namespace, where);
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

Deno.test("the cluster-wide server runs 2 or more replicas across nodes, without a state file, drained one by one", () => {
  checkSharedReplicas(MANIFESTS);
});

Deno.test("the cluster-wide server's --store reaches the example Redis through its Service, on the port Redis listens on", () => {
  checkStoreReachesRedis(MANIFESTS);
});

Deno.test("the Redis password comes from a Secret, as a file, to the server and to Redis alike", () => {
  checkRedisPassword(MANIFESTS);
});

Deno.test("the example Redis keeps every grant: appendonly yes, appendfsync always, noeviction, its data on a claim, one pod", () => {
  checkRedisKeepsGrants(MANIFESTS);
});

Deno.test("the example workloads, pointed at the cluster-wide Service as its header says, reach a replica", () => {
  checkClusterClients(MANIFESTS);
});

/** The cluster-wide file and the example Redis, with `change` made to one document: a copy. */
function brokenCluster(
  file: string,
  kind: string,
  change: (object: Json, pod: IPodSpec | undefined) => void,
): Manifest[] {
  const manifests = [...loadFile(CLUSTER_FILE), ...loadFile(REDIS_FILE)];
  const target = manifests.find((m) => m.file === file && m.object.kind === kind);
  assert.ok(target, `no ${kind} in ${file}`);
  change(target.object, podOf(target)?.spec);
  return manifests;
}

/** The first container of a pod spec. */
const first = (pod: IPodSpec | undefined): IContainer => pod!.containers[0]!;
/** Changes the example Redis's redis.conf. */
const redisConf = (change: (text: string) => string) => (object: Json) => {
  const data = object.data as Record<string, string>;
  data["redis.conf"] = change(data["redis.conf"]!);
};
/** Changes the value after `flag` in the container's args. */
const flagValue = (flag: string, value: string) => (_: Json, pod: IPodSpec | undefined) => {
  const args = first(pod).args!;
  args[args.indexOf(flag) + 1] = value;
};

Deno.test("each cluster-wide rule fails on manifests broken its way", async (t) => {
  const D = "Deployment";
  const cases: [string, (m: readonly Manifest[]) => void, Manifest[], RegExp][] = [
    [
      "one replica",
      checkSharedReplicas,
      brokenCluster(CLUSTER_FILE, D, (o) => (o.spec as Json).replicas = 1),
      /1 replica: 2 or more/,
    ],
    [
      "no spread across nodes",
      checkSharedReplicas,
      brokenCluster(CLUSTER_FILE, D, (_, pod) => delete pod!.topologySpreadConstraints),
      /spread across nodes/,
    ],
    [
      "a spread across nodes that gives way",
      checkSharedReplicas,
      brokenCluster(CLUSTER_FILE, D, (_, pod) => {
        pod!.topologySpreadConstraints![0]!.whenUnsatisfiable = "ScheduleAnyway";
      }),
      /spread across nodes/,
    ],
    [
      "no PodDisruptionBudget for the pods",
      checkSharedReplicas,
      brokenCluster(CLUSTER_FILE, "PodDisruptionBudget", (o) => {
        (o.spec as Json).selector = { matchLabels: { "app.kubernetes.io/name": "other" } };
      }),
      /one PodDisruptionBudget/,
    ],
    [
      "a PodDisruptionBudget that blocks drains",
      checkSharedReplicas,
      brokenCluster(
        CLUSTER_FILE,
        "PodDisruptionBudget",
        (o) => (o.spec as Json).maxUnavailable = 0,
      ),
      /lets no pod go/,
    ],
    [
      "a PodDisruptionBudget that lets every replica go",
      checkSharedReplicas,
      brokenCluster(CLUSTER_FILE, "PodDisruptionBudget", (o) => {
        delete (o.spec as Json).maxUnavailable;
        (o.spec as Json).minAvailable = 0;
      }),
      /lets all 3 replicas go/,
    ],
    [
      "a state file beside Redis",
      checkSharedReplicas,
      brokenCluster(CLUSTER_FILE, D, (_, pod) => {
        first(pod).args!.push("--stateFile", "/var/lib/startup-lock/locks.json");
      }),
      /--stateFile keeps the locks of a memory store/,
    ],
    [
      "--store names no Service of the manifests",
      checkStoreReachesRedis,
      brokenCluster(
        CLUSTER_FILE,
        D,
        flagValue("--store", "redis://cache.startup-lock-cluster.svc:6379"),
      ),
      /no Service cache\.startup-lock-cluster\.svc/,
    ],
    [
      "the Service lacks the port",
      checkStoreReachesRedis,
      brokenCluster(REDIS_FILE, "Service", (o) => {
        ((o.spec as Json).ports as Json[])[0]!.port = 6380;
      }),
      /Service redis has no port 6379/,
    ],
    [
      "the Service selects no Redis pod",
      checkStoreReachesRedis,
      brokenCluster(REDIS_FILE, "Service", (o) => {
        (o.spec as Json).selector = { "app.kubernetes.io/name": "cache" };
      }),
      /matches no Redis pod/,
    ],
    [
      "Redis listens on another port",
      checkStoreReachesRedis,
      brokenCluster(REDIS_FILE, "ConfigMap", redisConf((c) => c.replace("port 6379", "port 6380"))),
      /Redis listens on 6380/,
    ],
    [
      "the password in the --store URL",
      checkRedisPassword,
      brokenCluster(CLUSTER_FILE, D, (_, pod) => {
        const container = first(pod);
        const args = container.args!;
        args.splice(args.indexOf("--storePasswordFile"), 2);
        args[args.indexOf("--store") + 1] = "redis://:hunter2@redis.startup-lock-cluster.svc:6379";
      }),
      /not from a file of a Secret volume/,
    ],
    [
      "the password in env from a Secret",
      checkRedisPassword,
      brokenCluster(CLUSTER_FILE, D, (_, pod) => {
        const container = first(pod);
        const args = container.args!;
        args.splice(args.indexOf("--storePasswordFile"), 2);
        args[args.indexOf("--store") + 1] =
          "redis://:$(REDIS_PASSWORD)@redis.startup-lock-cluster.svc:6379";
        container.env = [{
          name: "REDIS_PASSWORD",
          valueFrom: { secretKeyRef: { name: "redis-password", key: "password" } },
        }];
      }),
      /env REDIS_PASSWORD from a Secret/,
    ],
    [
      "the password file readable by every user",
      checkRedisPassword,
      brokenCluster(CLUSTER_FILE, D, (_, pod) => pod!.volumes![0]!.secret!.defaultMode = 0o644),
      /readable by every user/,
    ],
    [
      "the password file from a ConfigMap",
      checkRedisPassword,
      brokenCluster(CLUSTER_FILE, D, (_, pod) => {
        const volume = pod!.volumes![0]!;
        volume.configMap = { name: "redis-password", items: volume.secret!.items! };
        delete volume.secret;
      }),
      /Cannot read --storePasswordFile/,
    ],
    [
      "Redis requires another Secret",
      checkRedisPassword,
      brokenCluster(REDIS_FILE, "StatefulSet", (_, pod) => {
        pod!.volumes!.find((v) => v.secret)!.secret!.secretName = "other-password";
      }),
      /Redis requires another Secret's key/,
    ],
    [
      "Redis's password on its command line",
      checkRedisPassword,
      brokenCluster(REDIS_FILE, "StatefulSet", (_, pod) => {
        const command = first(pod).command!;
        command[2] = command[2]!.replace(/"\$\(cat \S+\)"/, "hunter2");
      }),
      /--requirepass "\$\(cat FILE\)"/,
    ],
    [
      "Redis's password in its ConfigMap",
      checkRedisPassword,
      brokenCluster(REDIS_FILE, "ConfigMap", redisConf((c) => `${c}requirepass hunter2\n`)),
      /requirepass in a ConfigMap/,
    ],
    [
      "appendonly no",
      checkRedisKeepsGrants,
      brokenCluster(REDIS_FILE, "ConfigMap", redisConf((c) => c.replace("appendonly yes", ""))),
      /appendonly: a restart would forget/,
    ],
    [
      "appendfsync everysec",
      checkRedisKeepsGrants,
      brokenCluster(REDIS_FILE, "ConfigMap", redisConf((c) => c.replace("always", "everysec"))),
      /appendfsync: with everysec/,
    ],
    [
      "no fsync while the append-only file is rewritten",
      checkRedisKeepsGrants,
      brokenCluster(
        REDIS_FILE,
        "ConfigMap",
        redisConf((c) => c.replace("rewrite no", "rewrite yes")),
      ),
      /no fsync on rewrites/,
    ],
    [
      "an eviction policy",
      checkRedisKeepsGrants,
      brokenCluster(
        REDIS_FILE,
        "ConfigMap",
        redisConf((c) => c.replace("noeviction", "allkeys-lru")),
      ),
      /maxmemory-policy: an eviction/,
    ],
    [
      "maxmemory above the memory limit",
      checkRedisKeepsGrants,
      brokenCluster(
        REDIS_FILE,
        "ConfigMap",
        redisConf((c) => c.replace(/maxmemory \d+mb/, "maxmemory 1gb")),
      ),
      /maxmemory 1gb: below the memory limit/,
    ],
    [
      "the data off the claim",
      checkRedisKeepsGrants,
      brokenCluster(REDIS_FILE, "ConfigMap", redisConf((c) => c.replace("dir /data", "dir /tmp"))),
      /dir \/tmp is not a PersistentVolumeClaim/,
    ],
    [
      "two Redis pods",
      checkRedisKeepsGrants,
      brokenCluster(REDIS_FILE, "StatefulSet", (o) => (o.spec as Json).replicas = 2),
      /one Redis pod/,
    ],
    [
      "a liveness probe on another port",
      checkRedisKeepsGrants,
      brokenCluster(REDIS_FILE, "StatefulSet", (_, pod) => {
        first(pod).livenessProbe!.tcpSocket!.port = 6380;
      }),
      /livenessProbe port/,
    ],
    [
      "a node-local Service in front of the replicas",
      checkClusterClients,
      brokenCluster(CLUSTER_FILE, "Service", (o) => {
        (o.spec as Json).internalTrafficPolicy = "Local";
      }),
      /not node-local/,
    ],
  ];
  for (const [name, rule, manifests, expected] of cases) {
    await t.step(name, () => {
      assert.throws(() => rule(manifests), expected);
    });
  }
});

/** Escapes `text` for a RegExp. */
function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** `text` with the container's mount paths moved under `root`, where the test mounts them. */
function underRoot(text: string, container: IContainer, root: string): string {
  const paths = (container.volumeMounts ?? []).map((m) => escapeRegExp(m.mountPath));
  if (paths.length === 0) return text;
  const pattern = new RegExp(`(^|[\\s"'=])(${paths.join("|")})(?=[/\\s"']|$)`, "gm");
  return text.replace(pattern, (_, before: string, path: string) => `${before}${root}${path}`);
}

/**
 * Makes under `root` what the kubelet mounts in `container`: the ConfigMaps'
 * files (their mount paths moved under `root` too), the Secret's files holding
 * `secret`, and empty directories for the rest.
 */
async function mountUnder(
  root: string,
  pod: Pod,
  container: IContainer,
  manifests: readonly Manifest[],
  secret: string,
): Promise<void> {
  for (const mount of container.volumeMounts ?? []) {
    await Deno.mkdir(`${root}${mount.mountPath}`, { recursive: true });
    const source = pod.spec.volumes?.find((v) => v.name === mount.name)?.configMap;
    if (!source?.name) continue;
    const configMap = findObject(manifests, "ConfigMap", source.name, pod.namespace);
    const data = (configMap?.data ?? {}) as Record<string, string>;
    const items = source.items ?? Object.keys(data).map((key) => ({ key, path: key }));
    for (const { key, path } of items) {
      const text = underRoot(data[key] ?? "", container, root);
      await Deno.writeTextFile(`${root}${mount.mountPath}/${path}`, text);
    }
  }
  for (const file of secretFiles(pod, container, manifests)) {
    await Deno.writeTextFile(`${root}${file.path}`, secret);
  }
}

/** Runs `sh -c script`; its exit code and output. */
async function shell(script: string, env: Record<string, string> = {}) {
  const out = await new Deno.Command("sh", { args: ["-c", script], env, stdin: "null" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, output: text.trim() };
}

Deno.test({
  name:
    "redis.yaml's Redis and cluster-wide.yaml's replicas, run from the manifests: Redis wants the password and keeps every write, its readiness probe passes, two replicas share the slots",
  ignore: SKIP_REDIS || !which("redis-cli"),
  async fn(t) {
    const [redis] = redisInstances(MANIFESTS);
    const shared = sharedServers(MANIFESTS).find((s) =>
      redisOf(s, MANIFESTS).some((r) => r.where === redis?.where)
    );
    assert.ok(redis && shared, "no server that shares the example Redis");
    assert.ok(REDIS_SERVER);
    const root = await Deno.makeTempDir({ prefix: "startup-lock-k8s-redis-" });
    const password = crypto.randomUUID();
    const port = freePort();
    let process: Deno.ChildProcess | undefined;
    try {
      // Redis's own command line, its mounts under root, on a free port of 127.0.0.1.
      await mountUnder(root, redis.pod, redis.container, MANIFESTS, password);
      await mountUnder(root, shared.server.pod, shared.server.container, MANIFESTS, password);
      const [sh, flag, script] = redis.container.command ?? [];
      assert.deepEqual([sh, flag, redis.container.args], ["sh", "-c", undefined]);
      // Overrides for this machine: a free port on loopback; what Redis prints in files.
      const local = `${underRoot(script!, redis.container, root)} --port ${port} ` +
        `--bind 127.0.0.1 --logfile ${root}/redis.log >${root}/redis.out 2>&1`;
      process = new Deno.Command("sh", {
        args: ["-c", local],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      const log = async () =>
        (await Promise.all(
          ["redis.out", "redis.log"].map((f) => Deno.readTextFile(`${root}/${f}`).catch(() => "")),
        )).join("");

      const up = await t.step("its readiness probe passes once Redis is up", async () => {
        const probe = redis.container.readinessProbe?.exec?.command ?? [];
        assert.deepEqual(probe.slice(0, 2), ["sh", "-c"]);
        assert.match(probe[2]!, /redis-cli /, "the probe asks Redis on its default port");
        assert.equal(redis.port, 6379, "redis-cli's default port");
        const ask = underRoot(probe[2]!, redis.container, root)
          .replace("redis-cli ", `redis-cli -p ${port} `);
        const deadline = Date.now() + 10_000;
        for (;;) {
          if ((await shell(ask)).code === 0) break;
          assert.ok(Date.now() < deadline, `the readiness probe fails:\n${await log()}`);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      });
      if (!up) return;

      const cli = (args: string, auth: boolean) =>
        shell(`redis-cli -p ${port} ${args}`, auth ? { REDISCLI_AUTH: password } : {});

      await t.step("without the Secret's password, Redis refuses", async () => {
        assert.match((await cli("ping", false)).output, /NOAUTH/);
        assert.equal((await cli("ping", true)).output, "PONG");
      });

      await t.step("Redis runs with the ConfigMap's settings", async () => {
        const settings = ["appendonly", "appendfsync", "maxmemory-policy", "maxmemory", "dir"];
        const { output } = await cli(`config get ${settings.join(" ")}`, true);
        const lines = output.split("\n");
        const got = Object.fromEntries(
          lines.flatMap((l, i) => i % 2 === 0 ? [[l, lines[i + 1]]] : []),
        );
        const conf = (name: string) => redis.config.get(name)!.join(" ");
        assert.deepEqual(got, {
          appendonly: "yes",
          appendfsync: "always",
          "maxmemory-policy": "noeviction",
          maxmemory: String(redisBytes(conf("maxmemory"))),
          dir: `${root}${conf("dir")}`,
        });
      });

      await t.step("two replicas share the slots, and either releases a lock", async () => {
        const argv = shared.server.argv;
        assert.equal(argv[0], "serve");
        // Its own command line, on a free port, with the Redis started above.
        const args = argv.slice(1).map((a, i, all) => {
          if (all[i - 1] === "--port") return "0";
          if (all[i - 1] === "--store") {
            const url = new URL(a);
            url.hostname = "127.0.0.1";
            url.port = String(port);
            return url.href.replace(/\/$/, "");
          }
          return underRoot(a, shared.server.container, root);
        });
        await using a = await startProgram(args);
        await using b = await startProgram(args);
        const acquire = async (url: string, id: string) => {
          const response = await fetch(`${url}/?id=${id}&duration=1m`);
          await response.body?.cancel();
          return { status: response.status, token: response.headers.get("Lock-Token") };
        };
        const tokens: string[] = [];
        for (let i = 0; i < shared.config.locks; i++) {
          const granted = await acquire(i % 2 === 0 ? a.url : b.url, `client-${i}`);
          assert.equal(granted.status, 200, `lock ${i + 1} of ${shared.config.locks}`);
          tokens.push(granted.token!);
        }
        assert.equal((await acquire(b.url, "one-more")).status, 423, "every slot is held");
        const released = await fetch(`${b.url}/locks/${tokens[0]}`, { method: "DELETE" });
        await released.body?.cancel();
        assert.equal(released.status, 204, "a lock granted by the other replica");
        assert.equal((await acquire(b.url, "one-more")).status, 200);
        assert.equal(await a.stop("SIGTERM"), 0);
        assert.equal(await b.stop("SIGTERM"), 0);
        const dir = `${root}${redis.config.get("dir")![0]}`;
        assert.ok(
          [...Deno.readDirSync(dir)].some((e) => e.name === "appendonlydir"),
          `the append-only file is in ${dir}, the claim's mount`,
        );
      });
    } finally {
      if (process) {
        try {
          process.kill("SIGTERM");
        } catch {
          // It has exited already.
        }
        await process.status;
      }
      await Deno.remove(root, { recursive: true });
    }
  },
});
