/**
 * Watches Redis's clock against this process's monotonic clock, beat by
 * beat. Leases expire on Redis's clock (`TIME` in the scripts), so a step of
 * that clock (a wrong NTP server, a manual `date -s`, a VM restored from a
 * snapshot) moves every lease's expiry at once: a step forward ends leases
 * early, while their holders still run.
 *
 * Between two beats, Redis's clock must have advanced by what this
 * process's clock advanced, give or take the time each beat was under way
 * (Redis read its clock somewhere between sending and answering). A
 * difference beyond {@linkcode CLOCK_JUMP_MS} more than that is a jump.
 *
 * @module
 */

/** The times of one beat that Redis answered. */
export interface BeatTimes {
  /** When it was sent (monotonic milliseconds). */
  sentAt: number;
  /** When its answer came (monotonic milliseconds). */
  answeredAt: number;
  /** Redis's clock in the script (wall-clock milliseconds). */
  redisNow: number;
}

/**
 * How far Redis's clock may drift from this process's between two beats
 * before it counts as a jump: far above what NTP slews in a second (at most
 * 0.5 ms), far below any lease.
 */
export const CLOCK_JUMP_MS = 1_000;

/** See the module documentation. */
export class ClockWatch {
  #last: BeatTimes | undefined;

  /**
   * Notes a beat; returns how far Redis's clock jumped since the last one
   * beyond what the beats' travel explains (negative: backwards), or 0 when
   * it did not jump more than {@linkcode CLOCK_JUMP_MS}.
   */
  observe(beat: BeatTimes): number {
    const last = this.#last;
    this.#last = beat;
    if (!last) return 0;
    const advanced = beat.redisNow - last.redisNow;
    const least = beat.sentAt - last.answeredAt;
    const most = beat.answeredAt - last.sentAt;
    if (advanced < least - CLOCK_JUMP_MS) return advanced - least;
    if (advanced > most + CLOCK_JUMP_MS) return advanced - most;
    return 0;
  }
}
