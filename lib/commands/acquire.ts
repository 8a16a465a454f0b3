/**
 * `startup-lock acquire`: waits for a lock and prints its token. Its flags are
 * shared by `run` and `hold`, which acquire the same way.
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
import {
  acquireLock,
  type AcquireOptions,
  type AcquireResult,
  releaseHeldLock,
} from "../client/lock.ts";
import { note } from "../client/output.ts";
import { formatDuration, parseDuration, parseWait } from "../duration.ts";
import { describeError } from "../errors.ts";
import { EXIT } from "../exit.ts";
import { ID_HINT, isValidId, MAX_ID_LENGTH } from "../protocol.ts";
import { AUTH_TOKEN_FILE_FLAG, AUTH_TOKEN_FLAG, readAuthFlags } from "./_auth.ts";
import { parsePath, readServer, SERVER_FLAG, TOKEN_FILE_FLAG } from "./_client.ts";
import { LOG_FORMAT_FLAG, readNoteFormat } from "./_log_format.ts";
import { AUTH_TOKEN_SECRET, secretFlagWarnings } from "./_secrets.ts";

/**
 * The pause between polls of a server that cannot hold a request (the
 * original): about a second like the original's init client, jittered by
 * ±50 % so that clients started together drift apart.
 */
export const DEFAULT_POLL_INTERVAL_MS = 1_000;

/** Random hex digits in the default id: two clients on one host never share a lock. */
const RANDOM_ID_HEX_CHARS = 8;

/** `--authToken` as the client commands take it. */
export const CLIENT_AUTH_TOKEN_FLAG: FlagSpec = {
  ...AUTH_TOKEN_FLAG,
  description: "Send Authorization: Bearer TOKEN to the lock server (as its --authToken)",
};

/** `--authTokenFile` as the client commands take it. */
export const CLIENT_AUTH_TOKEN_FILE_FLAG: FlagSpec = {
  ...AUTH_TOKEN_FILE_FLAG,
  description: "Like --authToken, with the token in this file (read once, at start)",
};

/** The flags of `acquire`, shared by `run` and `hold`, without `--help`. */
export const ACQUIRE_FLAGS: readonly FlagSpec[] = [
  SERVER_FLAG,
  {
    name: "duration",
    kind: "value",
    valueName: "DURATION",
    default: "the server's --timeout",
    description: "How long the lock is held unless released earlier",
  },
  {
    name: "id",
    kind: "value",
    valueName: "NAME",
    default: "the host name ($HOSTNAME when set)-<8 random hex digits>",
    description: `Names the holder; the same id gets the same lock back (1-${MAX_ID_LENGTH} ` +
      "printable ASCII characters, no spaces)",
  },
  {
    name: "wait",
    kind: "value",
    valueName: "DURATION",
    default: "forever",
    description: "Give up (exit 124) when no lock is granted within this time; 0 tries once",
  },
  { ...TOKEN_FILE_FLAG, description: "Also write the token to this file" },
  {
    name: "pollInterval",
    kind: "value",
    valueName: "DURATION",
    default: formatDuration(DEFAULT_POLL_INTERVAL_MS),
    description: "Mean pause (±50 %) between tries when the server answers at once or is down",
  },
  CLIENT_AUTH_TOKEN_FLAG,
  CLIENT_AUTH_TOKEN_FILE_FLAG,
  LOG_FORMAT_FLAG,
];

const FLAGS: readonly FlagSpec[] = [...ACQUIRE_FLAGS, HELP_FLAG];

/**
 * Reads the acquire flags.
 *
 * @throws {UsageError} naming the flag or variable, the value and what is allowed
 */
export function readAcquire(read: Reader, env: Env): AcquireOptions {
  readNoteFormat(read);
  const auth = readAuthFlags(read);
  const warnings = secretFlagWarnings(read, [AUTH_TOKEN_SECRET]);
  return {
    ...(auth ? { authToken: auth.token } : {}),
    server: readServer(read),
    durationMs: read.value("duration", undefined, parseDuration),
    id: read.value("id", undefined, parseId) ?? defaultId(hostName(env)),
    waitMs: read.value("wait", undefined, parseWait),
    tokenFile: read.value("tokenFile", undefined, parsePath),
    pollIntervalMs: read.value("pollInterval", DEFAULT_POLL_INTERVAL_MS, parseDuration),
    names: {
      duration: read.said("duration"),
      wait: read.source("wait"),
      tokenFile: read.source("tokenFile"),
    },
    ...(warnings.length > 0 ? { warnings } : {}),
  };
}

