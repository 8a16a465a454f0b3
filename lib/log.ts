/**
 * A small leveled logger writing one line per event to stderr. Kept behind an
 * interface so that JSON logs can replace the text format later.
 *
 * @module
 */

/** Log levels, most verbose first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** A log level. */
export type LogLevel = typeof LOG_LEVELS[number];

/** What the rest of the program logs through. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
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

/** A logger that writes `TIME LEVEL message` lines at or above `level`. */
export function createLogger(
  level: LogLevel,
  write: (line: string) => void = (line) => console.error(line),
): Logger {
  const min = LOG_LEVELS.indexOf(level);
  const at = (l: LogLevel) => (message: string) => {
    if (LOG_LEVELS.indexOf(l) >= min) {
      write(`${new Date().toISOString()} ${l.toUpperCase().padEnd(5)} ${message}`);
    }
  };
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    enabled: (l) => LOG_LEVELS.indexOf(l) >= min,
  };
}
