/**
 * `deno task release`: builds the executables for Linux and macOS, x86_64 and
 * arm64, into `dist/` as `startup-lock-<target>`, with the same arguments as
 * `deno task compile` ({@linkcode compileArgs}); copies `deploy/install.sh`
 * next to them; and writes `dist/SHA256SUMS` in `sha256sum` format, so that
 * `sha256sum -c SHA256SUMS` checks them. `deno task release DIR` writes to DIR.
 *
 * `deno compile` takes each target's runtime (denort) from Deno's cache
 * (`$DENO_DIR/dl/release/v<deno>/denort-<target>.zip`) or downloads it from
 * dl.deno.land. `DENORT_BIN` is not passed on: it names one runtime, which
 * `deno compile` would use for every target. Where a runtime cannot be had,
 * the release stops with one line that names it, and writes no `SHA256SUMS`.
 *
 * @module
 */
import { compileArgs } from "./compile.ts";

/** The release targets, as `deno compile --target` names them. */
export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
] as const;

/** The name of the checksum file. */
export const CHECKSUMS_FILE = "SHA256SUMS";

/** The file name of the executable for `target`: `startup-lock-x86_64-unknown-linux-gnu`. */
export function executableName(target: string): string {
  return `startup-lock-${target}`;
}

/** The SHA-256 digest of a file, in lowercase hex. */
export async function sha256File(path: string | URL): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The text of a checksum file in `sha256sum` format: one `<hex>  <name>` line
 * per file, sorted by name.
 *
 * @throws {RangeError} for a name `sha256sum -c` would read differently: empty,
 *   with a slash, a backslash or a line break
 */
export function formatChecksums(sums: ReadonlyMap<string, string>): string {
  const lines = [...sums].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map(([name, sha256]) => {
    if (name === "" || /[/\\\r\n]/.test(name)) {
      throw new RangeError(
        `Invalid file name "${name}": expected a plain name without "/", "\\" or line breaks`,
      );
    }
    if (!/^[0-9a-f]{64}$/.test(sha256)) {
      throw new RangeError(`Invalid SHA-256 "${sha256}" of "${name}": expected 64 hex digits`);
    }
    return `${sha256}  ${name}\n`;
  });
  return lines.join("");
}

/**
 * Writes `SHA256SUMS` into `dir` for the files `names` there, so that
 * `cd dir && sha256sum -c SHA256SUMS` checks them. Returns its path.
 */
export async function writeChecksums(dir: string, names: readonly string[]): Promise<string> {
  const sums = new Map<string, string>();
  for (const name of names) sums.set(name, await sha256File(`${dir}/${name}`));
  const text = formatChecksums(sums);
  const path = `${dir}/${CHECKSUMS_FILE}`;
  // Written whole, then renamed: a reader never sees half a file.
  await Deno.writeTextFile(`${path}.tmp`, text);
  await Deno.rename(`${path}.tmp`, path);
  return path;
}

/**
 * One line on why `deno compile` failed for `target`, from its stderr: for a
 * runtime that could not be downloaded, the file, the cause and where to put
 * it by hand (`downloadDir`, Deno's cache).
 */
export function describeCompileFailure(
  target: string,
  stderr: string,
  downloadDir: string,
): string {
  const lines = stderr.split("\n");
  // The innermost cause, such as "failed to lookup address information: …".
  const causes = lines.filter((l) => /^\s+\d+: \S/.test(l) && !l.includes("<unknown>"));
  const cause = (causes.at(-1) ?? "").replace(/^\s+\d+: /, "").trim();
  const error = (lines.find((l) => l.startsWith("error:")) ?? "").replace(/^error: /, "").trim();
  const runtime = /https:\/\/\S+\/(denort-[\w.-]+\.zip)/.exec(stderr);
  const what = `Cannot build ${executableName(target)}`;
  if (runtime) {
    return `${what}: deno compile could not download the Deno runtime for ${target} ` +
      `(${runtime[0]}${cause ? `: ${cause}` : ""}); it needs internet access, ` +
      `or ${runtime[1]} placed in ${downloadDir}`;
  }
  return `${what}: deno compile failed: ${cause || error || "see its output above"}`;
}

/** Where `deno compile` looks for downloaded runtimes before it downloads them. */
async function runtimeDownloadDir(): Promise<string> {
  const version = `v${Deno.version.deno}`;
  try {
    const { stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const { denoDir } = JSON.parse(new TextDecoder().decode(stdout)) as { denoDir: string };
    return `${denoDir}/dl/release/${version}/`;
  } catch {
    return `$DENO_DIR/dl/release/${version}/`;
  }
}

/** Builds every target into `outDir` and writes the checksums; returns the exit code. */
export async function release(outDir: string): Promise<number> {
  await Deno.mkdir(outDir, { recursive: true });
  // A SHA256SUMS left from an earlier release must not vouch for a partial one.
  await Deno.remove(`${outDir}/${CHECKSUMS_FILE}`).catch(() => {});
  const env = Deno.env.toObject();
  delete env.DENORT_BIN;
  const names: string[] = [];
  for (const target of TARGETS) {
    const output = `${outDir}/${executableName(target)}`;
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: compileArgs(output, target),
      env: { ...env, NO_COLOR: "1" },
      clearEnv: true,
      stdout: "inherit",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(stderr);
    if (code !== 0) {
      const line = describeCompileFailure(target, text, await runtimeDownloadDir());
      // Anything else (a type error, say) is best read in deno's own words first.
      if (!line.includes("could not download")) console.error(text.trimEnd());
      console.error(`startup-lock: ${line}`);
      return 1;
    }
    names.push(executableName(target));
    console.error(`Built ${output}`);
  }
  await Deno.copyFile(new URL("../deploy/install.sh", import.meta.url), `${outDir}/install.sh`);
  names.push("install.sh");
  console.error(`Wrote ${await writeChecksums(outDir, names)}`);
  return 0;
}

if (import.meta.main) {
  const outDir = Deno.args[0] ?? new URL("../dist", import.meta.url).pathname;
  Deno.exit(await release(outDir));
}
