/**
 * The command-line machinery every command shares: flags with
 * environment-variable fallbacks on `parseArgs` (`_parse_args.ts`, the strict
 * part of `node:util`'s without the memory `node:util` costs; the stand-in for
 * `@std/cli` while JSR is out of reach: this is the one file to change when it
 * becomes available), reading values through parsers that name the flag in
 * their errors, `--help` rendering, and the shape of a command.
 *
 * Flags are camelCase (`--failHc`); kebab-case spellings (`--fail-hc`) and
 * one leading dash (`-failHc 5`, as the original's Go `flag` package takes)
 * are accepted too. Every value flag can come from `STARTUP_LOCK_<SNAKE_NAME>`;
 * a flag on the command line wins over its variable.
 *
 * @module
 */
import { parseArgs } from "./_parse_args.ts";
import { UsageError } from "./errors.ts";
import { redactPasswords, redactValue } from "./redact.ts";

/** The prefix of every environment variable the program reads. */
export const ENV_PREFIX = "STARTUP_LOCK_";

/** The environment, as `Deno.env.get`. */
export type Env = (name: string) => string | undefined;

/** One flag of a command. */
export interface FlagSpec {
  /** camelCase name, without dashes. */
  name: string;
  /** Boolean flags take no value and have no environment variable. */
  kind: "value" | "list" | "boolean";
  /** A one-letter alias, such as `h` for `-h`. */
  short?: string;
  /** Shown in `--help` after the flag, e.g. `SECONDS`. */
  valueName?: string;
  /** The default as the user would type it, shown in `--help`. */
  default?: string;
  /** One line for `--help`. */
  description: string;
  /** Whether the flag can come from `STARTUP_LOCK_<NAME>`. @default {true} for value and list flags */
  env?: boolean;
}

/** `--help` and `-h`, which every command takes. */
export const HELP_FLAG: FlagSpec = {
  name: "help",
  kind: "boolean",
  short: "h",
  description: "Print this help and exit (also -h)",
};

/** Raw flag values as strings, after environment fallbacks; boolean flags as `true`. */
export interface RawArgs {
  values: Map<string, string | string[] | true>;
  /** Which flag or variable each value came from, for error messages. */
  sources: Map<string, string>;
  /** Arguments after a `--` terminator, untouched. */
  rest: string[];
  positionals: string[];
}

/** The environment variable of a flag: `failHc` → `STARTUP_LOCK_FAIL_HC`. */
export function envName(flag: string): string {
  return ENV_PREFIX + flag.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
}

/** The environment variables a set of flags may read. */
export function envNames(specs: readonly FlagSpec[]): string[] {
  return specs.filter(hasEnv).map((s) => envName(s.name));
}

function hasEnv(spec: FlagSpec): boolean {
  return spec.kind !== "boolean" && spec.env !== false;
}

function kebabToCamel(name: string): string {
  return name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** A command-line argument that is one of the command's own flags. */
interface OwnFlag {
  spec: FlagSpec;
  /** The argument with the flag's camelCase name: `--fail-hc=5` → `--failHc=5`. */
  token: string;
  /** Whether the value is part of the argument (`--port=80`). */
  inline: boolean;
}

/**
 * The flag `token` names, if it is exactly one of `specs` (`--server`,
 * `--server=x`, `--fail-hc`, `-h`); anything else may be a value. A long flag
 * may also start with one dash (`-locks 2`, `-locks=2`), as Go's `flag`
 * package, which the original parses with, allows; a single letter after one
 * dash is always the short form (`-h`).
 */
function ownFlag(token: string, specs: readonly FlagSpec[]): OwnFlag | undefined {
  const long = /^--?([A-Za-z][A-Za-z0-9-]+)(=.*)?$/s.exec(token);
  if (long) {
    const name = kebabToCamel(long[1]!);
    const spec = specs.find((s) => s.name === name);
    if (!spec) return undefined;
    return { spec, token: `--${name}${long[2] ?? ""}`, inline: long[2] !== undefined };
  }
  const short = /^-([A-Za-z])(=.*)?$/s.exec(token);
  const spec = short ? specs.find((s) => s.short === short[1]) : undefined;
  if (!spec || !short) return undefined;
  // `-h=1` is `--help=1`, which is refused for its value rather than as an unknown flag.
  return short[2] === undefined
    ? { spec, token, inline: false }
    : { spec, token: `--${spec.name}${short[2]}`, inline: true };
}

/** The longest edit distance at which an unknown flag is taken for a misspelling. */
const MAX_SUGGESTION_DISTANCE = 2;

/**
 * The flag an unknown one was probably meant to be: the nearest name by edit
 * distance (case and dashes ignored), if close enough to be a misspelling.
 */
export function suggestFlag(typed: string, specs: readonly FlagSpec[]): string | undefined {
  const plain = (name: string) => name.replace(/-/g, "").toLowerCase();
  const wanted = plain(typed.replace(/^-+/, "").replace(/=.*$/s, ""));
  // Short words are close to everything: allow one edit per three letters, at least one.
  const limit = Math.min(MAX_SUGGESTION_DISTANCE, Math.max(1, Math.floor(wanted.length / 3)));
  let best: { name: string; distance: number } | undefined;
  for (const spec of specs) {
    const distance = editDistance(wanted, plain(spec.name));
    if (distance <= limit && (!best || distance < best.distance)) {
      best = { name: spec.name, distance };
    }
  }
  return best && `--${best.name}`;
}

/** Levenshtein distance, with a swap of two neighbouring letters counting as one edit. */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => {
    const row = new Array<number>(b.length + 1).fill(0);
    row[0] = i;
    return row;
  });
  for (let j = 0; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      }
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}

