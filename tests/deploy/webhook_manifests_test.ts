/**
 * The admission webhook's manifests, `deploy/kubernetes/inject/`: valid
 * against the Kubernetes and cert-manager schemas with no unknown field, and
 * consistent with each other and with the program: the configuration never
 * blocks a pod and reaches the Service, which reaches the port `inject`
 * listens on; the certificate covers the Service's name, lands in the Secret
 * the Deployment mounts where `--tlsCert` and `--tlsKey` point, and its CA is
 * injected; the lock's own pods are never mutated. Each check is shown to
 * fail on a deliberate break. The openssl script for clusters without
 * cert-manager runs with the real openssl, and the real webhook serves what it
 * makes.
 */
import assert from "node:assert/strict";
import { Certificate, Issuer } from "npm:@kubernetes-models/cert-manager@6.0.0/cert-manager.io/v1";
import { MutatingWebhookConfiguration } from "npm:kubernetes-models@5.1.0/admissionregistration.k8s.io/v1";
import { Deployment } from "npm:kubernetes-models@5.1.0/apps/v1";
import { PodDisruptionBudget } from "npm:kubernetes-models@5.1.0/policy/v1";
import { Secret, Service } from "npm:kubernetes-models@5.1.0/v1";
import { parseAllDocuments } from "npm:yaml@2.9.1";
import { injectCommand, type InjectCommandOptions } from "../../lib/commands/inject.ts";
import { planInjection } from "../../lib/inject/patch.ts";
import { VERSION } from "../../lib/version.ts";
import { hasOpenssl } from "../_image_tls.ts";
import { type Model, strictProblems } from "../_kubernetes_schema.ts";
import { startProgram } from "../_program.ts";
import { which } from "../_which.ts";

type Json = Record<string, unknown>;
// deno-lint-ignore no-explicit-any
type Any = any;

const ROOT = new URL("../../", import.meta.url);
const DIR = new URL("deploy/kubernetes/inject/", ROOT);
const SCRIPT = new URL("certificate-openssl.sh", DIR).pathname;
const FILES = ["cert-manager.yaml", "webhook.yaml"];
const SERVER_FILE = new URL("deploy/kubernetes/daemonset.yaml", ROOT);
const NAMESPACE_LABEL = "startup-lock/inject";
/** The API server waits at most 30 s for a webhook; ours answers in milliseconds. */
const MAX_TIMEOUT_SECONDS = 10;

function load(url: URL): Json[] {
  return parseAllDocuments(Deno.readTextFileSync(url), { uniqueKeys: true }).map((doc) => {
    assert.deepEqual(doc.errors.map((e) => e.message), [], url.pathname);
    return doc.toJS() as Json;
  });
}

const MANIFESTS = FILES.flatMap((f) => load(new URL(f, DIR)));

const MODELS: Record<string, Model> = {
  "v1/Service": Service,
  "v1/Secret": Secret,
  "apps/v1/Deployment": Deployment,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "admissionregistration.k8s.io/v1/MutatingWebhookConfiguration": MutatingWebhookConfiguration,
  "cert-manager.io/v1/Certificate": Certificate as unknown as Model,
  "cert-manager.io/v1/Issuer": Issuer as unknown as Model,
};

function schemaProblems(object: Json): string[] {
  const Model = MODELS[`${object.apiVersion}/${object.kind}`];
  if (!Model) return [`no schema for ${object.apiVersion} ${object.kind}`];
  return strictProblems(Model, object);
}

function find(manifests: readonly Json[], kind: string, name?: string): Any {
  return manifests.find((m) =>
    m.kind === kind && (name === undefined || (m.metadata as Any)?.name === name)
  );
}

/** Whether a label selector (matchLabels and matchExpressions) selects `labels`. */
function selects(selector: Any, labels: Record<string, string>): boolean {
  const matchLabels = Object.entries(selector?.matchLabels ?? {});
  if (!matchLabels.every(([k, v]) => labels[k] === v)) return false;
  return (selector?.matchExpressions ?? []).every((e: Any) => {
    const has = e.key in labels;
    switch (e.operator) {
      case "In":
        return has && e.values.includes(labels[e.key]);
      case "NotIn":
        return !has || !e.values.includes(labels[e.key]);
      case "Exists":
        return has;
      case "DoesNotExist":
        return !has;
    }
    throw new Error(`operator ${e.operator}`);
  });
}

/** `$(NAME)` and `$$` as Kubernetes expands them in args; the webhook's container has no env. */
function expand(arg: string): string {
  return arg.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m) => (m === "$$" ? "$" : m));
}

