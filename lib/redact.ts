/**
 * Passwords in URLs, kept out of every message: a URL a user types may carry
 * one (`redis://user:PASSWORD@host`, `https://user:PASSWORD@proxy`), and the
 * program quotes URLs in its errors, its notes and its logs.
 *
 * @module
 */

/** A URL's user name and `:`, then its password up to the last `@` of the authority, as URL parsers read it. */
const URL_PASSWORD = /\b([A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s/?#@:]*:)[^\s/?#]*@/g;
/** The same without a scheme, as a mistyped value may begin: `user:PASSWORD@host`. */
const BARE_PASSWORD = /^(\s*[^\s/?#@:]*:)[^\s/?#]*@/;

/** `text` with the password of every URL in it replaced by `***`: `redis://u:***@host`. */
export function redactPasswords(text: string): string {
  return text.replace(URL_PASSWORD, "$1***@");
}

/**
 * A value as the user typed it, for an error message: the password of a URL
 * replaced by `***`, also when the scheme is missing (`u:***@host`).
 */
export function redactValue(value: string): string {
  return redactPasswords(value).replace(BARE_PASSWORD, "$1***@");
}
