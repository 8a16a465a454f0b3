/**
 * `startup-lock [serve]`: the lock server, the default command. Its flags,
 * their environment variables, validation and `--help`; every value is checked
 * before the server starts.
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
import * as defaults from "../config.ts";
import type { PerCoreSlots, ServerConfig } from "../config.ts";
import { formatDuration, parseDuration } from "../duration.ts";
import { UsageError } from "../errors.ts";
import { EXIT } from "../exit.ts";
import { LOG_LEVELS, parseLogLevel } from "../log.ts";
import { PRESSURE_DIR, pressureAvailable } from "../gates/host.ts";
import { parseCheckTarget } from "../check_target.ts";
import { runServer } from "../server.ts";
import { MEMORY_STORE, parseStore, type StoreSetting } from "../stores/settings.ts";
import { redactValue } from "../redact.ts";
import { VERSION } from "../version.ts";
import { availableCores, parseLocksPerCore, slotsPerCore } from "../cores.ts";
import { explainTokenFileError } from "../auth_token.ts";
import { AUTH_TOKEN_FILE_FLAG, AUTH_TOKEN_FLAG, readAuthFlags } from "./_auth.ts";
import { AUTH_TOKEN_SECRET, secretFlagWarnings, STORE_SECRET } from "./_secrets.ts";
import { LOG_FORMAT_FLAG, parseLogFormat } from "./_log_format.ts";

const s = (ms: number) => formatDuration(ms);

/** The server's flags, in `--help` order. */
export const SERVER_FLAGS: readonly FlagSpec[] = [
  {
    name: "host",
    kind: "value",
    valueName: "HOST",
    default: defaults.DEFAULT_HOST,
    description: "Address to listen on",
  },
  {
    name: "port",
    kind: "value",
    valueName: "PORT",
    default: String(defaults.DEFAULT_PORT),
    description: "Port to listen on (0 picks a free one)",
  },
  {
    name: "locks",
    kind: "value",
    valueName: "N",
    default: String(defaults.DEFAULT_LOCKS),
    description: "How many locks can be held at the same time",
  },
  {
    name: "locksPerCore",
    kind: "value",
    valueName: "X",
    description: "Slots per CPU core this process may use, instead of --locks: " +
      "max(1, floor(X × cores)); not with a Redis --store",
  },
  {
    name: "timeout",
    kind: "value",
    valueName: "DURATION",
    default: s(defaults.DEFAULT_LOCK_MS),
    description: "How long a lock is held when the request names no ?duration=",
  },
  {
    name: "check",
    kind: "list",
    valueName: "URL",
    description:
      "Dependency to check before granting locks: http(s)://… (2xx = up) or tcp://HOST:PORT " +
      "(connects = up); repeatable, comma-separated in the variable",
  },
  {
    name: "failHc",
    kind: "value",
    valueName: "DURATION",
    default: s(defaults.DEFAULT_FAIL_INTERVAL_MS),
    description: "Pause between check rounds after a failing round",
  },
  {
    name: "passHc",
    kind: "value",
    valueName: "DURATION",
    default: s(defaults.DEFAULT_PASS_INTERVAL_MS),
    description: "Pause between check rounds after a passing round",
  },
  {
    name: "checkTimeout",
    kind: "value",
    valueName: "DURATION",
    default: s(defaults.DEFAULT_CHECK_TIMEOUT_MS),
    description: "How long one check may take before it counts as down",
  },
  {
    name: "maxDuration",
    kind: "value",
    valueName: "DURATION",
    default: s(defaults.DEFAULT_MAX_DURATION_MS),
    description:
      "The longest lock granted; a longer ?duration= is cut to it; unset, a longer --timeout raises it",
  },
  {
    name: "maxWait",
    kind: "value",
    valueName: "DURATION",
    default: s(defaults.DEFAULT_MAX_WAIT_MS),
    description: "The longest a request may wait in the queue with ?wait=",
  },
  {
    name: "maxWaiters",
    kind: "value",
    valueName: "N",
    default: String(defaults.DEFAULT_MAX_WAITERS),
    description: "How many requests may wait at once; beyond, they get 503",
  },
  {
    name: "stateFile",
    kind: "value",
    valueName: "PATH",
    description: "Keep the held locks in this file, so a restart (even kill -9) forgets no holder",
  },
  {
    name: "store",
    kind: "value",
    valueName: "URL",
    default: "memory",
    description:
      "Where the locks live: memory (this process), or redis://[USER:PASSWORD@]HOST:PORT[/DB] " +
      "(rediss:// for TLS), shared by every replica with the same --name",
  },
  {
    name: "name",
    kind: "value",
    valueName: "NAME",
    default: defaults.DEFAULT_STORE_NAME,
    description:
      "The semaphore in a Redis --store: replicas with the same name share its --locks slots",
  },
  {
    name: "storePasswordFile",
    kind: "value",
    valueName: "PATH",
    description: "Read the Redis password from this file instead of the --store URL",
  },
  {
    name: "cooldown",
    kind: "value",
    valueName: "DURATION",
    description: "At least this long between two grants, even while slots are free",
  },
  {
    name: "maxLoad",
    kind: "value",
    valueName: "X",
    description: "No grants while the node's one-minute load average is above X",
  },
  {
    name: "maxPressure",
    kind: "value",
    valueName: "PCT",
    description:
      "No grants while CPU, I/O or memory pressure (Linux PSI, some avg10) is above PCT percent",
  },
  {
    name: "logLevel",
    kind: "value",
    valueName: "LEVEL",
    default: defaults.DEFAULT_LOG_LEVEL,
    description: `Least severe log lines to print: ${LOG_LEVELS.join(", ")}`,
  },
  LOG_FORMAT_FLAG,
  {
    ...AUTH_TOKEN_FLAG,
    description: "Require Authorization: Bearer TOKEN on acquire, release, renew and /status",
  },
  {
    ...AUTH_TOKEN_FILE_FLAG,
    description: "Like --authToken, with the token in this file, read again when it changes",
  },
  HELP_FLAG,
  { name: "version", kind: "boolean", description: "Print the version and exit" },
];

