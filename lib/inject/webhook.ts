/**
 * The admission webhook's HTTP handler: `POST /mutate` takes an
 * `AdmissionReview` (`admission.k8s.io/v1`) and answers one with the same
 * `uid`, always `allowed: true` (a throttle must never keep a pod out) and,
 * for a pod that gets the lock, a base64 JSON Patch. `GET /healthz` is for the
 * webhook's own probes.
 *
 * Bad input gets a `4xx` with the reason: an empty or oversized body, broken
 * JSON, anything but an `AdmissionReview` v1 with a `request.uid`. A
 * well-formed review of something that is no pod (a rule that matches too
 * much) or of another operation than CREATE is allowed unchanged, so a
 * misconfigured rule never shows up as an error on other objects.
 *
 * @module
 */
import { describeError, HttpError } from "../errors.ts";
import { type InjectOptions, type Outcome, type Plan, planInjection, type Pod } from "./patch.ts";

/** The AdmissionReview version the webhook speaks, the only one Kubernetes 1.22+ sends. */
export const ADMISSION_API_VERSION = "admission.k8s.io/v1";

/**
 * The largest request body read: the API server refuses objects over 3 MiB
 * (and etcd stores at most 1.5 MiB), so a bigger review is no real one.
 */
export const MAX_BODY_BYTES = 3 * 1024 * 1024;

/** What the webhook tells its log about each review. */
export interface Decision {
  uid: string;
  /** `namespace/name`, or `namespace/generateName*` for a pod without a name yet. */
  pod: string;
  outcome: Outcome | { kind: "ignored"; reason: string };
}

/** Options of {@linkcode createWebhookHandler}. */
export interface WebhookOptions extends InjectOptions {
  /** Called once per answered review. @default {nothing} */
  onDecision?: (decision: Decision) => void;
}

type Json = Record<string, unknown>;

/** Returns the handler for `/mutate` and `/healthz`. */
export function createWebhookHandler(
  options: WebhookOptions,
): (request: Request) => Promise<Response> {
  const onDecision = options.onDecision ?? (() => {});
  return async (request) => {
    const path = new URL(request.url).pathname;
    try {
      if (path === "/healthz") {
        allowMethods(request, path, ["GET", "HEAD"]);
        return text(200, "OK\n");
      }
      if (path !== "/mutate") throw new HttpError(404, `Not found: ${path}`);
      allowMethods(request, path, ["POST"]);
      const review = parseReview(await readBody(request));
      const answer = review(options);
      onDecision(answer.decision);
      return Response.json(answer.body);
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      await request.body?.cancel().catch(() => {});
      return text(error.status, `${error.message}\n`, error.headers);
    }
  };
}

function allowMethods(request: Request, path: string, methods: readonly string[]): void {
  if (methods.includes(request.method)) return;
  throw new HttpError(405, `Method ${request.method} is not allowed on ${path}`, {
    headers: { Allow: methods.join(", ") },
  });
}

/** The body as text, refusing one over {@linkcode MAX_BODY_BYTES} without reading it all. */
async function readBody(request: Request): Promise<string> {
  const tooLarge = () =>
    new HttpError(413, `Request body over ${MAX_BODY_BYTES} bytes: no AdmissionReview is that big`);
  const declared = Number(request.headers.get("Content-Length") ?? NaN);
  if (declared > MAX_BODY_BYTES) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    for await (const chunk of request.body) {
      size += chunk.byteLength;
      // Leaving the loop cancels the stream: the rest is never read.
      if (size > MAX_BODY_BYTES) throw tooLarge();
      chunks.push(chunk);
    }
  }
  if (size === 0) throw new HttpError(400, "Empty request body: expected an AdmissionReview");
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new HttpError(400, "Request body is not UTF-8: expected an AdmissionReview in JSON");
  }
}

/** A checked review: answering it needs only the options. */
type Review = (options: WebhookOptions) => { body: Json; decision: Decision };

/**
 * Checks the envelope: JSON, `admission.k8s.io/v1` `AdmissionReview`, a
 * `request` with a `uid`. What the request is about is checked when answering.
 */
