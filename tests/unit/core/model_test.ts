/**
 * A long randomized run through the HTTP handler on a manual clock, checked
 * against a model after every step: acquires with and without waiting,
 * releases, renewals, expiries, wait time-outs, clients that go away (some at
 * the instant of their grant, some whose answer is never delivered).
 *
 * It runs on the memory store (synchronous), and on the same store behind a
 * {@linkcode FaultyStore}: every call answers a few microtasks late, and at
 * random steps a call is refused, hangs until the store's timeout, or (a read)
 * answers late on the clock. Either way: never more than N holders, the store
 * holds exactly what the clients were granted plus the slots being handed back,
 * waiters are served in arrival order, no waiter waits while a slot is free
 * (once the store answers again), and nothing leaks.
 *
 * It does not run on the Redis store: the model checks the store against the
 * clients' grants exactly after every step, at instants a manual clock makes
 * exact, while Redis expires leases on its own clock, which a test can only
 * sleep through. Every step near a deadline would need a tolerance that blurs
 * the very checks the model is for. The service suite (service_test.ts) and the
 * store contract run on Redis instead.
 */
import assert from "node:assert/strict";
import type { Clock, TimerId } from "../../../lib/clock.ts";
import { STORE_RETRY_MS } from "../../../lib/core/queue.ts";
import { LockService } from "../../../lib/core/service.ts";
import type { Lease } from "../../../lib/core/store.ts";
import { createHandler } from "../../../lib/http/handler.ts";
import { MemoryLockStore } from "../../../lib/stores/memory.ts";
import { ManualClock } from "../../_clock.ts";
import { type Call, type Fault, FaultyStore, type Operation } from "../../_faulty_store.ts";

const SEED = 20261124;
const OPERATIONS = 100_000;
const LOCKS = 3;
const MAX_WAITERS = 8;
const MAX_DURATION_MS = 60_000;
/** The faulty store's command timeout. */
const TIMEOUT_MS = 2_000;
/** In the faulty run, how often (per step) a fault is armed for a coming call. */
const FAULT_RATE = 0.08;
/** The operations a fault is armed for; `acquire` twice, the busiest. */
const FAULTY_OPERATIONS: Operation[] = ["acquire", "acquire", "release", "renew", "leases"];
const UNKNOWN_TOKEN = "unknownTokenAAAAAAAAAA";

/** A small, fixed-seed generator (Park–Miller), so a failure replays exactly. */
function random(seed: number) {
  let state = seed;
  const next = () => (state = (state * 48271) % 2147483647) / 2147483647;
  return { next, int: (n: number) => Math.floor(next() * n) };
}

/**
 * The manual clock, with {@linkcode advance} firing timers one instant at a
 * time and letting promises settle in between, as a real event loop does.
 */
class SettlingClock implements Clock {
  readonly manual = new ManualClock();
  readonly #due = new Map<TimerId, number>();

  now = () => this.manual.now();
  wallNow = () => this.manual.wallNow();

  setTimeout(fn: () => void, ms: number): TimerId {
    const id = this.manual.setTimeout(() => {
      this.#due.delete(id);
      fn();
    }, ms);
    this.#due.set(id, this.manual.now() + Math.max(0, ms));
    return id;
  }

  clearTimeout(id: TimerId): void {
    this.#due.delete(id);
    this.manual.clearTimeout(id);
  }

