/**
 * `deno task compile`: builds `dist/startup-lock` for this machine with the
 * program's permissions (the permission set in deno.json, see lib/commands/permissions.ts)
 * baked in. `scripts/release.ts` builds the release executables with the same
 * {@linkcode compileArgs}.
 *
 * `deno compile` fetches the matching runtime (denort) from the internet unless
 * `DENORT_BIN` points at one; without either it cannot finish.
 *
 * @module
 */
import { PERMISSION_FLAGS } from "../lib/commands/permissions.ts";
import { REDIS_STORE_MODULE } from "../lib/server.ts";
import { COMMAND_MODULES } from "../main.ts";

/**
 * The modules the program loads by a path Deno does not follow ahead of time,
 * which the executable must carry: each command's (`main.ts`), and the Redis
 * store's with the Redis client (`lib/server.ts`, only for --store redis://…).
 */
export function includedModules(): string[] {
  return [
    ...Object.values(COMMAND_MODULES).map((path) => new URL(`../${path}`, import.meta.url)),
    new URL(`../lib/${REDIS_STORE_MODULE.replace(/^\.\//, "")}`, import.meta.url),
  ].map((url) => url.pathname);
}

/** The arguments of `deno compile` that build the program into `output`. */
export function compileArgs(output: string, target?: string): string[] {
  return [
    "compile",
    "--quiet",
    // The project's deno.json carries the runtime settings (its "unstable" list) and the permission
    // set, whatever the cwd.
    "--config",
    new URL("../deno.json", import.meta.url).pathname,
    ...PERMISSION_FLAGS,
    // Otherwise the executable writes a V8 code cache to disk on its first run: with this it
    // writes nothing, so it behaves the same on a read-only root filesystem. The program is
    // small, so compiling it at every start costs little.
    "--no-code-cache",
    ...includedModules().flatMap((path) => ["--include", path]),
    ...(target ? ["--target", target] : []),
    "--output",
    output,
    new URL("../main.ts", import.meta.url).pathname,
  ];
}

if (import.meta.main) {
  const output = new URL("../dist/startup-lock", import.meta.url).pathname;
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(output),
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (code !== 0) {
    console.error(
      "startup-lock: deno compile failed; it needs the Deno runtime (denort) from the internet " +
        "or a local copy named by DENORT_BIN",
    );
  } else console.error(`Built ${output}`);
  Deno.exit(code);
}
