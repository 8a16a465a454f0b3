/**
 * The benchmark's scratch directory: the servers' state files (which hold
 * whole lock tokens) go into one directory of its own under `$TMPDIR`, made
 * when the benchmark starts and removed, with everything in it, when it ends
 * or is stopped. Only its path is computed on import, so importing a bench
 * module (as the tests do) creates nothing.
 *
 * @module
 */

/** `$TMPDIR/startup-lock-bench-<pid>`: one per benchmark process. */
export const SCRATCH_DIR = `${
  (Deno.env.get("TMPDIR") || "/tmp").replace(/\/+$/, "")
}/startup-lock-bench-${Deno.pid}`;

/** Makes the scratch directory, readable by this user alone (its files hold tokens). */
export async function makeScratchDir(): Promise<void> {
  await Deno.mkdir(SCRATCH_DIR, { recursive: true, mode: 0o700 });
}

/** Removes the scratch directory and everything in it; nothing when it is gone already. */
export async function removeScratchDir(): Promise<void> {
  await Deno.remove(SCRATCH_DIR, { recursive: true }).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}
