/**
 * `startup-lock hold`: the client as a Kubernetes native sidecar (an init
 * container with `restartPolicy: Always`). The kubelet starts the app only
 * once the sidecar's startupProbe passes, so `GET /acquired` answers 503 until
 * the lock is held and 200 from then on. The lock is released once the app's
 * ready URL answers 2xx; then the sidecar idles until the pod stops.
 *
 * @module
 */
import { describeError } from "../errors.ts";
import { aborted } from "./_time.ts";
import { acquireLock, reportFailure } from "./acquire.ts";
import type { HoldOptions } from "./flags.ts";
import { EXIT, note, onStopSignals, type StopSignal } from "./output.ts";
import { releaseWhenReady } from "./ready.ts";
import { releaseHeldLock } from "./release.ts";

/**
 * The sidecar's own endpoints: `GET /acquired` (503 before the lock is held,
 * 200 after; it stays 200 once the lock is released, as a startupProbe needs)
 * and `GET /healthz` (200 while the process runs).
 */
export function createProbeHandler(isAcquired: () => boolean): (request: Request) => Response {
  return (request) => {
    const path = new URL(request.url).pathname;
    if (path !== "/acquired" && path !== "/healthz") return text(404, `Not found: ${path}\n`);
    if (request.method !== "GET" && request.method !== "HEAD") {
      return text(405, `Method ${request.method} is not allowed on ${path}\n`, {
        Allow: "GET, HEAD",
      });
    }
    if (path === "/healthz") return text(200, "OK\n");
    return isAcquired() ? text(200, "Lock acquired\n") : text(503, "Waiting for a lock\n");
  };
}

/** `startup-lock hold`: returns the exit code. */
export async function holdCommand(options: HoldOptions): Promise<number> {
  const stopping = new AbortController();
  let stopSignal: StopSignal | undefined;
  using _signals = onStopSignals((signal) => {
    stopSignal ??= signal;
    stopping.abort();
  });
  let acquired = false;
  const { hostname, port } = options.listen;
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname,
      port,
      onListen: (addr) =>
        note(
          `Listening on http://${formatHost(addr.hostname)}:${addr.port}/: ` +
            "GET /acquired answers 503 until the lock is held, then 200",
        ),
    }, createProbeHandler(() => acquired));
  } catch (error) {
    note(`Cannot listen on ${formatHost(hostname)}:${port} (--listen): ${describeError(error)}`);
    return EXIT.FAILURE;
  }

  try {
    const result = await acquireLock(options.acquire, { signal: stopping.signal });
    if (result.kind === "timeout" || result.kind === "failed") {
      return reportFailure(result, options.acquire);
    }
    if (result.kind === "acquired") {
      acquired = true;
      const outcome = await releaseWhenReady(result.lock, options, stopping.signal);
      if (outcome === "stopped") await releaseHeldLock(result.lock, `received ${stopSignal}`);
      else note("Idling until SIGTERM or SIGINT");
    }
    await aborted(stopping.signal);
    note(`Received ${stopSignal}: stopping`);
    return EXIT.OK;
  } finally {
    await server.shutdown();
  }
}

function formatHost(hostname: string): string {
  return hostname.includes(":") ? `[${hostname}]` : hostname;
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", ...headers },
  });
}
