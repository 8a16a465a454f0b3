/**
 * `startup-lock healthcheck`: asks an endpoint once and exits 0 only when it
 * answers `200`. Images without a shell or curl call this from a Docker
 * `HEALTHCHECK` or a Kubernetes exec probe.
 *
 * @module
 */
import {
  type Command,
  type Env,
  type FlagSpec,
  HELP_FLAG,
  type Parsed,
  parseFlags,
  parseInteger,
  Reader,
  renderUsage,
} from "../args.ts";
import { describeFetchError } from "../client/http.ts";
import { note } from "../client/output.ts";
import { formatDuration, parseDuration } from "../duration.ts";
import { UsageError } from "../errors.ts";
import { EXIT } from "../exit.ts";
import { parseHttpUrl } from "./_client.ts";
import { LOG_FORMAT_FLAG, readNoteFormat } from "./_log_format.ts";

/** Where `healthcheck` asks by default: the server's `/healthz` on its default port, on this host. */
export const DEFAULT_HEALTHCHECK_URL = "http://127.0.0.1:8888/healthz";
/**
 * How long `healthcheck` waits for the answer: a local `/healthz` answers in
 * milliseconds, so 5 s means the server hangs, well inside Docker's default
 * `HEALTHCHECK --timeout` of 30 s.
 */
export const DEFAULT_HEALTHCHECK_TIMEOUT_MS = 5_000;

/** What `healthcheck` needs. */
export interface HealthcheckOptions {
  /** The URL that must answer `200`. */
  url: URL;
  /** How long to wait for the answer. */
  timeoutMs: number;
}

/**
 * The flags of `healthcheck`. `--timeout` has no variable: `STARTUP_LOCK_TIMEOUT`
 * is the server's lock duration, and the probe runs inside the server's
 * container, with its environment.
 */
export const HEALTHCHECK_FLAGS: readonly FlagSpec[] = [
  {
    name: "url",
    kind: "value",
    valueName: "URL",
    default: `${DEFAULT_HEALTHCHECK_URL}, with STARTUP_LOCK_PORT as the port when set`,
    description: "The endpoint that must answer 200",
  },
  {
    name: "timeout",
    kind: "value",
    valueName: "DURATION",
    default: formatDuration(DEFAULT_HEALTHCHECK_TIMEOUT_MS),
    description: "How long to wait for the answer",
    env: false,
  },
  LOG_FORMAT_FLAG,
  HELP_FLAG,
];

/**
 * Without `--url` or `STARTUP_LOCK_URL`, the port comes from
 * `STARTUP_LOCK_PORT` when it is set, so a probe that runs in the server's
 * environment finds the server.
 */
function parse(argv: readonly string[], env: Env): Parsed<HealthcheckOptions> {
  const raw = parseFlags(argv, HEALTHCHECK_FLAGS, env);
  if (raw.values.has("help")) return { action: "help" };
  const read = new Reader(raw);
  readNoteFormat(read);
  const url = read.value("url", undefined, (t) => parseHttpUrl(t, DEFAULT_HEALTHCHECK_URL)) ??
    defaultHealthcheckUrl(env);
  const timeoutMs = read.value("timeout", DEFAULT_HEALTHCHECK_TIMEOUT_MS, parseDuration);
  return { action: "run", options: { url, timeoutMs } };
}

function defaultHealthcheckUrl(env: Env): URL {
  const url = new URL(DEFAULT_HEALTHCHECK_URL);
  const port = env("STARTUP_LOCK_PORT")?.trim();
  if (port === undefined || port === "") return url;
  try {
    url.port = String(parseInteger(port, 1, 65535));
  } catch (error) {
    throw new UsageError(
      `Invalid STARTUP_LOCK_PORT "${port}": ${(error as Error).message} ` +
        "(healthcheck asks that port when there is no --url; give --url when the server " +
        "picks its port)",
    );
  }
  return url;
}

/** Returns the exit code; says why on stderr when it is not 0. */
async function run(options: HealthcheckOptions): Promise<number> {
  const { url, timeoutMs } = options;
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    // Not following redirects: the answer of this URL counts, not that of a page it points to.
    const response = await fetch(url, { redirect: "manual", signal });
    await response.body?.cancel();
    if (response.status === 200) return EXIT.OK;
    const status = `${response.status} ${response.statusText}`.trim();
    note(`Unhealthy: ${url.href} answered HTTP ${status}, expected 200`, "unhealthy", "error");
  } catch (error) {
    note(
      signal.aborted
        ? `Unhealthy: ${url.href} did not answer within ${formatDuration(timeoutMs)} (--timeout)`
        : `Unhealthy: cannot reach ${url.href}: ${describeFetchError(error)}`,
      "unhealthy",
      "error",
    );
  }
  return EXIT.FAILURE;
}

/** `startup-lock healthcheck`: exits 0 when the URL answers 200, else 1. */
export const healthcheckCommand: Command<HealthcheckOptions> = {
  name: "healthcheck",
  flags: HEALTHCHECK_FLAGS,
  usage: () =>
    renderUsage({
      synopsis: "startup-lock healthcheck [--url URL] [--timeout DURATION]",
      about: [
        "Asks the server's /healthz once, for a Docker HEALTHCHECK or a Kubernetes exec probe",
        "in an image without curl. Exit codes: 0 it answered 200, 1 it did not (why on",
        "stderr), 2 usage error.",
      ],
      flags: HEALTHCHECK_FLAGS,
    }),
  parse,
  run,
};
