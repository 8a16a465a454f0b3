/**
 * Handoff latency: how soon a waiting client gets the lock once the holder
 * releases it.
 *
 * The server has one slot. Two clients, each on its own keep-alive connection,
 * take turns: one holds the slot while the other waits with `?wait=`; once
 * `/status` shows the waiter queued, the holder sends `DELETE /locks/{token}`
 * and the clock runs until the waiter's 200 arrives. The waiter is the new
 * holder, and the old holder queues again. As a baseline, the same run
 * measures the round trip of `GET /healthz` on a third connection.
 *
 * The server runs with the default flags first (log level `info`: a line per
 * grant and per release), then with `--stateFile`, where both the release and
 * the grant are on disk before they are answered.
 *
 * @module
 */
import { SCRATCH_DIR } from "./_scratch.ts";
import { atMost, type Figure, formatMs, labelText, percentile } from "./figures.ts";
import { acquire, checkStatus, grantedToken, untilStatus } from "./lock_api.ts";
import type { ChildProcess } from "./process.ts";
import { launchLockServer } from "./process.ts";
import type { Program } from "./program.ts";

/** The p99 handoff latency to reach, in milliseconds. */
export const HANDOFF_TARGET_P99_MS = 5;

/** Options of {@linkcode runHandoff}. */
export interface HandoffOptions {
  /** The startup-lock to measure. */
  program: Program;
  /** Named in the heading when set: which of several programs this is. */
  label?: string;
  /** Measured handoffs (and `GET /healthz` round trips). */
  handoffs: number;
  /** Handoffs (and round trips) before measuring, to warm up both processes. */
  warmup: number;
  /** Gets each process started, so that an interrupted run can stop it. */
  track: (child: ChildProcess) => void;
  /** The ways of running the server, in order. @default {HANDOFF_VARIANTS} */
  variants?: readonly HandoffVariant[];
}

const NAME = "Handoff latency";
// The clients never wait long: the holder releases as soon as the waiter is queued.
const SERVER_FLAGS = ["--locks", "1", "--timeout", "1m", "--maxWait", "1m"];

/** Where the `--stateFile` variant keeps its lock (the benchmark may not write, the server may). */
export const HANDOFF_STATE_FILE = `${SCRATCH_DIR}/handoff-state.json`;

/** A way of running the server for the handoff: the default flags, then variants. */
export interface HandoffVariant {
  /** Named in the heading and the figures; `undefined` for the default flags. */
  name: string | undefined;
  /** Flags after {@link SERVER_FLAGS}. */
  flags: readonly string[];
}

/** The default flags first, then `--stateFile`. */
export const HANDOFF_VARIANTS: readonly HandoffVariant[] = [
  { name: undefined, flags: [] },
  { name: "--stateFile", flags: ["--stateFile", HANDOFF_STATE_FILE] },
];

/** Runs the benchmark for each of {@link HANDOFF_VARIANTS}, printing as it goes; returns its figures. */
export async function runHandoff(options: HandoffOptions): Promise<Figure[]> {
  const figures: Figure[] = [];
  for (const variant of options.variants ?? HANDOFF_VARIANTS) {
    figures.push(...await runVariant(options, variant));
  }
  return figures;
}

