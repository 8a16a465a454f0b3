/**
 * The client's command lines: `acquire`, `release`, `run`, `hold` and
 * `healthcheck`, their flags and environment variables, validation, and
 * `--help`. Nothing here touches the network; every value is checked before
 * the first request.
 *
 * @module
 */
import { type FlagSpec, formatFlags, parseFlags } from "../args.ts";
import { parseInteger, Reader } from "../cli.ts";
import { formatDuration, parseDuration } from "../duration.ts";
import { UsageError } from "../errors.ts";
import { ID_HINT, isValidId, MAX_ID_LENGTH, TOKEN_PATTERN } from "../protocol.ts";

/**
 * The pause between polls of a server that cannot hold a request (the
 * original): about a second like the original's init client, jittered by
 * ±50 % so that clients started together drift apart.
 */
export const DEFAULT_POLL_INTERVAL_MS = 1_000;
/** How often `run` and `hold` ask the app's ready URL: frees the lock soon after the app is ready, at no real cost. */
export const DEFAULT_READY_INTERVAL_MS = 250;
/** Where `hold` answers its probes: next to the server's 8888, on every interface so the kubelet reaches it. */
export const DEFAULT_LISTEN = "0.0.0.0:8889";
/** The server's limit on `?id=`; checked here so a bad `--id` is a usage error, not a 400. */
/** A lock token as the server issues it (22 base64url characters) and accepts in `/locks/{token}`. */

const RANDOM_ID_HEX_CHARS = 8;

/** Where `healthcheck` asks by default: the server's `/healthz` on its default port, on this host. */
export const DEFAULT_HEALTHCHECK_URL = "http://127.0.0.1:8888/healthz";
/**
 * How long `healthcheck` waits for the answer: a local `/healthz` answers in
 * milliseconds, so 5 s means the server hangs, well inside Docker's default
 * `HEALTHCHECK --timeout` of 30 s.
 */
export const DEFAULT_HEALTHCHECK_TIMEOUT_MS = 5_000;

/** What `acquire`, `run` and `hold` need to get a lock. */
export interface AcquireOptions {
  /** The server's base URL, ending in `/`. */
  server: URL;
  /** `?duration=`; `undefined` lets the server's `--timeout` decide. */
  durationMs: number | undefined;
  /** `?id=`: the same id always gets the same lock back, so retries are idempotent. */
  id: string;
  /** The bound on the whole wait; `undefined` waits forever. */
  waitMs: number | undefined;
  /** Where to write the token, if anywhere. */
  tokenFile: string | undefined;
  /** The mean pause between polls of a server that answers at once. */
  pollIntervalMs: number;
}

/** Where `release` finds the token. */
export type TokenSource = { token: string } | { tokenFile: string };

/** What `release` needs. */
export interface ReleaseOptions {
  server: URL;
  from: TokenSource;
}

/** Watching the app's readiness, for `run` and `hold`. */
export interface ReadyOptions {
  /** The app's ready URL: the lock is released once it answers 2xx. */
  readyUrl: URL | undefined;
  readyIntervalMs: number;
}

/** What `run` needs. */
export interface RunOptions extends ReadyOptions {
  acquire: AcquireOptions;
  command: string;
  args: string[];
}

/** What `hold` needs. */
export interface HoldOptions extends ReadyOptions {
  acquire: AcquireOptions;
  readyUrl: URL;
  listen: { hostname: string; port: number };
}

/** What `healthcheck` needs. */
export interface HealthcheckOptions {
  /** The URL that must answer `200`. */
  url: URL;
  /** How long to wait for the answer. */
  timeoutMs: number;
}

/** A parsed client command line: help, or the command's options. */
export type Parsed<T> = { action: "help"; usage: string } | { action: "go"; options: T };

/** The environment, as `Deno.env.get`. */
export type Env = (name: string) => string | undefined;

