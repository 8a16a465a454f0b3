/**
 * Admission fixtures for the webhook's tests: pods as the API server hands
 * them to a mutating webhook (a Deployment's pod has a `generateName` and no
 * `name` yet), `AdmissionReview` v1 requests around them, and the answer's
 * JSON Patch applied with an RFC 6902 library (`fast-json-patch`) and the
 * result checked against the Kubernetes `Pod` schema.
 *
 * @module
 */
import assert from "node:assert/strict";
import jsonpatch from "npm:fast-json-patch@3.1.1";
import { Pod } from "npm:kubernetes-models@5.1.0/v1";
import { strictProblems } from "./_kubernetes_schema.ts";
import type { InjectOptions } from "../lib/inject/patch.ts";

type Json = Record<string, unknown>;

/** The options the tests inject with, as `startup-lock inject` would have them. */
export const OPTIONS: InjectOptions = {
  image: "registry.example.com/startup-lock:0.1.0",
  server: "http://$(HOST_IP):8888",
  sidecarDurationMs: 5 * 60_000,
  initDurationMs: 2 * 60_000,
  initWaitMs: 30 * 60_000,
};

/**
 * A Deployment's pod as the API server admits it: `generateName` from the
 * ReplicaSet, no `name`, an owner reference, the service account's projected
 * token volume, defaults filled in; one app container with a named port and
 * an httpGet readinessProbe on that name. Each call returns a fresh copy.
 */
export function deploymentPod(): Json {
  return structuredClone({
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      generateName: "web-7c9d8f6b5-",
      namespace: "shop",
      labels: { "app.kubernetes.io/name": "web", "pod-template-hash": "7c9d8f6b5" },
      ownerReferences: [{
        apiVersion: "apps/v1",
        kind: "ReplicaSet",
        name: "web-7c9d8f6b5",
        uid: "6f1d6c1e-3a0b-4a5e-9a43-0d4f3c7d2b11",
        controller: true,
        blockOwnerDeletion: true,
      }],
    },
    spec: {
      volumes: [{
        name: "kube-api-access-x7k2p",
        projected: {
          defaultMode: 420,
          sources: [
            { serviceAccountToken: { expirationSeconds: 3607, path: "token" } },
            { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
          ],
        },
      }],
      containers: [{
        name: "app",
        image: "registry.example.com/shop-web:2.4.1",
        ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }],
        readinessProbe: {
          httpGet: { path: "/actuator/health/readiness", port: "http", scheme: "HTTP" },
          periodSeconds: 5,
          timeoutSeconds: 1,
          successThreshold: 1,
          failureThreshold: 3,
        },
        resources: { requests: { cpu: "500m", memory: "512Mi" }, limits: { memory: "512Mi" } },
        volumeMounts: [{
          name: "kube-api-access-x7k2p",
          readOnly: true,
          mountPath: "/var/run/secrets/kubernetes.io/serviceaccount",
        }],
        terminationMessagePath: "/dev/termination-log",
        terminationMessagePolicy: "File",
        imagePullPolicy: "IfNotPresent",
      }],
      restartPolicy: "Always",
      terminationGracePeriodSeconds: 30,
      dnsPolicy: "ClusterFirst",
      serviceAccountName: "default",
      serviceAccount: "default",
      securityContext: {},
      schedulerName: "default-scheduler",
      tolerations: [
        {
          key: "node.kubernetes.io/not-ready",
          operator: "Exists",
          effect: "NoExecute",
          tolerationSeconds: 300,
        },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: "PreemptLowerPriority",
    },
    status: {},
  });
}

let uids = 0;

/** An `AdmissionReview` v1 request for creating `object`, as the API server sends it. */
export function admissionReview(object: Json, overrides: Json = {}): Json {
  const namespace = (object.metadata as { namespace?: string } | undefined)?.namespace ?? "default";
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: `705ab4f5-6393-11e8-b7cc-42010a8000${String(++uids).padStart(2, "0")}`,
      kind: { group: "", version: "v1", kind: "Pod" },
      resource: { group: "", version: "v1", resource: "pods" },
      requestKind: { group: "", version: "v1", kind: "Pod" },
      requestResource: { group: "", version: "v1", resource: "pods" },
      namespace,
      operation: "CREATE",
      userInfo: {
        username: "system:serviceaccount:kube-system:replicaset-controller",
        uid: "a1b2c3d4-0000-4000-8000-000000000001",
        groups: ["system:serviceaccounts", "system:serviceaccounts:kube-system"],
      },
      object,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: "meta.k8s.io/v1", kind: "CreateOptions" },
      ...overrides,
    },
  };
}

/** The `response` of an answered AdmissionReview, checked for its envelope and `uid`. */
export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: string;
  patch?: string;
  warnings?: string[];
}

/** Reads a webhook's answer to `review`: `admission.k8s.io/v1`, the same uid, allowed. */
export function readAnswer(review: Json, answer: unknown): AdmissionResponse {
  const body = answer as { apiVersion: string; kind: string; response: AdmissionResponse };
  assert.equal(body.apiVersion, "admission.k8s.io/v1");
  assert.equal(body.kind, "AdmissionReview");
  assert.equal(body.response.uid, (review.request as { uid: string }).uid);
  assert.equal(body.response.allowed, true);
  if (body.response.patch !== undefined) assert.equal(body.response.patchType, "JSONPatch");
  else assert.equal(body.response.patchType, undefined);
  return body.response;
}

/** The answer's JSON Patch, decoded from base64; `[]` when there is none. */
export function decodePatch(response: AdmissionResponse): jsonpatch.Operation[] {
  if (response.patch === undefined) return [];
  const bytes = Uint8Array.from(atob(response.patch), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/**
 * `pod` with `patch` applied by an RFC 6902 implementation that validates
 * every operation (a path whose parent is missing fails), as the API server
 * would apply it.
 */
export function applyPatch(pod: Json, patch: readonly jsonpatch.Operation[]): Json {
  return jsonpatch.applyPatch(structuredClone(pod), [...patch], true, false).newDocument;
}

/** Asserts that `pod` is valid against the Kubernetes Pod schema, with no unknown field. */
export function assertValidPod(pod: Json): void {
  assert.deepEqual(strictProblems(Pod, pod), []);
}

/** What the kubelet would put in the injected container's env on a node "node-1". */
export const FIELDS: Record<string, string> = {
  "metadata.name": "web-7c9d8f6b5-x2kfp",
  "status.hostIP": "10.0.0.7",
};

/** A container's args with `$(NAME)` expanded from its env (fieldRefs as {@link FIELDS}); `$$` is `$`. */
export function expandedArgs(container: Json): string[] {
  const vars = new Map<string, string>();
  for (const v of (container.env ?? []) as { name: string; valueFrom?: Json; value?: string }[]) {
    if (v.valueFrom?.secretKeyRef) continue; // a secret, never in the arguments
    const path = (v.valueFrom?.fieldRef as { fieldPath?: string } | undefined)?.fieldPath;
    const value = path === undefined ? v.value : FIELDS[path];
    assert.ok(value !== undefined, `env ${v.name}: no sample value`);
    vars.set(v.name, value);
  }
  return ((container.args ?? []) as string[]).map((a) =>
    a.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (match, name?: string) => {
      if (match === "$$") return "$";
      return vars.get(name!) ?? match;
    })
  );
}