  async advance(ms: number, settle: () => Promise<void>): Promise<void> {
    const target = this.manual.now() + ms;
    for (;;) {
      let next = Infinity;
      for (const at of this.#due.values()) next = Math.min(next, at);
      if (next > target) break;
      this.manual.advance(next - this.manual.now());
      await settle();
    }
    this.manual.advance(target - this.manual.now());
  }
}

/** A client waiting for a lock. */
interface Waiter {
  seq: number;
  /** When its wait runs out; from then on it is out of the queue, its answer on the way. */
  deadline: number;
  controller: AbortController;
  abandoned: boolean;
  /** A store call failed while it waited: its wait may end in `503`. */
  sawStoreFault: boolean;
  /** Settles when its answer is delivered; rejects when the client was gone. */
  delivered: { resolve(): void; reject(error: Error): void };
}

interface Counts {
  [name: string]: number;
}

async function run(faulty: boolean, operations: number): Promise<Counts> {
  const rng = random(SEED);
  const clock = new SettlingClock();
  const inner = new MemoryLockStore(LOCKS, { clock });

  /** The model: tokens the clients hold, and their deadlines on the monotonic clock. */
  const held = new Map<string, number>();
  /** Slots granted to clients that were gone, until the store releases them or they expire. */
  const handedBack = new Map<string, number>();
  /** Clients waiting for an answer, in arrival order. */
  const waiting: Waiter[] = [];
  /** Those still in the queue: not gone, and their wait has not run out. */
  const queued = () => waiting.filter((w) => !w.abandoned && w.deadline > clock.now());
  let seq = 0;
  let unanswered = 0;
  let parsing = 0;
  const counts: Counts = {
    granted: 0,
    served: 0,
    timedOut: 0,
    abandoned: 0,
    handedBack: 0,
    full: 0,
    queued: 0,
  };
  if (faulty) Object.assign(counts, { storeDenied: 0, takeFaults: 0, hangs: 0 });

  // Which acquire call is a client's own (the hot path), and which the queue's.
  let hotPath = false;
  const hotCalls = new WeakSet<Call>();
  /** The first store call the handler makes for the request being sent. */
  let seen: Call | undefined;
  /** Queue takes that failed, or will: the queue may leave a free slot unserved meanwhile. */
  let takesFailing = 0;
  let lastTakeFailureAt = -Infinity;
  /** The queue's last take failed: a wait that runs out now ends with the store's error. */
  let queueFailing = false;
  const onCall = (call: Call, phase: "call" | "settle") => {
    if (phase === "call") {
      seen ??= call;
      if (call.fault?.kind === "hang") counts.hangs!++;
    }
    if (call.operation !== "acquire") return;
    if (phase === "call" && hotPath) {
      hotCalls.add(call);
      hotPath = false;
    }
    if (hotCalls.has(call)) return;
    if (phase === "settle") queueFailing = !call.ok;
    if (!call.fault) return;
    // A queue take that fails: every waiter now may end with the store's error.
    for (const w of waiting) w.sawStoreFault = true;
    if (phase === "call") {
      takesFailing++;
      counts.takeFaults!++;
    } else {
      takesFailing--;
      lastTakeFailureAt = clock.now();
    }
  };
  const faultyStore = faulty
    ? new FaultyStore(inner, { clock, timeoutMs: TIMEOUT_MS, hops: () => rng.int(4), onCall })
    : undefined;
  const store = faultyStore ?? inner;

  // The store's own releases, whoever asked: how handed-back slots come back.
  const release = inner.release.bind(inner);
  inner.release = (token, claims) => {
    const lease = release(token, claims);
    if (lease) handedBack.delete(token);
    return lease;
  };

  const service = new LockService({
    store,
    clock,
    maxDurationMs: MAX_DURATION_MS,
    maxWaiters: MAX_WAITERS,
  });
  service.events.on((event) => {
    if (event.type !== "handed_back") return;
    const lease = inner.leases().find((l: Lease) => l.token.startsWith(event.token));
    assert.ok(lease, "a slot handed back is held in the store");
    assert.ok(!held.has(lease.token), "no client holds a slot handed back");
    handedBack.set(lease.token, clock.now() + lease.remainingMs);
    counts.handedBack!++;
  });
  const handler = createHandler({
    service,
    defaultDurationMs: 5_000,
    maxWaitMs: 10_000,
    onError: (message) => assert.fail(message),
  });

  /** The first assertion that failed inside a response callback. */
  let failure: unknown;

  /** Sends a request; `answer` checks the response whenever it comes. */
  const send = (
    path: string,
    answer: (response: Response) => void,
    init: RequestInit = {},
    completed?: Promise<void>,
  ) => {
    unanswered++;
    const info = completed ? { completed } : undefined;
    const request = new Request(`http://localhost${path}`, {
      ...init,
      headers: { Accept: "application/json" },
    });
    Promise.resolve(handler(request, info)).then((res) => {
      unanswered--;
      answer(res);
      if (!res.bodyUsed) void res.body?.cancel();
    }).catch((error) => {
      failure ??= error;
    });
  };

  /** What a response says, for messages. */
  const describe = (res: Response) => `${res.status} ${res.headers.get("Retry-After") ?? ""}`;
  /** Checks a refusal's status and JSON reason. */
  const refusedWith = (res: Response, status: number, reasons: string[], what: string) => {
    assert.equal(res.status, status, `${what}: ${describe(res)}`);
    parsing++;
    res.json().then((body: { reason: string }) => {
      parsing--;
      if (!reasons.includes(body.reason)) {
        failure ??= new Error(`${what}: reason ${body.reason}, expected ${reasons.join(" or ")}`);
      }
    });
  };

  const expire = () => {
    for (const [token, deadline] of held) if (deadline <= clock.now()) held.delete(token);
    for (const [token, deadline] of handedBack) {
      if (deadline <= clock.now()) handedBack.delete(token);
    }
  };
  const grant = (response: Response, durationMs: number) => {
    const token = response.headers.get("Lock-Token");
    assert.ok(token, "a 200 carries a token");
    assert.ok(!held.has(token), "tokens are never reused");
    held.set(token, clock.now() + durationMs);
    counts.granted!++;
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
      // Whoever arrived earlier and has no answer yet must have left the queue.
      const ahead = waiting.slice(0, index).find((x) => !x.abandoned && x.deadline > clock.now());
      assert.equal(ahead, undefined, `waiter ${w.seq} was served ahead of ${ahead?.seq}`);
      if (w.abandoned) {
        // Granted as its client went away: the answer is never delivered.
        w.delivered.reject(new Error("connection reset"));
        return;
      }
      w.delivered.resolve();
      grantFromJson(response);
      counts.served!++;
      return;
    }
    w.delivered.resolve();
    if (w.abandoned) {
      refusedWith(response, 423, ["cancelled"], `abandoned waiter ${w.seq}`);
      counts.abandoned!++;
    } else if (response.status === 503) {
      assert.ok(w.sawStoreFault, `waiter ${w.seq}: 503 without a store fault`);
      refusedWith(response, 503, ["store"], `waiter ${w.seq}`);
      counts.storeDenied!++;
    } else {
      refusedWith(response, 423, ["busy", "queued"], `waiter ${w.seq}`);
      counts.timedOut!++;
    }
  };

