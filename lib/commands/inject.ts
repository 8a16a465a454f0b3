/**
 * `startup-lock inject`: the mutating admission webhook that adds the lock to
 * the pods of labelled namespaces (see `lib/inject/`). HTTPS only: the API
 * server calls webhooks over TLS, with the CA bundle of the webhook's
 * configuration.
 *
 * @module
 */
import {
  type Command,
  type Env,
  envName,
  type FlagSpec,
  HELP_FLAG,
  type Parsed,
  parseFlags,
  parseInteger,
  Reader,
  renderUsage,
} from "../args.ts";
import { note, onStopSignals } from "../client/output.ts";
import { formatDuration, parseDuration } from "../duration.ts";
import { describeError, UsageError } from "../errors.ts";
import { EXIT } from "../exit.ts";
import type { InjectOptions, SecretKey } from "../inject/patch.ts";
import { serveTlsReloading } from "../inject/tls_server.ts";
import { createWebhookHandler, type Decision } from "../inject/webhook.ts";
import { parseHttpUrl, parsePath } from "./_client.ts";
import { LOG_FORMAT_FLAG, readNoteFormat } from "./_log_format.ts";

/** The webhook's port: the usual one for an in-cluster HTTPS webhook, unprivileged. */
export const DEFAULT_INJECT_PORT = 8443;
/** How long the sidecar may hold the lock if the app never gets ready: as example-sidecar.yaml. */
export const DEFAULT_SIDECAR_DURATION_MS = 5 * 60_000;
/** How long an init-mode lock is held: as example-init-container.yaml, a typical JVM start-up with margin. */
export const DEFAULT_INIT_DURATION_MS = 2 * 60_000;
/** How long an init-mode container waits before it fails and the kubelet runs it again. */
export const DEFAULT_INIT_WAIT_MS = 30 * 60_000;
/**
 * How often the certificate files are read again: the kubelet updates a
 * Secret volume a minute or so after the Secret changes, so 10 s adds little
 * to a rotation, and reading two small files that often costs nothing.
 */
export const DEFAULT_TLS_CHECK_INTERVAL_MS = 10_000;

/** What `inject` needs. */
export interface InjectCommandOptions {
  hostname: string;
  port: number;
  certFile: string;
  keyFile: string;
  tlsCheckIntervalMs: number;
  inject: InjectOptions;
}

/** The flags of `inject`. */
export const INJECT_FLAGS: readonly FlagSpec[] = [
  {
    name: "server",
    kind: "value",
    valueName: "URL",
    description: "The lock server as the injected container reaches it, such as " +
      "http://startup-lock.startup-lock.svc:8888 (daemonset.yaml's node-local Service), or " +
      "http://$(HOST_IP):8888 for the hostNetwork DaemonSet; $(HOST_IP) is the node's IP; required",
  },
  {
    name: "image",
    kind: "value",
    valueName: "IMAGE",
    description:
      "The startup-lock image to inject, such as registry.example.com/startup-lock:0.1.0; " +
      "required",
  },
  {
    name: "tlsCert",
    kind: "value",
    valueName: "PATH",
    description: "The webhook's certificate chain in PEM, read again when it changes; required",
  },
  {
    name: "tlsKey",
    kind: "value",
    valueName: "PATH",
    description: "The key of --tlsCert in PEM, read again when it changes; required",
  },
  {
    name: "host",
    kind: "value",
    valueName: "HOST",
    default: "0.0.0.0",
    description: "The address to listen on",
  },
  {
    name: "port",
    kind: "value",
    valueName: "PORT",
    default: String(DEFAULT_INJECT_PORT),
    description: "The HTTPS port of POST /mutate and GET /healthz (0 picks a free one)",
  },
  {
    name: "duration",
    kind: "value",
    valueName: "DURATION",
    default: formatDuration(DEFAULT_SIDECAR_DURATION_MS),
    description: "The sidecar's longest hold if the app never gets ready (annotation " +
      "startup-lock/duration overrides it)",
  },
  {
    name: "initDuration",
    kind: "value",
    valueName: "DURATION",
    default: formatDuration(DEFAULT_INIT_DURATION_MS),
    description:
      "How long a lock of startup-lock/mode: init is held (startup-lock/duration overrides it)",
  },
  {
    name: "wait",
    kind: "value",
    valueName: "DURATION",
    default: formatDuration(DEFAULT_INIT_WAIT_MS),
    description:
      "How long an init-mode container waits for a lock before the kubelet runs it again",
  },
  {
    name: "authTokenSecret",
    kind: "value",
    valueName: "SECRET/KEY",
    description: "The Secret and key, in each pod's namespace, that hold the lock server's " +
      "--authToken; the injected container gets it as STARTUP_LOCK_AUTH_TOKEN (default: the " +
      "server needs no token)",
  },
  {
    name: "tlsCheckInterval",
    kind: "value",
    valueName: "DURATION",
    default: formatDuration(DEFAULT_TLS_CHECK_INTERVAL_MS),
    description: "How often to read --tlsCert and --tlsKey again",
  },
  LOG_FORMAT_FLAG,
  HELP_FLAG,
];

