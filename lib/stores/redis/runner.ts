/**
 * Runs the Redis store's Lua scripts (`scripts.ts`) on one connection: by
 * `EVALSHA`, falling back to `EVAL` once when Redis does not know a script
 * (after a restart or `SCRIPT FLUSH`), each with the semaphore's keys and
 * the caller's channel and name in front of its arguments. Every failure,
 * and every call that takes longer than the timeout, is a
 * {@linkcode StoreUnavailableError}: a stalled Redis is a down Redis.
 *
 * @module
 */
import type { createClient } from "../_redis_client.ts";
import { describeError } from "../../errors.ts";
import { StoreUnavailableError } from "../../core/store.ts";
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
  /** Why the connection is down, when it is, for error messages. */
  lastError: () => string | undefined;
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
  #closed = false;

  constructor(client: ReturnType<typeof createClient>, options: ScriptRunnerOptions) {
    this.#client = client;
    this.#options = options;
    // One hash tag: every key of a semaphore lands on one Redis Cluster slot, as scripts need.
    const prefix = `startup-lock:{${options.name}}:`;
    this.keys = scripts.KEY_NAMES.map((key) => prefix + key);
    this.channel = prefix + "freed";
  }

  /** Whether a call can be sent now: connected and not closed. */
  get ready(): boolean {
    return this.#client.isReady && !this.#closed;
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
    if (!this.#client.isReady) {
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
  call(operation: string, name: ScriptName, args: string[]): Promise<Raw> {
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
    const work = this.#eval(name, args).catch((error: unknown) => {
      throw error instanceof StoreUnavailableError
        ? error
        : new StoreUnavailableError(operation, describeError(error), { cause: error });
    });
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
  }

  async #eval(name: ScriptName, args: string[]): Promise<Raw> {
    const tail = [
      String(this.keys.length),
      ...this.keys,
      this.channel,
      this.#options.replica,
      ...args,
    ];
    const sha = this.#shas.get(name);
    if (sha !== undefined) {
      try {
        return await this.#client.sendCommand(["EVALSHA", sha, ...tail]);
      } catch (error) {
        if (!String((error as Error)?.message).startsWith("NOSCRIPT")) throw error;
      }
    }
    const source = scripts.SCRIPTS[name];
    const reply = await this.#client.sendCommand(["EVAL", source, ...tail]);
    if (sha === undefined) this.#shas.set(name, await sha1(source));
    return reply;
  }
}

async function sha1(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return new Uint8Array(digest).toHex();
}
