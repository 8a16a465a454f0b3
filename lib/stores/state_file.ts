/**
 * The state file (`--stateFile`): the held locks on disk, so that a restart,
 * even after `kill -9`, never lets more than N hold at once, and tokens
 * granted before it still release and renew.
 *
 * Every write is atomic: a temporary file beside the state file, fsync,
 * rename over it, fsync of the directory. Writes asked for while one is in
 * flight share the next one (group commit), so a burst of grants costs a
 * couple of fsyncs, not one each.
 *
 * @module
 */
import { describeError } from "../errors.ts";

/** One held lock as stored. Times are wall-clock milliseconds: the monotonic clock restarts with the process. */
/** The state file's permissions: it holds whole tokens, so only the server's user reads it. */
export const STATE_FILE_MODE = 0o600;

export interface StoredLock {
  token: string;
  id: string | undefined;
  acquiredAt: number;
  expiresAt: number;
}

/** The file's format version; a file of another version is treated as unreadable. */
export const STATE_VERSION = 1;

/** What reading the state file at start found. */
export type LoadedState =
  | { kind: "missing" }
  | { kind: "loaded"; locks: StoredLock[]; expired: number }
  | {
    kind: "corrupt";
    /** What was wrong, in words. */
    reason: string;
    /** Where the file was moved, if it could be. */
    movedTo: string | undefined;
    /** When the file was last written (wall-clock ms): until `--maxDuration` after, locks may be held. */
    modifiedAt: number;
  };

/**
 * Reads the state file at start: the locks not yet expired at `now`. A file
 * that cannot be read or parsed is moved aside (`PATH.corrupt-<time>`) and
 * reported, so the caller can stay on the safe side.
 *
 * @throws {Error} for a path that is not a regular file (`--stateFile /tmp`,
 *   `/dev/null`): a mistake to show, never a corrupt file to move aside
 */
export async function loadState(path: string, now = Date.now()): Promise<LoadedState> {
  let text: string;
  let modifiedAt = now;
  let info: Deno.FileInfo | undefined;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { kind: "missing" };
    return await setAside(path, `cannot read it: ${describeError(error)}`, modifiedAt, now);
  }
  if (!info.isFile) {
    throw new Error(
      info.isDirectory
        ? "it is a directory, not a file"
        : "it is not a regular file (a device, a pipe or a socket)",
    );
  }
  try {
    modifiedAt = info.mtime?.getTime() ?? now;
    text = await Deno.readTextFile(path);
  } catch (error) {
    return await setAside(path, `cannot read it: ${describeError(error)}`, modifiedAt, now);
  }
  let locks: StoredLock[];
  try {
    locks = parseState(text);
  } catch (error) {
    return await setAside(path, describeError(error), modifiedAt, now);
  }
  const live = locks.filter((l) => l.expiresAt > now);
  return { kind: "loaded", locks: live, expired: locks.length - live.length };
}

async function setAside(
  path: string,
  reason: string,
  modifiedAt: number,
  now: number,
): Promise<LoadedState> {
  const movedTo = `${path}.corrupt-${new Date(now).toISOString().replace(/[:.]/g, "-")}`;
  try {
    await Deno.rename(path, movedTo);
    return { kind: "corrupt", reason, movedTo, modifiedAt };
  } catch {
    return { kind: "corrupt", reason, movedTo: undefined, modifiedAt };
  }
}

/**
 * Parses the file's text.
 *
 * @throws {Error} saying what is wrong, for anything but a version-1 document
 *   whose every lock has a token, an id or null, and numeric times
 */
export function parseState(text: string): StoredLock[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new Error(text.trim() === "" ? "it is empty" : "it is not JSON (cut short?)");
  }
  const { version, locks } = (doc ?? {}) as { version?: unknown; locks?: unknown };
  if (version !== STATE_VERSION) throw new Error(`unknown version ${JSON.stringify(version)}`);
  if (!Array.isArray(locks)) throw new Error("no list of locks");
  return locks.map((entry, i) => {
    const l = (entry ?? {}) as Record<string, unknown>;
    const ok = typeof l.token === "string" && l.token !== "" &&
      (l.id === null || typeof l.id === "string") &&
      typeof l.acquiredAt === "number" && Number.isFinite(l.acquiredAt) &&
      typeof l.expiresAt === "number" && Number.isFinite(l.expiresAt);
    if (!ok) throw new Error(`lock ${i + 1} is malformed`);
    return {
      token: l.token as string,
      id: (l.id as string | null) ?? undefined,
      acquiredAt: l.acquiredAt as number,
      expiresAt: l.expiresAt as number,
    };
  });
}