/** What `serve` is asked to do: print the version, or serve. */
export type ServeOptions =
  | { action: "version" }
  | {
    action: "serve";
    config: ServerConfig;
    /** Warnings about the command line (a secret given as a flag), logged at start. */
    warnings: string[];
  };

function usage(): string {
  return renderUsage({
    title: "startup-lock: a tiny HTTP lock service that spreads out application start-ups",
    synopsis: "startup-lock [serve] [FLAGS]",
    about: [],
    flags: SERVER_FLAGS,
  });
}

function parse(argv: readonly string[], env: Env): Parsed<ServeOptions> {
  const raw = parseFlags(argv, SERVER_FLAGS, env);
  if (raw.values.has("help")) return { action: "help" };
  if (raw.values.has("version")) return { action: "run", options: { action: "version" } };
  const read = new Reader(raw);
  const timeoutMs = read.value("timeout", defaults.DEFAULT_LOCK_MS, parseDuration);

  const config: ServerConfig = {
    host: read.value("host", defaults.DEFAULT_HOST, parseHost),
    port: read.value("port", defaults.DEFAULT_PORT, parsePort),
    ...readSlots(read, availableCores()),
    timeoutMs,
    checks: read.list("check", parseCheckTarget),
    failHcMs: read.value("failHc", defaults.DEFAULT_FAIL_INTERVAL_MS, parseDuration),
    passHcMs: read.value("passHc", defaults.DEFAULT_PASS_INTERVAL_MS, parseDuration),
    checkTimeoutMs: read.value("checkTimeout", defaults.DEFAULT_CHECK_TIMEOUT_MS, parseDuration),
    // The original has no cap: its `-timeout 7200` must still start, so an unset
    // --maxDuration grows to a longer --timeout; only two explicit values can clash.
    maxDurationMs: read.value(
      "maxDuration",
      Math.max(defaults.DEFAULT_MAX_DURATION_MS, timeoutMs),
      parseDuration,
    ),
    maxWaitMs: read.value("maxWait", defaults.DEFAULT_MAX_WAIT_MS, parseDuration),
    maxWaiters: read.value("maxWaiters", defaults.DEFAULT_MAX_WAITERS, parseMaxWaiters),
    stateFile: read.value("stateFile", undefined, parseStatePath),
    store: readStore(read),
    storeName: read.value("name", defaults.DEFAULT_STORE_NAME, parseStoreName),
    cooldownMs: read.value("cooldown", undefined, parseDuration),
    maxLoad: read.value("maxLoad", undefined, parseMaxLoad),
    maxPressure: read.value("maxPressure", undefined, parsePercent),
    logLevel: read.value("logLevel", defaults.DEFAULT_LOG_LEVEL, parseLogLevel),
    logFormat: read.value("logFormat", defaults.DEFAULT_LOG_FORMAT, parseLogFormat),
  };
  if (config.maxPressure !== undefined && !pressureAvailable()) {
    throw new UsageError(
      `Cannot use ${read.source("maxPressure")}: this kernel reports no pressure stall ` +
        `information (${PRESSURE_DIR} is missing or unreadable; Linux 4.20 or later with PSI ` +
        "enabled has it); use --maxLoad instead",
    );
  }
  readStoreFlags(read, config);
  const auth = readAuthFlags(read);
  if (auth) config.auth = "tokenFile" in auth ? { tokenFile: auth.tokenFile } : auth;
  if (config.timeoutMs > config.maxDurationMs) {
    const maxDuration = formatDuration(config.maxDurationMs);
    throw new UsageError(
      read.has("timeout")
        ? `Invalid ${read.source("timeout")} "${read.text("timeout")}": the default lock ` +
          `duration must not exceed --maxDuration (${maxDuration})`
        : `Invalid ${read.source("maxDuration")} "${read.text("maxDuration")}": it must not be ` +
          `shorter than the default lock duration (--timeout, ` +
          `${formatDuration(config.timeoutMs)}); set --timeout too`,
    );
  }
  const warnings = secretFlagWarnings(read, [AUTH_TOKEN_SECRET, STORE_SECRET]);
  return { action: "run", options: { action: "serve", config, warnings } };
}