/**
 * The host's name for the default id: `$HOSTNAME` when set (the pod's name in
 * Kubernetes), else the system's (bash does not export `HOSTNAME`); `undefined`
 * when neither is known.
 */
export function hostName(env: Env): string | undefined {
  const variable = env("HOSTNAME")?.trim();
  if (variable) return variable;
  try {
    return Deno.hostname();
  } catch {
    return undefined; // No permission, or no name: defaultId() says "client".
  }
}

/**
 * The id used when none is given: the host (the pod's name in Kubernetes) and a
 * random part, so that two apps on one host never share a lock while retries of
 * one invocation keep theirs.
 */
export function defaultId(hostname: string | undefined): string {
  const random = crypto.getRandomValues(new Uint8Array(RANDOM_ID_HEX_CHARS / 2));
  const suffix = Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
  const host = (hostname ?? "").trim().replace(/[^\x21-\x7E]/g, "-")
    .slice(0, MAX_ID_LENGTH - RANDOM_ID_HEX_CHARS - 1);
  return `${host || "client"}-${suffix}`;
}

function parseId(text: string): string {
  if (!isValidId(text)) throw new RangeError(ID_HINT);
  return text;
}

/** Tells the user why acquiring ended without a lock and returns the exit code. */
export function reportFailure(
  result: Extract<AcquireResult, { kind: "timeout" | "failed" }>,
  options: AcquireOptions,
): number {
  if (result.kind === "failed") {
    note(result.message, "refused", "error");
    return EXIT.FAILURE;
  }
  const flag = options.names?.wait ?? "--wait";
  const within = options.waitMs === 0
    ? `at the first try (${flag}${flag.startsWith("--") ? " " : "="}0)`
    : `within ${formatDuration(options.waitMs ?? 0)} (${flag})`;
  note(`Gave up: no lock ${within}; last reason: ${result.reason}`, "gave_up", "warn");
  return EXIT.TIMEOUT;
}

function parse(argv: readonly string[], env: Env): Parsed<AcquireOptions> {
  const raw = parseFlags(argv, FLAGS, env);
  if (raw.values.has("help")) return { action: "help" };
  return { action: "run", options: readAcquire(new Reader(raw), env) };
}

async function run(options: AcquireOptions): Promise<number> {
  const result = await acquireLock(options);
  if (result.kind === "acquired") {
    if (result.lock.token === undefined) return EXIT.OK;
    try {
      // The stream writes all of it (one `write` may take only part) and rejects on failure.
      const stdout = Deno.stdout.writable.getWriter();
      try {
        await stdout.write(new TextEncoder().encode(`${result.lock.token}\n`));
      } finally {
        stdout.releaseLock();
      }
    } catch (error) {
      // A full disk or a closed pipe: the token reaches nobody, so nobody could release the lock.
      note(`Cannot print the token on stdout: ${describeError(error)}`, "failed", "error");
      await releaseHeldLock(result.lock, "the token could not be printed");
      return EXIT.FAILURE;
    }
    return EXIT.OK;
  }
  if (result.kind === "aborted") return EXIT.FAILURE;
  return reportFailure(result, options);
}

/** `startup-lock acquire`: prints the token on stdout; exits 0, 1, 2 or 124. */
export const acquireCommand: Command<AcquireOptions> = {
  name: "acquire",
  flags: FLAGS,
  usage: () =>
    renderUsage({
      synopsis: "startup-lock acquire --server URL [FLAGS]",
      about: [
        "Waits until the server grants a lock, prints its token on stdout and exits 0.",
        "Exit codes: 0 acquired, 1 error (such as a request the server refused),",
        "2 usage error, 124 no lock within --wait.",
      ],
      flags: FLAGS,
    }),
  parse,
  run,
};
