/**
 * A small leveled logger: one line per call, as text (`TIME LEVEL message`)
 * or as one JSON object (`{"time","level","msg",...fields}`). Where the lines
 * go is a function; the server passes a `LogWriter` (`log_writer.ts`), which keeps stderr off the
 * request path.
 *
 * @module
 */
import { isoTime } from "./clock.ts";

/** Log levels, most verbose first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** A log level. */
export type LogLevel = typeof LOG_LEVELS[number];

/** Log formats: `TIME LEVEL message` lines, or one JSON object per line. */
export const LOG_FORMATS = ["text", "json"] as const;
/** A log format. */
export type LogFormat = typeof LOG_FORMATS[number];

/** Text lines for people; `json` for log collectors. */
export const DEFAULT_LOG_FORMAT: LogFormat = "text";

/**
 * Structured fields of a line, such as `event`, `id`, `token` (a short prefix,
 * never a whole token), `durationMs`. The text format leaves them out: its
 * message says the same in words. `undefined` fields are left out.
 */
export type LogFields = Readonly<Record<string, string | number | boolean | undefined>>;

/** Fields, or a function that builds them only when the format shows them. */
export type LazyLogFields = LogFields | (() => LogFields);

/** What the rest of the program logs through. */
export interface Logger {
  debug(message: string, fields?: LazyLogFields): void;
  info(message: string, fields?: LazyLogFields): void;
  warn(message: string, fields?: LazyLogFields): void;
  error(message: string, fields?: LazyLogFields): void;
  /** Whether lines at `level` are written, so hot paths can skip building them. */
  enabled(level: LogLevel): boolean;
}

/** A logger that drops everything, the default for modules used in tests. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  enabled: () => false,
};

/** Levels as the text format shows them, padded to one width. */
const TEXT_LEVELS: Record<LogLevel, string> = {
  debug: "DEBUG",
  info: "INFO ",
  warn: "WARN ",
  error: "ERROR",
};

let lastMs = NaN;
let lastIso = "";

/** The time as RFC 3339 with milliseconds; formatted once per millisecond, as lines come in bursts. */
function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = isoTime(ms);
  }
  return lastIso;
}

/** Renders one line, without its newline, in `format`, at `time` (default: now). */
export function formatLine(
  format: LogFormat,
  level: LogLevel,
  message: string,
  fields?: LogFields,
  time?: Date,
): string {
  const iso = time ? isoTime(time.getTime()) : isoNow();
  if (format === "text") return `${iso} ${TEXT_LEVELS[level]} ${message}`;
  const head = `{"time":"${iso}","level":"${level}","msg":${JSON.stringify(message)}`;
  if (fields === undefined) return `${head}}`;
  // The fields' own JSON after the head: what JSON.stringify({ time, level, msg, ...fields })
  // gives, without copying the fields into a new object, unless a field would take another
  // place there: one named time, level or msg, or named like an integer (those come first).
  const rest = JSON.stringify(fields);
  if (
    isDigit(rest.charCodeAt(2)) || Object.hasOwn(fields, "time") ||
    Object.hasOwn(fields, "level") || Object.hasOwn(fields, "msg")
  ) {
    return JSON.stringify({ time: iso, level, msg: message, ...fields });
  }
  return rest.length > 2 ? `${head},${rest.slice(1)}` : `${head}}`;
}

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** The line format. @default {"text"} */
  format?: LogFormat;
}

/** A logger that writes lines at or above `level` to `write`. */
export function createLogger(
  level: LogLevel,
  write: (line: string) => void = (line) => console.error(line),
  options: LoggerOptions = {},
): Logger {
  const format = options.format ?? "text";
  const min = LOG_LEVELS.indexOf(level);
  const at = (l: LogLevel) => (message: string, fields?: LazyLogFields) => {
    if (LOG_LEVELS.indexOf(l) < min) return;
    if (format === "text") write(formatLine(format, l, message)); // Text shows no fields.
    else write(formatLine(format, l, message, typeof fields === "function" ? fields() : fields));
  };
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    enabled: (l) => LOG_LEVELS.indexOf(l) >= min,
  };
}

/** Parses a `--logLevel` value, case-insensitively. */
export function parseLogLevel(text: string): LogLevel {
  const level = LOG_LEVELS.find((l) => l === text.trim().toLowerCase());
  if (!level) throw new RangeError(`expected one of ${LOG_LEVELS.join(", ")}`);
  return level;
}

/** Parses a `--logFormat` value, case-insensitively. */
export function parseLogFormat(text: string): LogFormat {
  const format = LOG_FORMATS.find((f) => f === text.trim().toLowerCase());
  if (!format) throw new RangeError(`expected one of ${LOG_FORMATS.join(", ")}`);
  return format;
}