async function run(options: ServeOptions): Promise<number> {
  if (options.action === "version") {
    console.log(`startup-lock ${VERSION} (deno ${Deno.version.deno})`);
    return EXIT.OK;
  }
  return await runServer(options.config, { warnings: options.warnings });
}

/** `startup-lock [serve]`: runs the lock server until SIGTERM or SIGINT. */
export const serveCommand: Command<ServeOptions> = {
  name: "serve",
  flags: SERVER_FLAGS,
  usage,
  parse,
  run,
};

/**
 * The slots: `--locks`, or `--locksPerCore` times `cores`; one of the two.
 * Exported for tests, which inject the core count.
 *
 * @throws {UsageError} for a bad value, or both flags given
 */
export function readSlots(read: Reader, cores: number): { locks: number; perCore?: PerCoreSlots } {
  const locks = read.value("locks", defaults.DEFAULT_LOCKS, parseLocks);
  const locksPerCore = read.value("locksPerCore", undefined, parseLocksPerCore);
  if (locksPerCore === undefined) return { locks };
  if (read.has("locks")) {
    throw new UsageError(
      `${read.said("locks")} and ${read.said("locksPerCore")}: give one of --locks (slots) and ` +
        "--locksPerCore (slots per CPU core)",
    );
  }
  return { locks: slotsPerCore(locksPerCore, cores), perCore: { locksPerCore, cores } };
}

