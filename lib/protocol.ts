/**
 * What the server and the client agree on: the token header, and what tokens
 * and holder ids look like.
 *
 * @module
 */

/** The response header that carries a granted lock's token. */
export const TOKEN_HEADER = "Lock-Token";

/** The response header that says how long a granted or renewed lock is held from now, in seconds. */
export const DURATION_HEADER = "Lock-Duration";

/**
 * On a grant or renewal cut to the server's longest duration: the duration
 * the request asked for, in seconds.
 */
export const REQUESTED_DURATION_HEADER = "Lock-Duration-Requested";

/**
 * A token: 128 random bits in base64url without padding, always 22
 * characters. Anything else is a mangled paste or a wrong value, refused
 * rather than taken for a lock that is already gone.
 */
export const TOKEN_PATTERN = /^[A-Za-z0-9_-]{22}$/;

/** What a valid token is, for error messages. */
export const TOKEN_HINT =
  'expected the 22 characters (A-Z, a-z, 0-9, "-", "_") of a token as acquire prints it';

/** The longest holder id (`?id=`). */
export const MAX_ID_LENGTH = 128;

/** What a valid id is, for error messages. */
export const ID_HINT =
  `expected 1 to ${MAX_ID_LENGTH} printable ASCII characters without spaces, such as a pod or host name`;

const ID_PATTERN = /^[\x21-\x7E]+$/;

/** Whether `id` may name a holder: printable ASCII without spaces, 1 to {@linkcode MAX_ID_LENGTH} long. */
export function isValidId(id: string): boolean {
  return id.length > 0 && id.length <= MAX_ID_LENGTH && ID_PATTERN.test(id);
}
