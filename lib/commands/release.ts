/**
 * `startup-lock release`: gives a lock back by its token.
 *
 * A lock that is already gone (released before, or expired) counts as success,
 * so that a systemd `ExecStartPost=` never fails for it.
 *
 * @module
 */
import {
  type Command,
  type Env,
  type FlagSpec,
  HELP_FLAG,
  type Parsed,
  parseFlags,
  Reader,
  renderUsage,
} from "../args.ts";
import { describeFetchError, releaseLock, UnauthorizedError } from "../client/http.ts";
import { GONE_NOTE, RELEASE_TIMEOUT_MS } from "../client/lock.ts";
import { note } from "../client/output.ts";
import { describeError, UsageError } from "../errors.ts";
import { EXIT } from "../exit.ts";
import { TOKEN_HINT, TOKEN_PATTERN } from "../protocol.ts";
import { tokenPrefix } from "../token.ts";
import { readAuthFlags } from "./_auth.ts";
import { parsePath, readServer, SERVER_FLAG, TOKEN_FILE_FLAG } from "./_client.ts";
import { CLIENT_AUTH_TOKEN_FILE_FLAG, CLIENT_AUTH_TOKEN_FLAG } from "./acquire.ts";
import { LOG_FORMAT_FLAG, readNoteFormat } from "./_log_format.ts";
import { AUTH_TOKEN_SECRET, LOCK_TOKEN_SECRET, secretFlagWarnings } from "./_secrets.ts";

/** Where `release` finds the token, and how messages name that flag or variable. */
export type TokenSource =
  | { token: string }
  | { tokenFile: string; /** `--tokenFile` or `STARTUP_LOCK_TOKEN_FILE`. */ name: string };

/** What `release` needs. */
export interface ReleaseOptions {
  server: URL;
  from: TokenSource;
  /** The bearer token sent to the server (`--authToken`). @default {none} */
  authToken?: string;
  /** Warnings about the command line (a secret given as a flag). @default {none} */
  warnings?: readonly string[];
}

/** The flags of `release`. */
export const RELEASE_FLAGS: readonly FlagSpec[] = [
  SERVER_FLAG,
  {
    name: "token",
    kind: "value",
    valueName: "TOKEN",
    description: "The token printed by acquire (run sets STARTUP_LOCK_TOKEN for its command)",
  },
  { ...TOKEN_FILE_FLAG, description: "Read the token from this file (as written by acquire)" },
  CLIENT_AUTH_TOKEN_FLAG,
  CLIENT_AUTH_TOKEN_FILE_FLAG,
  LOG_FORMAT_FLAG,
  HELP_FLAG,
];

/** Checks a token as given on the command line or read from a file. */
export function parseToken(text: string): string {
  const token = text.trim();
  if (!TOKEN_PATTERN.test(token)) throw new RangeError(TOKEN_HINT);
  return token;
}

/**
 * What is wrong with a malformed token, without showing it: a token with one
 * character too many is a real one, whoever reads the error could release it.
 */
export function describeMalformedToken(text: string): string {
  const token = text.trim();
  if (token === "") return "empty";
  const bad = token.search(/[^A-Za-z0-9_-]/);
  const length = `${token.length} character${token.length === 1 ? "" : "s"}, not shown`;
  return bad === -1 ? length : `${length}; character ${bad + 1} is not allowed`;
}

/** `--token` or `STARTUP_LOCK_TOKEN`, refused without its value in the message. */
function readToken(read: Reader): string {
  const text = read.text("token") ?? "";
  try {
    return parseToken(text);
  } catch (error) {
    throw new UsageError(
      `Invalid ${read.source("token")} (${describeMalformedToken(text)}): ${describeError(error)}`,
    );
  }
}

/**
 * `--token` or `--tokenFile`. When both are set and exactly one came from the
 * command line, that one wins, as flags win over variables everywhere.
 */
