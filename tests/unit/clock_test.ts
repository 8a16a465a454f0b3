/** Wall time as the logs and the API show it (`lib/clock.ts`). */
import assert from "node:assert/strict";
import { isoTime } from "../../lib/clock.ts";

Deno.test("isoTime() gives what Date.prototype.toISOString gives", () => {
  const instants = [
    0,
    1,
    999,
    Date.UTC(2000, 1, 29, 23, 59, 59, 999),
    Date.UTC(2026, 11, 6, 5, 58, 11, 475),
    Date.UTC(9999, 11, 31, 23, 59, 59, 999),
    Date.UTC(999, 0, 1),
    Date.now(),
  ];
  for (const ms of instants) assert.equal(isoTime(ms), new Date(ms).toISOString(), String(ms));
});
