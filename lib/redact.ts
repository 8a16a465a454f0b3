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
/** The same without a scheme, as a mistyped value may begin: `user:PASSWORD@host`. */
const BARE_PASSWORD = /^(\s*[^\s/?#@:]*:)[^\s/?#]*@/;

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
 * A value typed as a URL, with everything up to its last `@` taken for user
 * information: a password typed with an unencoded `/` (`redis://u:pa55/w0rd@h`)
 * is no valid URL, but it is still a password.
 */
const TYPED_CREDENTIALS = /^(\s*[A-Za-z][A-Za-z0-9+.-]*:\/\/)(\S*)@/;

/**
 * A value as the user typed it, for an error message: the password of a URL
 * replaced by `***`, also when it holds a `/` or the scheme is missing
 * (`u:***@host`).
 */
export function redactValue(value: string): string {
  const typed = TYPED_CREDENTIALS.exec(value);
  if (typed) {
    const [whole, scheme, credentials] = typed as unknown as [string, string, string];
    return `${scheme}${hideCredentials(credentials)}@${redactPasswords(value.slice(whole.length))}`;
  }
  return redactPasswords(value).replace(BARE_PASSWORD, "$1***@");
}