function injectOptions(container: Any): InjectCommandOptions {
  const [command, ...rest] = (container.args ?? []).map(expand);
  if (command !== "inject") throw new Error(`runs "${command}", not inject`);
  const parsed = injectCommand.parse(rest, () => undefined);
  if (parsed.action !== "run") throw new Error("asks for help");
  return parsed.options;
}

/**
 * Every problem of the webhook's manifests, in words; `[]` when they hold
 * together. `servers` are the lock servers' manifests, whose Service must not
 * select the webhook's pods.
 */
function problems(manifests: readonly Json[], servers: readonly Json[]): string[] {
  const out: string[] = [];
  const check = (ok: unknown, problem: string) => {
    if (!ok) out.push(problem);
  };
  const config = find(manifests, "MutatingWebhookConfiguration");
  const deployment = find(manifests, "Deployment");
  const service = find(manifests, "Service");
  const pdb = find(manifests, "PodDisruptionBudget");
  if (!config || !deployment || !service || !pdb) {
    return ["a MutatingWebhookConfiguration, Deployment, Service and PodDisruptionBudget"];
  }
  check(config.webhooks?.length === 1, "one webhook");
  const hook = config.webhooks?.[0] ?? {};
  check(hook.failurePolicy === "Ignore", "failurePolicy Ignore: a throttle never blocks a pod");
  check(hook.sideEffects === "None", "sideEffects None");
  check(
    JSON.stringify(hook.admissionReviewVersions) === '["v1"]',
    "admissionReviewVersions [v1], the one the webhook speaks",
  );
  check(
    typeof hook.timeoutSeconds === "number" && hook.timeoutSeconds <= MAX_TIMEOUT_SECONDS,
    `timeoutSeconds at most ${MAX_TIMEOUT_SECONDS}`,
  );
  check(hook.reinvocationPolicy === "IfNeeded", "reinvocationPolicy IfNeeded");
  const rules = hook.rules ?? [];
  check(
    rules.length === 1 && JSON.stringify(rules[0].resources) === '["pods"]' &&
      JSON.stringify(rules[0].operations) === '["CREATE"]' &&
      JSON.stringify(rules[0].apiGroups) === '[""]',
    "one rule: pods, CREATE, the core group",
  );
  // Namespaces: only labelled ones, never kube-system or the lock's own.
  const ns = (name: string, labels: Record<string, string> = {}) => ({
    "kubernetes.io/metadata.name": name,
    ...labels,
  });
  const on = { [NAMESPACE_LABEL]: "enabled" };
  check(
    selects(hook.namespaceSelector, ns("shop", on)),
    `a namespace labelled ${NAMESPACE_LABEL}=enabled is selected`,
  );
  check(!selects(hook.namespaceSelector, ns("shop")), "an unlabelled namespace is not selected");
  check(!selects(hook.namespaceSelector, ns("kube-system", on)), "kube-system is never selected");

  // The client config reaches the Service, the Service the container's port.
  const client = hook.clientConfig?.service ?? {};
  check(client.path === "/mutate", "clientConfig path /mutate");
  check(
    client.name === service.metadata?.name && client.namespace === service.metadata?.namespace,
    "clientConfig names the webhook's Service",
  );
  const servicePort = (service.spec?.ports ?? []).find((p: Any) => p.port === (client.port ?? 443));
  check(servicePort, `the Service has port ${client.port ?? 443}`);
  const template = deployment.spec?.template ?? {};
  const podLabels = template.metadata?.labels ?? {};
  check(
    selects({ matchLabels: service.spec?.selector }, podLabels),
    "the Service selects the webhook's pods",
  );
  const container = template.spec?.containers?.[0] ?? {};
  const named = (port: unknown) =>
    typeof port === "number"
      ? port
      : (container.ports ?? []).find((p: Any) => p.name === port)?.containerPort;
  let options: InjectCommandOptions | undefined;
  try {
    options = injectOptions(container);
  } catch (error) {
    out.push(`the container's command line: ${(error as Error).message}`);
  }
  if (options) {
    check(
      named(servicePort?.targetPort) === options.port,
      "the Service's targetPort is the port inject listens on",
    );
    check(
      options.inject.server.includes("$(HOST_IP)") || !options.inject.server.includes("$("),
      "--server",
    );
    check(
      container.image === options.inject.image && container.image.endsWith(`:${VERSION}`),
      `the webhook runs and injects this version's image (${VERSION})`,
    );
  }
  for (const kind of ["readinessProbe", "livenessProbe"]) {
    const probe = container[kind]?.httpGet ?? {};
    check(
      probe.scheme === "HTTPS" && probe.path === "/healthz" && named(probe.port) === options?.port,
      `${kind}: HTTPS GET /healthz on inject's port`,
    );
  }

  // Two replicas that a drain cannot both take down.
  check((deployment.spec?.replicas ?? 1) >= 2, "2 replicas or more");
  check(
    selects(pdb.spec?.selector, podLabels),
    "the PodDisruptionBudget selects the webhook's pods",
  );
  check(
    pdb.spec?.minAvailable === 1 || pdb.spec?.maxUnavailable === 1,
    "the budget keeps one running",
  );

  // Restricted.
  const pod = template.spec ?? {};
  const sc = container.securityContext ?? {};
  check(pod.securityContext?.runAsNonRoot === true, "runAsNonRoot");
  check(pod.securityContext?.seccompProfile?.type === "RuntimeDefault", "seccomp RuntimeDefault");
  check(sc.allowPrivilegeEscalation === false, "no privilege escalation");
  check(sc.readOnlyRootFilesystem === true, "a read-only root filesystem");
  check(JSON.stringify(sc.capabilities?.drop) === '["ALL"]', "capabilities drop ALL");
  check(
    container.resources?.requests && container.resources?.limits?.memory,
    "requests and a memory limit",
  );

  // The certificate: covers the Service's name, lands in the mounted Secret, its CA injected.
  const [caNamespace, caName] = String(
    config.metadata?.annotations?.["cert-manager.io/inject-ca-from"],
  ).split("/");
  const certificate = manifests.find((m: Any) =>
    m.kind === "Certificate" && m.metadata?.name === caName && m.metadata?.namespace === caNamespace
  ) as Any;
  check(certificate, "cert-manager.io/inject-ca-from names a Certificate of the manifests");
  const dnsName = `${service.metadata?.name}.${service.metadata?.namespace}.svc`;
  check(certificate?.spec?.dnsNames?.includes(dnsName), `the Certificate covers ${dnsName}`);
  const issuer = find(manifests, "Issuer", certificate?.spec?.issuerRef?.name);
  check(issuer, "the Certificate's Issuer is in the manifests");
  if (issuer?.spec?.ca) {
    check(
      manifests.some((m: Any) =>
        m.kind === "Certificate" && m.spec?.isCA && m.spec?.secretName === issuer.spec.ca.secretName
      ),
      "the CA Issuer's Secret comes from a CA Certificate",
    );
  }
  const mounts = container.volumeMounts ?? [];
  const volumes = pod.volumes ?? [];
  for (const file of [options?.certFile, options?.keyFile]) {
    const mount = mounts.find((m: Any) => file?.startsWith(`${m.mountPath.replace(/\/$/, "")}/`));
    const volume = volumes.find((v: Any) => v.name === mount?.name);
    check(
      volume?.secret?.secretName === certificate?.spec?.secretName && mount?.subPath === undefined,
      `${file} is in the Certificate's Secret, mounted as a directory (subPath mounts are never updated)`,
    );
  }

  // The lock's own pods are never mutated, and the lock servers' Service does not reach the webhook.
  const serverDaemonSet = find(servers, "DaemonSet");
  const serverLabels = serverDaemonSet?.spec?.template?.metadata?.labels ?? {};
  for (const [who, labels] of [["the webhook's", podLabels], ["the lock servers'", serverLabels]]) {
    check(!selects(hook.objectSelector, labels), `the objectSelector leaves out ${who} pods`);
    const plan = planInjection(
      { metadata: { labels }, spec: { containers: [{ name: "x" }] } },
      "shop",
      { image: "i", server: "http://s", sidecarDurationMs: 1, initDurationMs: 1, initWaitMs: 1 },
    );
    check(plan.outcome.kind === "skipped", `inject leaves out ${who} pods`);
  }
  check(
    selects(hook.objectSelector, { "app.kubernetes.io/name": "web" }),
    "the objectSelector takes other pods",
  );
  const serverService = find(servers, "Service");
  check(
    !selects({ matchLabels: serverService?.spec?.selector }, podLabels),
    "the lock servers' Service does not select the webhook's pods",
  );
  return out;
}

