/**
 * Runs the Redis store's Lua scripts (`scripts.ts`) on one connection: by
 * `EVALSHA`, falling back to `EVAL` once when Redis does not know a script
 * (after a restart or `SCRIPT FLUSH`), each with the semaphore's keys, and
 * the channel, the caller's name, the epoch it knows and its capacity in
 * front of its arguments. A script that finds the semaphore lost or made anew
 * rejects with a {@linkcode SemaphoreLostError}; every other failure, and
 * every call that takes longer than the timeout, is a
 * {@linkcode StoreUnavailableError} (a stalled Redis is a down Redis), one
 * for another stored capacity a {@linkcode CapacityConflictError}.
 *
 * @module
 */
import type { createClient } from "../_redis_client.ts";
import { describeError } from "../../errors.ts";
import { StoreUnavailableError } from "../../core/store.ts";
import { newToken } from "../../token.ts";
import * as scripts from "./scripts.ts";

/** A script's reply, before the store reads it. */
export type Raw = unknown;

/** The scripts by the name the store calls them. */
export type ScriptName = keyof typeof scripts.SCRIPTS;

/** What the runner needs besides the connection. */
export interface ScriptRunnerOptions {
  /** The semaphore's name (`--name`): its keys and channel are named after it. */
  name: string;
  /** The calling replica's name, passed to every script. */
  replica: string;
  /** The Redis URL, without credentials, for error messages. */
  url: string;
  timeoutMs: number;
  /** The number of slots this replica has: every script but `init` checks it against Redis's. */
  capacity: number;
  /** Why the connection is down, when it is, for error messages. */
  lastError: () => string | undefined;
  /** Told when a script found the semaphore lost; calls are refused after, until {@linkcode ScriptRunner.init}. */
  onLost: (error: SemaphoreLostError) => void;
  /** Told when a script found another capacity in Redis. */
  onConflict: (stored: number) => void;
  /**
   * Told of each slot a script handed to a ticket of the caller's own, after
   * the caller has read the script's reply.
   */
  onHanded: (ticket: string, lease: RawLease, now: number) => void;
}

/** A lease as a script answers it: token, id (`null` when anonymous), acquiredAt, expiresAt, claims. */
export type RawLease = [string, string | null, number, number, number];

/**
 * Redis no longer holds the semaphore this replica knows: it is gone, or was
 * made anew (another epoch). Not a store failure: Redis answered.
 */
export class SemaphoreLostError extends Error {
  override name = "SemaphoreLostError";
  /** The epoch Redis holds now; `undefined` when the semaphore is gone. */
  readonly stored: string | undefined;

  constructor(operation: string, stored: string | undefined) {
    super(
      `the lock store failed to ${operation}: ` +
        (stored === undefined
          ? "Redis no longer holds the semaphore"
          : stored === scripts.REWOUND
          ? "Redis holds fewer changes than a replica saw"
          : `Redis holds another semaphore (epoch ${stored}) than this replica knows`),
    );
    this.stored = stored;
  }
}

/** Redis holds another capacity for the semaphore than this replica's `--locks`. */
export class CapacityConflictError extends StoreUnavailableError {
  override name = "CapacityConflictError";
  /** The capacity Redis holds. */
  readonly stored: number;

  constructor(operation: string, stored: number) {
    super(operation, `Redis holds ${stored} slots for this semaphore, not this replica's`);
    this.stored = stored;
  }
}

/** See the module documentation. */
export class ScriptRunner {
  /** The semaphore's keys, in the order the scripts take them. */
  readonly keys: readonly string[];
  /** The channel on which scripts say that slots freed. */
  readonly channel: string;
  readonly #client: ReturnType<typeof createClient>;
  readonly #options: ScriptRunnerOptions;
  readonly #shas = new Map<ScriptName, string>();
  /**
   * The semaphore's epoch as this replica knows it, from {@linkcode init};
   * until then, calls are refused.
   */
  #epoch: string | undefined;
  /** The most changes of the leases seen in a reply: Redis holding fewer went back in time. */
  #seen = 0;
  /** Set when the semaphore was found lost: calls are refused with it until {@linkcode init}. */
  #lost: SemaphoreLostError | undefined;
  #closed = false;

  constructor(client: ReturnType<typeof createClient>, options: ScriptRunnerOptions) {
    this.#client = client;
    this.#options = options;
    // One hash tag: every key of a semaphore lands on one Redis Cluster slot, as scripts need.
    const prefix = `startup-lock:{${options.name}}:`;
    this.keys = scripts.KEY_NAMES.map((key) => prefix + key);
    this.channel = prefix + "freed";
  }

  /** Whether a call can be sent now: connected, the semaphore known, and not closed. */
  get ready(): boolean {
    return this.#client.isReady && !this.#closed && this.#epoch !== undefined &&
      this.#lost === undefined;
  }

