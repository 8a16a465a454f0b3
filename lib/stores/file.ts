/**
 * The memory store kept on disk (`--stateFile`): the slots live in memory
 * (`MemoryLockStore`) and every change that takes or extends a slot (an id
 * asking again extends its own) is on disk before it is answered, so a
 * restart never forgets a holder. Reads answer
 * synchronously; changes answer once their write (shared with the changes
 * around them) has reached the disk. A write that fails undoes the grant and
 * answers `StoreUnavailableError`: the client gets `503`, and no lock exists
 * that the disk does not know of.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import {
  type AcquireRequest,
  type AcquireResult,
  type Awaitable,
  type Lease,
  type LockStore,
  type SlotsFreed,
  StoreUnavailableError,
} from "../core/store.ts";
import { MemoryLockStore } from "./memory.ts";
import { StateWriter, type StoredLock, withoutPath } from "./state_file.ts";

/** Options of {@linkcode FileLockStore}. */
export interface FileLockStoreOptions {
  /** @default {realClock} */
  clock?: Clock;
  /** Locks read back at start, held again until their expiry. */
  restore?: readonly StoredLock[];
}

/** A memory store whose held locks are written to a state file; see the module documentation. */
export class FileLockStore implements LockStore {
  readonly capacity: number;
  /** Lookups read memory and work while writes fail: only a change that works says it is back. */
  readonly upAfter = "a_change";
  readonly #memory: MemoryLockStore;
  readonly #writer: StateWriter;

  constructor(capacity: number, path: string, options: FileLockStoreOptions = {}) {
    this.capacity = capacity;
    this.#memory = new MemoryLockStore(capacity, options.clock ? { clock: options.clock } : {});
    for (const lock of options.restore ?? []) this.#memory.restore(lock);
    this.#writer = new StateWriter(path, () => this.#memory.leases());
    // A lock that expires leaves the file too: after a restart, only the locks that expired
    // while the server was stopped count as such. A failed write is retried by the next one.
    this.#memory.onFree(({ expired }) => {
      if (expired.length > 0) this.#writer.save().catch(() => {});
    });
  }

  /** How many slots are held now. */
  get held(): number {
    return this.#memory.held;
  }

  /** How many writes reached the disk. */
  get writes(): number {
    return this.#writer.writes;
  }

  acquire(request: AcquireRequest): Awaitable<AcquireResult> {
    const result = this.#memory.acquire(request);
    if (!result.granted) return result;
    return this.#writer.save().then(() => result, (error) => {
      // A new grant is undone; a renewed one stays renewed here, as after a failed renew().
      if (!result.existing) this.#memory.release(result.lease.token);
      throw this.#failure("acquire", error);
    });
  }

  release(token: string, claims?: number): Awaitable<Lease | undefined> {
    const lease = this.#memory.release(token, claims);
    if (!lease) return undefined;
    return this.#writer.save().then(() => lease, (error) => {
      // The slot is free here; on disk the lock lingers until its expiry, which is safe.
      throw this.#failure("release", error);
    });
  }

  renew(token: string, durationMs: number): Awaitable<Lease | undefined> {
    const lease = this.#memory.renew(token, durationMs);
    if (!lease) return undefined;
    return this.#writer.save().then(() => lease, (error) => {
      throw this.#failure("renew", error);
    });
  }

  byId(id: string): Lease | undefined {
    return this.#memory.byId(id);
  }

  byToken(token: string): Lease | undefined {
    return this.#memory.byToken(token);
  }

  leases(): Lease[] {
    return this.#memory.leases();
  }

  onFree(listener: (freed: SlotsFreed) => void): () => void {
    return this.#memory.onFree(listener);
  }

  /** Waits for the writes in flight, then stops the timers. */
  async close(): Promise<void> {
    await this.#writer.flush();
    this.#memory.close();
  }

  #failure(operation: string, error: unknown): StoreUnavailableError {
    return new StoreUnavailableError(
      operation,
      `cannot write the state file: ${withoutPath(error)}`,
      { cause: error },
    );
  }
}
