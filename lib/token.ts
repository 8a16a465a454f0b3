/**
 * Lock tokens: 128 random bits, base64url (22 characters), long enough that
 * they cannot be guessed.
 *
 * @module
 */

const TOKEN_BYTES = 16;
const randomPool = new Uint8Array(TOKEN_BYTES * 1024);
let poolOffset = randomPool.length;

/** A new token. Random bytes are drawn 16 KiB at a time, which is cheaper per token. */
export function newToken(): string {
  if (poolOffset === randomPool.length) {
    crypto.getRandomValues(randomPool);
    poolOffset = 0;
  }
  const bytes = randomPool.subarray(poolOffset, poolOffset + TOKEN_BYTES);
  poolOffset += TOKEN_BYTES;
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

/** The first characters of a token: enough to tell locks apart in logs, useless to an attacker. */
export function tokenPrefix(token: string): string {
  return token.slice(0, 6);
}
