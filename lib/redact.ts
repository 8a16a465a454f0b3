/**
 * Passwords in URLs, kept out of every message: a URL a user types may carry
 * one (`redis://user:PASSWORD@host`, `https://user:PASSWORD@proxy`), and the
 * program quotes URLs in its errors, its notes and its logs.
 *
 * @module
 */

/**
 * A URL's scheme and its user information, up to the last `@` of the
 * authority, as URL parsers read it.
 */
const URL_CREDENTIALS = /\b([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^\s/?#]*)@/g;

/**
 * User information with its secret hidden: `user:***`, or `***` alone when it
 * has no `:`, since a lone name may be the secret (`https://TOKEN@host`, and a
 * Redis URL written `redis://PASSWORD@host`).
 */
function hideCredentials(credentials: string): string {
  const colon = credentials.indexOf(":");
  return colon === -1 ? "***" : `${credentials.slice(0, colon)}:***`;
}

/** `text` with the password of every URL in it replaced by `***`: `redis://u:***@host`. */
export function redactPasswords(text: string): string {
  return text.replace(
    URL_CREDENTIALS,
    (_, scheme: string, credentials: string) => `${scheme}${hideCredentials(credentials)}@`,
  );
}

/**
 * The start of a value typed as a URL, however mistyped: a scheme with two
 * slashes, one or none (`redis:/`, `redis:`), and spaces after it.
 */
const TYPED_SCHEME = /^\s*(?:[A-Za-z][A-Za-z0-9+.-]*:)?[/\\]*\s*/;

/**
 * A value as the user typed it, for an error message: the password of a URL
 * replaced by `***`. A typed value that is no valid URL is why it is quoted,
 * so everything up to its last `@` is taken for user information when it
 * looks like a URL or a `user:password` before it (a `:`, `/` or `\`): a
 * password with an unencoded `/` or a space (`redis://u:pa55/w0rd@h`), a
 * scheme with one slash or none (`redis:/u:pw@h`, `redis//u:pw@h`), or no
 * scheme at all (`u:***@host`).
 */
export function redactValue(value: string): string {
  const at = value.lastIndexOf("@");
  const head = value.slice(0, Math.max(at, 0));
  if (at === -1 || !/[:/\\]/.test(head)) return redactPasswords(value);
  const scheme = TYPED_SCHEME.exec(head)?.[0] ?? "";
  const credentials = head.slice(scheme.length);
  return `${scheme}${hideCredentials(credentials)}@${redactPasswords(value.slice(at + 1))}`;
}