/** A sample node IP, to check a `--server` that uses `$(HOST_IP)`. */
const SAMPLE_HOST_IP = "10.0.0.7";

/** `--server`: an http(s) URL once `$(HOST_IP)` is filled in; no other `$(VAR)`. */
function parseServer(text: string): string {
  const server = text.trim();
  const other = /\$\((?!HOST_IP\))[^)]*\)/.exec(server);
  if (other) {
    throw new RangeError(
      `${other[0]} is not set in the injected container: only $(HOST_IP), the node's IP`,
    );
  }
  parseHttpUrl(server.replaceAll("$(HOST_IP)", SAMPLE_HOST_IP), "http://$(HOST_IP):8888");
  return server;
}

/** A DNS-1123 subdomain, as a Secret's name must be. */
const SECRET_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A Secret's key: letters, digits, "-", "_" and ".". */
const SECRET_KEY = /^[-._a-zA-Z0-9]+$/;

/** `--authTokenSecret`: `NAME/KEY`, a Secret's name and one of its keys. */
export function parseSecretKey(text: string): SecretKey {
  const [name = "", key = "", ...rest] = text.trim().split("/");
  if (
    rest.length > 0 || name.length > 253 || !SECRET_NAME.test(name) || key.length > 253 ||
    !SECRET_KEY.test(key)
  ) {
    throw new RangeError(
      "expected a Secret's name and key as NAME/KEY, such as startup-lock-auth/token",
    );
  }
  return { name, key };
}

/** `--image`: an image reference, without spaces. */
function parseImage(text: string): string {
  const image = text.trim();
  if (!/^[^\s$]+$/.test(image)) {
    throw new RangeError(
      "expected an image reference such as registry.example.com/startup-lock:0.1.0",
    );
  }
  return image;
}

function required(read: Reader, name: string, what: string): void {
  if (read.has(name)) return;
  throw new UsageError(`Missing --${name} (or ${envName(name)}): ${what}`);
}

function parse(argv: readonly string[], env: Env): Parsed<InjectCommandOptions> {
  const raw = parseFlags(argv, INJECT_FLAGS, env);
  if (raw.values.has("help")) return { action: "help" };
  const read = new Reader(raw);
  readNoteFormat(read);
  required(read, "server", "the lock server as the injected container reaches it");
  required(read, "image", "the startup-lock image to inject");
  required(read, "tlsCert", "the webhook's certificate (the API server calls webhooks over HTTPS)");
  required(read, "tlsKey", "the key of --tlsCert");
  return {
    action: "run",
    options: {
      hostname: read.value("host", "0.0.0.0", (t) => {
        if (t.trim() === "") throw new RangeError("expected an address such as 0.0.0.0");
        return t.trim();
      }),
      port: read.value("port", DEFAULT_INJECT_PORT, (t) => parseInteger(t, 0, 65535)),
      certFile: read.value("tlsCert", "", parsePath),
      keyFile: read.value("tlsKey", "", parsePath),
      tlsCheckIntervalMs: read.value(
        "tlsCheckInterval",
        DEFAULT_TLS_CHECK_INTERVAL_MS,
        parseDuration,
      ),
      inject: {
        server: read.value("server", "", parseServer),
        image: read.value("image", "", parseImage),
        sidecarDurationMs: read.value("duration", DEFAULT_SIDECAR_DURATION_MS, parseDuration),
        initDurationMs: read.value("initDuration", DEFAULT_INIT_DURATION_MS, parseDuration),
        initWaitMs: read.value("wait", DEFAULT_INIT_WAIT_MS, parseDuration),
        authTokenSecret: read.value("authTokenSecret", undefined, parseSecretKey),
      },
    },
  };
}

