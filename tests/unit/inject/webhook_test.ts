import assert from "node:assert/strict";
import {
  createWebhookHandler,
  type Decision,
  MAX_BODY_BYTES,
} from "../../../lib/inject/webhook.ts";
import {
  admissionReview,
  applyPatch,
  assertValidPod,
  decodePatch,
  deploymentPod,
  OPTIONS,
  readAnswer,
} from "../../_admission.ts";

type Json = Record<string, unknown>;
// deno-lint-ignore no-explicit-any
type Any = any;

function handler(decisions: Decision[] = []) {
  return createWebhookHandler({ ...OPTIONS, onDecision: (d) => decisions.push(d) });
}

function post(body: BodyInit | null, headers: Record<string, string> = {}): Request {
  return new Request("https://webhook.startup-lock.svc/mutate", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body,
  });
}

async function review(review: Json, decisions?: Decision[]) {
  const response = await handler(decisions)(post(JSON.stringify(review)));
  assert.equal(response.status, 200);
  assert.match(response.headers.get("Content-Type") ?? "", /^application\/json/);
  return readAnswer(review, await response.json());
}

Deno.test("POST /mutate answers a pod's AdmissionReview with its uid, allowed, and a JSON Patch that makes a valid pod", async () => {
  const pod = deploymentPod();
  const request = admissionReview(pod);
  const decisions: Decision[] = [];
  const answer = await review(request, decisions);
  assert.equal(answer.warnings, undefined);
  const patched = applyPatch(pod, decodePatch(answer));
  assertValidPod(patched);
  const init = (patched.spec as { initContainers: Json[] }).initContainers;
  assert.equal(init[0]!.name, "startup-lock");
  assert.equal(init[0]!.restartPolicy, "Always");
  assert.deepEqual(decisions, [{
    uid: (request.request as Json).uid,
    pod: "shop/web-7c9d8f6b5-*",
    outcome: {
      kind: "injected",
      mode: "sidecar",
      readyUrl: "http://127.0.0.1:8080/actuator/health/readiness",
      readyFrom: 'readinessProbe of container "app"',
    },
  }]);

  // Reinvoked with the pod it patched (reinvocationPolicy: IfNeeded), it changes nothing.
  const again = await review(admissionReview(patched));
  assert.equal(again.patch, undefined);
  assert.equal(again.warnings, undefined);
});

Deno.test("POST /mutate passes the plan's warnings to the AdmissionReview and allows the pod unchanged", async () => {
  const pod = deploymentPod() as { spec: { containers: Json[] } };
  delete pod.spec.containers[0]!.readinessProbe;
  const answer = await review(admissionReview(pod as Json));
  assert.equal(answer.patch, undefined);
  assert.equal(answer.warnings?.length, 1);
  assert.match(answer.warnings![0]!, /^startup-lock: not injected: no ready URL/);
});

Deno.test("POST /mutate allows a pod of a shape the plan does not expect, with a warning", async () => {
  const pod = deploymentPod() as { spec: { containers: Json[] } };
  pod.spec.containers[0]!.ports = "8080";
  const answer = await review(admissionReview(pod as Json));
  assert.equal(answer.patch, undefined);
  assert.match(answer.warnings?.[0] ?? "", /^startup-lock: not injected: unexpected pod: /);
});

Deno.test("POST /mutate reads a null list or map of the pod as absent, as Kubernetes does, and its patch applies", async (t) => {
  const cases: [string, (pod: Any) => void][] = [
    ["spec.initContainers", (pod) => pod.spec.initContainers = null],
    ["metadata.annotations", (pod) => pod.metadata.annotations = null],
    ["metadata.labels", (pod) => pod.metadata.labels = null],
    ["metadata", (pod) => pod.metadata = null],
  ];
  for (const [name, nullify] of cases) {
    await t.step(name, async () => {
      const pod = deploymentPod();
      nullify(pod);
      const answer = await review(admissionReview(pod));
      assert.equal(answer.warnings, undefined);
      const patched = applyPatch(pod, decodePatch(answer)) as Any;
      assert.equal(patched.spec.initContainers[0].name, "startup-lock");
      assert.equal(patched.metadata.annotations["startup-lock/injected"], "sidecar");
    });
  }
});