const SERVER_FLAG: FlagSpec = {
  name: "server",
  kind: "value",
  valueName: "URL",
  description: "The lock server, such as http://startup-lock:8888; required",
};
const TOKEN_FILE_FLAG: FlagSpec = {
  name: "tokenFile",
  kind: "value",
  valueName: "PATH",
  description: "File for the lock's token",
};
const HELP_FLAG: FlagSpec = {
  name: "help",
  kind: "boolean",
  description: "Print this help and exit",
};

/** The flags of `acquire`, shared by `run` and `hold`. */
export const ACQUIRE_FLAGS: readonly FlagSpec[] = [
  SERVER_FLAG,
  {
    name: "duration",
    kind: "value",
    valueName: "DURATION",
    default: "the server's --timeout",
    description: "How long the lock is held unless released earlier",
  },
  {
    name: "id",
    kind: "value",
    valueName: "NAME",
    default: "$HOSTNAME-<8 random hex digits>",
    description: `Names the holder; the same id gets the same lock back (1-${MAX_ID_LENGTH} ` +
      "printable ASCII characters, no spaces)",
  },
  {
    name: "wait",
    kind: "value",
    valueName: "DURATION",
    default: "forever",
    description: "Give up (exit 124) when no lock is granted within this time",
  },
  { ...TOKEN_FILE_FLAG, description: "Also write the token to this file" },
  {
    name: "pollInterval",
    kind: "value",
    valueName: "DURATION",
    default: formatDuration(DEFAULT_POLL_INTERVAL_MS),
    description: "Mean pause (±50 %) between tries when the server answers at once or is down",
  },
];

const READY_FLAGS: readonly FlagSpec[] = [
  {
    name: "readyUrl",
    kind: "value",
    valueName: "URL",
    description: "The app's readiness endpoint: the lock is released once it answers 2xx",
  },
  {
    name: "readyInterval",
    kind: "value",
    valueName: "DURATION",
    default: formatDuration(DEFAULT_READY_INTERVAL_MS),
    description: "Pause between requests to --readyUrl",
  },
];

/** The flags of `release`. */
export const RELEASE_FLAGS: readonly FlagSpec[] = [
  SERVER_FLAG,
  {
    name: "token",
    kind: "value",
    valueName: "TOKEN",
    description: "The token printed by acquire (run sets STARTUP_LOCK_TOKEN for its command)",
  },
  { ...TOKEN_FILE_FLAG, description: "Read the token from this file (as written by acquire)" },
  HELP_FLAG,
];

/** The flags of `run`. */
export const RUN_FLAGS: readonly FlagSpec[] = [
  ...ACQUIRE_FLAGS,
  {
    ...READY_FLAGS[0]!,
    description: READY_FLAGS[0]!.description + "; without it, when the command exits",
  },
  READY_FLAGS[1]!,
  HELP_FLAG,
];

/** The flags of `hold`. */
export const HOLD_FLAGS: readonly FlagSpec[] = [
  ...ACQUIRE_FLAGS,
  { ...READY_FLAGS[0]!, description: READY_FLAGS[0]!.description + "; required" },
  READY_FLAGS[1]!,
  {
    name: "listen",
    kind: "value",
    valueName: "HOST:PORT",
    default: DEFAULT_LISTEN,
    description: "Where to answer GET /acquired (503, then 200 once the lock is held) and /healthz",
  },
  HELP_FLAG,
];

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
  HELP_FLAG,
];

/** The client commands, for the top-level `--help` and the dispatcher. */
export const CLIENT_COMMANDS = {
  acquire: "Wait for a lock and print its token",
  release: "Give a lock back",
  run: "Acquire, run a command, release once it is ready; exit with its code",
  hold: "Kubernetes sidecar: acquire, release once the app is ready, then idle",
  healthcheck: "Exit 0 when the server's /healthz answers 200: for HEALTHCHECK and exec probes",
} as const;

/** A client command's name. */
export type ClientCommandName = keyof typeof CLIENT_COMMANDS;

