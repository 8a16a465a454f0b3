/**
 * `startup-lock healthcheck`: asks an endpoint once and exits 0 only when it
 * answers `200`. Images without a shell or curl call this from a Docker
 * `HEALTHCHECK` or a Kubernetes exec probe.
 *
 * @module
 */
import { formatDuration } from "../duration.ts";
import type { HealthcheckOptions } from "./flags.ts";
import { describeFetchError } from "./http.ts";
import { EXIT, note } from "./output.ts";

/** `startup-lock healthcheck`: returns the exit code; says why on stderr when it is not 0. */
export async function healthcheckCommand(options: HealthcheckOptions): Promise<number> {
  const { url, timeoutMs } = options;
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    // Not following redirects: the answer of this URL counts, not that of a page it points to.
    const response = await fetch(url, { redirect: "manual", signal });
    await response.body?.cancel();
    if (response.status === 200) return EXIT.OK;
    const status = `${response.status} ${response.statusText}`.trim();
    note(`Unhealthy: ${url.href} answered HTTP ${status}, expected 200`);
  } catch (error) {
    note(
      signal.aborted
        ? `Unhealthy: ${url.href} did not answer within ${formatDuration(timeoutMs)} (--timeout)`
        : `Unhealthy: cannot reach ${url.href}: ${describeFetchError(error)}`,
    );
  }
  return EXIT.FAILURE;
}
