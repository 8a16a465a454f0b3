import assert from "node:assert/strict";
import { CLOCK_JUMP_MS, ClockWatch } from "../../../lib/stores/redis/clock_watch.ts";

Deno.test("ClockWatch takes beats whose clocks advanced alike, however slow their answers", () => {
  const watch = new ClockWatch();
  assert.equal(watch.observe({ sentAt: 0, answeredAt: 5, redisNow: 1_000_000 }), 0);
  // A second later, answered slowly (900 ms under way): Redis read its clock somewhere in there.
  assert.equal(watch.observe({ sentAt: 1_000, answeredAt: 1_900, redisNow: 1_001_890 }), 0);
  // A 4 s pause of this process between two beats moves both clocks alike.
  assert.equal(watch.observe({ sentAt: 5_900, answeredAt: 5_902, redisNow: 1_005_900 }), 0);
});

Deno.test("ClockWatch reports a jump of Redis's clock beyond CLOCK_JUMP_MS, forwards and backwards", () => {
  const watch = new ClockWatch();
  watch.observe({ sentAt: 0, answeredAt: 2, redisNow: 1_000_000 });
  const forward = watch.observe({ sentAt: 1_000, answeredAt: 1_002, redisNow: 1_001_001 + 5_000 });
  assert.ok(forward > CLOCK_JUMP_MS, String(forward));
  const backward = watch.observe({ sentAt: 2_000, answeredAt: 2_002, redisNow: 1_000_000 });
  assert.ok(backward < -CLOCK_JUMP_MS, String(backward));
  // Within the margin: no jump.
  assert.equal(watch.observe({ sentAt: 3_000, answeredAt: 3_002, redisNow: 1_001_900 }), 0);
});
