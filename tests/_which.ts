/**
 * Finding the real tools some tests run (systemd-analyze, promtool, chromium,
 * curl), so a test can say clearly why it is skipped where one is missing.
 *
 * @module
 */

/** The path of `command` on PATH, or `undefined`. */
export function which(command: string): string | undefined {
  const { code, stdout } = new Deno.Command("sh", {
    args: ["-c", 'command -v "$1"', "sh", command],
    stdout: "piped",
    stderr: "null",
  }).outputSync();
  return code === 0 ? new TextDecoder().decode(stdout).trim() : undefined;
}
