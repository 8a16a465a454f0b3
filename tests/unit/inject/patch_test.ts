import assert from "node:assert/strict";
import { acquireCommand } from "../../../lib/commands/acquire.ts";
import { holdCommand } from "../../../lib/commands/hold.ts";
import {
  ANNOTATIONS,
  CONTAINER_NAME,
  DEFAULT_PROBE_PORT,
  type Plan,
  planInjection,
  pointerToken,
} from "../../../lib/inject/patch.ts";
import {
  applyPatch,
  assertValidPod,
  deploymentPod,
  expandedArgs,
  FIELDS,
  OPTIONS,
} from "../../_admission.ts";

type Json = Record<string, unknown>;
// deno-lint-ignore no-explicit-any
type Any = any;

/** Plans for `pod`, applies the patch, checks the result against the Pod schema. */
function inject(pod: Json, namespace = "shop"): { plan: Plan; patched: Any } {
  const plan = planInjection(pod as Any, namespace, OPTIONS);
  const patched = applyPatch(pod, plan.patch as Any);
  assertValidPod(patched);
  return { plan, patched };
}

function injected(patched: Any): Any {
  const all = [...(patched.spec.initContainers ?? []), ...patched.spec.containers];
  const found = all.filter((c: Any) => c.name === CONTAINER_NAME);
  assert.equal(found.length, 1, "one startup-lock container");
  return found[0];
}

/** The injected sidecar's command line as `hold` parses it, env filled in as on a node. */
function holdOptions(container: Json) {
  const [command, ...rest] = expandedArgs(container);
  assert.equal(command, "hold");
  const parsed = holdCommand.parse(rest, () => undefined);
  assert.equal(parsed.action, "run");
  return parsed.options;
}

function withProbes(probes: Json, ports?: Json[]): Json {
  const pod = deploymentPod() as Any;
  const app = pod.spec.containers[0];
  delete app.readinessProbe;
  Object.assign(app, probes);
  if (ports) app.ports = ports;
  return pod;
}

function annotated(annotations: Record<string, string>, pod: Json = deploymentPod()): Json {
  (pod as Any).metadata.annotations = annotations;
  return pod;
}

function skippedWith(plan: Plan, warning: RegExp | undefined): void {
  assert.deepEqual(plan.patch, []);
  assert.equal(plan.outcome.kind, "skipped");
  if (warning === undefined) assert.deepEqual(plan.warnings, []);
  else {
    assert.equal(plan.warnings.length, 1);
    assert.match(plan.warnings[0]!, warning);
  }
}