function readTokenSource(read: Reader): TokenSource {
  const onCommandLine = (name: string) => read.source(name).startsWith("--");
  let useToken = read.has("token");
  if (read.has("token") && read.has("tokenFile")) {
    if (onCommandLine("token") === onCommandLine("tokenFile")) {
      throw new UsageError(
        `Both ${read.source("token")} and ${read.source("tokenFile")} are set: give only one`,
      );
    }
    useToken = onCommandLine("token");
  }
  if (useToken) return { token: readToken(read) };
  if (read.has("tokenFile")) {
    return { tokenFile: read.value("tokenFile", "", parsePath), name: read.source("tokenFile") };
  }
  throw new UsageError(
    "Missing --token TOKEN or --tokenFile PATH (or STARTUP_LOCK_TOKEN, STARTUP_LOCK_TOKEN_FILE): " +
      "the lock to release",
  );
}

function parse(argv: readonly string[], env: Env): Parsed<ReleaseOptions> {
  const raw = parseFlags(argv, RELEASE_FLAGS, env);
  if (raw.values.has("help")) return { action: "help" };
  const read = new Reader(raw);
  readNoteFormat(read);
  const options: ReleaseOptions = { server: readServer(read), from: readTokenSource(read) };
  const auth = readAuthFlags(read);
  if (auth) options.authToken = auth.token;
  const warnings = secretFlagWarnings(read, [LOCK_TOKEN_SECRET, AUTH_TOKEN_SECRET]);
  if (warnings.length > 0) options.warnings = warnings;
  return { action: "run", options };
}

/** The token from the options or the file; a number is the exit code when there is none. */
async function findToken(from: TokenSource): Promise<string | number> {
  if ("token" in from) return from.token;
  const { tokenFile: path, name } = from;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    note(
      `Cannot read ${name} "${path}": ${describeError(error)}`,
      "token_file_unreadable",
      "error",
    );
    return EXIT.FAILURE;
  }
  if (text.trim() === "") {
    // acquire writes an empty file when the server gave no token (the original server).
    note(
      `No token in ${name} "${path}": the server gave none, so the lock only expires`,
      "no_token",
    );
    return EXIT.OK;
  }
  try {
    return parseToken(text);
  } catch (error) {
    // Bad input, as a bad --token is: the file holds something acquire never wrote.
    note(`Invalid token in ${name} "${path}": ${describeError(error)}`, "invalid_token", "error");
    return EXIT.USAGE;
  }
}

async function run(options: ReleaseOptions): Promise<number> {
  for (const warning of options.warnings ?? []) note(warning, "secret_in_flag", "warn");
  const token = await findToken(options.from);
  if (typeof token === "number") return token;
  try {
    const answer = await releaseLock(
      options.server,
      token,
      AbortSignal.timeout(RELEASE_TIMEOUT_MS),
      options.authToken,
    );
    if (answer === "gone") note(GONE_NOTE, "already_gone");
    else note(`Released lock ${tokenPrefix(token)}…`, "released");
    return EXIT.OK;
  } catch (error) {
    if (error instanceof UnauthorizedError) {
      note(error.message, "refused", "error");
      return EXIT.FAILURE;
    }
    note(
      `Cannot release the lock at ${options.server.href}: ${describeFetchError(error)}`,
      "release_failed",
      "error",
    );
    return EXIT.FAILURE;
  }
}

/** `startup-lock release`: exits 0 when the lock is released or already gone. */
export const releaseCommand: Command<ReleaseOptions> = {
  name: "release",
  flags: RELEASE_FLAGS,
  usage: () =>
    renderUsage({
      synopsis: "startup-lock release --server URL (--token TOKEN | --tokenFile PATH)",
      about: [
        "Gives a lock back and says so in one line. Exits 0 when it was released, and also",
        "when it had already been released or had expired; 1 when the server cannot be",
        "reached or is not a startup-lock server; 2 usage error (such as a malformed token).",
      ],
      flags: RELEASE_FLAGS,
    }),
  parse,
  run,
};
