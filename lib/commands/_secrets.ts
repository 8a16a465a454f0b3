/**
 * Secrets given as flags: a flag's value is visible to every user of the
 * machine in `ps` and stays in the shell history (and `deno task` echoes its
 * command line). The program still takes them, as the original does, but
 * warns once per flag, pointing to the file flag and the variable. The
 * warning never contains the secret.
 *
 * @module
 */
import type { Reader } from "../args.ts";

/** A flag that may carry a secret, and where the secret should come from instead. */
export interface SecretFlag {
  /** The flag's name: `authToken`. */
  name: string;
  /** The safer ways, for the warning: `--authTokenFile PATH or STARTUP_LOCK_AUTH_TOKEN`. */
  instead: string;
  /** Whether the value holds a secret; without it, every value is one. */
  holdsSecret?: (text: string) => boolean;
  /** How the warning names what is secret. @default {"--NAME is"} */
  what?: string;
}

/** `--authToken`, on the server and the client commands. */
export const AUTH_TOKEN_SECRET: SecretFlag = {
  name: "authToken",
  instead: "--authTokenFile PATH or STARTUP_LOCK_AUTH_TOKEN",
};

/** `release --token`: whoever has it can release the lock. */
export const LOCK_TOKEN_SECRET: SecretFlag = {
  name: "token",
  instead: "--tokenFile PATH or STARTUP_LOCK_TOKEN",
};

/** `--store redis://user:PASSWORD@host`. */
export const STORE_SECRET: SecretFlag = {
  name: "store",
  instead: "--storePasswordFile PATH or STARTUP_LOCK_STORE_PASSWORD_FILE",
  holdsSecret: (text) => {
    try {
      return new URL(text.trim()).password !== "";
    } catch {
      return false; // Refused as a bad --store, with the password left out.
    }
  },
  what: "--store has a password, which is",
};

/** One warning for each of `flags` given on the command line with a secret in it. */
export function secretFlagWarnings(read: Reader, flags: readonly SecretFlag[]): string[] {
  return flags
    .filter((flag) => {
      if (!read.has(flag.name) || !read.source(flag.name).startsWith("--")) return false;
      return flag.holdsSecret?.(read.text(flag.name) ?? "") ?? true;
    })
    .map((flag) =>
      `${flag.what ?? `--${flag.name} is`} visible to other users in ps and in the shell ` +
      `history (deno task also echoes its command line): use ${flag.instead} instead`
    );
}
