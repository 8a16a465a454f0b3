/**
 * A replica of the program in a child process for the randomized runs
 * (`_nemesis.ts`, `_fair_run.ts`): started on a free port of 127.0.0.1 with
 * none of the caller's `STARTUP_LOCK_*` variables, its stderr read line by
 * line, resolved once it listens.
 *
 * @module
 */

/** How to start the program: a command and its leading arguments (flags follow). */
export interface ProgramLauncher {
  command: string;
  args: readonly string[];
}

/** How long a replica may take to listen before the run gives up on it. */
const LISTEN_BOUND_MS = 30_000;

/** A started replica: its URL, its process, and the end of its stderr. */
export interface SpawnedReplica {
  url: string;
  process: Deno.ChildProcess;
  /** Settles once stderr has been read to its end. */
  reading: Promise<void>;
}

/**
 * Starts `program` with `flags`, hands every stderr line to `onLine`, and
 * resolves once it listens; kills it and throws (naming it `name`, with its
 * first lines) when it exits or takes too long first.
 */
export async function spawnReplica(
  program: ProgramLauncher,
  flags: readonly string[],
  name: string,
  onLine: (line: string) => void,
): Promise<SpawnedReplica> {
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => !k.startsWith("STARTUP_LOCK_")),
  );
  const process = new Deno.Command(program.command, {
    args: [...program.args, "--host", "127.0.0.1", "--port", "0", ...flags],
    env: { ...env, NO_COLOR: "1" },
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const first: string[] = [];
  const listening = Promise.withResolvers<string>();
  const reading = (async () => {
    let buffer = "";
    for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      const lines = buffer.split("\n");
      buffer = lines.pop() ?? "";
      for (const line of lines) {
        if (first.length < 50) first.push(line);
        onLine(line);
        const port = /Listening on http:\/\/[^:]+:(\d+)/.exec(line)?.[1];
        if (port) listening.resolve(port);
      }
    }
    listening.reject(new Error(`${name} exited before listening:\n${first.join("\n")}`));
  })();
  const timer = setTimeout(
    () => listening.reject(new Error(`${name} did not listen:\n${first.join("\n")}`)),
    LISTEN_BOUND_MS,
  );
  try {
    const port = await listening.promise;
    return { url: `http://127.0.0.1:${port}`, process, reading };
  } catch (error) {
    try {
      process.kill("SIGKILL");
    } catch {
      // Exited already.
    }
    await process.status;
    await reading;
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