/** Whether `name` is a client command. */
export function isClientCommand(name: string | undefined): name is ClientCommandName {
  return name !== undefined && Object.hasOwn(CLIENT_COMMANDS, name);
}

/** The commands section of the top-level `--help`. */
export function commandsOverview(): string {
  const rows = [
    ["serve", "Run the lock server (the default; the flags above)"],
    ...Object.entries(CLIENT_COMMANDS),
  ];
  return [
    "Commands:",
    ...rows.map(([name, summary]) => `  ${name!.padEnd(13)}${summary}`),
    "",
    'Run "startup-lock COMMAND --help" for the flags of a command.',
  ].join("\n");
}

const USAGE = {
  acquire: {
    synopsis: "startup-lock acquire --server URL [FLAGS]",
    about: [
      "Waits until the server grants a lock, prints its token on stdout and exits 0.",
      "Exit codes: 0 acquired, 1 error (such as a request the server refused),",
      "2 usage error, 124 no lock within --wait.",
    ],
    flags: [...ACQUIRE_FLAGS, HELP_FLAG],
  },
  release: {
    synopsis: "startup-lock release --server URL (--token TOKEN | --tokenFile PATH)",
    about: [
      "Gives a lock back. Exits 0 when it was released, and also when it had already",
      "been released or had expired; 1 when the server cannot be reached; 2 usage error.",
    ],
    flags: RELEASE_FLAGS,
  },
  run: {
    synopsis: "startup-lock run --server URL [FLAGS] -- COMMAND [ARGS...]",
    about: [
      "Acquires a lock, runs COMMAND with STARTUP_LOCK_TOKEN in its environment, forwards",
      "SIGTERM and SIGINT to it, and releases the lock once --readyUrl answers 2xx (or the",
      "command exits, or the lock expires). Exits with the command's exit code (128 + the",
      "signal number when a signal ended it); 124 no lock within --wait; 127 no such command.",
    ],
    flags: RUN_FLAGS,
  },
  hold: {
    synopsis: "startup-lock hold --server URL --readyUrl URL [FLAGS]",
    about: [
      "For a Kubernetes native sidecar: answers GET /acquired with 503 until the lock is",
      "held and 200 after (point the startupProbe at it), releases the lock once",
      "--readyUrl answers 2xx, then idles until SIGTERM or SIGINT and exits 0.",
    ],
    flags: HOLD_FLAGS,
  },
  healthcheck: {
    synopsis: "startup-lock healthcheck [--url URL] [--timeout DURATION]",
    about: [
      "Asks the server's /healthz once, for a Docker HEALTHCHECK or a Kubernetes exec probe",
      "in an image without curl. Exit codes: 0 it answered 200, 1 it did not (why on",
      "stderr), 2 usage error.",
    ],
    flags: HEALTHCHECK_FLAGS,
  },
} as const;

/** The `--help` text of a client command. */
export function clientUsage(command: ClientCommandName): string {
  const { synopsis, about, flags } = USAGE[command];
  return [
    `Usage: ${synopsis}`,
    "",
    ...about,
    "",
    "Durations are whole seconds (60) or a number with a unit: 500ms, 90s, 2m, 1h.",
    "Flags on the command line win over their environment variables.",
    "",
    "Flags:",
    formatFlags(flags),
  ].join("\n");
}

/**
 * Parses `acquire`'s command line.
 *
 * @throws {UsageError} naming the flag or variable, the value and what is allowed
 */
export function parseAcquireArgs(argv: readonly string[], env: Env): Parsed<AcquireOptions> {
  const raw = parseFlags(argv, USAGE.acquire.flags, env);
  if (raw.values.has("help")) return { action: "help", usage: clientUsage("acquire") };
  return { action: "go", options: readAcquire(new Reader(raw), env) };
}

/**
 * Parses `release`'s command line.
 *
 * @throws {UsageError} naming the flag or variable, the value and what is allowed
 */
