/**
 * `--authToken` and `--authTokenFile`, shared by the server and the client
 * commands: the same flags and `STARTUP_LOCK_AUTH_TOKEN` set the token the
 * server asks for and the client sends. Messages never show the token.
 *
 * @module
 */
import type { FlagSpec, Reader } from "../args.ts";
import { describeError, UsageError } from "../errors.ts";
import { checkAuthToken, explainTokenFileError, readAuthTokenFile } from "../auth_token.ts";

/** `--authToken TOKEN`; each command says what it does with it. */
export const AUTH_TOKEN_FLAG: FlagSpec = {
  name: "authToken",
  kind: "value",
  valueName: "TOKEN",
  description: "Bearer token for the lock API",
};

/** `--authTokenFile PATH`; each command says what it does with it. */
export const AUTH_TOKEN_FILE_FLAG: FlagSpec = {
  name: "authTokenFile",
  kind: "value",
  valueName: "PATH",
  description: "File holding the bearer token (a Kubernetes Secret, a systemd credential)",
};

/** The token from `--authToken` or `--authTokenFile`, and which one gave it. */
export type AuthFlag = { token: string } | { tokenFile: string; token: string };

/**
 * Reads `--authToken` or `--authTokenFile` (reading the file now): `undefined`
 * when neither is set.
 *
 * @throws {UsageError} when both are set, the token is empty or has whitespace,
 *   or the file cannot be read; the message never contains the token
 */
export function readAuthFlags(read: Reader): AuthFlag | undefined {
  const hasToken = read.has("authToken");
  const hasFile = read.has("authTokenFile");
  if (hasToken && hasFile) {
    throw new UsageError(
      `Both ${read.source("authToken")} and ${read.source("authTokenFile")} are set: give only one`,
    );
  }
  if (hasToken) {
    const token = read.text("authToken") ?? "";
    try {
      return { token: checkAuthToken(token) };
    } catch (error) {
      throw new UsageError(`Invalid ${read.source("authToken")}: ${describeError(error)}`);
    }
  }
  if (!hasFile) return undefined;
  const path = read.text("authTokenFile") ?? "";
  if (path.trim() === "") {
    throw new UsageError(`Invalid ${read.source("authTokenFile")} "": expected a file path`);
  }
  try {
    return { tokenFile: path, token: readAuthTokenFile(path) };
  } catch (error) {
    const reason = error instanceof RangeError
      ? `${describeError(error)} in the file`
      : explainTokenFileError(error);
    throw new UsageError(`Invalid ${read.source("authTokenFile")} "${path}": ${reason}`);
  }
}
