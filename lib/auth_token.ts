/**
 * The bearer token of the lock API as both sides read it: the server asks for
 * it (`--authToken`, `--authTokenFile`), the client commands send it. Kept
 * apart from the server's check of requests (`http/auth.ts`), so that the
 * client loads nothing of the server.
 *
 * @module
 */
import { describeError } from "./errors.ts";

const WHITESPACE = /\s/;

/**
 * Checks a token's form, without ever putting it in the message.
 *
 * @throws {RangeError} when it is empty or contains whitespace
 */
export function checkAuthToken(token: string): string {
  if (token === "") throw new RangeError("the token is empty");
  if (WHITESPACE.test(token)) throw new RangeError("the token must not contain whitespace");
  return token;
}

/**
 * The token in a file, as Kubernetes Secrets and systemd credentials hold it:
 * the whole file, without the line break at its end.
 *
 * @throws {Error} when the file cannot be read; {RangeError} when the token is empty or has whitespace
 */
export function readAuthTokenFile(path: string): string {
  return checkAuthToken(Deno.readTextFileSync(path).replace(/\r?\n$/, ""));
}

/** Says why a token file cannot be used, for a one-line error at start. */
export function explainTokenFileError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  return describeError(error);
}
