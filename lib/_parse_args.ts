/**
 * The strict subset of `node:util` `parseArgs` that `args.ts` uses, with the
 * same results and the same errors (their `code` and message), in a few lines
 * of our own: importing `node:util` loads a part of Deno's Node compatibility
 * layer, about 4 MB of resident memory in every run of every command, more
 * than all of a client command's own code. `tests/unit/parse_args_test.ts`
 * checks it against `node:util` case by case.
 *
 * @module
 */

/** One option, as `parseArgs` takes it. */
export interface OptionConfig {
  type: "string" | "boolean";
  multiple?: boolean;
  short?: string;
}

/** What {@linkcode parseArgs} takes: always strict, positionals allowed. */
export interface ParseArgsConfig {
  args: readonly string[];
  options: Record<string, OptionConfig>;
  strict: true;
  allowPositionals: true;
}

/** The values by option name (arrays for `multiple`), and the positionals in order. */
export interface ParsedArgs {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

/** A rejected command line, with the `code` of `node:util`'s error. */
export class ParseArgsError extends TypeError {
  readonly code: "ERR_PARSE_ARGS_UNKNOWN_OPTION" | "ERR_PARSE_ARGS_INVALID_OPTION_VALUE";

  constructor(code: ParseArgsError["code"], message: string) {
    super(message);
    this.name = "TypeError";
    this.code = code;
  }
}

interface OptionToken {
  name: string;
  rawName: string;
  value: string | undefined;
  inlineValue: boolean;
}

/**
 * Parses `config.args` as `node:util` `parseArgs` does with `strict: true` and
 * `allowPositionals: true`: `--name value`, `--name=value`, `-x value`, groups
 * of short flags (`-ab`), `-xVALUE`, and everything after `--` as positionals.
 *
 * @throws {ParseArgsError} for an unknown option, a missing value, a value that
 *   looks like an option, or a value given to a boolean
 */
export function parseArgs(config: ParseArgsConfig): ParsedArgs {
  const { options } = config;
  const own = (name: string) => Object.hasOwn(options, name) ? options[name] : undefined;
  const longOf = (short: string) =>
    Object.keys(options).find((name) => own(name)?.short === short) ?? short;
  const isString = (name: string) => own(name)?.type === "string";

  const values: ParsedArgs["values"] = Object.create(null);
  const positionals: string[] = [];
  const remaining = [...config.args];
  const option = (token: OptionToken) => {
    check(token, own(token.name));
    const value = token.value ?? true;
    if (token.name === "__proto__") return;
    if (own(token.name)?.multiple) {
      const list = values[token.name];
      values[token.name] = Array.isArray(list) ? [...list, value] : [value];
    } else {
      values[token.name] = value;
    }
  };

  while (remaining.length > 0) {
    const arg = remaining.shift()!;
    if (arg === "--") {
      positionals.push(...remaining);
      break;
    }
    if (arg.length >= 2 && arg[0] === "-" && arg[1] !== "-") {
      const name = longOf(arg[1]!);
      if (arg.length === 2) {
        const value = isString(name) && remaining.length > 0 ? remaining.shift() : undefined;
        option({ name, rawName: arg, value, inlineValue: false });
      } else if (isString(name)) {
        option({ name, rawName: `-${arg[1]}`, value: arg.slice(2), inlineValue: true });
      } else {
        remaining.unshift(...expandGroup(arg, (s) => isString(longOf(s))));
      }
      continue;
    }
    if (arg.length > 2 && arg.startsWith("--")) {
      const eq = arg.indexOf("=", 3);
      if (eq === -1) {
        const name = arg.slice(2);
        const value = isString(name) && remaining.length > 0 ? remaining.shift() : undefined;
        option({ name, rawName: arg, value, inlineValue: false });
      } else {
        const name = arg.slice(2, eq);
        option({ name, rawName: `--${name}`, value: arg.slice(eq + 1), inlineValue: true });
      }
      continue;
    }
    positionals.push(arg);
  }
  return { values, positionals };
}

/** `-abc` → `-a -b -c`; a string option in the group takes the rest as its value. */
function expandGroup(arg: string, takesValue: (short: string) => boolean): string[] {
  const expanded: string[] = [];
  for (let i = 1; i < arg.length; i++) {
    const short = arg[i]!;
    if (!takesValue(short) || i === arg.length - 1) {
      expanded.push(`-${short}`);
    } else {
      expanded.push(`-${short}`, arg.slice(i + 1));
      break;
    }
  }
  return expanded;
}

function check(token: OptionToken, spec: OptionConfig | undefined): void {
  if (!spec) {
    throw new ParseArgsError(
      "ERR_PARSE_ARGS_UNKNOWN_OPTION",
      `Unknown option '${token.rawName}'. To specify a positional argument starting with a '-', ` +
        `place it at the end of the command after '--', as in '-- ${JSON.stringify(token.rawName)}`,
    );
  }
  const both = `${spec.short ? `-${spec.short}, ` : ""}--${token.name}`;
  if (spec.type === "string" && token.value === undefined) {
    throw new ParseArgsError(
      "ERR_PARSE_ARGS_INVALID_OPTION_VALUE",
      `Option '${both} <value>' argument missing`,
    );
  }
  if (spec.type === "boolean" && token.value !== undefined) {
    throw new ParseArgsError(
      "ERR_PARSE_ARGS_INVALID_OPTION_VALUE",
      `Option '${both}' does not take an argument`,
    );
  }
  const { value, rawName } = token;
  if (!token.inlineValue && value !== undefined && value.length > 1 && value[0] === "-") {
    const example = rawName.startsWith("--")
      ? `'${rawName}=-XYZ'`
      : `'--${token.name}=-XYZ' or '${rawName}-XYZ'`;
    throw new ParseArgsError(
      "ERR_PARSE_ARGS_INVALID_OPTION_VALUE",
      `Option '${rawName}' argument is ambiguous.\nDid you forget to specify the option argument ` +
        `for '${rawName}'?\nTo specify an option argument starting with a dash use ${example}.`,
    );
  }
}