async function runVariant(options: HandoffOptions, variant: HandoffVariant): Promise<Figure[]> {
  const { handoffs, warmup } = options;
  const flags = [...SERVER_FLAGS, ...variant.flags];
  console.log(
    `\nHandoff latency${labelText(options.label)}${variant.name ? `, ${variant.name}` : ""}: ` +
      `--locks 1, ${handoffs} handoffs after ${warmup} of warm-up`,
  );
  const server = await launchLockServer(options.program, flags);
  options.track(server);
  const clients = [Deno.createHttpClient({}), Deno.createHttpClient({})] as const;
  const probe = Deno.createHttpClient({});
  try {
    const healthz = await roundTrips(server.url, probe, warmup, handoffs);
    const { handoff, release } = await handoffLoop(server.url, clients, probe, warmup, handoffs);
    const p99 = percentile(handoff, 99);
    const rows: [string, number[]][] = [
      ["release → waiter's 200", handoff],
      ["release → holder's 204", release],
      ["GET /healthz round trip", healthz],
    ];
    for (const [what, samples] of rows) {
      console.log(
        `  ${what.padEnd(24)} p50 ${formatMs(percentile(samples, 50))}, ` +
          `p99 ${formatMs(percentile(samples, 99))}, max ${formatMs(Math.max(...samples))}`,
      );
    }
    if (variant.name !== undefined) {
      // The target is the default's; a variant says what it costs.
      return [{
        benchmark: NAME,
        measure: `${variant.name}: p50 / p99, release → waiter's 200 (${handoffs} handoffs)`,
        value: `${formatMs(percentile(handoff, 50))} / ${formatMs(p99)}`,
      }];
    }
    return [
      {
        benchmark: NAME,
        measure: "p50, release → waiter's 200",
        value: formatMs(percentile(handoff, 50)),
      },
      {
        benchmark: NAME,
        measure: `p99, release → waiter's 200 (${handoffs} handoffs)`,
        value: formatMs(p99),
        target: atMost(p99, HANDOFF_TARGET_P99_MS, `${HANDOFF_TARGET_P99_MS} ms`),
      },
      {
        benchmark: NAME,
        measure: "baseline: p50 / p99 of a GET /healthz round trip",
        value: `${formatMs(percentile(healthz, 50))} / ${formatMs(percentile(healthz, 99))}`,
      },
    ];
  } finally {
    for (const client of [...clients, probe]) client.close();
    await server.stop();
  }
}

/** Milliseconds of `count` sequential `GET /healthz` after `warmup` unmeasured ones. */
async function roundTrips(
  url: string,
  client: Deno.HttpClient,
  warmup: number,
  count: number,
): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < warmup + count; i++) {
    const start = performance.now();
    const response = await fetch(`${url}healthz`, { client });
    const arrived = performance.now();
    await checkStatus(response, 200);
    if (i >= warmup) samples.push(arrived - start);
  }
  return samples;
}

/**
 * Hands the slot back and forth between the two clients `warmup + count`
 * times; returns the milliseconds from sending each measured DELETE to the
 * waiter's 200 and to the DELETE's own 204.
 */
async function handoffLoop(
  url: string,
  clients: readonly [Deno.HttpClient, Deno.HttpClient],
  probe: Deno.HttpClient,
  warmup: number,
  count: number,
): Promise<{ handoff: number[]; release: number[] }> {
  const handoff: number[] = [];
  const release: number[] = [];
  let holder: 0 | 1 = 0;
  let token = await acquire(url, { id: "handoff-0" }, { client: clients[0] });
  if (!token) throw new Error("The first request of the handoff benchmark was refused");
  for (let i = 0; i < warmup + count; i++) {
    const next: 0 | 1 = holder === 0 ? 1 : 0;
    let grantedAt = NaN;
    const waiting = fetch(`${url}?wait=30s&id=handoff-${next}`, { client: clients[next] })
      .then((response) => {
        grantedAt = performance.now();
        return response;
      });
    await untilStatus(url, (n) => n.waiting >= 1, {
      client: probe,
      check: () => {
        if (!Number.isNaN(grantedAt)) throw new Error(`Handoff ${i + 1}: answered before queued`);
      },
    });
    const start = performance.now();
    const releasing = fetch(`${url}locks/${token}`, { method: "DELETE", client: clients[holder] })
      .then((response) => {
        const releasedAt = performance.now();
        return checkStatus(response, 204).then(() => releasedAt);
      });
    const [releasedAt, response] = await Promise.all([releasing, waiting]);
    token = await grantedToken(response);
    if (!token) throw new Error(`Handoff ${i + 1}: the waiting client got 423`);
    if (i >= warmup) {
      handoff.push(grantedAt - start);
      release.push(releasedAt - start);
    }
    holder = next;
  }
  return { handoff, release };
}
