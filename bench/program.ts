/**
 * Which startup-lock the benchmarks start, and how: this checkout's, as users
 * run it, or (with `--baseline DIR`) the program of another checkout next to
 * this one's, both started the same way so that only their code differs.
 *
 * @module
 */
import { allowFlags, PERMISSION_FLAGS, PROGRAM_PERMISSIONS } from "../lib/commands/permissions.ts";

/** A startup-lock program to benchmark. */
export interface Program {
  /** Its name in the tables. */
  name: string;
  /** The checkout it comes from. */
  dir: string;
  /** The command and leading arguments that run it; its flags follow. */
  command: string;
  args: readonly string[];
  /** What runs, for the report's header. */
  description: string;
}

/** The name of this checkout's program in the tables, measured alone. */
export const PROGRAM_NAME = "startup-lock";
/** The names of the two programs in the tables, when a baseline is measured too. */
export const COMPARED_NAMES = ["this checkout", "baseline checkout"] as const;

const ROOT = new URL("../", import.meta.url).pathname;
const COMPILED = `${ROOT}dist/startup-lock`;

/**
 * This checkout's program as users run it: the compiled executable when
 * `dist/startup-lock` exists, otherwise `deno run` with the program's
 * permission set from `deno.json`.
 */
export function defaultProgram(): Program {
  if (isFile(COMPILED)) {
    return { name: PROGRAM_NAME, dir: ROOT, command: COMPILED, args: [], description: COMPILED };
  }
  const args = [
    "run",
    "--quiet",
    "--config",
    `${ROOT}deno.json`,
    ...PERMISSION_FLAGS,
    `${ROOT}main.ts`,
  ];
  return {
    name: PROGRAM_NAME,
    dir: ROOT,
    command: Deno.execPath(),
    args,
    description: `deno ${args.join(" ")}`,
  };
}

/**
 * The program of the checkout in `dir`: `deno run` of its `main.ts` with its
 * own `deno.json`, and this checkout's permissions spelled out as flags (the
 * other `deno.json` may have no permission set, or another one).
 *
 * @throws {RangeError} when `dir` has no `main.ts` or no `deno.json`
 */
export function checkoutProgram(dir: string, name: string): Program {
  const root = dir.endsWith("/") ? dir : `${dir}/`;
  for (const file of ["main.ts", "deno.json"]) {
    if (!isFile(`${root}${file}`)) {
      throw new RangeError(`expected a startup-lock checkout, with main.ts and deno.json`);
    }
  }
  const args = [
    "run",
    "--quiet",
    "--config",
    `${root}deno.json`,
    ...allowFlags(PROGRAM_PERMISSIONS),
    `${root}main.ts`,
  ];
  return { name, dir: root, command: Deno.execPath(), args, description: `deno ${args.join(" ")}` };
}

/**
 * This checkout and the one in `baselineDir`, started the same way: `deno run`
 * of each `main.ts` with the same permission flags, whether or not a compiled
 * executable exists.
 */
export function programsToCompare(baselineDir: string): [Program, Program] {
  const [ours, theirs] = COMPARED_NAMES;
  return [checkoutProgram(ROOT, ours), checkoutProgram(baselineDir, theirs)];
}

/** Whether `path` is a file. */
export function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}