/** The error for an argument that looks like a flag but is none of the command's. */
function unknownFlag(token: string, specs: readonly FlagSpec[]): UsageError {
  const typed = token.replace(/=.*$/s, "");
  const suggestion = suggestFlag(typed, specs);
  return new UsageError(
    suggestion
      ? `Unknown flag "${typed}": did you mean ${suggestion}? (see --help)`
      : `Unknown flag "${typed}": see --help for the flags this command takes`,
  );
}

/**
 * Joins every value flag with the argument after it (`--token -abc` →
 * `--token=-abc`), unless that argument is one of the command's own flags:
 * `parseArgs` would take any value starting with a dash for a flag, so a token
 * or a negative number would be reported as a missing value. Flag names are
 * turned camelCase and given two dashes; values are left as typed.
 *
 * @throws {UsageError} for an argument that starts with a dash but is none of
 *   the command's flags (nor a flag's value), with the nearest flag's name; or,
 *   when a positional argument came before it, `unexpected` of that argument
 */
function joinValues(
  tokens: readonly string[],
  specs: readonly FlagSpec[],
  unexpected?: (argument: string) => UsageError,
): string[] {
  const out: string[] = [];
  let firstArgument: string | undefined;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    const flag = ownFlag(token, specs);
    if (!flag) {
      if (token.length > 1 && token.startsWith("-")) {
        // `run --server URL sh -c …` without "--": "sh" is the mistake, not "-c".
        if (firstArgument !== undefined && unexpected) throw unexpected(firstArgument);
        throw unknownFlag(token, specs);
      }
      firstArgument ??= token;
      out.push(token);
      continue;
    }
    const next = tokens[i + 1];
    const takesNext = flag.spec.kind !== "boolean" && !flag.inline && next !== undefined &&
      ownFlag(next, specs) === undefined;
    if (takesNext) {
      const long = flag.token.startsWith("--") ? flag.token : `--${flag.spec.name}`;
      out.push(`${long}=${next}`);
      i++;
    } else {
      out.push(flag.token);
    }
  }
  return out;
}

/**
 * Parses `argv` against `specs`, then fills unset value flags from `env`. A
 * value flag takes the next argument whatever it starts with, unless that is
 * one of the command's own flags.
 *
 * @throws {UsageError} for an unknown flag, a missing value, a value given to a
 *   boolean flag, a positional argument (with `unexpected`'s message when
 *   given), or a `--` terminator when `rest` is false
 */