  /** Lets every answer that needs no time to pass arrive. */
  const flush = async () => {
    for (let quiet = 0, i = 0; quiet < 12; i++) {
      await null;
      const busy = faultyStore && faultyStore.inFlight > faultyStore.waitingOnClock;
      quiet = busy || parsing > 0 ? 0 : quiet + 1;
      assert.ok(i < 10_000, "the store's answers keep coming");
    }
  };

  const check = (step: number) => {
    if (failure) throw failure;
    assert.equal(parsing, 0, "every answer has been read");
    expire();
    const where = `step ${step}`;
    assert.ok(inner.held <= LOCKS, `${where}: ${inner.held} holders`);
    const actual = inner.leases().map((l) => l.token).sort();
    const expected = [...held.keys(), ...handedBack.keys()].sort();
    assert.deepEqual(actual, expected, `${where}: the store and the model disagree`);
    const inQueue = queued().length;
    assert.equal(service.waiting, inQueue, `${where}: queue length`);
    const serving = takesFailing === 0 && clock.now() >= lastTakeFailureAt + STORE_RETRY_MS;
    if (inQueue > 0 && serving) {
      assert.equal(inner.held, LOCKS, `${where}: somebody waits while a slot is free`);
    }
  };

  /** Arms a fault for a coming call, in the faulty run. */
  const maybeFault = () => {
    if (!faultyStore || rng.next() >= FAULT_RATE) return;
    const operation = FAULTY_OPERATIONS[rng.int(FAULTY_OPERATIONS.length)]!;
    const roll = rng.int(10);
    const fault: Fault = roll < 5
      ? { kind: "reject" }
      : roll < 8 || operation !== "leases"
      ? { kind: "hang" }
      : { kind: "delay", ms: rng.int(TIMEOUT_MS) }; // A late answer only where it changes nothing.
    faultyStore.failNext(operation, fault);
  };

  /** Sends a request, and returns the first store call it made at once (with its fault). */
  const callOf = (send: () => void): Call | undefined => {
    seen = undefined;
    send();
    return seen;
  };

