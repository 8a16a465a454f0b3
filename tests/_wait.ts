/**
 * Waiting in black-box tests: no timing assertions, only generous bounds.
 *
 * @module
 */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";

/** Retries `check` every 50 ms until it returns true; fails after a generous bound. */
export async function eventually(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(50);
  }
  assert.fail(`Timed out waiting until ${what}`);
}
