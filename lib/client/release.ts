/**
 * `startup-lock release`, and the release that `run` and `hold` do once the
 * app is ready.
 *
 * A lock that is already gone (released before, or expired) counts as success,
 * so that a systemd `ExecStartPost=` never fails for it.
 *
 * @module
 */
import { describeError } from "../errors.ts";
import type { HeldLock } from "./acquire.ts";
import { parseToken, type ReleaseOptions } from "./flags.ts";
import { describeFetchError, releaseLock } from "./http.ts";
import { EXIT, note } from "./output.ts";

/** How long a release may take: one quick request; a server that takes longer is in trouble. */
export const RELEASE_TIMEOUT_MS = 10_000;

const GONE_NOTE = "The lock was already released or expired";

/** `startup-lock release`: returns the exit code. */
export async function releaseCommand(options: ReleaseOptions): Promise<number> {
  let token: string;
  if ("token" in options.from) {
    token = options.from.token;
  } else {
    const path = options.from.tokenFile;
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      note(`Cannot read --tokenFile "${path}": ${describeError(error)}`);
      return EXIT.FAILURE;
    }
    if (text.trim() === "") {
      // acquire writes an empty file when the server gave no token (the original server).
      note(`No token in --tokenFile "${path}": the server gave none, so the lock only expires`);
      return EXIT.OK;
    }
    try {
      token = parseToken(text);
    } catch (error) {
      note(`Invalid token in --tokenFile "${path}": ${describeError(error)}`);
      return EXIT.FAILURE;
    }
  }
  try {
    const answer = await releaseLock(
      options.server,
      token,
      AbortSignal.timeout(RELEASE_TIMEOUT_MS),
    );
    if (answer === "gone") note(GONE_NOTE);
    return EXIT.OK;
  } catch (error) {
    note(`Cannot release the lock at ${options.server.href}: ${describeFetchError(error)}`);
    return EXIT.FAILURE;
  }
}

/**
 * Gives back a lock that `run` or `hold` holds, saying why on stderr. Never
 * throws: a lock that cannot be released still expires by its duration.
 */
export async function releaseHeldLock(lock: HeldLock, because: string): Promise<void> {
  if (lock.token === undefined) return;
  try {
    const answer = await releaseLock(
      lock.server,
      lock.token,
      AbortSignal.timeout(RELEASE_TIMEOUT_MS),
    );
    note(answer === "released" ? `Released the lock: ${because}` : `${GONE_NOTE} (${because})`);
  } catch (error) {
    note(
      `Cannot release the lock (${because}): ${describeFetchError(error)}; ` +
        "it expires by its duration",
    );
  }
}
