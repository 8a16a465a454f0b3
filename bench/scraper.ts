/**
 * A Prometheus stand-in for the throughput benchmark: fetches `GET /metrics`
 * at a steady pace while wrk loads the server, on its own connection, and
 * says how many scrapes it made and how long they took.
 *
 * @module
 */
import { percentile } from "./figures.ts";

/** What a scraper saw. */
export interface Scrapes {
  /** Scrapes answered `200` with a body. */
  count: number;
  /** Scrapes that failed: another status, an empty body, or no answer. */
  failed: number;
  /** Milliseconds from each successful scrape's request to the end of its body. */
  durationsMs: number[];
}

/** A running scraper. */
export interface Scraper {
  /** Stops after the scrape in flight, if any; resolves with what it saw. */
  stop(): Promise<Scrapes>;
}

/** Scrapes `${url}metrics` at once, then every `intervalMs`, until stopped. */
export function startScraper(url: string, intervalMs: number): Scraper {
  const client = Deno.createHttpClient({});
  const scrapes: Scrapes = { count: 0, failed: 0, durationsMs: [] };
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let wake = () => {};
  const loop = (async () => {
    while (!stopped) {
      const started = performance.now();
      try {
        const response = await fetch(`${url}metrics`, { client });
        const body = await response.text();
        if (response.status === 200 && body.length > 0) {
          scrapes.count++;
          scrapes.durationsMs.push(performance.now() - started);
        } else {
          scrapes.failed++;
        }
      } catch {
        scrapes.failed++;
      }
      const wait = started + intervalMs - performance.now();
      if (!stopped && wait > 0) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, wait);
        });
      }
    }
  })();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      wake(); // No need to wait out the pause.
      await loop;
      client.close();
      return scrapes;
    },
  };
}

/** `12 scrapes, p50 3.1 ms, max 9.8 ms` (and the failures, if any). */
export function scrapesText(scrapes: Scrapes): string {
  const { count, failed, durationsMs } = scrapes;
  const times = count > 0
    ? `, p50 ${percentile(durationsMs, 50).toFixed(1)} ms, max ${
      Math.max(...durationsMs).toFixed(1)
    } ms`
    : "";
  return `${count} scrape${count === 1 ? "" : "s"}${times}${
    failed > 0 ? `, ${failed} FAILED` : ""
  }`;
}