const SERVERS = load(SERVER_FILE);

Deno.test("every webhook manifest is valid against the Kubernetes and cert-manager schemas, with no unknown field", async (t) => {
  assert.ok(MANIFESTS.length >= 8);
  for (const object of MANIFESTS) {
    await t.step(`${object.kind} ${(object.metadata as Any)?.name}`, () => {
      assert.deepEqual(schemaProblems(object), []);
    });
  }
});

Deno.test("the schema check refuses a misspelt field and a wrong type in the webhook's manifests", () => {
  const config = structuredClone(find(MANIFESTS, "MutatingWebhookConfiguration"));
  config.webhooks[0].failurePolicyy = "Ignore";
  assert.deepEqual(schemaProblems(config), ["unknown /webhooks/0/failurePolicyy"]);
  const certificate = structuredClone(find(MANIFESTS, "Certificate", "startup-lock-inject"));
  certificate.spec.dnsNames = "startup-lock-inject.startup-lock.svc";
  assert.notDeepEqual(schemaProblems(certificate), []);
});

Deno.test("the webhook's manifests hold together and with the program", () => {
  assert.deepEqual(problems(MANIFESTS, SERVERS), []);
});

Deno.test("each deliberate break of the webhook's manifests fails a check", async (t) => {
  const breaks: [string, (m: Any[]) => void, RegExp][] = [
    ["failurePolicy Fail", (m) => hook(m).failurePolicy = "Fail", /failurePolicy Ignore/],
    ["sideEffects Some", (m) => hook(m).sideEffects = "Some", /sideEffects None/],
    [
      "v1beta1 reviews",
      (m) => hook(m).admissionReviewVersions = ["v1beta1"],
      /admissionReviewVersions/,
    ],
    ["a 30 s timeout", (m) => hook(m).timeoutSeconds = 30, /timeoutSeconds/],
    ["no reinvocation", (m) => delete hook(m).reinvocationPolicy, /reinvocationPolicy/],
    ["every operation", (m) => hook(m).rules[0].operations = ["*"], /one rule/],
    ["no namespaceSelector", (m) => delete hook(m).namespaceSelector, /unlabelled namespace/],
    ["kube-system allowed", (m) => hook(m).namespaceSelector.matchExpressions.pop(), /kube-system/],
    ["no objectSelector", (m) => delete hook(m).objectSelector, /objectSelector leaves out/],
    ["path /", (m) => hook(m).clientConfig.service.path = "/", /path \/mutate/],
    [
      "another Service",
      (m) => hook(m).clientConfig.service.name = "other",
      /names the webhook's Service/,
    ],
    ["targetPort 8080", (m) => find(m, "Service").spec.ports[0].targetPort = 8080, /targetPort/],
    ["inject on another port", (m) => setArg(m, "--port", "9443"), /targetPort|probe/i],
    [
      "an old image injected",
      (m) => setArg(m, "--image", "registry.example.com/startup-lock:0.0.1"),
      /this version's image/,
    ],
    ["an unknown flag", (m) => container(m).args.push("--tls", "x"), /command line: Unknown flag/],
    [
      "probes over HTTP",
      (m) => delete container(m).readinessProbe.httpGet.scheme,
      /readinessProbe/,
    ],
    ["one replica", (m) => find(m, "Deployment").spec.replicas = 1, /2 replicas/],
    [
      "a PDB for other pods",
      (m) => find(m, "PodDisruptionBudget").spec.selector.matchLabels = { a: "b" },
      /PodDisruptionBudget selects/,
    ],
    [
      "root allowed",
      (m) => delete find(m, "Deployment").spec.template.spec.securityContext.runAsNonRoot,
      /runAsNonRoot/,
    ],
    [
      "a writable root",
      (m) => container(m).securityContext.readOnlyRootFilesystem = false,
      /read-only root/,
    ],
    [
      "no CA injection",
      (m) => delete find(m, "MutatingWebhookConfiguration").metadata.annotations,
      /inject-ca-from/,
    ],
    [
      "a certificate for another name",
      (m) => find(m, "Certificate", "startup-lock-inject").spec.dnsNames = ["x.svc"],
      /covers startup-lock-inject\.startup-lock\.svc/,
    ],
    [
      "another Secret mounted",
      (m) => find(m, "Deployment").spec.template.spec.volumes[0].secret.secretName = "x",
      /Certificate's Secret/,
    ],
    [
      "a subPath mount",
      (m) => container(m).volumeMounts[0].subPath = "tls.crt",
      /Certificate's Secret/,
    ],
    ["the servers' label on the webhook", (m) => {
      const d = find(m, "Deployment");
      d.spec.template.metadata.labels["app.kubernetes.io/name"] = "startup-lock";
      d.spec.selector.matchLabels["app.kubernetes.io/name"] = "startup-lock";
      find(m, "Service").spec.selector["app.kubernetes.io/name"] = "startup-lock";
      find(m, "PodDisruptionBudget").spec.selector.matchLabels["app.kubernetes.io/name"] =
        "startup-lock";
    }, /lock servers' Service does not select/],
  ];
  for (const [name, edit, expected] of breaks) {
    await t.step(name, () => {
      const copy = structuredClone(MANIFESTS) as Any[];
      edit(copy);
      const found = problems(copy, SERVERS);
      assert.ok(found.some((p) => expected.test(p)), `${expected} among ${JSON.stringify(found)}`);
    });
  }
});

function hook(m: Any[]): Any {
  return find(m, "MutatingWebhookConfiguration").webhooks[0];
}

function container(m: Any[]): Any {
  return find(m, "Deployment").spec.template.spec.containers[0];
}

function setArg(m: Any[], flag: string, value: string): void {
  const args: string[] = container(m).args;
  args[args.indexOf(flag) + 1] = value;
}

const sh = which("sh");

/** Runs certificate-openssl.sh into `out` (under `umask` when given); its stdout. */
async function runCertificateScript(out: string, umask?: string): Promise<string> {
  const args = umask === undefined
    ? [SCRIPT, out]
    : ["-c", `umask ${umask} && exec sh "$0" "$1"`, SCRIPT, out];
  const result = await new Deno.Command(sh!, { args }).output();
  assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
  return new TextDecoder().decode(result.stdout);
}

Deno.test({
  name:
    "certificate-openssl.sh makes a Secret and caBundle the webhook serves with, and keeps the CA when run again",
  ignore: !hasOpenssl() || sh === undefined,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "startup-lock-webhook-cert-" });
    try {
      const out = `${dir}/tls`;
      const run = async () =>
        assert.match(await runCertificateScript(out), /^Wrote .*secret\.yaml/);
      await run();
      const read = (name: string) => Deno.readTextFileSync(`${out}/${name}`);
      const secret = load(new URL(`file://${out}/secret.yaml`))[0]!;
      assert.deepEqual(schemaProblems(secret), []);
      const deployment = find(MANIFESTS, "Deployment");
      const volume = deployment.spec.template.spec.volumes[0];
      assert.equal((secret.metadata as Any).name, volume.secret.secretName);
      assert.equal((secret.metadata as Any).namespace, deployment.metadata.namespace);
      const decoded = (key: string) => atob((secret.data as Any)[key]);
      assert.equal(decoded("tls.crt"), read("tls.crt"));
      assert.equal(decoded("tls.key"), read("tls.key"));
      assert.equal(atob(read("ca-bundle.txt")), read("ca.crt"));

      // The real webhook serves it, and a client that trusts only the caBundle accepts it
      // under the Service's name, as the API server would.
      await using webhook = await startProgram([
        ...[
          "--server",
          "http://$(HOST_IP):8888",
          "--image",
          "registry.example.com/startup-lock:0.1.0",
        ],
        ...["--tlsCert", `${out}/tls.crt`, "--tlsKey", `${out}/tls.key`],
      ], { command: "inject" });
      const port = new URL(webhook.url).port;
      const name = "startup-lock-inject.startup-lock.svc";
      const verify = await new Deno.Command("openssl", {
        args: [
          ...["s_client", "-connect", `127.0.0.1:${port}`, "-servername", name],
          ...["-verify_hostname", name, "-CAfile", `${out}/ca.crt`, "-verify_return_error"],
        ],
        stdin: "null",
      }).output();
      const said = new TextDecoder().decode(verify.stdout);
      assert.match(said, /Verify return code: 0 \(ok\)/);

      const ca = read("ca.crt");
      const cert = read("tls.crt");
      await run();
      assert.equal(read("ca.crt"), ca, "the CA, and so the caBundle, stays");
      assert.notEqual(read("tls.crt"), cert, "a new certificate");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "certificate-openssl.sh leaves no key readable by other users, whatever the umask, even over an older run's files",
  ignore: !hasOpenssl() || sh === undefined,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "startup-lock-webhook-cert-" });
    try {
      const out = `${dir}/tls`;
      const run = () => runCertificateScript(out, "022");
      const assertPrivate = () => {
        // secret.yaml holds tls.key in base64.
        for (const name of ["ca.key", "tls.key", "secret.yaml"]) {
          const mode = Deno.statSync(`${out}/${name}`).mode! & 0o777;
          assert.equal(mode & 0o077, 0, `${name} is ${mode.toString(8)}: readable by others`);
        }
      };
      await run();
      assertPrivate();
      // A run of an older script left a world-readable secret.yaml: the next run must not keep it so.
      Deno.chmodSync(`${out}/secret.yaml`, 0o644);
      await run();
      assertPrivate();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "certificate-openssl.sh passes shellcheck",
  ignore: which("shellcheck") === undefined,
  fn: async () => {
    const out = await new Deno.Command(which("shellcheck")!, { args: [SCRIPT] }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stdout));
  },
});