export function parseReleaseArgs(argv: readonly string[], env: Env): Parsed<ReleaseOptions> {
  const raw = parseFlags(argv, RELEASE_FLAGS, env);
  if (raw.values.has("help")) return { action: "help", usage: clientUsage("release") };
  const read = new Reader(raw);
  return { action: "go", options: { server: readServer(read), from: readTokenSource(read) } };
}

/**
 * Parses `run`'s command line: flags, then `--`, then the command.
 *
 * @throws {UsageError} naming the flag or variable, the value and what is allowed
 */
export function parseRunArgs(argv: readonly string[], env: Env): Parsed<RunOptions> {
  const raw = parseFlags(argv, RUN_FLAGS, env, { positionals: true, rest: true });
  if (raw.values.has("help")) return { action: "help", usage: clientUsage("run") };
  const example = "as in: startup-lock run --server URL -- ./app --port 8080";
  if (raw.positionals.length > 0) {
    throw new UsageError(
      `Unexpected argument "${raw.positionals[0]}": put the command after "--", ${example}`,
    );
  }
  const [command, ...args] = raw.rest;
  if (command === undefined || command === "") {
    throw new UsageError(`Missing command: put the command to run after "--", ${example}`);
  }
  const read = new Reader(raw);
  return {
    action: "go",
    options: { acquire: readAcquire(read, env), ...readReady(read), command, args },
  };
}

/**
 * Parses `hold`'s command line.
 *
 * @throws {UsageError} naming the flag or variable, the value and what is allowed
 */
export function parseHoldArgs(argv: readonly string[], env: Env): Parsed<HoldOptions> {
  const raw = parseFlags(argv, HOLD_FLAGS, env);
  if (raw.values.has("help")) return { action: "help", usage: clientUsage("hold") };
  const read = new Reader(raw);
  const acquire = readAcquire(read, env);
  const { readyUrl, readyIntervalMs } = readReady(read);
  if (!readyUrl) {
    throw new UsageError(
      "Missing --readyUrl URL (or STARTUP_LOCK_READY_URL): the app's readiness endpoint, " +
        "such as http://localhost:8080/ready; hold releases the lock once it answers 2xx",
    );
  }
  const listen = read.value("listen", parseListen(DEFAULT_LISTEN), parseListen);
  return { action: "go", options: { acquire, readyUrl, readyIntervalMs, listen } };
}

/**
 * Parses `healthcheck`'s command line. Without `--url` or `STARTUP_LOCK_URL`,
 * the port comes from `STARTUP_LOCK_PORT` when it is set, so a probe that runs
 * in the server's environment finds the server.
 *
 * @throws {UsageError} naming the flag or variable, the value and what is allowed
 */
