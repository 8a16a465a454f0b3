/**
 * Runs a program with a text on its standard input and collects what it
 * writes: for the tools that read their input from a pipe (`deno fmt -`,
 * `openssl x509`, `promtool check metrics`). Shared by the scripts and the
 * tests.
 *
 * @module
 */

/** Runs `command` with `args`, writes `input` to its stdin and closes it; resolves when it exits. */
export async function runWithInput(
  command: string | URL,
  args: readonly string[],
  input: string,
): Promise<Deno.CommandOutput> {
  const child = new Deno.Command(command, {
    args: [...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  return await child.output();
}
