/**
 * Command-line flags with environment-variable fallbacks, on `node:util`
 * `parseArgs` (the stand-in for `@std/cli` while JSR is out of reach: this is
 * the one file to change when it becomes available).
 *
 * Flags are camelCase (`--failHc`); kebab-case spellings (`--fail-hc`) are
 * accepted too. Every value flag can come from `STARTUP_LOCK_<SNAKE_NAME>`;
 * a flag on the command line wins over its variable.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { UsageError } from "./errors.ts";

/** The prefix of every environment variable the program reads. */
export const ENV_PREFIX = "STARTUP_LOCK_";

/** One flag of a command. */
export interface FlagSpec {
  /** camelCase name, without dashes. */
  name: string;
  /** Boolean flags take no value and have no environment variable. */
  kind: "value" | "list" | "boolean";
  /** Shown in `--help` after the flag, e.g. `SECONDS`. */
  valueName?: string;
  /** The default as the user would type it, shown in `--help`. */
  default?: string;
  /** One line for `--help`. */
  description: string;
  /** Whether the flag can come from `STARTUP_LOCK_<NAME>`. @default {true} for value and list flags */
  env?: boolean;
}

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

function kebabToCamel(token: string): string {
  if (!token.startsWith("--") || token === "--") return token;
  const eq = token.indexOf("=");
  const name = eq === -1 ? token.slice(2) : token.slice(2, eq);
  const rest = eq === -1 ? "" : token.slice(eq);
  return `--${name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase())}${rest}`;
}

/**
 * Parses `argv` against `specs`, then fills unset value flags from `env`.
 *
 * @throws {UsageError} for an unknown flag, a missing value, a value given to a
 *   boolean flag, a positional argument when `positionals` is false, or a `--`
 *   terminator when `rest` is false
 */
export function parseFlags(
  argv: readonly string[],
  specs: readonly FlagSpec[],
  env: (name: string) => string | undefined,
  options: { positionals?: boolean; rest?: boolean } = {},
): RawArgs {
  const terminator = argv.indexOf("--");
  const typed = terminator === -1 ? argv : argv.slice(0, terminator);
  const rest = terminator === -1 ? [] : argv.slice(terminator + 1);
  const known = new Map(specs.map((s) => [s.name, s]));
  const flagPart = joinNegativeValues(typed.map(kebabToCamel), known);

  let parsed;
  try {
    parsed = parseArgs({
      args: flagPart,
      options: Object.fromEntries(specs.map((s) => [s.name, {
        type: s.kind === "boolean" ? "boolean" as const : "string" as const,
        multiple: s.kind === "list",
      }])),
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    throw new UsageError(explainParseError(error, flagPart, known, typed));
  }

  if (!options.rest && terminator !== -1) {
    throw new UsageError(
      `Unexpected "--": this command takes no command to run (see --help)`,
    );
  }
  if (!options.positionals && parsed.positionals.length > 0) {
    throw new UsageError(
      `Unexpected argument "${parsed.positionals[0]}": this command takes only flags (see --help)`,
    );
  }

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

/**
 * `--port -1` → `--port=-1`: `parseArgs` takes a value starting with a dash for a
 * flag, so a negative number would be reported as a missing value instead of
 * reaching validation, which names the value and what is allowed.
 */
function joinNegativeValues(tokens: readonly string[], known: Map<string, FlagSpec>): string[] {
  const out: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    const next = tokens[i + 1];
    const spec = token.startsWith("--") ? known.get(token.slice(2)) : undefined;
    if (spec && spec.kind !== "boolean" && next !== undefined && /^-[\d.]/.test(next)) {
      out.push(`${token}=${next}`);
      i++;
    } else {
      out.push(token);
    }
  }
  return out;
}

function explainParseError(
  error: unknown,
  args: readonly string[],
  known: Map<string, FlagSpec>,
  typed: readonly string[],
): string {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  const flag = /'(-{1,2}[^' =]+)/.exec(message)?.[1] ?? "";
  const name = flag.replace(/^-+/, "");
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    // Name the flag as typed (`--no-such`), not as converted to camelCase (`--noSuch`).
    const asTyped = typed.find((t) => kebabToCamel(t).split("=")[0] === flag)?.split("=")[0];
    return `Unknown flag "${asTyped ?? flag}": see --help for the flags this command takes`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    const spec = known.get(name);
    if (spec?.kind === "boolean") return `Flag --${name} takes no value`;
    return `Flag --${name} needs a value: ${spec?.valueName ?? "VALUE"}`;
  }
  return `Invalid arguments "${args.join(" ")}": ${message}`;
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
