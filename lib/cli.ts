/**
 * The server's command line: flags, their environment variables, validation
 * and `--help`. Nothing here touches the network; every value is checked
 * before the server starts.
 *
 * @module
 */
import { type FlagSpec, formatFlags, parseFlags, type RawArgs } from "./args.ts";
import * as defaults from "./config.ts";
import type { ServerConfig } from "./config.ts";
import { formatDuration, parseDuration } from "./duration.ts";
import { UsageError } from "./errors.ts";
import { LOG_LEVELS, type LogLevel } from "./log.ts";
import { parseCheckTarget } from "./probes.ts";

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
    description: "The longest lock a request may ask for with ?duration=",
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
    name: "logLevel",
    kind: "value",
    valueName: "LEVEL",
    default: defaults.DEFAULT_LOG_LEVEL,
    description: `Least severe log lines to print: ${LOG_LEVELS.join(", ")}`,
  },
  { name: "help", kind: "boolean", description: "Print this help and exit" },
  { name: "version", kind: "boolean", description: "Print the version and exit" },
];

/** What the command line asks for. */
export type ServerCommand =
  | { action: "help" }
  | { action: "version" }
  | { action: "serve"; config: ServerConfig };

/** The usage text of the server. */
export function serverUsage(): string {
  return [
    "startup-lock: a tiny HTTP lock service that spreads out application start-ups",
    "",
    "Usage: startup-lock [serve] [FLAGS]",
    "",
    "Durations are whole seconds (60) or a number with a unit: 500ms, 90s, 2m, 1h.",
    "Flags on the command line win over their environment variables.",
    "",
    "Flags:",
    formatFlags(SERVER_FLAGS),
  ].join("\n");
}

/**
 * Parses and validates the server's command line and environment.
 *
 * @throws {UsageError} naming the flag or variable, the value and what is allowed
 */
export function parseServerArgs(
  argv: readonly string[],
  env: (name: string) => string | undefined,
): ServerCommand {
  const raw = parseFlags(argv, SERVER_FLAGS, env);
  if (raw.values.has("help")) return { action: "help" };
  if (raw.values.has("version")) return { action: "version" };
  const read = new Reader(raw);

  const config: ServerConfig = {
    host: read.value("host", defaults.DEFAULT_HOST, parseHost),
    port: read.value("port", defaults.DEFAULT_PORT, parsePort),
    locks: read.value("locks", defaults.DEFAULT_LOCKS, parseLocks),
    timeoutMs: read.value("timeout", defaults.DEFAULT_LOCK_MS, parseDuration),
    checks: read.list("check", parseCheckTarget),
    failHcMs: read.value("failHc", defaults.DEFAULT_FAIL_INTERVAL_MS, parseDuration),
    passHcMs: read.value("passHc", defaults.DEFAULT_PASS_INTERVAL_MS, parseDuration),
    checkTimeoutMs: read.value("checkTimeout", defaults.DEFAULT_CHECK_TIMEOUT_MS, parseDuration),
    maxDurationMs: read.value("maxDuration", defaults.DEFAULT_MAX_DURATION_MS, parseDuration),
    maxWaitMs: read.value("maxWait", defaults.DEFAULT_MAX_WAIT_MS, parseDuration),
    maxWaiters: read.value("maxWaiters", defaults.DEFAULT_MAX_WAITERS, parseMaxWaiters),
    logLevel: read.value("logLevel", defaults.DEFAULT_LOG_LEVEL, parseLogLevel),
  };
  if (config.timeoutMs > config.maxDurationMs) {
    throw new UsageError(
      `Invalid ${read.source("timeout")} "${read.text("timeout")}": the default lock duration ` +
        `must not exceed --maxDuration (${formatDuration(config.maxDurationMs)})`,
    );
  }
  return { action: "serve", config };
}

/**
 * Reads raw flag values through parsers, turning a parser's `RangeError` into a
 * {@linkcode UsageError} that names the flag (or variable) and the value.
 */
export class Reader {
  readonly #raw: RawArgs;

  constructor(raw: RawArgs) {
    this.#raw = raw;
  }

  /** Where a flag's value came from: `--port` or `STARTUP_LOCK_PORT`. */
  source(name: string): string {
    return this.#raw.sources.get(name) ?? `--${name}`;
  }

  /** The raw text of a value flag. */
  text(name: string): string | undefined {
    const v = this.#raw.values.get(name);
    return typeof v === "string" ? v : undefined;
  }

  /** Whether a flag was given, on the command line or in the environment. */
  has(name: string): boolean {
    return this.#raw.values.has(name);
  }

  /** A value flag parsed with `parse`, or `fallback` when absent. */
  value<T>(name: string, fallback: T, parse: (text: string) => T): T {
    const text = this.text(name);
    return text === undefined ? fallback : this.#parse(name, text, parse);
  }

  /** A repeatable flag, each value parsed with `parse`. */
  list<T>(name: string, parse: (text: string) => T): T[] {
    const v = this.#raw.values.get(name);
    const items = Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
    return items.map((text) => this.#parse(name, text, parse));
  }

  #parse<T>(name: string, text: string, parse: (text: string) => T): T {
    try {
      return parse(text);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new UsageError(`Invalid ${this.source(name)} "${text}": ${reason}`);
    }
  }
}

function parseHost(text: string): string {
  const host = text.trim();
  if (!host || /[\s/]/.test(host)) {
    throw new RangeError("expected a host name or an IP address such as 0.0.0.0 or 127.0.0.1");
  }
  return host.replace(/^\[(.*)\]$/, "$1");
}

/** An integer from `min` to `max`, written in decimal digits only. */
export function parseInteger(text: string, min: number, max: number): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new RangeError(`expected an integer from ${min} to ${max}`);
  }
  return n;
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

function parseLogLevel(text: string): LogLevel {
  const level = LOG_LEVELS.find((l) => l === text.trim().toLowerCase());
  if (!level) throw new RangeError(`expected one of ${LOG_LEVELS.join(", ")}`);
  return level;
}