/** The semaphore's name: a few safe characters, as it becomes part of Redis key names. */
function parseStoreName(text: string): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(text)) {
    throw new RangeError("expected 1 to 64 letters, digits, dots, dashes or underscores");
  }
  return text;
}

/** `--store`, with any password in it left out of the error. */
function readStore(read: Reader): StoreSetting {
  const text = read.text("store");
  if (text === undefined) return MEMORY_STORE;
  try {
    return parseStore(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new UsageError(`Invalid ${read.source("store")} "${redactValue(text)}": ${reason}`);
  }
}

/** Checks the Redis flags together and reads the password file. */
function readStoreFlags(read: Reader, config: ServerConfig): void {
  const store = config.store;
  if (store.kind === "memory") {
    for (const flag of ["name", "storePasswordFile"]) {
      if (read.has(flag)) {
        throw new UsageError(
          `${read.source(flag)} applies to a Redis store only: add --store redis://HOST:PORT`,
        );
      }
    }
    return;
  }
  if (config.perCore) {
    throw new UsageError(
      `${read.source("locksPerCore")} counts this node's CPU cores, but with --store ` +
        `${store.target.url} every replica shares one semaphore: give its slots with --locks`,
    );
  }
  if (config.stateFile !== undefined) {
    throw new UsageError(
      `${read.source("stateFile")} keeps the locks of a memory store; with ` +
        `--store ${store.target.url} they live in Redis, which keeps them across restarts`,
    );
  }
  const file = read.value("storePasswordFile", undefined, (path) => path);
  if (file === undefined) return;
  if (store.target.password !== undefined) {
    throw new UsageError(
      `${read.source("storePasswordFile")} and a password in --store ` +
        `${redactValue(read.text("store") ?? "")}: give the password one way`,
    );
  }
  if (file.trim() === "") {
    throw new UsageError(`Invalid ${read.source("storePasswordFile")} "": expected a file path`);
  }
  let password: string;
  try {
    password = Deno.readTextFileSync(file).replace(/\r?\n$/, "");
  } catch (error) {
    // As for a token file: "no such file", or a path under /dev explained, never Deno's flags.
    throw new UsageError(
      `Cannot read ${read.source("storePasswordFile")} "${file}": ${explainTokenFileError(error)}`,
    );
  }
  if (password === "") {
    throw new UsageError(`${read.source("storePasswordFile")} "${file}" is empty`);
  }
  store.target.password = password;
}

function parseHost(text: string): string {
  const host = text.trim();
  // The original's own default is "", which Go binds on every interface: `-host ""` still starts.
  if (text === "") return defaults.DEFAULT_HOST;
  if (!host || /[\s/]/.test(host)) {
    throw new RangeError("expected a host name or an IP address such as 0.0.0.0 or 127.0.0.1");
  }
  return host.replace(/^\[(.*)\]$/, "$1");
}

function parsePort(text: string): number {
  return parseInteger(text, 0, 65535);
}

function parseLocks(text: string): number {
  return parseInteger(text, 1, defaults.MAX_LOCKS);
}

function parseMaxWaiters(text: string): number {
  return parseInteger(text, 0, defaults.MAX_WAITERS);
}

function parseStatePath(text: string): string {
  if (text.trim() === "" || text.endsWith("/")) {
    throw new RangeError("expected the path of a file, such as /var/lib/startup-lock/locks.json");
  }
  return text;
}

/** A non-negative decimal number, such as a load average: `4`, `2.5`. */
function parseMaxLoad(text: string): number {
  const n = /^\d+(\.\d+)?$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isFinite(n) || n > defaults.MAX_LOAD) {
    throw new RangeError(`expected a number from 0 to ${defaults.MAX_LOAD}, such as 4 or 2.5`);
  }
  return n;
}

/** A percentage from 0 to 100, such as `20` or `12.5`. */
function parsePercent(text: string): number {
  const n = /^\d+(\.\d+)?$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!(n >= 0 && n <= 100)) {
    throw new RangeError("expected a percentage from 0 to 100, such as 20");
  }
  return n;
}