export function parseHealthcheckArgs(
  argv: readonly string[],
  env: Env,
): Parsed<HealthcheckOptions> {
  const raw = parseFlags(argv, HEALTHCHECK_FLAGS, env);
  if (raw.values.has("help")) return { action: "help", usage: clientUsage("healthcheck") };
  const read = new Reader(raw);
  const url = read.value("url", undefined, (t) => parseHttpUrl(t, DEFAULT_HEALTHCHECK_URL)) ??
    defaultHealthcheckUrl(env);
  const timeoutMs = read.value("timeout", DEFAULT_HEALTHCHECK_TIMEOUT_MS, parseDuration);
  return { action: "go", options: { url, timeoutMs } };
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

function readAcquire(read: Reader, env: Env): AcquireOptions {
  return {
    server: readServer(read),
    durationMs: read.value("duration", undefined, parseDuration),
    id: read.value("id", undefined, parseId) ?? defaultId(env("HOSTNAME")),
    waitMs: read.value("wait", undefined, parseDuration),
    tokenFile: read.value("tokenFile", undefined, parsePath),
    pollIntervalMs: read.value("pollInterval", DEFAULT_POLL_INTERVAL_MS, parseDuration),
  };
}

function readReady(read: Reader): ReadyOptions {
  return {
    readyUrl: read.value(
      "readyUrl",
      undefined,
      (t) => parseHttpUrl(t, "http://localhost:8080/ready"),
    ),
    readyIntervalMs: read.value("readyInterval", DEFAULT_READY_INTERVAL_MS, parseDuration),
  };
}

function readServer(read: Reader): URL {
  if (!read.has("server")) {
    throw new UsageError(
      "Missing --server URL (or STARTUP_LOCK_SERVER): the lock server to ask, " +
        "such as http://startup-lock:8888",
    );
  }
  const url = read.value("server", undefined, (t) => parseHttpUrl(t, "http://startup-lock:8888"))!;
  // A base to resolve `./` and `locks/{token}` against, also behind a path prefix.
  url.search = "";
  url.hash = "";
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return url;
}

/**
 * `--token` or `--tokenFile`. When both are set and exactly one came from the
 * command line, that one wins, as flags win over variables everywhere.
 */
function readTokenSource(read: Reader): TokenSource {
  const onCommandLine = (name: string) => read.source(name).startsWith("--");
  let useToken = read.has("token");
  if (read.has("token") && read.has("tokenFile")) {
    if (onCommandLine("token") === onCommandLine("tokenFile")) {
      throw new UsageError(
        `Both ${read.source("token")} and ${read.source("tokenFile")} are set: give only one`,
      );
    }
    useToken = onCommandLine("token");
  }
  if (useToken) return { token: read.value("token", "", parseToken) };
  if (read.has("tokenFile")) return { tokenFile: read.value("tokenFile", "", parsePath) };
  throw new UsageError(
    "Missing --token TOKEN or --tokenFile PATH (or STARTUP_LOCK_TOKEN, STARTUP_LOCK_TOKEN_FILE): " +
      "the lock to release",
  );
}

/**
 * The id used when none is given: the host (the pod's name in Kubernetes) and a
 * random part, so that two apps on one host never share a lock while retries of
 * one invocation keep theirs.
 */
export function defaultId(hostname: string | undefined): string {
  const random = crypto.getRandomValues(new Uint8Array(RANDOM_ID_HEX_CHARS / 2));
  const suffix = Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
  const host = (hostname ?? "").trim().replace(/[^\x21-\x7E]/g, "-")
    .slice(0, MAX_ID_LENGTH - RANDOM_ID_HEX_CHARS - 1);
  return `${host || "client"}-${suffix}`;
}

function parseId(text: string): string {
  if (!isValidId(text)) throw new RangeError(ID_HINT);
  return text;
}

/** Checks a token as given on the command line or read from a file. */
export function parseToken(text: string): string {
  const token = text.trim();
  if (!TOKEN_PATTERN.test(token)) {
    throw new RangeError('expected a token as printed by acquire (letters, digits, "-", "_")');
  }
  return token;
}

function parsePath(text: string): string {
  if (text.trim() === "") throw new RangeError("expected a file path");
  return text;
}

function parseHttpUrl(text: string, example: string): URL {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new RangeError(`expected an http:// or https:// URL such as ${example}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new RangeError(
      `unsupported scheme "${url.protocol.slice(0, -1)}": expected an http:// or https:// URL ` +
        `such as ${example}`,
    );
  }
  return url;
}

/** `HOST:PORT`, `[IPv6]:PORT`, or `:PORT` for every interface. */
export function parseListen(text: string): { hostname: string; port: number } {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/[\]]*):(\d+)$/.exec(text.trim());
  if (!match) throw new RangeError(`expected HOST:PORT such as ${DEFAULT_LISTEN} or [::]:8889`);
  const host = match[1]!.replace(/^\[(.*)\]$/, "$1");
  return { hostname: host || "0.0.0.0", port: parseInteger(match[2]!, 0, 65535) };
}
