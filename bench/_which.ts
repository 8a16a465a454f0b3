/**
 * Finding the real tools some tests and benchmarks run (systemd-analyze,
 * promtool, chromium, curl, redis-server), so that they can say clearly why
 * they skip a part where one is missing.
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