Deno.test("planInjection() gives a Deployment's nameless pod a native hold sidecar, first of its init containers", () => {
  const pod = deploymentPod();
  const { plan, patched } = inject(pod);
  assert.deepEqual(plan.warnings, []);
  assert.deepEqual(plan.patch.map((op) => [op.op, op.path]), [
    ["add", "/spec/initContainers"],
    ["add", "/metadata/annotations"],
  ]);
  const sidecar = injected(patched);
  assert.equal(patched.spec.initContainers[0], sidecar);
  assert.equal(sidecar.restartPolicy, "Always");
  assert.equal(sidecar.image, OPTIONS.image);
  assert.equal(patched.metadata.annotations[ANNOTATIONS.injected], "sidecar");
  // The pod's name is unknown at admission: the kubelet fills it in from the downward API.
  assert.deepEqual(sidecar.env, [
    { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    { name: "HOST_IP", valueFrom: { fieldRef: { fieldPath: "status.hostIP" } } },
  ]);
  const options = holdOptions(sidecar);
  assert.equal(options.acquire.id, `shop/${FIELDS["metadata.name"]}`);
  assert.equal(options.acquire.server.href, "http://10.0.0.7:8888/");
  assert.equal(options.acquire.durationMs, OPTIONS.sidecarDurationMs);
  // The readinessProbe's port "http" is resolved through the container's ports.
  assert.equal(options.readyUrl.href, "http://127.0.0.1:8080/actuator/health/readiness");
  assert.deepEqual(options.listen, { hostname: "0.0.0.0", port: DEFAULT_PROBE_PORT });
  // The kubelet starts the app only once hold answers /acquired with 200.
  assert.deepEqual(sidecar.startupProbe.httpGet, { path: "/acquired", port: DEFAULT_PROBE_PORT });
  assert.deepEqual(sidecar.livenessProbe.httpGet, { path: "/healthz", port: DEFAULT_PROBE_PORT });
  // The rest of the pod is untouched.
  const { initContainers: _, ...spec } = patched.spec;
  assert.deepEqual(spec, (pod as Any).spec);
});

Deno.test("planInjection() makes a container that the restricted Pod Security Standard admits, with small requests", () => {
  const sidecar = injected(inject(deploymentPod()).patched);
  assert.deepEqual(sidecar.securityContext, {
    runAsNonRoot: true,
    runAsUser: 65532,
    runAsGroup: 65532,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  });
  assert.deepEqual(sidecar.resources, {
    requests: { cpu: "10m", memory: "48Mi" },
    limits: { memory: "96Mi" },
  });
  const init = injected(inject(annotated({ [ANNOTATIONS.mode]: "init" })).patched);
  assert.deepEqual(init.securityContext, sidecar.securityContext);
});

Deno.test("planInjection() takes the ready URL from every kind of probe", async (t) => {
  const cases: [string, Json, Json[] | undefined, string, RegExp?][] = [
    [
      "httpGet readinessProbe, port by number",
      {
        readinessProbe: { httpGet: { path: "/ready", port: 8080 } },
      },
      undefined,
      "http://127.0.0.1:8080/ready",
    ],
    [
      "httpGet with no path asks /",
      {
        readinessProbe: { httpGet: { port: 8080 } },
      },
      undefined,
      "http://127.0.0.1:8080/",
    ],
    [
      "httpGet with a path without its slash",
      {
        readinessProbe: { httpGet: { path: "healthz?full=1", port: 8080 } },
      },
      undefined,
      "http://127.0.0.1:8080/healthz?full=1",
    ],
    [
      "httpGet with a port number as a string",
      {
        readinessProbe: { httpGet: { path: "/r", port: "8081" } },
      },
      undefined,
      "http://127.0.0.1:8081/r",
    ],
    [
      "httpGet with host localhost",
      {
        readinessProbe: { httpGet: { host: "localhost", path: "/r", port: 8080 } },
      },
      undefined,
      "http://127.0.0.1:8080/r",
    ],
    [
      "the startupProbe before the readinessProbe",
      {
        startupProbe: { httpGet: { path: "/started", port: "admin" } },
        readinessProbe: { httpGet: { path: "/ready", port: 8080 } },
      },
      [{ name: "http", containerPort: 8080 }, { name: "admin", containerPort: 9090 }],
      "http://127.0.0.1:9090/started",
    ],
    [
      "tcpSocket by named port",
      {
        readinessProbe: { tcpSocket: { port: "pg" } },
      },
      [{ name: "pg", containerPort: 5432 }],
      "tcp://127.0.0.1:5432",
    ],
    [
      "an exec startupProbe, then the tcpSocket readinessProbe",
      {
        startupProbe: { exec: { command: ["cat", "/tmp/started"] } },
        readinessProbe: { tcpSocket: { port: 6379 } },
      },
      undefined,
      "tcp://127.0.0.1:6379",
    ],
    [
      "HTTPS, with a warning about the certificate",
      {
        startupProbe: { httpGet: { scheme: "HTTPS", path: "/ready", port: 8443 } },
      },
      undefined,
      "https://127.0.0.1:8443/ready",
      /certificate the image trusts/,
    ],
  ];
  for (const [name, probes, ports, url, warning] of cases) {
    await t.step(name, () => {
      const { plan, patched } = inject(withProbes(probes, ports));
      assert.equal(holdOptions(injected(patched)).readyUrl.href, url);
      assert.equal(plan.outcome.kind, "injected");
      if (warning) assert.match(plan.warnings.join("\n"), warning);
      else assert.deepEqual(plan.warnings, []);
    });
  }
});

Deno.test("planInjection() leaves the pod alone, with a warning saying why, when no probe gives a ready URL", async (t) => {
  const cases: [string, Json, RegExp][] = [
    ["no probe", {}, /has no startupProbe or readinessProbe.*startup-lock\/ready-url/],
    ["an exec probe", { readinessProbe: { exec: { command: ["true"] } } }, /exec probe/],
    ["a grpc probe", { readinessProbe: { grpc: { port: 9000 } } }, /grpc probe/],
    [
      "a port name the container does not declare",
      { readinessProbe: { httpGet: { path: "/r", port: "metrics" } } },
      /names port "metrics", which the container does not declare/,
    ],
    [
      "another host",
      { readinessProbe: { httpGet: { host: "db.example.com", path: "/", port: 80 } } },
      /asks another host \(db\.example\.com\)/,
    ],
    [
      "a port out of range",
      { readinessProbe: { tcpSocket: { port: 70000 } } },
      /has port 70000: expected 1 to 65535/,
    ],
  ];
  for (const [name, probes, warning] of cases) {
    await t.step(name, () => {
      const plan = planInjection(withProbes(probes) as Any, "shop", OPTIONS);
      skippedWith(plan, warning);
      assert.ok(plan.warnings[0]!.startsWith("startup-lock: not injected: "));
    });
  }
});

Deno.test("planInjection() takes the annotation startup-lock/ready-url when the probes give none, or over them", async (t) => {
  await t.step("with an exec probe", () => {
    const pod = annotated(
      { [ANNOTATIONS.readyUrl]: "tcp://127.0.0.1:7000" },
      withProbes({ readinessProbe: { exec: { command: ["true"] } } }),
    );
    assert.equal(holdOptions(injected(inject(pod).patched)).readyUrl.href, "tcp://127.0.0.1:7000");
  });
  await t.step("over an httpGet probe: the user said so", () => {
    const pod = annotated({ [ANNOTATIONS.readyUrl]: "http://localhost:8080/warm" });
    const { plan, patched } = inject(pod);
    assert.equal(holdOptions(injected(patched)).readyUrl.href, "http://localhost:8080/warm");
    assert.deepEqual(plan.outcome, {
      kind: "injected",
      mode: "sidecar",
      readyUrl: "http://localhost:8080/warm",
      readyFrom: "annotation startup-lock/ready-url",
    });
  });
  await t.step("a literal $ stays literal in the argument", () => {
    const pod = annotated({ [ANNOTATIONS.readyUrl]: "http://127.0.0.1:8080/ready?x=$(HOME)" });
    const sidecar = injected(inject(pod).patched);
    assert.ok(sidecar.args.includes("http://127.0.0.1:8080/ready?x=$$(HOME)"));
    assert.equal(holdOptions(sidecar).readyUrl.href, "http://127.0.0.1:8080/ready?x=$(HOME)");
  });
});

Deno.test("planInjection() adds to existing init containers and annotations with escaped paths", () => {
  const pod = annotated({ "prometheus.io/scrape": "true" }) as Any;
  pod.spec.initContainers = [{ name: "migrate", image: "registry.example.com/migrate:1" }];
  const { plan, patched } = inject(pod);
  assert.deepEqual(plan.patch.map((op) => op.path), [
    "/spec/initContainers/0",
    "/metadata/annotations/startup-lock~1injected",
  ]);
  assert.deepEqual(patched.spec.initContainers.map((c: Any) => c.name), [
    CONTAINER_NAME,
    "migrate",
  ]);
  assert.deepEqual(patched.metadata.annotations, {
    "prometheus.io/scrape": "true",
    "startup-lock/injected": "sidecar",
  });
  assert.equal(pointerToken("a/b~c"), "a~1b~0c");
});

Deno.test("planInjection() in init mode adds a plain init container running acquire, last", async (t) => {
  await t.step("after the pod's own init containers, with the default duration", () => {
    const pod = annotated({ [ANNOTATIONS.mode]: "init" }) as Any;
    pod.spec.initContainers = [{ name: "migrate", image: "registry.example.com/migrate:1" }];
    const { plan, patched } = inject(pod);
    assert.deepEqual(plan.patch.map((op) => op.path), [
      "/spec/initContainers/-",
      "/metadata/annotations/startup-lock~1injected",
    ]);
    const init = patched.spec.initContainers[1];
    assert.equal(init.name, CONTAINER_NAME);
    assert.equal(init.restartPolicy, undefined, "nothing runs after start");
    assert.equal(init.startupProbe, undefined);
    assert.equal(patched.metadata.annotations[ANNOTATIONS.injected], "init");
    const [command, ...rest] = expandedArgs(init);
    assert.equal(command, "acquire");
    const parsed = acquireCommand.parse(rest, () => undefined);
    assert.equal(parsed.action, "run");
    assert.equal(parsed.options.durationMs, OPTIONS.initDurationMs);
    assert.equal(parsed.options.waitMs, OPTIONS.initWaitMs);
    assert.equal(parsed.options.id, `shop/${FIELDS["metadata.name"]}`);
  });
  await t.step("with startup-lock/duration, and no probe needed", () => {
    const pod = annotated(
      { [ANNOTATIONS.mode]: "init", [ANNOTATIONS.duration]: "45s" },
      withProbes({}),
    );
    const { plan, patched } = inject(pod);
    assert.deepEqual(plan.warnings, []);
    const [, ...rest] = expandedArgs(injected(patched));
    const parsed = acquireCommand.parse(rest, () => undefined);
    assert.equal(parsed.action === "run" && parsed.options.durationMs, 45_000);
  });
  await t.step("also for a pod on the host's network, where a sidecar is refused", () => {
    const pod = withProbes({ readinessProbe: { httpGet: { path: "/r", port: 8080 } } }) as Any;
    pod.spec.hostNetwork = true;
    skippedWith(planInjection(pod, "shop", OPTIONS), /host's network.*startup-lock\/mode: init/);
    annotated({ [ANNOTATIONS.mode]: "init" }, pod);
    assert.equal(inject(pod).plan.outcome.kind, "injected");
  });
});

Deno.test("planInjection() with startup-lock/duration bounds the sidecar's hold", () => {
  const sidecar = injected(inject(annotated({ [ANNOTATIONS.duration]: "90s" })).patched);
  assert.equal(holdOptions(sidecar).acquire.durationMs, 90_000);
});

Deno.test("planInjection() never injects into an opted-out pod, kube-system or the lock's own pods", () => {
  skippedWith(
    planInjection(annotated({ [ANNOTATIONS.inject]: "false" }) as Any, "shop", OPTIONS),
    undefined,
  );
  skippedWith(planInjection(deploymentPod() as Any, "kube-system", OPTIONS), undefined);
  for (const name of ["startup-lock", "startup-lock-inject"]) {
    const own = deploymentPod() as Any;
    own.metadata.labels["app.kubernetes.io/name"] = name;
    skippedWith(planInjection(own, "shop", OPTIONS), undefined);
  }
  // "true" is a plain yes.
  assert.equal(inject(annotated({ [ANNOTATIONS.inject]: "true" })).plan.outcome.kind, "injected");
});

Deno.test("planInjection() leaves a Windows pod alone, with a warning: the image is Linux's, and the API server refuses a Linux securityContext on it", async (t) => {
  const windows = deploymentPod() as Any;
  windows.spec.os = { name: "windows" };
  const onWindowsNodes = deploymentPod() as Any;
  onWindowsNodes.spec.nodeSelector = { "kubernetes.io/os": "windows" };
  for (const [name, pod] of [["spec.os.name", windows], ["a nodeSelector", onWindowsNodes]]) {
    for (const mode of ["sidecar", "init"]) {
      await t.step(`${name}, ${mode} mode`, () => {
        const plan = planInjection(
          annotated({ [ANNOTATIONS.mode]: mode }, pod) as Any,
          "shop",
          OPTIONS,
        );
        skippedWith(plan, /^startup-lock: not injected: the pod runs on Windows/);
      });
    }
  }
  const linux = deploymentPod() as Any;
  linux.spec.os = { name: "linux" };
  linux.spec.nodeSelector = { "kubernetes.io/os": "linux" };
  assert.equal(inject(linux).plan.outcome.kind, "injected");
});

Deno.test("planInjection() refuses bad annotation values with a warning, never with a denial", async (t) => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ [ANNOTATIONS.inject]: "yes" }, /startup-lock\/inject is "yes": expected "true" or "false"/],
    [
      { [ANNOTATIONS.mode]: "daemon" },
      /startup-lock\/mode is "daemon": expected "sidecar" or "init"/,
    ],
    [{ [ANNOTATIONS.duration]: "soon" }, /startup-lock\/duration is "soon": expected/],
    [
      { [ANNOTATIONS.duration]: "0s" },
      /startup-lock\/duration is "0s": expected a duration greater than zero/,
    ],
    [
      { [ANNOTATIONS.readyUrl]: "ftp://127.0.0.1/" },
      /startup-lock\/ready-url is "ftp:\/\/127\.0\.0\.1\/": unsupported scheme "ftp"/,
    ],
    [
      { [ANNOTATIONS.readyUrl]: "tcp://127.0.0.1" },
      /startup-lock\/ready-url is "tcp:\/\/127\.0\.0\.1"/,
    ],
  ];
  for (const [annotations, warning] of cases) {
    await t.step(JSON.stringify(annotations), () => {
      skippedWith(planInjection(annotated(annotations) as Any, "shop", OPTIONS), warning);
    });
  }
});

