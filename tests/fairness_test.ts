/**
 * A long randomized run through the HTTP handler on a manual clock: acquires
 * with and without waiting, releases, renewals, expiries, wait time-outs and
 * clients that go away, some at the instant of their grant. After every step
 * the lock state must match a model of what was granted, held and released.
 */
import assert from "node:assert/strict";
import { createHandler } from "../lib/handler.ts";
import { MemoryLockStore } from "../lib/lock.ts";
import { LockService } from "../lib/service.ts";
import { ManualClock } from "./_clock.ts";

const SEED = 20261124;
const OPERATIONS = 100_000;
const LOCKS = 3;
const MAX_WAITERS = 8;
const MAX_DURATION_MS = 60_000;

/** A small, fixed-seed generator (Park–Miller), so a failure replays exactly. */
function random(seed: number) {
  let state = seed;
  const next = () => (state = (state * 48271) % 2147483647) / 2147483647;
  return { next, int: (n: number) => Math.floor(next() * n) };
}

async function flush() {
  for (let i = 0; i < 30; i++) await null;
}

interface Waiter {
  seq: number;
  controller: AbortController;
  durationMs: number;
  abandoned: boolean;
  result?: Response;
}

Deno.test("handler keeps at most N holders, serves waiters in order and leaks nothing over 100,000 random operations", async () => {
  const rng = random(SEED);
  const clock = new ManualClock();
  const store = new MemoryLockStore(LOCKS, { clock });
  const service = new LockService({ store, clock, maxWaiters: MAX_WAITERS });
  const handler = createHandler({
    service,
    defaultDurationMs: 5_000,
    maxDurationMs: MAX_DURATION_MS,
    maxWaitMs: 10_000,
  });
  const request = (path: string, init?: RequestInit) =>
    Promise.resolve(handler(new Request(`http://localhost${path}`, init)));

  /** The model: tokens held and their deadlines on the manual clock. */
  const held = new Map<string, number>();
  /** Waiting clients in arrival order. */
  let waiting: Waiter[] = [];
  let seq = 0;
  const counts = { granted: 0, served: 0, timedOut: 0, abandoned: 0, full: 0, queued: 0 };

  const expire = () => {
    for (const [token, deadline] of held) if (deadline <= clock.now()) held.delete(token);
  };
  let parsing = 0;
  const grant = (response: Response, durationMs: number) => {
    const token = response.headers.get("Lock-Token");
    assert.ok(token, "a 200 carries a token");
    assert.ok(!held.has(token), "tokens are never reused");
    held.set(token, clock.now() + durationMs);
    counts.granted++;
    return token;
  };
  /** A waiter may be granted while time advances, before now: its expiry says when. */
  const grantFromJson = (response: Response) => {
    const token = grant(response, 0);
    parsing++;
    response.json().then((body: { expiresAt: string }) => {
      parsing--;
      if (held.has(token)) {
        held.set(token, Date.parse(body.expiresAt) - clock.wallNow() + clock.now());
      }
    });
  };
  const settle = (w: Waiter, response: Response) => {
    const index = waiting.indexOf(w);
    assert.ok(index >= 0, "each waiter is answered once");
    waiting.splice(index, 1);
    if (response.status === 200) {
      assert.ok(!w.abandoned, "a client that went away gets no lock");
      assert.equal(index, 0, `waiter ${w.seq} was served ahead of ${waiting[0]?.seq}`);
      grantFromJson(response);
      counts.served++;
      return;
    }
    if (w.abandoned) counts.abandoned++;
    else {
      assert.equal(response.status, 423);
      counts.timedOut++;
    }
    void response.body?.cancel();
  };
  const check = (step: number) => {
    assert.equal(parsing, 0, "every answer has been read");
    expire();
    assert.ok(store.held <= LOCKS, `step ${step}: ${store.held} holders`);
    assert.equal(store.held, held.size, `step ${step}: the store and the model disagree`);
    assert.equal(service.waiting, waiting.length, `step ${step}: queue length`);
    if (waiting.length > 0) assert.equal(store.held, LOCKS, "nobody waits while a slot is free");
  };

  for (let step = 0; step < OPERATIONS; step++) {
    const op = rng.int(100);
    const durationMs = 1 + rng.int(8_000);
    if (op < 30) {
      // Acquire without waiting.
      const res = await request(`/?duration=${durationMs}ms`);
      expire();
      if (waiting.length > 0) {
        assert.equal(res.status, 423, "no jumping ahead of waiting clients");
        counts.queued++;
      } else if (held.size < LOCKS) {
        assert.equal(res.status, 200);
        grant(res, durationMs);
      } else assert.equal(res.status, 423);
      await res.body?.cancel();
    } else if (op < 55) {
      // Acquire and wait.
      const w: Waiter = {
        seq: seq++,
        controller: new AbortController(),
        durationMs,
        abandoned: false,
      };
      const waitMs = 1 + rng.int(10_000);
      const queueWasFull = waiting.length >= MAX_WAITERS;
      waiting.push(w);
      const pending = request(`/?duration=${durationMs}ms&wait=${waitMs}ms`, {
        signal: w.controller.signal,
        headers: { Accept: "application/json" },
      });
      pending.then((res) => {
        if (res.status === 503) {
          assert.ok(queueWasFull, "503 only when the queue is full");
          waiting = waiting.filter((x) => x !== w);
          counts.full++;
          void res.body?.cancel();
        } else settle(w, res);
      });
    } else if (op < 70) {
      // Release one of the held locks, or an unknown token.
      const tokens = [...held.keys()];
      const token = tokens[rng.int(tokens.length + 1)] ?? "unknownTokenAAAAAAAAAA";
      const instant = rng.int(4) === 0 ? waiting[0] : undefined;
      const pending = request(`/locks/${token}`, { method: "DELETE" });
      if (instant) {
        // The head of the queue goes away at the instant the release hands it the slot.
        instant.abandoned = true;
        instant.controller.abort();
      }
      const res = await pending;
      assert.equal(res.status, held.has(token) ? 204 : 404);
      held.delete(token);
    } else if (op < 78) {
      // Renew a held lock.
      const tokens = [...held.keys()];
      const token = tokens[rng.int(tokens.length)];
      if (token) {
        const res = await request(`/locks/${token}?duration=${durationMs}ms`, { method: "PUT" });
        assert.equal(res.status, 200);
        await res.body?.cancel();
        held.set(token, clock.now() + durationMs);
      }
    } else if (op < 85) {
      // A waiting client goes away.
      const w = waiting[rng.int(waiting.length)];
      if (w) {
        w.abandoned = true;
        w.controller.abort();
      }
    } else {
      // Time passes: locks expire, waits run out, slots pass to waiters.
      clock.advance(rng.int(3_000));
    }
    await flush();
    check(step);
  }

  // Drain: everything expires or times out, and nothing is left behind.
  clock.advance(MAX_DURATION_MS * 2);
  await flush();
  check(OPERATIONS);
  clock.advance(MAX_DURATION_MS * 2);
  await flush();
  assert.equal(store.held, 0);
  assert.equal(service.waiting, 0);
  assert.equal(clock.pending, 0, "no timer is left");
  for (const key of Object.keys(counts) as (keyof typeof counts)[]) {
    assert.ok(counts[key] > 0, `the run exercised ${key}: ${JSON.stringify(counts)}`);
  }
});