/** One log line per review. */
function describeDecision(decision: Decision): string {
  const { outcome, pod } = decision;
  switch (outcome.kind) {
    case "injected":
      return outcome.mode === "sidecar"
        ? `Injected the hold sidecar into ${pod}, ready URL ${outcome.readyUrl} (${outcome.readyFrom})`
        : `Injected the acquire init container into ${pod}`;
    case "skipped":
      return `Left ${pod} alone: ${outcome.reason}`;
    case "ignored":
      return `Allowed review ${decision.uid} unchanged: ${outcome.reason}`;
  }
}

/** Returns the exit code. */
async function run(options: InjectCommandOptions): Promise<number> {
  const stopping = Promise.withResolvers<string>();
  using _signals = onStopSignals((signal) => stopping.resolve(signal));
  const handler = createWebhookHandler({
    ...options.inject,
    onDecision: (d) => note(describeDecision(d), "decision"),
  });
  let server;
  try {
    server = await serveTlsReloading({
      hostname: options.hostname,
      port: options.port,
      certFile: options.certFile,
      keyFile: options.keyFile,
      checkIntervalMs: options.tlsCheckIntervalMs,
      handler,
      onReload: () =>
        note(`Serving the new certificate of ${options.certFile}`, "certificate_reloaded"),
      onReloadError: (error) =>
        note(
          `Still serving the old certificate: cannot use ${options.certFile} and ` +
            `${options.keyFile}: ${describeError(error)}`,
          "certificate_unusable",
          "warn",
        ),
    });
  } catch (error) {
    note(
      `Cannot serve HTTPS on ${options.hostname}:${options.port} with --tlsCert ` +
        `${options.certFile} and --tlsKey ${options.keyFile}: ${describeError(error)}`,
      "listen_failed",
      "error",
    );
    return EXIT.FAILURE;
  }
  const { hostname, port } = server.addr;
  note(
    `Listening on https://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}/: ` +
      `POST /mutate injects ${options.inject.image}, lock server ${options.inject.server}`,
    "listening",
  );
  try {
    const signal = await Promise.race([stopping.promise, server.failed]);
    note(`Received ${signal}: stopping`, "stopped");
    return EXIT.OK;
  } catch (error) {
    note(describeError(error), "failed", "error");
    return EXIT.FAILURE;
  } finally {
    await server.shutdown();
  }
}

/** `startup-lock inject`: the admission webhook; exits 0 on SIGTERM or SIGINT. */
export const injectCommand: Command<InjectCommandOptions> = {
  name: "inject",
  flags: INJECT_FLAGS,
  usage: () =>
    renderUsage({
      synopsis:
        "startup-lock inject --server URL --image IMAGE --tlsCert PATH --tlsKey PATH [FLAGS]",
      about: [
        "A mutating admission webhook over HTTPS: POST /mutate takes an AdmissionReview",
        "(admission.k8s.io/v1) for a pod and allows it, adding a native sidecar running hold",
        "(or, with the annotation startup-lock/mode: init, an init container running acquire).",
        "GET /healthz answers 200. The certificate files are read again when they change.",
      ],
      flags: INJECT_FLAGS,
    }),
  parse,
  run,
};