function parseReview(body: string): Review {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (error) {
    throw new HttpError(400, `Request body is not JSON: ${describeError(error)}`);
  }
  if (!isObject(value)) throw new HttpError(400, "Request body is not a JSON object");
  if (value.apiVersion !== ADMISSION_API_VERSION || value.kind !== "AdmissionReview") {
    throw new HttpError(
      400,
      `Expected apiVersion ${ADMISSION_API_VERSION}, kind AdmissionReview; got apiVersion ` +
        `${JSON.stringify(value.apiVersion)}, kind ${JSON.stringify(value.kind)}`,
    );
  }
  const request = value.request;
  if (!isObject(request)) throw new HttpError(400, "AdmissionReview without a request object");
  const uid = request.uid;
  if (typeof uid !== "string" || uid === "") {
    throw new HttpError(400, "AdmissionReview request without a uid");
  }
  const namespace = typeof request.namespace === "string" ? request.namespace : "";
  const ignored = ignoreReason(request);
  if (ignored) {
    return () => ({
      body: answer(uid, {}),
      decision: { uid, pod: `${namespace}/?`, outcome: { kind: "ignored", reason: ignored } },
    });
  }
  const pod = readPod(request.object);
  const podNamespace = namespace || pod.metadata?.namespace || "default";
  return (options) => {
    const plan = safePlan(pod, podNamespace, options);
    const patch = plan.patch.length > 0
      ? { patchType: "JSONPatch", patch: base64(JSON.stringify(plan.patch)) }
      : {};
    const warnings = plan.warnings.length > 0 ? { warnings: plan.warnings } : {};
    return {
      body: answer(uid, { ...patch, ...warnings }),
      decision: { uid, pod: `${podNamespace}/${podName(pod)}`, outcome: plan.outcome },
    };
  };
}

/**
 * The plan, or none when the pod has a shape the plan did not expect (a port
 * list that is no list): the pod goes in unchanged, with a warning saying so.
 */
function safePlan(pod: Pod, namespace: string, options: InjectOptions): Plan {
  try {
    return planInjection(pod, namespace, options);
  } catch (error) {
    const reason = `unexpected pod: ${describeError(error)}`;
    return {
      patch: [],
      warnings: [`startup-lock: not injected: ${reason}`],
      outcome: { kind: "skipped", reason },
    };
  }
}

/** Why the review is answered without looking at it: not a pod being created. */
function ignoreReason(request: Json): string | undefined {
  const kind = isObject(request.kind) ? request.kind : {};
  const resource = isObject(request.resource) ? request.resource : {};
  const isPod = (kind.group ?? "") === "" && kind.version === "v1" && kind.kind === "Pod" &&
    resource.resource === "pods" && (request.subResource ?? "") === "";
  if (!isPod) {
    return `not a pod: kind ${JSON.stringify(kind.kind)}, resource ${
      JSON.stringify(resource.resource)
    }${request.subResource ? `, subresource ${JSON.stringify(request.subResource)}` : ""}`;
  }
  if (request.operation !== "CREATE") {
    return `operation ${JSON.stringify(request.operation)}: only CREATE is mutated`;
  }
  return undefined;
}

/** The parts of the pod the plan reads, checked for shape; everything else stays as it is. */
function readPod(object: unknown): Pod {
  const bad = (why: string) => new HttpError(400, `AdmissionReview request.object ${why}`);
  if (!isObject(object)) throw bad("is not an object: expected the pod");
  const spec = object.spec;
  if (!isObject(spec) || !Array.isArray(spec.containers) || spec.containers.length === 0) {
    throw bad("has no spec.containers: expected a pod");
  }
  const lists = [spec.containers, spec.initContainers ?? []];
  for (const list of lists) {
    if (!Array.isArray(list) || !list.every((c) => isObject(c) && typeof c.name === "string")) {
      throw bad("has a container without a name: expected a pod");
    }
  }
  const metadata = object.metadata;
  // null is absent, as Kubernetes reads it.
  if (metadata != null && !isObject(metadata)) throw bad("has a metadata that is no object");
  for (const map of ["labels", "annotations"] as const) {
    const value = metadata?.[map];
    if (value != null && !isStringMap(value)) {
      throw bad(`has metadata.${map} that is not a map of strings`);
    }
  }
  return object as unknown as Pod;
}

function podName(pod: Pod): string {
  return pod.metadata?.name || `${pod.metadata?.generateName ?? ""}*`;
}

function answer(uid: string, fields: Json): Json {
  return {
    apiVersion: ADMISSION_API_VERSION,
    kind: "AdmissionReview",
    response: { uid, allowed: true, ...fields },
  };
}

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isStringMap(value: unknown): boolean {
  return isObject(value) && Object.values(value).every((v) => typeof v === "string");
}

function base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", ...headers },
  });
}
