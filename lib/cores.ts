/**
 * Slots per CPU core (`--locksPerCore`): one number for a whole cluster whose
 * nodes differ in size, as in "one start-up per core". The cores are the CPUs
 * this process may run on, as Deno counts them for `navigator.hardwareConcurrency`.
 *
 * @module
 */
import { MAX_LOCKS } from "./config.ts";

/**
 * The highest `--locksPerCore`: a thousand start-ups per core is far past any
 * real need, and keeps X × cores a small integer on the largest machines.
 */
export const MAX_LOCKS_PER_CORE = 1_000;

/**
 * The CPUs this process may run on. Deno reports Rust's
 * `std::thread::available_parallelism()`: on Linux, the CPUs in the process's
 * affinity mask (`taskset`, cgroup cpusets, the kubelet's CPU manager), capped
 * by a cgroup v1 or v2 CPU quota rounded down (a container's CPU limit; at
 * least 1). A pod without a CPU limit sees its node's CPUs. Needs no permission.
 */
export function availableCores(): number {
  const cores = navigator.hardwareConcurrency;
  // Deno reports 1 when it cannot tell; guard anyway, as a count below 1 means nothing.
  return Number.isSafeInteger(cores) && cores >= 1 ? cores : 1;
}

/** `max(1, floor(locksPerCore × cores))`, at most {@linkcode MAX_LOCKS}. */
export function slotsPerCore(locksPerCore: number, cores: number): number {
  if (!(locksPerCore > 0) || !Number.isFinite(locksPerCore)) {
    throw new RangeError(`Invalid locksPerCore ${locksPerCore}: expected a positive number`);
  }
  if (!Number.isSafeInteger(cores) || cores < 1) {
    throw new RangeError(`Invalid cores ${cores}: expected a positive integer`);
  }
  // A product such as 0.7 × 10 = 6.999… must still give 7: round away float noise first.
  const product = Math.round(locksPerCore * cores * 1e9) / 1e9;
  return Math.min(MAX_LOCKS, Math.max(1, Math.floor(product)));
}

/**
 * A `--locksPerCore` value: a decimal number above 0 and at most
 * {@linkcode MAX_LOCKS_PER_CORE}, such as `0.5`, `1` or `2`.
 *
 * @throws {RangeError} with what is allowed
 */
export function parseLocksPerCore(text: string): number {
  const trimmed = text.trim();
  const n = /^(\d+(\.\d+)?|\.\d+)$/.test(trimmed) ? Number(trimmed) : NaN;
  if (!(n > 0 && n <= MAX_LOCKS_PER_CORE)) {
    throw new RangeError(
      `expected a number above 0 and at most ${MAX_LOCKS_PER_CORE}, such as 0.5 or 2 ` +
        "(slots per CPU core)",
    );
  }
  return n;
}