export function parseFlags(
  argv: readonly string[],
  specs: readonly FlagSpec[],
  env: Env,
  options: {
    /** Whether `--` and the arguments after it are allowed, as `rest`. */
    rest?: boolean;
    /** The message for a positional argument. @default {"this command takes only flags"} */
    unexpected?: (argument: string) => string;
  } = {},
): RawArgs {
  const terminator = argv.indexOf("--");
  const typed = terminator === -1 ? argv : argv.slice(0, terminator);
  const rest = terminator === -1 ? [] : argv.slice(terminator + 1);
  const unexpected = (argument: string) =>
    new UsageError(
      options.unexpected?.(argument) ??
        `Unexpected argument "${argument}": this command takes only flags (see --help)`,
    );
  const flagPart = joinValues(typed, specs, unexpected);

  let parsed;
  try {
    parsed = parseArgs({
      args: flagPart,
      options: Object.fromEntries(specs.map((s) => [s.name, {
        type: s.kind === "boolean" ? "boolean" as const : "string" as const,
        multiple: s.kind === "list",
        ...(s.short ? { short: s.short } : {}),
      }])),
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    throw new UsageError(explainParseError(error, flagPart, specs));
  }

  if (!options.rest && terminator !== -1) {
    throw new UsageError(
      `Unexpected "--": this command takes no command to run (see --help)`,
    );
  }
  if (parsed.positionals.length > 0) throw unexpected(parsed.positionals[0]!);

  const values = new Map<string, string | string[] | true>();
  const sources = new Map<string, string>();
  for (const spec of specs) {
    const value = parsed.values[spec.name];
    if (value !== undefined) {
      values.set(spec.name, value as string | string[] | true);
      sources.set(spec.name, `--${spec.name}`);
      continue;
    }
    if (!hasEnv(spec)) continue;
    const variable = envName(spec.name);
    const text = env(variable);
    if (text === undefined || text.trim() === "") continue;
    values.set(
      spec.name,
      spec.kind === "list" ? text.split(",").map((v) => v.trim()).filter((v) => v) : text,
    );
    sources.set(spec.name, variable);
  }
  return { values, sources, rest, positionals: parsed.positionals };
}

function explainParseError(
  error: unknown,
  args: readonly string[],
  specs: readonly FlagSpec[],
): string {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  // The flag as `parseArgs` quotes it: '--port', or '-h, --help' when it has a short form.
  const flag = /'(?:-[^-' ,], )?(-{1,2}[^' =]+)/.exec(message)?.[1] ?? "";
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    return `Unknown flag "${flag}": see --help for the flags this command takes`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    const name = flag.replace(/^-+/, "");
    const spec = specs.find((s) => s.name === name || s.short === name);
    if (spec?.kind === "boolean") return `Flag --${spec.name} takes no value`;
    return `Flag --${spec?.name ?? name} needs a value: ${spec?.valueName ?? "VALUE"}`;
  }
  return `Invalid arguments "${args.join(" ")}": ${message}`;
}

/**
 * Reads raw flag values through parsers, turning a parser's `RangeError` into a
 * {@linkcode UsageError} that names the flag (or variable) and the value (the
 * password of a URL in it replaced by `***`).
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

  /**
   * A value as the user gave it, for messages: `--duration 2h` or
   * `STARTUP_LOCK_DURATION=2h`; only the flag when it was not given.
   */
  said(name: string): string {
    const source = this.source(name);
    const text = this.text(name);
    if (text === undefined) return source;
    return source.startsWith("--") ? `${source} ${text}` : `${source}=${text}`;
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
      throw new UsageError(
        `Invalid ${this.source(name)} "${redactValue(text)}": ${redactPasswords(reason)}`,
      );
    }
  }
}

/** An integer from `min` to `max`, written in decimal digits only. */
export function parseInteger(text: string, min: number, max: number): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new RangeError(`expected an integer from ${min} to ${max}`);
  }
  return n;
}

/** Renders the flag table of `--help`. */
export function formatFlags(specs: readonly FlagSpec[]): string {
  const rows = specs.map((s) => {
    const left = `  --${s.name}${s.valueName ? ` ${s.valueName}` : ""}`;
    const notes = [
      s.default !== undefined ? `default: ${s.default}` : "",
      hasEnv(s) ? `env: ${envName(s.name)}` : "",
    ].filter((n) => n).join("; ");
    return { left, right: notes ? `${s.description} (${notes})` : s.description };
  });
  const width = Math.max(...rows.map((r) => r.left.length)) + 2;
  return rows.map((r) => r.left.padEnd(width) + r.right).join("\n");
}

/** What a command's `--help` says besides its flags. */
export interface UsageText {
  /** A line before the synopsis. */
  title?: string;
  /** The command line, after `Usage: `. */
  synopsis: string;
  /** Lines on what the command does and how it exits. */
  about: readonly string[];
  flags: readonly FlagSpec[];
}

/**
 * Renders a command's `--help`. How to write durations is explained only
 * where a flag takes one.
 */
export function renderUsage(text: UsageText): string {
  const takesDurations = text.flags.some((f) => f.valueName === "DURATION");
  const takesValues = text.flags.some((f) => hasEnv(f));
  return [
    ...(text.title ? [text.title, ""] : []),
    `Usage: ${text.synopsis}`,
    "",
    ...text.about,
    ...(text.about.length > 0 ? [""] : []),
    ...(takesDurations
      ? ["Durations are whole seconds (60) or a number with a unit: 500ms, 1.5s, 90s, 2m, 1h."]
      : []),
    ...(takesValues ? ["Flags on the command line win over their environment variables.", ""] : []),
    "Flags:",
    formatFlags(text.flags),
  ].join("\n");
}

/** A parsed command line: print the help, or run with these options. */
export type Parsed<T> = { action: "help" } | { action: "run"; options: T };

/**
 * A command of the program: its flags, its `--help`, its parser (which checks
 * every value before anything runs) and what it does. `run` returns the exit
 * code; only `main.ts` exits.
 */
export interface Command<T> {
  /** The word that selects it: `acquire`. */
  readonly name: string;
  readonly flags: readonly FlagSpec[];
  /** The text of `--help`. */
  usage(): string;
  /**
   * Parses and validates the command line and environment.
   *
   * @throws {UsageError} naming the flag or variable, the value and what is allowed
   */
  parse(argv: readonly string[], env: Env): Parsed<T>;
  /** Does the work; returns the exit code. */
  run(options: T): Promise<number>;
}
