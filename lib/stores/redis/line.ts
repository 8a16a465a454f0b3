/**
 * The waiting line shared by every replica of a semaphore, in Redis: the
 * tickets of clients that wait, in arrival order (`REPLICA/N`, or `#ID` for a
 * client that gave its id, whichever replica it asks through). This side
 * keeps what the replica must remember about its own tickets:
 *
 * - their places, so that a ticket dropped while the replica could not beat
 *   (paused past `TICKET_TTL_MS`) joins again at its place, not behind later
 *   arrivals;
 * - the leaves not yet sent: a leave is batched, sent ahead of any command
 *   that reads the line (one connection keeps the order), and retried every
 *   beat until Redis takes it, so no ticket of ours is left behind; an id's
 *   ticket may keep its place for a grace, for its client to come back
 *   through any replica;
 * - whether the replica can grant now, sent with every beat: the tickets of
 *   a replica that cannot hold nobody up.
 *
 * @module
 */
import type { SharedLine } from "../../core/store.ts";
import { newToken } from "../../token.ts";
import { type ScriptRunner, SemaphoreLostError } from "./runner.ts";

/** Options of {@linkcode RedisLine}. */
export interface RedisLineOptions {
  /** How soon to send again leaves that failed (a beat). */
  retryMs: number;
  /** Told when the replica's ability to grant changed: it should beat at once. */
  onEligibility: () => void;
}

/** See the module documentation. */
export class RedisLine implements SharedLine {
  readonly replica: string;
  readonly #scripts: ScriptRunner;
  readonly #options: RedisLineOptions;
  /**
   * Tickets to take out of line, each with the number of the call that asked
   * for it and how long an id's ticket keeps its place.
   */
  readonly #leaving = new Map<string, { call: number; keepMs: number }>();
  #leaveCalls = 0;
  /** This replica's tickets in line, with their places once known. */
  readonly #mine = new Map<string, number | undefined>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #canGrant = true;
  #closed = false;

  constructor(scripts: ScriptRunner, replica: string, options: RedisLineOptions) {
    this.#scripts = scripts;
    this.replica = replica;
    this.#options = options;
  }

  /** Whether this replica can grant now, as the service last said. */
  get canGrant(): boolean {
    return this.#canGrant;
  }

  /** Whether clients of this replica wait in line. */
  get hasWaiters(): boolean {
    return this.#mine.size > 0;
  }

  async join(
    ticket: string,
    id: string | undefined,
    place?: number,
    durationMs?: number,
  ): Promise<number> {
    this.#leaving.delete(ticket);
    this.#mine.set(ticket, place ?? this.#mine.get(ticket));
    // The offer: what a release hands this ticket at once, if it is first in line.
    const offer = durationMs === undefined
      ? ["", ""]
      : [String(Math.max(1, Math.round(durationMs))), newToken()];
    const joined = Number(
      await this.#scripts.run("join the line", "join", [
        ticket,
        id ?? "",
        place?.toString() ?? "",
        ...offer,
      ]),
    );
    if (this.#mine.has(ticket)) this.#mine.set(ticket, joined);
    return joined;
  }

  leave(ticket: string, keepMs = 0): void {
    this.#mine.delete(ticket);
    this.#leaving.set(ticket, {
      call: ++this.#leaveCalls,
      keepMs: Math.max(0, Math.round(keepMs)),
    });
    this.#timer ??= setTimeout(() => this.#flush(), 0);
  }

  async waiting(): Promise<(string | undefined)[]> {
    this.sendLeaves();
    let pairs: [string, string][];
    try {
      pairs = await this.#scripts.run("list the line", "line", []) as [string, string][];
    } catch (error) {
      if (error instanceof SemaphoreLostError) return []; // Nobody waits in a lost semaphore.
      throw error;
    }
    return pairs.map(([, id]) => id === "" ? undefined : id);
  }

  eligible(canGrant: boolean): void {
    if (canGrant === this.#canGrant) return;
    this.#canGrant = canGrant;
    this.#options.onEligibility();
  }

  /** The place of a ticket of ours, if known: an acquire puts it back there if it was dropped. */
  placeOf(ticket: string): number | undefined {
    return this.#mine.get(ticket);
  }

  /** A grant took the ticket out of line. */
  granted(ticket: string): void {
    this.#mine.delete(ticket);
  }

  /**
   * Sends the leaves still waiting for their batch now, ahead of a command
   * that reads the line: a ticket that left must not count as waiting ahead,
   * nor be listed.
   */
  sendLeaves(): void {
    if (this.#timer === undefined || this.#leaving.size === 0) return;
    clearTimeout(this.#timer);
    this.#flush();
  }

  /** At a beat: sends again the leaves that failed, unless a send is due already. */
  retry(): void {
    if (this.#leaving.size > 0 && this.#timer === undefined) this.#flush();
  }

  /** The semaphore was lost: what was to leave it is gone from it already. */
  forget(): void {
    this.#leaving.clear();
  }

  /** Stops; sends the last leaves if Redis is there. */
  async close(connected: boolean): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    if (connected && this.#leaving.size > 0) {
      await this.#scripts.call("leave", "leave", leaveArgs(this.#leaving)).catch(() => {});
    }
  }

  #flush(): void {
    this.#timer = undefined;
    if (this.#closed || this.#leaving.size === 0) return;
    const batch = [...this.#leaving];
    this.#scripts.call("leave the line", "leave", leaveArgs(batch)).then(() => {
      // A ticket that joined and left again since has a newer leave of its own to send.
      for (const [ticket, { call }] of batch) {
        if (this.#leaving.get(ticket)?.call === call) this.#leaving.delete(ticket);
      }
    }, () => {
      if (!this.#closed) this.#timer ??= setTimeout(() => this.#flush(), this.#options.retryMs);
    });
  }
}

/** The leave script's arguments: each ticket, then how long an id's ticket keeps its place. */
function leaveArgs(leaving: Iterable<[string, { keepMs: number }]>): string[] {
  return [...leaving].flatMap(([ticket, { keepMs }]) => [ticket, String(keepMs)]);
}
