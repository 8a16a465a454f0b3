/**
 * Durations on the command line and in query strings: whole seconds as in the
 * original (`60`), or a number with a unit (`500ms`, `1.5s`, `90s`, `2m`, `1h`).
 * A bare number with a fraction (`1.5`) is refused: the original reads whole
 * seconds only, so its meaning would depend on the server.
 *
 * @module
 */

/**
 * The longest delay `setTimeout` can schedule (2^31 - 1 ms, about 24.8 days).
 * A longer lock would fire its expiry at once, so it is refused.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** {@linkcode MAX_TIMER_MS} in whole seconds, as users would type it. */
export const MAX_TIMER_SECONDS = Math.floor(MAX_TIMER_MS / 1000);

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
const DURATION_PATTERN = /^(?:(\d+)|(\d+(?:\.\d+)?)(ms|s|m|h))$/;
const FRACTIONAL_SECONDS = /^\d+\.\d+$/;

/** What an accepted duration looks like, for error messages. */
export const DURATION_HINT =
  'a positive number of seconds, whole ("60"), or a number with a unit ' +
  '("500ms", "1.5s", "90s", "2m", "1h")';

/** The refusal of a text that is no duration at all. */
const NOT_A_DURATION = `expected ${DURATION_HINT}`;

/** A well-formed duration longer than a timer can run; callers that cap durations catch it. */
export class DurationTooLongError extends RangeError {
  override name = "DurationTooLongError";
  /** The duration asked for, in milliseconds. */
  readonly ms: number;

  constructor(message: string, ms: number) {
    super(message);
    this.ms = ms;
  }
}

/**
 * Parses a duration into milliseconds.
 *
 * @returns the duration in whole milliseconds
 * @throws {RangeError} when the text is not a duration, is not positive, or is longer than
 *   {@linkcode MAX_TIMER_MS}; the message says what is allowed but not which input was bad,
 *   so callers prefix it with the flag or parameter name and the value
 */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (FRACTIONAL_SECONDS.test(trimmed)) {
    throw new RangeError(
      `a number without a unit is whole seconds: write "${trimmed}s" or ` +
        `"${Math.round(Number(trimmed) * 1000)}ms"`,
    );
  }
  const match = DURATION_PATTERN.exec(trimmed);
  if (!match) throw new RangeError(NOT_A_DURATION);
  const unit = (match[3] ?? "s") as keyof typeof UNIT_MS;
  const ms = Math.round(Number(match[1] ?? match[2]) * UNIT_MS[unit]);
  if (ms <= 0) throw new RangeError("expected a duration greater than zero");
  if (ms > MAX_TIMER_MS) {
    throw new DurationTooLongError(`expected at most ${MAX_TIMER_SECONDS}s (about 24 days)`, ms);
  }
  return ms;
}

const ZERO_DURATION = /^\s*(?:0+|0+(?:\.0+)?(?:ms|s|m|h))\s*$/;

/** Whether `text` is a zero duration (`0`, `0s`, `0ms`, `0.0m`): a wait that means "answer at once". */
export function isZeroDuration(text: string): boolean {
  return ZERO_DURATION.test(text);
}

/**
 * Parses a wait: a duration as {@linkcode parseDuration} reads it, or zero,
 * which means one try without waiting.
 *
 * @throws {RangeError} as {@linkcode parseDuration} does, except for zero,
 *   which its message then names too
 */
export function parseWait(text: string): number {
  if (isZeroDuration(text)) return 0;
  try {
    return parseDuration(text);
  } catch (error) {
    // "expected a positive number…" alone would say that 0 is refused too.
    if (!(error instanceof RangeError) || error.message !== NOT_A_DURATION) throw error;
    throw new RangeError(`${NOT_A_DURATION}; or 0 for one try`);
  }
}

/** Formats milliseconds for people: `750ms`, `10s`, `1.5s`, `2m`, `1h30m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const tenths = Math.round(ms / 100) / 10;
  if (tenths < 60) return `${tenths}s`;
  const totalSeconds = Math.round(ms / 1000);
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  return [h ? `${h}h` : "", m ? `${m}m` : "", s ? `${s}s` : ""].join("") || "0s";
}

/** Whole seconds for a `Retry-After` header: rounded up, at least 1. */
export function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}