  /** Whether the semaphore was found lost and is not made anew yet. */
  get lost(): boolean {
    return this.#lost !== undefined;
  }

  /** The semaphore's epoch as this replica knows it, once known. */
  get epoch(): string | undefined {
    return this.#epoch;
  }

  /**
   * Makes the semaphore with a new random epoch and this replica's capacity
   * if Redis holds none, and adopts the stored epoch; calls are allowed
   * again after. Returns the stored capacity, which the caller compares
   * with its own.
   */
  async init(): Promise<number> {
    const candidate = newToken();
    const [capacity, epoch, version] = await this.call(
      "check the semaphore",
      "init",
      [],
      candidate,
    ) as [number, string, number];
    this.#epoch = epoch;
    this.#seen = Number(version);
    this.#lost = undefined;
    return Number(capacity);
  }

  /** Refuses every later {@linkcode run}. */
  close(): void {
    this.#closed = true;
  }

  /** Runs a script, at once refused while not connected or closed. */
  run(operation: string, name: ScriptName, args: string[]): Promise<Raw> {
    if (this.#closed) {
      return Promise.reject(new StoreUnavailableError(operation, "the store is closed"));
    }
    if (this.#lost) return Promise.reject(this.#lost);
    if (!this.#client.isReady || this.#epoch === undefined) {
      const error = this.#options.lastError();
      return Promise.reject(
        new StoreUnavailableError(
          operation,
          `not connected to ${this.#options.url}` + (error ? ` (${error})` : ""),
        ),
      );
    }
    return this.call(operation, name, args);
  }

  /** Runs a script, even after {@linkcode close} (for the last leaves and give-backs). */
  call(operation: string, name: ScriptName, args: string[], epoch = this.#epoch): Promise<Raw> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new StoreUnavailableError(
              operation,
              `${this.#options.url} did not answer within ${this.#options.timeoutMs} ms`,
            ),
          ),
        this.#options.timeoutMs,
      );
    });
    const work = this.#eval(name, args, epoch ?? "").catch((error: unknown) => {
      const failure = typed(operation, error);
      if (
        failure instanceof SemaphoreLostError && epoch !== undefined && epoch === this.#epoch &&
        !this.#lost
      ) {
        this.#lost = failure;
        this.#options.onLost(failure);
      } else if (failure instanceof CapacityConflictError) {
        this.#options.onConflict(failure.stored);
      }
      throw failure;
    });
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
  }

  async #eval(name: ScriptName, args: string[], epoch: string): Promise<Raw> {
    const tail = [
      String(this.keys.length),
      ...this.keys,
      this.channel,
      this.#options.replica,
      epoch,
      String(this.#options.capacity),
      String(this.#seen),
      ...args,
    ];
    const sha = this.#shas.get(name);
    if (sha !== undefined) {
      try {
        return this.#unwrap(name, await this.#client.sendCommand(["EVALSHA", sha, ...tail]));
      } catch (error) {
        if (!String((error as Error)?.message).startsWith("NOSCRIPT")) throw error;
      }
    }
    const source = scripts.SCRIPTS[name];
    const reply = await this.#client.sendCommand(["EVAL", source, ...tail]);
    if (sha === undefined) this.#shas.set(name, await sha1(source));
    return this.#unwrap(name, reply);
  }

  /** A checked script's reply beside the count of changes, which is kept; `init` answers bare. */
  #unwrap(name: ScriptName, reply: Raw): Raw {
    if (name === "init") return reply;
    const [version, result, here] = reply as [number, Raw, [number, ...[string, RawLease][]]];
    if (Number(version) > this.#seen) this.#seen = Number(version);
    const [now, ...handed] = here;
    if (handed.length > 0) {
      // A timer, not a microtask: the caller's reading of the reply (a lease that ran out,
      // which freed the slot) comes first.
      setTimeout(() => {
        for (const [ticket, lease] of handed) this.#options.onHanded(ticket, lease, now);
      }, 0);
    }
    return result;
  }
}

/** A script's failure as the error the store expects. */
function typed(operation: string, error: unknown): Error {
  if (error instanceof StoreUnavailableError) return error;
  const message = String((error as Error)?.message);
  const [code, stored] = message.split(" ");
  if (code === scripts.LOST) {
    return new SemaphoreLostError(operation, stored === "none" ? undefined : stored);
  }
  if (code === scripts.CAPACITY && stored !== undefined && stored !== "none") {
    return new CapacityConflictError(operation, Number(stored));
  }
  return new StoreUnavailableError(operation, describeError(error), { cause: error });
}

async function sha1(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return new Uint8Array(digest).toHex();
}
