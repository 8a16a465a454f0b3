/**
 * What the admission webhook does to a pod, as a pure function: a pod and the
 * webhook's options in, an RFC 6902 JSON Patch and the warnings for the user
 * out. No I/O here, so every rule is tested by calling {@linkcode planInjection}.
 *
 * Two ways to add the lock, as the hand-written examples in
 * `deploy/kubernetes/` do: a native sidecar running `hold` (the default: the
 * lock is released the moment the app is ready) or, with the annotation
 * `startup-lock/mode: init`, a plain init container running `acquire` (the
 * lock is held for a fixed time; nothing runs beside the app).
 *
 * @module
 */
import { parseReadyUrl } from "../commands/_client.ts";
import { parseDuration } from "../duration.ts";
import { MAX_ID_LENGTH } from "../protocol.ts";

/** The annotations users set on a pod (or its template). */
export const ANNOTATIONS = {
  /** `"false"` opts the pod out; `"true"` or absent lets it in. */
  inject: "startup-lock/inject",
  /** `sidecar` (default) or `init`. */
  mode: "startup-lock/mode",
  /** How long the lock may be held: `hold`'s bound, `acquire`'s fixed time. */
  duration: "startup-lock/duration",
  /** The app's ready URL, when its probes do not give one: http(s):// or tcp://. */
  readyUrl: "startup-lock/ready-url",
  /** Set by the webhook on the pods it changed: the mode it injected. Never mutated twice. */
  injected: "startup-lock/injected",
} as const;

/** The injected container's name; a pod that already has one is left alone. */
export const CONTAINER_NAME = "startup-lock";

/**
 * The label of the lock server's pods and of the webhook's own (a name of
 * their own, so the server's Service does not select them): they never get the lock.
 */
export const OWN_LABEL = {
  key: "app.kubernetes.io/name",
  values: ["startup-lock", "startup-lock-inject"],
} as const;

/** Namespaces whose pods never get the lock: the cluster's own, which must start unthrottled. */
export const EXCLUDED_NAMESPACES: readonly string[] = ["kube-system"];

/**
 * Where `hold` answers its probes, as in example-sidecar.yaml; the next free
 * port when the pod uses this one (its containers share the network).
 */
export const DEFAULT_PROBE_PORT = 8889;

/**
 * How long the startupProbe lets the sidecar wait for its lock:
 * {@linkcode PROBE_FAILURE_THRESHOLD} × 1 s, an hour, as in the example. The
 * kubelet restarts the sidecar after that, and it queues again with the same id.
 */
export const PROBE_FAILURE_THRESHOLD = 3600;

/**
 * The injected container's resources: the client is about 45 MB resident
 * while it waits (docs/performance.md, "What each command costs"), and needs no CPU to speak of.
 */
export const RESOURCES = {
  requests: { cpu: "10m", memory: "48Mi" },
  limits: { memory: "96Mi" },
} as const;

/** The user of the startup-lock image (distroless's "nonroot"), as its Dockerfile sets it. */
export const IMAGE_USER = 65532;

/** How the webhook adds the lock. */
export interface InjectOptions {
  /** The startup-lock image to run. */
  image: string;
  /** The lock server as the pod reaches it; may hold `$(HOST_IP)`. */
  server: string;
  /** `hold --duration`: the longest the sidecar holds the lock if the app never gets ready. */
  sidecarDurationMs: number;
  /** `acquire --duration` in init mode: the fixed time the lock is held. */
  initDurationMs: number;
  /** `acquire --wait` in init mode: the init container fails after this and the kubelet runs it again. */
  initWaitMs: number;
  /**
   * The Secret (in the pod's own namespace) and its key that hold the lock
   * server's bearer token, given to the injected container as
   * `STARTUP_LOCK_AUTH_TOKEN`. @default {none: the server needs no token}
   */
  authTokenSecret?: SecretKey | undefined;
}

/** A key of a Secret, as `secretKeyRef` names it. */
export interface SecretKey {
  name: string;
  key: string;
}