  for (let step = 0; step < operations; step++) {
    maybeFault();
    const op = rng.int(100);
    const durationMs = 1 + rng.int(8_000);
    const occupied = held.size + handedBack.size;
    if (op < 30) {
      // Acquire without waiting.
      const behind = queued().length > 0;
      hotPath = !behind;
      const call = callOf(() =>
        send(`/?duration=${durationMs}ms`, (res) => {
          if (behind) {
            refusedWith(res, 423, ["queued", "busy"], "no jumping ahead of waiting clients");
            counts.queued!++;
          } else if (call?.fault) {
            refusedWith(res, 503, ["store"], "a store failure");
            counts.storeDenied!++;
          } else if (occupied < LOCKS) {
            assert.equal(res.status, 200, `a free slot: ${describe(res)}`);
            grant(res, durationMs);
          } else {
            refusedWith(res, 423, ["busy"], "every slot held");
          }
        })
      );
      hotPath = false;
    } else if (op < 55) {
      // Acquire and wait.
      const waitMs = 1 + rng.int(10_000);
      let resolve = () => {};
      let reject = (_: Error) => {};
      const completed = new Promise<void>((y, n) => {
        resolve = y;
        reject = n;
      });
      const w: Waiter = {
        seq: seq++,
        deadline: clock.now() + waitMs,
        controller: new AbortController(),
        abandoned: false,
        sawStoreFault: queueFailing,
        delivered: { resolve, reject },
      };
      const inQueue = queued().length;
      const queueFull = inQueue >= MAX_WAITERS;
      const hot = inQueue === 0;
      hotPath = hot;
      let entered = true;
      const call = callOf(() =>
        send(
          `/?duration=${durationMs}ms&wait=${waitMs}ms`,
          (res) => {
            if (!entered) {
              w.delivered.resolve();
              if (queueFull) {
                refusedWith(res, 503, ["queue_full"], "a full queue");
                counts.full!++;
              } else {
                refusedWith(res, 503, ["store"], "a store failure");
                counts.storeDenied!++;
              }
            } else settle(w, res);
          },
          { signal: w.controller.signal },
          completed,
        )
      );
      hotPath = false;
      entered = !queueFull && !(hot && call?.fault);
      if (entered) waiting.push(w);
    } else if (op < 70) {
      // Release one of the held locks, or an unknown token.
      const tokens = [...held.keys()];
      const token = tokens[rng.int(tokens.length + 1)] ?? UNKNOWN_TOKEN;
      const head = rng.int(4) === 0 ? queued()[0] : undefined;
      const expectedStatus = held.has(token) ? 204 : 404;
      const call = callOf(() =>
        send(`/locks/${token}`, (res) => {
          if (call?.fault) refusedWith(res, 503, ["store"], "a release the store failed");
          else assert.equal(res.status, expectedStatus, `release: ${describe(res)}`);
        }, { method: "DELETE" })
      );
      if (!call?.fault) held.delete(token);
      if (head) {
        // The head of the queue goes away about when the release hands it the slot.
        for (let i = rng.int(6); i > 0; i--) await null;
        head.abandoned = true;
        head.controller.abort();
      }
    } else if (op < 78) {
      // Renew a held lock.
      const tokens = [...held.keys()];
      const token = tokens[rng.int(tokens.length)];
      if (token) {
        const call = callOf(() =>
          send(`/locks/${token}?duration=${durationMs}ms`, (res) => {
            if (call?.fault) refusedWith(res, 503, ["store"], "a renewal the store failed");
            else assert.equal(res.status, 200, `renew: ${describe(res)}`);
          }, { method: "PUT" })
        );
        if (!call?.fault) held.set(token, clock.now() + durationMs);
      }
    } else if (op < 85) {
      // A waiting client goes away.
      const candidates = queued();
      const w = candidates[rng.int(candidates.length)];
      if (w) {
        w.abandoned = true;
        w.controller.abort();
      }
    } else {
      // Time passes: locks expire, waits run out, slots pass to waiters, hung calls time out.
      await clock.advance(rng.int(3_000), flush);
    }
    await flush();
    check(step);
  }

  // Drain: everything expires or times out, and nothing is left behind.
  faultyStore?.heal();
  for (let i = 0; i < 2; i++) {
    await clock.advance(MAX_DURATION_MS * 2, flush);
    await flush();
    check(operations);
  }
  assert.equal(inner.held, 0);
  assert.equal(service.waiting, 0);
  assert.equal(unanswered, 0, "every request was answered");
  service.close();
  await store.close();
  await flush();
  assert.equal(clock.manual.pending, 0, "no timer is left");
  if (failure) throw failure;
  for (const [key, count] of Object.entries(counts)) {
    assert.ok(count > 0, `the run exercised ${key}: ${JSON.stringify(counts)}`);
  }
  return counts;
}

Deno.test("handler on the memory store keeps at most N holders, serves waiters in order and leaks nothing over 100,000 random operations", async () => {
  await run(false, OPERATIONS);
});

Deno.test("handler on a failing asynchronous store keeps at most N holders, serves waiters in order and leaks nothing over 100,000 random operations", async () => {
  await run(true, OPERATIONS);
});
