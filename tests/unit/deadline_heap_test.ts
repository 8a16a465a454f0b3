import assert from "node:assert/strict";
import { DeadlineHeap } from "../../lib/_deadline_heap.ts";

Deno.test("DeadlineHeap pops entries earliest deadline first", () => {
  const heap = new DeadlineHeap<{ at: number; n: number }>();
  let seed = 7;
  const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
  const deadlines = Array.from({ length: 1000 }, (_, n) => ({ at: Math.floor(random() * 500), n }));
  for (const d of deadlines) heap.push(d);
  assert.equal(heap.size, 1000);
  const popped: number[] = [];
  for (let e = heap.pop(); e; e = heap.pop()) popped.push(e.at);
  assert.deepEqual(popped, deadlines.map((d) => d.at).sort((a, b) => a - b));
  assert.equal(heap.size, 0);
  assert.equal(heap.peek(), undefined);
});