/** The few parts of a pod the webhook reads; everything else is carried through untouched. */
export interface Pod {
  metadata?: {
    name?: string;
    generateName?: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: PodSpec;
}

/** The part of a pod spec the webhook reads. */
export interface PodSpec {
  hostNetwork?: boolean;
  os?: { name?: string };
  nodeSelector?: Record<string, string>;
  initContainers?: Container[];
  containers: Container[];
}

/** The part of a container the webhook reads. */
export interface Container {
  name: string;
  image?: string;
  ports?: { name?: string; containerPort: number }[];
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
}

/** A probe: the kinds the webhook can turn into a ready URL, and the rest by name only. */
export interface Probe {
  httpGet?: { scheme?: string; host?: string; path?: string; port: number | string };
  tcpSocket?: { host?: string; port: number | string };
  exec?: unknown;
  grpc?: { port: number };
}

/** One RFC 6902 operation; the webhook only ever adds. */
export interface AddOperation {
  op: "add";
  path: string;
  value: unknown;
}

/** What was done to the pod, for the log. */
export type Outcome =
  | { kind: "injected"; mode: "sidecar"; readyUrl: string; readyFrom: string }
  | { kind: "injected"; mode: "init" }
  | { kind: "skipped"; reason: string };

/** The webhook's answer for one pod. */
export interface Plan {
  /** Empty when the pod is left as it is. */
  patch: AddOperation[];
  /** For the AdmissionReview's `warnings`: shown by kubectl to whoever created the pod. */
  warnings: string[];
  outcome: Outcome;
}

/** Hosts a probe may name that the sidecar reaches as 127.0.0.1: the pod's own. */
const LOCAL_HOSTS = new Set(["", "localhost", "127.0.0.1", "::1", "[::1]"]);

/** How long a generated pod name gets: generateName cut to 58 characters, plus 5 random ones. */
const GENERATED_PREFIX_MAX = 58;
const GENERATED_SUFFIX_LENGTH = 5;

/**
 * Decides what to do with `pod`, created in `namespace`: the patch that adds
 * the lock, or none with the reason; never throws for anything in the pod.
 */
export function planInjection(pod: Pod, namespace: string, options: InjectOptions): Plan {
  const annotations = pod.metadata?.annotations ?? {};
  const labels = pod.metadata?.labels ?? {};
  const skip = (reason: string, warn = false): Plan => ({
    patch: [],
    warnings: warn ? [`startup-lock: not injected: ${reason}`] : [],
    outcome: { kind: "skipped", reason },
  });

  const optIn = annotations[ANNOTATIONS.inject];
  if (optIn === "false") return skip(`annotation ${ANNOTATIONS.inject} is "false"`);
  if (EXCLUDED_NAMESPACES.includes(namespace)) return skip(`namespace ${namespace} is excluded`);
  const own = labels[OWN_LABEL.key];
  if ((OWN_LABEL.values as readonly string[]).includes(own ?? "")) {
    return skip(`label ${OWN_LABEL.key}=${own}: the lock's own pod`);
  }
  if (annotations[ANNOTATIONS.injected] !== undefined) {
    return skip(`annotation ${ANNOTATIONS.injected} is set: already injected`);
  }
  const all = [...(pod.spec.initContainers ?? []), ...pod.spec.containers];
  const ours = all.find((c) => isStartupLockImage(c.image, options.image));
  if (ours) return skip(`container "${ours.name}" already runs startup-lock`);
  if (all.some((c) => c.name === CONTAINER_NAME)) {
    return skip(`the pod already has a container named "${CONTAINER_NAME}"`, true);
  }
  if (optIn !== undefined && optIn !== "true") {
    return skip(`annotation ${ANNOTATIONS.inject} is "${optIn}": expected "true" or "false"`, true);
  }
  const windows = windowsReason(pod.spec);
  if (windows) return skip(windows, true);

  const mode = annotations[ANNOTATIONS.mode] ?? "sidecar";
  if (mode !== "sidecar" && mode !== "init") {
    return skip(`annotation ${ANNOTATIONS.mode} is "${mode}": expected "sidecar" or "init"`, true);
  }
  let durationMs = mode === "init" ? options.initDurationMs : options.sidecarDurationMs;
  const durationText = annotations[ANNOTATIONS.duration];
  if (durationText !== undefined) {
    try {
      durationMs = parseDuration(durationText);
    } catch (error) {
      const reason = (error as Error).message;
      return skip(`annotation ${ANNOTATIONS.duration} is "${durationText}": ${reason}`, true);
    }
  }
  const id = lockId(pod, namespace);
  if (id === undefined) {
    return skip(`the pod's name is longer than a lock id may be (${MAX_ID_LENGTH})`, true);
  }

  if (mode === "init") {
    const container = initContainer(options, id, durationMs);
    return {
      // Last of the init containers: the lock's fixed time starts right before the app.
      patch: [...addInitContainer(pod, container, "last"), ...markInjected(pod, "init")],
      warnings: [],
      outcome: { kind: "injected", mode: "init" },
    };
  }

  if (pod.spec.hostNetwork) {
    return skip(
      `the pod uses the host's network, where every such pod's sidecar would need its own ` +
        `port: use annotation ${ANNOTATIONS.mode}: init`,
      true,
    );
  }
  const ready = readyUrlOf(pod);
  if ("problem" in ready) return skip(ready.problem, true);
  const port = probePort(all, ready.url);
  const container = sidecarContainer(options, id, durationMs, ready.url, port);
  return {
    // First of the init containers: the lock is held before anything of the pod starts.
    patch: [...addInitContainer(pod, container, "first"), ...markInjected(pod, "sidecar")],
    warnings: ready.warning ? [`startup-lock: ${ready.warning}`] : [],
    outcome: { kind: "injected", mode: "sidecar", readyUrl: ready.url, readyFrom: ready.from },
  };
}

/**
 * Why the pod runs on Windows, or undefined: the image is built for Linux, and
 * the API server refuses a pod whose `spec.os.name` is `windows` with the
 * Linux-only fields of the injected container's securityContext.
 */
function windowsReason(spec: PodSpec): string | undefined {
  if (spec.os?.name === "windows") {
    return "the pod runs on Windows (spec.os.name), the image on Linux";
  }
  if (spec.nodeSelector?.[OS_LABEL] === "windows") {
    return `the pod runs on Windows (nodeSelector ${OS_LABEL}), the image on Linux`;
  }
  return undefined;
}

/** The node label that names its operating system. */
const OS_LABEL = "kubernetes.io/os";

/** Whether `image` is startup-lock: the injected image, or any image named startup-lock. */
function isStartupLockImage(image: string | undefined, injected: string): boolean {
  if (image === undefined) return false;
  return image === injected || /(^|\/)startup-lock([:@]|$)/.test(image);
}

/**
 * The lock's id: `NAMESPACE/$(POD_NAME)`, the pod's name filled in by the
 * kubelet (a Deployment's pods have none yet when they are admitted), unique
 * in the cluster and the same when the container restarts, so it gets its own
 * lock back. Only the pod name when the namespace would make it too long.
 */
function lockId(pod: Pod, namespace: string): string | undefined {
  const name = pod.metadata?.name;
  const generated = pod.metadata?.generateName;
  const nameLength = name
    ? name.length
    : Math.min(generated?.length ?? 0, GENERATED_PREFIX_MAX) + GENERATED_SUFFIX_LENGTH;
  if (namespace.length + 1 + nameLength <= MAX_ID_LENGTH) return `${namespace}/$(POD_NAME)`;
  return nameLength <= MAX_ID_LENGTH ? "$(POD_NAME)" : undefined;
}

/** Where the ready URL came from, or why there is none. */
type Ready = { url: string; from: string; warning?: string } | { problem: string };

/**
 * The app's ready URL: the annotation when set, else the first app
 * container's startupProbe, else its readinessProbe, when they ask over HTTP
 * or TCP. A startupProbe comes first: it says when the start-up is over.
 */
function readyUrlOf(pod: Pod): Ready {
  const annotated = pod.metadata?.annotations?.[ANNOTATIONS.readyUrl];
  if (annotated !== undefined) {
    const problem = checkReadyUrl(annotated);
    if (problem) {
      return { problem: `annotation ${ANNOTATIONS.readyUrl} is "${annotated}": ${problem}` };
    }
    return { url: annotated.trim(), from: `annotation ${ANNOTATIONS.readyUrl}` };
  }
  const app = pod.spec.containers[0];
  if (!app) return { problem: "the pod has no containers" };
  const tried: string[] = [];
  for (const kind of ["startupProbe", "readinessProbe"] as const) {
    const probe = app[kind];
    if (!probe) continue;
    const found = probeUrl(probe, app);
    const from = `${kind} of container "${app.name}"`;
    if ("url" in found) return { ...found, from };
    tried.push(`its ${kind} ${found.problem}`);
  }
  const why = tried.length > 0 ? tried.join(" and ") : "it has no startupProbe or readinessProbe";
  return {
    problem: `no ready URL for container "${app.name}": ${why}; set annotation ` +
      `${ANNOTATIONS.readyUrl} (http://127.0.0.1:PORT/PATH or tcp://127.0.0.1:PORT)`,
  };
}

/** Why `text` is no ready URL `hold` accepts (its own parser decides), or undefined. */
function checkReadyUrl(text: string): string | undefined {
  try {
    parseReadyUrl(text);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/** The URL the sidecar asks for what `probe` asks, or why it cannot. */
function probeUrl(probe: Probe, container: Container): { url: string; warning?: string } | {
  problem: string;
} {
  const action = probe.httpGet ?? probe.tcpSocket;
  if (!action) {
    const kind = probe.exec ? "exec" : probe.grpc ? "grpc" : "handler-less";
    return { problem: `is an ${kind} probe, which the sidecar cannot run` };
  }
  if (!LOCAL_HOSTS.has(action.host ?? "")) {
    return { problem: `asks another host (${action.host}), not the pod` };
  }
  const port = resolvePort(action.port, container);
  if (typeof port === "string") return { problem: port };
  if (!probe.httpGet) return { url: `tcp://127.0.0.1:${port}` };
  const scheme = (probe.httpGet.scheme ?? "HTTP").toLowerCase();
  if (scheme !== "http" && scheme !== "https") {
    return { problem: `has scheme "${probe.httpGet.scheme}": expected HTTP or HTTPS` };
  }
  const rawPath = probe.httpGet.path ?? "/";
  const path = rawPath.startsWith("/") ? rawPath : `/${rawPath}`;
  let url: URL;
  try {
    url = new URL(`${scheme}://127.0.0.1:${port}${path}`);
  } catch {
    return { problem: `has a path that makes no URL: "${rawPath}"` };
  }
  return scheme === "https"
    ? {
      url: url.href,
      // The kubelet does not check a probe's certificate; hold does.
      warning: `${url.href} must present a certificate the image trusts, or the lock is held ` +
        `until its duration ends; else set annotation ${ANNOTATIONS.readyUrl}`,
    }
    : { url: url.href };
}

/** A probe's port as a number, resolving a name through the container's ports; a string says why not. */
function resolvePort(port: number | string, container: Container): number | string {
  if (typeof port === "number") {
    return Number.isInteger(port) && port >= 1 && port <= 65535
      ? port
      : `has port ${port}: expected 1 to 65535`;
  }
  if (/^\d+$/.test(port)) return resolvePort(Number(port), container);
  const named = container.ports?.find((p) => p.name === port);
  return named ? named.containerPort : `names port "${port}", which the container does not declare`;
}

/**
 * The first port from {@linkcode DEFAULT_PROBE_PORT} that the pod does not
 * use: no container declares it, no probe asks it and the ready URL is not on
 * it. A declaration is informational, so an app may listen on a port that
 * only its probes name; the sidecar taking it would keep the app from binding.
 */
function probePort(containers: readonly Container[], readyUrl: string): number {
  const taken = new Set<number>([Number(new URL(readyUrl).port)]);
  for (const container of containers) {
    for (const port of container.ports ?? []) taken.add(port.containerPort);
    for (const kind of PROBE_KINDS) {
      const probe = container[kind];
      const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port ?? probe?.grpc?.port;
      const resolved = port === undefined ? undefined : resolvePort(port, container);
      if (typeof resolved === "number") taken.add(resolved);
    }
  }
  let port = DEFAULT_PROBE_PORT;
  while (taken.has(port)) port++;
  return port;
}

/** The probes a container may have, each of which may name a port the container listens on. */
const PROBE_KINDS = ["startupProbe", "readinessProbe", "livenessProbe"] as const;

/** `restricted` Pod Security Standard, whatever the pod's own context says. */
const SECURITY_CONTEXT = {
  runAsNonRoot: true,
  runAsUser: IMAGE_USER,
  runAsGroup: IMAGE_USER,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
} as const;

/**
 * The injected container's variables: the downward-API ones its arguments use
 * (the pod's name, and the node's IP for `--server`), and the server's bearer
 * token from a Secret when there is one (a variable, never an argument, which
 * `ps` and the pod spec would show).
 */
function envFor(options: InjectOptions): unknown[] {
  const field = (name: string, fieldPath: string) => ({
    name,
    valueFrom: { fieldRef: { fieldPath } },
  });
  const secret = options.authTokenSecret;
  return [
    field("POD_NAME", "metadata.name"),
    ...(options.server.includes("$(HOST_IP)") ? [field("HOST_IP", "status.hostIP")] : []),
    ...(secret ? [{ name: AUTH_TOKEN_VARIABLE, valueFrom: { secretKeyRef: { ...secret } } }] : []),
  ];
}

/** The variable the clients read the server's bearer token from. */
export const AUTH_TOKEN_VARIABLE = "STARTUP_LOCK_AUTH_TOKEN";

function sidecarContainer(
  options: InjectOptions,
  id: string,
  durationMs: number,
  readyUrl: string,
  port: number,
): Record<string, unknown> {
  return {
    name: CONTAINER_NAME,
    image: options.image,
    // A native sidecar (Kubernetes 1.29 or later): runs beside the app until the pod stops.
    restartPolicy: "Always",
    args: [
      "hold",
      ...["--server", options.server, "--id", id],
      ...["--duration", durationArg(durationMs), "--readyUrl", escapeDollars(readyUrl)],
      ...["--listen", `0.0.0.0:${port}`],
    ],
    env: envFor(options),
    ports: [{ name: "lock-probe", containerPort: port }],
    // The kubelet starts the app only once this passes: once the lock is held.
    startupProbe: {
      httpGet: { path: "/acquired", port },
      periodSeconds: 1,
      failureThreshold: PROBE_FAILURE_THRESHOLD,
    },
    livenessProbe: { httpGet: { path: "/healthz", port } },
    resources: RESOURCES,
    securityContext: SECURITY_CONTEXT,
  };
}

function initContainer(
  options: InjectOptions,
  id: string,
  durationMs: number,
): Record<string, unknown> {
  return {
    name: CONTAINER_NAME,
    image: options.image,
    args: [
      "acquire",
      ...["--server", options.server, "--id", id],
      ...["--duration", durationArg(durationMs), "--wait", durationArg(options.initWaitMs)],
    ],
    env: envFor(options),
    resources: RESOURCES,
    securityContext: SECURITY_CONTEXT,
  };
}

/**
 * A duration as the flag parsers read it back exactly: one unit, the largest
 * that divides it (`5m`, `90s`, `1500ms`); `formatDuration`'s `1m30s` is for people.
 */
function durationArg(ms: number): string {
  const units: [number, string][] = [[3_600_000, "h"], [60_000, "m"], [1000, "s"]];
  for (const [size, unit] of units) if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

/** `$` as `$$`: Kubernetes expands `$(NAME)` in args, and a URL is meant literally. */
function escapeDollars(text: string): string {
  return text.replaceAll("$", "$$$$");
}

/** Adds `container` as the first or last init container; the list may not exist yet. */
function addInitContainer(pod: Pod, container: unknown, where: "first" | "last"): AddOperation[] {
  // null is absent, as Kubernetes reads it; "add" replaces the null.
  if (pod.spec.initContainers == null) {
    return [{ op: "add", path: "/spec/initContainers", value: [container] }];
  }
  const path = where === "first" ? "/spec/initContainers/0" : "/spec/initContainers/-";
  return [{ op: "add", path, value: container }];
}

/** Marks the pod as done, so that a second call (a reinvocation, a retry) changes nothing. */
function markInjected(pod: Pod, mode: "sidecar" | "init"): AddOperation[] {
  if (pod.metadata == null) {
    return [{
      op: "add",
      path: "/metadata",
      value: { annotations: { [ANNOTATIONS.injected]: mode } },
    }];
  }
  if (pod.metadata.annotations == null) {
    return [{ op: "add", path: "/metadata/annotations", value: { [ANNOTATIONS.injected]: mode } }];
  }
  return [{
    op: "add",
    path: `/metadata/annotations/${pointerToken(ANNOTATIONS.injected)}`,
    value: mode,
  }];
}

/** A key as an RFC 6901 JSON Pointer token: `~` → `~0`, `/` → `~1`. */
export function pointerToken(key: string): string {
  return key.replaceAll("~", "~0").replaceAll("/", "~1");
}
