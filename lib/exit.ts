/**
 * The program's exit codes, in one leaf module: the commands return them and
 * only `main.ts` exits.
 *
 * @module
 */

/** Exit codes of every command. */
export const EXIT = {
  /** The command did what was asked. */
  OK: 0,
  /** The server refused the request, could not be reached by `release`, or a file could not be written. */
  FAILURE: 1,
  /** Bad flags or variables. */
  USAGE: 2,
  /** `--wait` ran out before a lock was granted; the same code as `timeout(1)`. */
  TIMEOUT: 124,
  /** `run`: the command exists but cannot be executed, as in a shell. */
  NOT_EXECUTABLE: 126,
  /** `run`: no such command, as in a shell. */
  NOT_FOUND: 127,
} as const;