Deno.test("planInjection() leaves a pod that already has the lock alone: mutating the patched pod gives no patch", async (t) => {
  await t.step("a pod it patched, in either mode", () => {
    for (const mode of ["sidecar", "init"]) {
      const { patched } = inject(annotated({ [ANNOTATIONS.mode]: mode }));
      skippedWith(planInjection(patched, "shop", OPTIONS), undefined);
      // Even without the marker: the container is there.
      delete patched.metadata.annotations[ANNOTATIONS.injected];
      skippedWith(planInjection(patched, "shop", OPTIONS), undefined);
    }
  });
  await t.step("a hand-written sidecar of another tag of the image", () => {
    const pod = deploymentPod() as Any;
    pod.spec.initContainers = [{ name: "lock", image: "ghcr.io/acme/startup-lock:0.0.9" }];
    skippedWith(planInjection(pod, "shop", OPTIONS), undefined);
  });
  await t.step("a container of another image that has the name it would use: warned", () => {
    const pod = deploymentPod() as Any;
    pod.spec.containers.push({ name: CONTAINER_NAME, image: "busybox:1.36" });
    skippedWith(
      planInjection(pod, "shop", OPTIONS),
      /already has a container named "startup-lock"/,
    );
  });
});

Deno.test("planInjection() moves the sidecar's probe port off a port the pod declares", () => {
  const pod = deploymentPod() as Any;
  pod.spec.containers[0].ports.push({ containerPort: DEFAULT_PROBE_PORT });
  pod.spec.containers.push({
    name: "proxy",
    image: "envoyproxy/envoy:v1.31",
    ports: [{ containerPort: DEFAULT_PROBE_PORT + 1 }],
  });
  const sidecar = injected(inject(pod).patched);
  assert.equal(holdOptions(sidecar).listen.port, DEFAULT_PROBE_PORT + 2);
  assert.equal(sidecar.startupProbe.httpGet.port, DEFAULT_PROBE_PORT + 2);
});

