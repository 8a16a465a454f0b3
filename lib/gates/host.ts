/**
 * The load gates: `--maxLoad`, no grants while the node's one-minute load
 * average is above a limit, and `--maxPressure`, no grants while Linux pressure
 * stall information (`/proc/pressure/cpu`, `io`, `memory`: the share of time
 * some task stalled, `some avg10`) is above a percentage for any of them.
 * Both are host-wide, also inside a container: `/proc/pressure` is the
 * system's, not the container's cgroup's. Pressure is a share of time, so one
 * limit fits any number of cores, and it tells CPU, I/O and memory apart.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { PressureResource } from "../core/denial.ts";
import { SampledGate } from "./_sampled.ts";

/** The kernel updates the load average every 5 s: sampling faster sees nothing new. */
export const LOAD_SAMPLE_MS = 5_000;
/** `avg10` moves every 2 s. */
export const PRESSURE_SAMPLE_MS = 2_000;

/** The resources `--maxPressure` watches. */
export const PRESSURE_RESOURCES: readonly PressureResource[] = ["cpu", "io", "memory"];

/** Where Linux reports pressure stall information. */
export const PRESSURE_DIR = "/proc/pressure";

/** The node's one-minute load average (needs `--allow-sys=loadavg`). */
export function oneMinuteLoad(): number {
  const [oneMinute] = Deno.loadavg();
  if (oneMinute === undefined) throw new Error("no load average on this system");
  return oneMinute;
}

/** The `some avg10` share of a `/proc/pressure/*` file's text, in percent. */
export function parsePressure(text: string): number {
  const match = /^some\s.*\bavg10=(\d+(?:\.\d+)?)/m.exec(text);
  if (!match) throw new RangeError(`not pressure stall information: ${text.slice(0, 80)}`);
  return Number(match[1]);
}

/** Each resource's `some avg10` from `/proc/pressure`, in percent. */
export function readPressure(dir = PRESSURE_DIR): Record<PressureResource, number> {
  const read = (r: PressureResource) => parsePressure(Deno.readTextFileSync(`${dir}/${r}`));
  return { cpu: read("cpu"), io: read("io"), memory: read("memory") };
}

/** Whether this kernel reports pressure stall information that can be read. */
export function pressureAvailable(dir = PRESSURE_DIR): boolean {
  try {
    readPressure(dir);
    return true;
  } catch {
    return false;
  }
}

/** The `--maxLoad` gate: closed while the one-minute load average is above `max`. */
export function loadGate(
  max: number,
  options: { read?: () => number; clock?: Clock } = {},
): SampledGate<number> {
  return new SampledGate({
    name: "load",
    read: options.read ?? oneMinuteLoad,
    judge: (load, retryAfterMs) =>
      load > max ? { reason: "load", load, max, retryAfterMs } : undefined,
    intervalMs: LOAD_SAMPLE_MS,
    ...(options.clock ? { clock: options.clock } : {}),
  });
}

/** The `--maxPressure` gate: closed while any resource's `some avg10` is above `max` percent. */
export function pressureGate(
  max: number,
  options: { read?: () => Record<PressureResource, number>; clock?: Clock } = {},
): SampledGate<Record<PressureResource, number>> {
  return new SampledGate({
    name: "pressure",
    read: options.read ?? (() => readPressure()),
    judge: (pressure, retryAfterMs) => {
      for (const resource of PRESSURE_RESOURCES) {
        const percent = pressure[resource];
        if (percent > max) return { reason: "pressure", resource, percent, max, retryAfterMs };
      }
      return undefined;
    },
    intervalMs: PRESSURE_SAMPLE_MS,
    ...(options.clock ? { clock: options.clock } : {}),
  });
}
