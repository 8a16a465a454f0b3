/**
 * What a module loads when it runs: its static imports, followed through
 * `deno info --json`, leaving out `import type` (erased) and dynamic
 * `import()` (loaded only when called).
 *
 * @module
 */

const ROOT = new URL("../", import.meta.url);

/** One module of `deno info --json`, as far as the walk reads it. */
interface InfoModule {
  specifier: string;
  dependencies?: { code?: { specifier: string }; isDynamic?: boolean }[];
}

/**
 * The modules `path` (relative to the repository) loads at run time: paths
 * relative to the repository for its own files, specifiers (`node:util`) for
 * the others; sorted.
 */
export async function loadedModules(path: string): Promise<string[]> {
  const root = new URL(path, ROOT).href;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "--lock=tests/deno.lock", root],
    cwd: ROOT.pathname,
    stdin: "null",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: InfoModule[] };
  const modules = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const stack = [root];
  while (stack.length > 0) {
    const specifier = stack.pop()!;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    for (const dependency of modules.get(specifier)?.dependencies ?? []) {
      if (dependency.code && !dependency.isDynamic) stack.push(dependency.code.specifier);
    }
  }
  return [...seen].map((s) => s.startsWith(ROOT.href) ? s.slice(ROOT.href.length) : s).sort();
}