Deno.test("planInjection() moves the sidecar's probe port off a port the pod's probes or ready URL use, declared or not", async (t) => {
  // containerPort is informational: an app may listen on a port it never declares.
  const cases: [string, Json][] = [
    [
      "the readinessProbe the ready URL comes from",
      withProbes({ readinessProbe: { httpGet: { path: "/ready", port: DEFAULT_PROBE_PORT } } }, []),
    ],
    [
      "a livenessProbe of the app",
      withProbes({
        readinessProbe: { httpGet: { path: "/ready", port: 8080 } },
        livenessProbe: { tcpSocket: { port: DEFAULT_PROBE_PORT } },
      }, []),
    ],
    [
      "a grpc probe of another container",
      (() => {
        const pod = deploymentPod() as Any;
        pod.spec.containers.push({
          name: "grpc",
          image: "registry.example.com/grpc:1",
          readinessProbe: { grpc: { port: DEFAULT_PROBE_PORT } },
        });
        return pod;
      })(),
    ],
    [
      "the annotation startup-lock/ready-url",
      annotated({ [ANNOTATIONS.readyUrl]: `tcp://127.0.0.1:${DEFAULT_PROBE_PORT}` }),
    ],
  ];
  for (const [name, pod] of cases) {
    await t.step(name, () => {
      const sidecar = injected(inject(pod).patched);
      const options = holdOptions(sidecar);
      assert.equal(options.listen.port, DEFAULT_PROBE_PORT + 1);
      assert.notEqual(Number(options.readyUrl.port), options.listen.port);
    });
  }
});

