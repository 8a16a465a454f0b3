/**
 * Text from elsewhere (a request's value, a server's message) made safe to
 * print on a terminal or in a log line: the server echoes what it refuses, the
 * client prints what a server said.
 *
 * @module
 */

/**
 * Control characters (C0, DEL, C1) and the invisible ones that reorder or hide
 * text (bidirectional overrides, zero-width): an escape sequence could clear
 * the screen, retitle the window or forge output, a line break forge a line.
 */
// deno-lint-ignore no-control-regex
const UNPRINTABLE = /[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g;

/** `text` with its control and invisible characters written as `\uXXXX` escapes. */
export function printable(text: string): string {
  return text.replace(
    UNPRINTABLE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