/** The file's text for `locks`. */
export function formatState(locks: readonly StoredLock[], now = Date.now()): string {
  return JSON.stringify({
    version: STATE_VERSION,
    writtenAt: new Date(now).toISOString(),
    locks: locks.map((l) => ({
      token: l.token,
      id: l.id ?? null,
      acquiredAt: l.acquiredAt,
      expiresAt: l.expiresAt,
    })),
  }) + "\n";
}

/**
 * Checks at start that the state file's directory takes a new file, so a
 * server that could not keep its locks never starts.
 *
 * @throws {Error} saying why not
 */
export async function checkWritable(path: string): Promise<void> {
  const probe = `${path}.probe-${Deno.pid}`;
  try {
    await Deno.writeTextFile(probe, "");
    await Deno.remove(probe);
  } catch (error) {
    throw new Error(`cannot write in its directory: ${withoutPath(error)}`);
  }
}

/**
 * Claims the state file for this process: an exclusive advisory lock on
 * `PATH.lock`, held until the file handle is closed or the process ends (even
 * by `kill -9`). Two servers writing one file would overwrite each other's
 * locks, and a restart would then forget the holders of one of them. The lock
 * is on a file beside the state file because each write renames a new file
 * over the state file itself.
 *
 * @throws {Error} saying so when another process holds the claim
 */
export async function claimStateFile(path: string): Promise<Deno.FsFile> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(`${path}.lock`, {
      read: true,
      write: true,
      create: true,
      mode: STATE_FILE_MODE,
    });
  } catch (error) {
    throw new Error(`cannot open ${path}.lock: ${withoutPath(error)}`);
  }
  let claimed = false;
  try {
    claimed = await file.tryLock(true);
  } catch (error) {
    file.close();
    throw new Error(`cannot lock ${path}.lock: ${withoutPath(error)}`);
  }
  if (!claimed) {
    file.close();
    throw new Error(
      `another server uses it (it holds ${path}.lock): give each server its own state file`,
    );
  }
  return file;
}

/**
 * What went wrong, without the path Deno appends (`…: open '/x/locks.json.tmp-42'`):
 * the user knows the path they gave, and the internal file beside it means
 * nothing to them.
 */
export function withoutPath(error: unknown): string {
  return describeError(error).replace(/: \w+ '[^']*'$/, "");
}

/** Writes the state file atomically, one write at a time, grouping writes asked for meanwhile. */
export class StateWriter {
  readonly #path: string;
  readonly #snapshot: () => StoredLock[];
  #inFlight: Promise<void> | undefined;
  #next: Promise<void> | undefined;
  #writes = 0;

  /** `snapshot` gives the locks to write, read when each write starts. */
  constructor(path: string, snapshot: () => StoredLock[]) {
    this.#path = path;
    this.#snapshot = snapshot;
  }

  /** How many writes reached the disk, for tests and benchmarks. */
  get writes(): number {
    return this.#writes;
  }

  /**
   * Resolves once a write that started after this call is on disk; rejects
   * when that write failed. Callers during a write in flight share the next.
   */
  save(): Promise<void> {
    if (!this.#inFlight) return this.#start();
    this.#next ??= this.#inFlight.then(() => this.#start(), () => this.#start());
    return this.#next;
  }

  /** Waits for the writes in flight. Never rejects. */
  async flush(): Promise<void> {
    await this.#next?.catch(() => {});
    await this.#inFlight?.catch(() => {});
  }

  #start(): Promise<void> {
    this.#next = undefined;
    const write = this.#write(formatState(this.#snapshot()));
    this.#inFlight = write;
    const done = () => {
      if (this.#inFlight === write) this.#inFlight = undefined;
    };
    write.then(done, done);
    return write;
  }

  async #write(text: string): Promise<void> {
    const temporary = `${this.#path}.tmp-${Deno.pid}`;
    // The file holds whole tokens: readable by the server's user alone, whatever the umask.
    const file = await Deno.open(temporary, {
      write: true,
      create: true,
      truncate: true,
      mode: STATE_FILE_MODE,
    });
    try {
      const bytes = new TextEncoder().encode(text);
      for (let written = 0; written < bytes.length;) {
        written += await file.write(bytes.subarray(written));
      }
      await file.sync();
    } finally {
      file.close();
    }
    // A temporary file left by a crash keeps its old mode when opened again.
    await Deno.chmod(temporary, STATE_FILE_MODE);
    await Deno.rename(temporary, this.#path);
    const dir = await Deno.open(directoryOf(this.#path), { read: true });
    try {
      await dir.sync();
    } finally {
      dir.close();
    }
    this.#writes++;
  }
}

function directoryOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash === -1 ? "." : slash === 0 ? "/" : path.slice(0, slash);
}