Deno.test("planInjection() keeps the lock id within 128 characters", () => {
  const longNamespace = "n".repeat(63);
  const pod = deploymentPod() as Any;
  pod.metadata.generateName = `${"g".repeat(70)}-`;
  // 63 + 1 + 58 + 5 = 127: the namespace fits.
  assert.ok(
    injected(inject(pod, longNamespace).patched).args.includes(`${longNamespace}/$(POD_NAME)`),
  );
  delete pod.metadata.generateName;
  pod.metadata.name = "p".repeat(100);
  assert.ok(injected(inject(pod, longNamespace).patched).args.includes("$(POD_NAME)"));
  pod.metadata.name = "p".repeat(200);
  skippedWith(planInjection(pod, longNamespace, OPTIONS), /longer than a lock id may be/);
});

Deno.test("planInjection() adds HOST_IP only when --server asks for it", () => {
  const plan = planInjection(deploymentPod() as Any, "shop", {
    ...OPTIONS,
    server: "http://startup-lock.startup-lock.svc:8888",
  });
  const sidecar = injected(applyPatch(deploymentPod(), plan.patch as Any));
  assert.deepEqual(sidecar.env.map((e: Any) => e.name), ["POD_NAME"]);
});

Deno.test("planInjection() gives the injected container the server's token from a Secret, as a variable only", async (t) => {
  const secret = { name: "startup-lock-auth", key: "token" };
  for (const mode of ["sidecar", "init"] as const) {
    await t.step(mode, () => {
      const pod = mode === "init" ? annotated({ [ANNOTATIONS.mode]: "init" }) : deploymentPod();
      const plan = planInjection(pod as Any, "shop", { ...OPTIONS, authTokenSecret: secret });
      const patched = applyPatch(pod, plan.patch as Any);
      assertValidPod(patched);
      const container = injected(patched);
      const variables = container.env.filter((e: Any) => e.name === "STARTUP_LOCK_AUTH_TOKEN");
      assert.deepEqual(variables, [
        { name: "STARTUP_LOCK_AUTH_TOKEN", valueFrom: { secretKeyRef: secret } },
      ]);
      assert.ok(!container.args.some((a: string) => /auth|token/i.test(a)), "no token flag");
    });
  }
  await t.step("none without --authTokenSecret", () => {
    const container = injected(inject(deploymentPod()).patched);
    assert.ok(!container.env.some((e: Any) => e.name === "STARTUP_LOCK_AUTH_TOKEN"));
  });
});