Deno.test("POST /mutate allows what is no pod being created, unchanged and without a warning", async (t) => {
  const cases: [string, Json, Json][] = [
    ["a Deployment", { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "web" } }, {
      kind: { group: "apps", version: "v1", kind: "Deployment" },
      resource: { group: "apps", version: "v1", resource: "deployments" },
    }],
    ["a pod's status subresource", deploymentPod(), { subResource: "status" }],
    ["a pod's UPDATE", deploymentPod(), { operation: "UPDATE" }],
  ];
  for (const [name, object, overrides] of cases) {
    await t.step(name, async () => {
      const decisions: Decision[] = [];
      const answer = await review(admissionReview(object, overrides), decisions);
      assert.equal(answer.patch, undefined);
      assert.equal(answer.warnings, undefined);
      assert.equal(decisions[0]?.outcome.kind, "ignored");
    });
  }
});

Deno.test("POST /mutate refuses bad input with a 4xx and the reason", async (t) => {
  const valid = admissionReview(deploymentPod());
  const cases: [string, () => Request, number, RegExp][] = [
    ["an empty body", () => post(null), 400, /^Empty request body/],
    [
      "broken JSON",
      () => post('{"apiVersion": "admission.k8s.io/v1", '),
      400,
      /^Request body is not JSON: /,
    ],
    ["a JSON array", () => post("[]"), 400, /^Request body is not a JSON object/],
    ["bytes that are no UTF-8", () => post(new Uint8Array([0x7b, 0xff, 0x7d])), 400, /not UTF-8/],
    [
      "another kind",
      () => post(JSON.stringify({ ...valid, kind: "Pod" })),
      400,
      /got apiVersion "admission\.k8s\.io\/v1", kind "Pod"/,
    ],
    [
      "admission.k8s.io/v1beta1",
      () => post(JSON.stringify({ ...valid, apiVersion: "admission.k8s.io/v1beta1" })),
      400,
      /Expected apiVersion admission\.k8s\.io\/v1/,
    ],
    [
      "no request",
      () => post(JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview" })),
      400,
      /without a request object/,
    ],
    [
      "no uid",
      () => post(JSON.stringify(admissionReview(deploymentPod(), { uid: "" }))),
      400,
      /without a uid/,
    ],
    [
      "a pod without containers",
      () => post(JSON.stringify(admissionReview({ metadata: {}, spec: {} }))),
      400,
      /has no spec\.containers/,
    ],
    [
      "labels that are no map of strings",
      () =>
        post(
          JSON.stringify(
            admissionReview({
              metadata: { labels: { a: 1 } },
              spec: { containers: [{ name: "a" }] },
            }),
          ),
        ),
      400,
      /metadata\.labels that is not a map of strings/,
    ],
    ["4 MB, announced", () => post("x".repeat(4_000_000)), 413, /over 3145728 bytes/],
    ["4 MB, streamed without a length", () => post(stream(4_000_000)), 413, /over 3145728 bytes/],
  ];
  for (const [name, request, status, reason] of cases) {
    await t.step(name, async () => {
      const decisions: Decision[] = [];
      const response = await handler(decisions)(request());
      assert.equal(response.status, status);
      assert.match(await response.text(), reason);
      assert.deepEqual(decisions, []);
    });
  }
  assert.ok(4_000_000 > MAX_BODY_BYTES);
});

/** `size` bytes of JSON-looking text in 64 KiB chunks, with no Content-Length. */
function stream(size: number): ReadableStream<Uint8Array> {
  const chunk = new TextEncoder().encode(" ".repeat(65536));
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= size) return controller.close();
      controller.enqueue(chunk);
      sent += chunk.byteLength;
    },
  });
}

Deno.test("the webhook answers /healthz, and 404 or 405 elsewhere", async () => {
  const webhook = handler();
  const get = (path: string, method = "GET") =>
    webhook(new Request(`https://webhook.startup-lock.svc${path}`, { method }));
  assert.equal((await get("/healthz")).status, 200);
  assert.equal((await get("/healthz", "HEAD")).status, 200);
  const post = await get("/healthz", "POST");
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("Allow"), "GET, HEAD");
  const mutate = await get("/mutate");
  assert.equal(mutate.status, 405);
  assert.equal(mutate.headers.get("Allow"), "POST");
  assert.match(await mutate.text(), /^Method GET is not allowed on \/mutate/);
  const other = await get("/validate");
  assert.equal(other.status, 404);
  assert.equal(await other.text(), "Not found: /validate\n");
});
