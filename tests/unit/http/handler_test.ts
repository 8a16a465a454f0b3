/**
 * The HTTP layer through the handler: routing, reading parameters, and
 * rendering the service's answers (tokens, release and renewal, waiting,
 * refusals with `Retry-After`, `/status`). Requests are `new Request(...)`
 * objects; time is a {@linkcode ManualClock}. The rules behind the answers
 * are tested where they live: queue_test.ts, service_test.ts, gates_test.ts.
 */
import assert from "node:assert/strict";
import { Gates } from "../../../lib/core/gates.ts";
import { LockService } from "../../../lib/core/service.ts";
import { DependencyChecker } from "../../../lib/gates/dependencies.ts";
import { createHandler, type RequestInfo } from "../../../lib/http/handler.ts";
import type { StatusBody as Status } from "../../../lib/http/render.ts";
import { parseCheckTarget } from "../../../lib/probes.ts";
import type { LockStore } from "../../../lib/core/store.ts";
import { FileLockStore } from "../../../lib/stores/file.ts";
import { MemoryLockStore } from "../../../lib/stores/memory.ts";
import { ManualClock } from "../../_clock.ts";
import { ManualGate } from "../../_gate.ts";

const DEFAULT_MS = 10_000;
const MAX_DURATION_MS = 60_000;
const MAX_WAIT_MS = 30_000;
const JSON_ACCEPT = { Accept: "application/json" };
/** 22 base64url characters: 16 random bytes. */
const TOKEN = /^[A-Za-z0-9_-]{22}$/;

interface SetupOptions {
  locks?: number;
  maxWaiters?: number;
  maxWaitMs?: number;
  gate?: ManualGate | DependencyChecker;
  /** The store, on the test's clock. @default {a memory store} */
  store?:
    | ((locks: number, clock: ManualClock) => LockStore & { readonly held: number })
    | undefined;
}

/** A handler on a manual clock, with shortcuts; `using` closes the service and store. */
function setup(options: SetupOptions = {}) {
  const clock = new ManualClock();
  const store = options.store?.(options.locks ?? 1, clock) ??
    new MemoryLockStore(options.locks ?? 1, { clock });
  const service = new LockService({
    store,
    clock,
    maxDurationMs: MAX_DURATION_MS,
    ...(options.maxWaiters === undefined ? {} : { maxWaiters: options.maxWaiters }),
    ...(options.gate === undefined ? {} : { gates: new Gates([options.gate]) }),
  });
  const checker = options.gate instanceof DependencyChecker ? options.gate : undefined;
  const handler = createHandler({
    service,
    defaultDurationMs: DEFAULT_MS,
    maxWaitMs: options.maxWaitMs ?? MAX_WAIT_MS,
    ...(checker ? { dependencies: () => checker.dependencies } : {}),
  });
  const request = (method: string, path: string, init: RequestInit = {}, info?: RequestInfo) =>
    Promise.resolve(handler(new Request(`http://localhost${path}`, { method, ...init }), info));
  const get = (path: string, init?: RequestInit) => request("GET", path, init);
  /** Takes a lock and returns its token. */
  const take = async (path = "/") => {
    const res = await get(path);
    assert.equal(res.status, 200, await res.clone().text());
    await res.body?.cancel();
    const token = res.headers.get("Lock-Token");
    assert.ok(token);
    return token;
  };
  const release = async (token: string) => {
    const res = await request("DELETE", `/locks/${token}`);
    assert.equal(res.status, 204);
  };
  const status = async () => {
    const res = await get("/status");
    assert.equal(res.status, 200);
    return await res.json() as Status;
  };
  return {
    clock,
    store,
    service,
    handler,
    request,
    get,
    take,
    release,
    status,
    [Symbol.dispose]() {
      service.close();
      store.close();
    },
  };
}

/** A checker of `urls` on `clock`: a round every 10 s while one is down, every minute when up. */
function dependencyChecker(urls: readonly string[], clock: ManualClock): DependencyChecker {
  return new DependencyChecker({
    targets: urls.map(parseCheckTarget),
    passIntervalMs: 60_000,
    failIntervalMs: 10_000,
    timeoutMs: 2_000,
    clock,
  });
}

/** Whether `promise` has settled once pending callbacks and one timer turn have run. */
async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(() => settled = true, () => settled = true);
  await new Promise((resolve) => setTimeout(resolve, 0));
  return settled;
}

async function assertPending(promise: Promise<unknown>, what: string): Promise<void> {
  assert.equal(await isSettled(promise), false, `${what} is still waiting`);
}

/** Asserts a JSON refusal with `status` and `reason`, and returns its body. */
async function assertRefused(
  res: Response,
  status: number,
  reason: string,
): Promise<Record<string, unknown>> {
  assert.equal(res.status, status);
  const retryAfter = Number(res.headers.get("Retry-After"));
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After ${retryAfter}`);
  const body = await res.json();
  assert.equal(body.reason, reason, JSON.stringify(body));
  assert.equal(body.retryAfter, retryAfter);
  return body;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

// --- Lock-Token -------------------------------------------------------------

Deno.test("GET / puts a Lock-Token of 22 base64url characters (128 bits) on every 200", async (t) => {
  const assertToken = (res: Response): string => {
    assert.equal(res.status, 200);
    const token = res.headers.get("Lock-Token") ?? "";
    assert.match(token, TOKEN);
    assert.equal(Uint8Array.fromBase64(token, { alphabet: "base64url" }).length, 16);
    return token;
  };

  await t.step("a plain-text grant", async () => {
    using api = setup();
    const res = await api.get("/");
    assertToken(res);
    assert.equal(await res.text(), "Lock acquired\n");
  });

  await t.step("a JSON grant repeats the token with id and expiresAt", async () => {
    using api = setup();
    const res = await api.get("/?id=web-1&duration=5s", { headers: JSON_ACCEPT });
    const token = assertToken(res);
    assert.deepEqual(await res.json(), {
      status: "acquired",
      message: "Lock acquired",
      token,
      id: "web-1",
      expiresAt: iso(api.clock.wallNow() + 5_000),
    });
  });

  await t.step("an anonymous JSON grant has id null", async () => {
    using api = setup();
    const res = await api.request("POST", "/", { headers: JSON_ACCEPT });
    const token = assertToken(res);
    const body = await res.json();
    assert.equal(body.token, token);
    assert.equal(body.id, null);
    assert.equal(body.expiresAt, iso(api.clock.wallNow() + DEFAULT_MS));
  });

  await t.step("a grant after waiting in the queue", async () => {
    using api = setup();
    const holder = await api.take();
    const waiting = api.get("/?wait=30s");
    await assertPending(waiting, "the waiter");
    await api.release(holder);
    const res = await waiting;
    assert.notEqual(assertToken(res), holder);
    await res.body?.cancel();
  });

  await t.step("the same id asking again", async () => {
    using api = setup();
    const first = await api.take("/?id=web-1");
    const again = await api.get("/?id=web-1");
    assert.equal(assertToken(again), first);
    await again.body?.cancel();
  });

  await t.step("tokens differ from grant to grant", async () => {
    using api = setup({ locks: 200 });
    const tokens = new Set<string>();
    for (let i = 0; i < 200; i++) tokens.add(await api.take());
    assert.equal(tokens.size, 200);
  });
});

// --- DELETE /locks/{token} --------------------------------------------------

Deno.test("DELETE /locks/{token} answers 204 and frees the slot at once", async () => {
  using api = setup();
  const token = await api.take("/?duration=60s");
  const res = await api.request("DELETE", `/locks/${token}`);
  assert.equal(res.status, 204);
  assert.equal(res.body, null);
  assert.equal(api.store.held, 0);
  // No time has passed: only the release explains the free slot.
  const next = await api.get("/");
  assert.equal(next.status, 200);
  await next.body?.cancel();
  assert.deepEqual((await api.status()).slots, { total: 1, held: 1, free: 0 });
});

Deno.test("DELETE /locks/{token} answers 404 for an unknown, released or expired token", async (t) => {
  await t.step("unknown: the held lock stays held", async () => {
    using api = setup();
    await api.take();
    const res = await api.request("DELETE", `/locks/${"A".repeat(22)}`);
    assert.equal(res.status, 404);
    assert.equal(await res.text(), "No such lock: it was released or has expired\n");
    assert.equal(api.store.held, 1);
  });
  await t.step("already released", async () => {
    using api = setup();
    const token = await api.take();
    await api.release(token);
    const res = await api.request("DELETE", `/locks/${token}`);
    assert.equal(res.status, 404);
    await res.body?.cancel();
  });
  await t.step("expired, even when another client holds the slot since", async () => {
    using api = setup();
    const token = await api.take("/?duration=5s");
    api.clock.advance(5_000);
    await api.take();
    const res = await api.request("DELETE", `/locks/${token}`);
    assert.equal(res.status, 404);
    await res.body?.cancel();
    assert.equal(api.store.held, 1, "the new holder keeps its lock");
  });
});

// --- PUT /locks/{token} -----------------------------------------------------

Deno.test("PUT /locks/{token}?duration= answers 200 with the new expiry and keeps the lock that long", async () => {
  using api = setup();
  const token = await api.take("/?duration=5s");
  api.clock.advance(4_000);
  const res = await api.request("PUT", `/locks/${token}?duration=30s`, { headers: JSON_ACCEPT });
  assert.equal(res.status, 200);
  const expiresAt = iso(api.clock.wallNow() + 30_000);
  assert.deepEqual(await res.json(), { status: "renewed", message: "Lock renewed", expiresAt });
  assert.equal((await api.status()).holders[0]?.expiresAt, expiresAt);

  api.clock.advance(29_999); // Well past the first expiry.
  const refused = await api.get("/");
  assert.equal(refused.status, 423);
  await refused.body?.cancel();
  api.clock.advance(1);
  assert.equal(api.store.held, 0);
});

Deno.test("PUT /locks/{token} says the new expiry in plain text, and renews for the default duration without ?duration=", async () => {
  using api = setup();
  const token = await api.take("/?duration=1s");
  const res = await api.request("PUT", `/locks/${token}`);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), `Lock renewed until ${iso(api.clock.wallNow() + DEFAULT_MS)}\n`);
  api.clock.advance(DEFAULT_MS - 1);
  assert.equal(api.store.held, 1);
  api.clock.advance(1);
  assert.equal(api.store.held, 0);
});

Deno.test("PUT /locks/{token} caps a long ?duration= at maxDuration rather than refusing it, and says so", async () => {
  using api = setup();
  const token = await api.take();
  const res = await api.request("PUT", `/locks/${token}?duration=2h`, { headers: JSON_ACCEPT });
  assert.equal(res.status, 200);
  const capped = iso(api.clock.wallNow() + MAX_DURATION_MS);
  assert.equal(res.headers.get("Lock-Duration"), String(MAX_DURATION_MS / 1000));
  assert.equal(res.headers.get("Lock-Duration-Requested"), "7200");
  const body = await res.json();
  assert.equal(body.expiresAt, capped);
  assert.equal(body.requestedDuration, 7200);
  assert.match(body.warning, /^asked for 2h, cut to 1m/);
  assert.equal((await api.status()).holders[0]?.expiresAt, capped);
  api.clock.advance(MAX_DURATION_MS);
  assert.equal(api.store.held, 0);
});

Deno.test("PUT /locks/{token} answers 404 once the lock is gone", async (t) => {
  for (const how of ["released", "expired", "unknown"] as const) {
    await t.step(how, async () => {
      using api = setup();
      let token = await api.take("/?duration=5s");
      if (how === "released") await api.release(token);
      if (how === "expired") api.clock.advance(5_000);
      if (how === "unknown") token = "B".repeat(22);
      const res = await api.request("PUT", `/locks/${token}?duration=30s`);
      assert.equal(res.status, 404);
      assert.equal(await res.text(), "No such lock: it was released or has expired\n");
      assert.equal(api.store.held, how === "unknown" ? 1 : 0, "a 404 takes no slot");
    });
  }
});

Deno.test("PUT /locks/{token} refuses a malformed ?duration= with 400 and keeps the expiry", async (t) => {
  for (const bad of ["abc", "0", "-1", "1e3", "5x"]) {
    await t.step(`duration=${JSON.stringify(bad)}`, async () => {
      using api = setup();
      const token = await api.take("/?duration=5s");
      const before = (await api.status()).holders[0]?.expiresAt;
      const res = await api.request(
        "PUT",
        `/locks/${token}?duration=${encodeURIComponent(bad)}`,
        { headers: JSON_ACCEPT },
      );
      assert.equal(res.status, 400);
      const body = await res.json();
      assert.equal(body.status, "error");
      assert.match(body.message, /^Invalid duration "/);
      assert.equal((await api.status()).holders[0]?.expiresAt, before);
    });
  }
});

// --- Routing of /locks/ -----------------------------------------------------

Deno.test("/locks/{token} answers 405 with Allow: DELETE, PUT to other methods", async () => {
  using api = setup();
  const token = await api.take();
  for (const method of ["GET", "POST", "PATCH", "HEAD", "OPTIONS"]) {
    const res = await api.request(method, `/locks/${token}`);
    assert.equal(res.status, 405, method);
    assert.equal(res.headers.get("Allow"), "DELETE, PUT");
    await res.body?.cancel();
  }
  assert.equal(api.store.held, 1, "the lock is untouched");
});

Deno.test("a /locks/ path of more or fewer than one part answers 404 and touches no lock", async (t) => {
  using api = setup();
  const token = await api.take();
  const paths = [
    "/locks",
    "/locks/a/b",
    `/locks/${token}/`,
    `/locks/${token}/x`,
    `/locks//${token}`,
  ];
  for (const path of paths) {
    await t.step(path, async () => {
      for (const method of ["DELETE", "PUT", "GET"]) {
        const res = await api.request(method, path);
        assert.equal(res.status, 404, `${method} ${path}`);
        await res.body?.cancel();
      }
    });
  }
  assert.equal(api.store.held, 1);
});

Deno.test("DELETE and PUT /locks/{token} refuse a malformed token with 400 and the reason, touching no lock", async (t) => {
  using api = setup();
  const token = await api.take();
  const bad = [
    "",
    "bogus",
    token.slice(1),
    `${token}A`,
    "a.bcdefghijklmnopqrstu",
    "%20",
    "a".repeat(65),
  ];
  for (const text of bad) {
    await t.step(`/locks/${text}`, async () => {
      for (const method of ["DELETE", "PUT"]) {
        const res = await api.request(method, `/locks/${text}`, { headers: JSON_ACCEPT });
        assert.equal(res.status, 400, `${method} /locks/${text}`);
        const body = await res.json();
        assert.match(
          body.message,
          /^Invalid token "[^"]*": expected the 22 characters /,
          body.message,
        );
      }
    });
  }
  await t.step("in plain text, too", async () => {
    const res = await api.request("DELETE", "/locks/bogus");
    assert.equal(res.status, 400);
    assert.match(await res.text(), /^Invalid token "bogus": expected the 22 characters .*\n$/);
  });
  assert.equal(api.store.held, 1);
});

// --- ?id= -------------------------------------------------------------------

Deno.test("?id= gives the same id its own token back and no second slot", async () => {
  using api = setup({ locks: 3 });
  const first = await api.take("/?id=web-1");
  assert.equal(await api.take("/?id=web-1"), first);
  assert.equal(await api.take("/?id=web-1&duration=30s"), first);
  assert.equal(api.store.held, 1);
  const other = await api.take("/?id=web-2");
  assert.notEqual(other, first);
  assert.equal(api.store.held, 2);
  await api.release(first);
  assert.notEqual(await api.take("/?id=web-1"), first, "a released id gets a new token");
});

/** The stores that keep the slots in this process, each on a manual clock. */
const LOCAL_STORES: [string, (dir: string) => SetupOptions["store"]][] = [
  ["memory store", () => undefined],
  [
    "state file",
    (dir) => (locks, clock) => new FileLockStore(locks, `${dir}/locks.json`, { clock }),
  ],
];

Deno.test("?id= asking again starts the holder's lock afresh: the same token, for the duration asked", async (t) => {
  const grantToken = (res: Response): string => {
    assert.equal(res.status, 200);
    return res.headers.get("Lock-Token") ?? "";
  };
  for (const [name, store] of LOCAL_STORES) {
    await t.step(name, async (t) => {
      const dir = await Deno.makeTempDir();
      using api = setup({ locks: 1, store: store(dir) });
      const first = await api.get("/?id=x&duration=3");
      const token = grantToken(first);
      assert.equal(first.headers.get("Lock-Duration"), "3");
      await first.body?.cancel();
      // Asked again 200 ms before it runs out: a grant like any other, not the 200 ms left.
      api.clock.advance(2_800);
      const again = await api.get("/?id=x&duration=60", { headers: JSON_ACCEPT });
      assert.equal(grantToken(again), token);
      assert.equal(again.headers.get("Lock-Duration"), "60");
      const body = await again.json();
      assert.equal(body.expiresAt, iso(api.clock.wallNow() + 60_000));
      api.clock.advance(1_000); // Past the first lease's end: still held.
      await assertRefused(await api.get("/?id=y", { headers: JSON_ACCEPT }), 423, "busy");
      await t.step("cut to maxDuration, and says so", async () => {
        const cut = await api.get("/?id=x&duration=2m");
        assert.equal(grantToken(cut), token);
        assert.equal(cut.headers.get("Lock-Duration"), String(MAX_DURATION_MS / 1000));
        assert.equal(cut.headers.get("Lock-Duration-Requested"), "120");
        await cut.body?.cancel();
        api.clock.advance(MAX_DURATION_MS - 1);
        await assertRefused(await api.get("/?id=y", { headers: JSON_ACCEPT }), 423, "busy");
        api.clock.advance(1);
        const next = await api.get("/?id=y");
        assert.notEqual(grantToken(next), token, "freed at the renewed expiry");
        await next.body?.cancel();
      });
      assert.equal(api.store.held, 1);
      await api.store.close();
      await Deno.remove(dir, { recursive: true });
    });
  }
});

Deno.test("?id= refuses an invalid id with 400 naming id and takes no slot", async (t) => {
  const cases: [string, string][] = [
    ["leading space", " web-1"],
    ["inner space", "web 1"],
    ["129 characters", "a".repeat(129)],
    ["non-ASCII", "wéb-1"],
    ["emoji", "web-🚀"],
    ["control character", "web\u0001"],
    ["tab", "web\t1"],
    ["newline", "web\n1"],
    ["DEL", "web\u007f"],
  ];
  for (const [what, id] of cases) {
    await t.step(what, async () => {
      using api = setup();
      const text = await api.get(`/?id=${encodeURIComponent(id)}`);
      assert.equal(text.status, 400);
      assert.match(await text.text(), /^Invalid id "/);
      const json = await api.get(`/?id=${encodeURIComponent(id)}`, { headers: JSON_ACCEPT });
      assert.equal(json.status, 400);
      const body = await json.json();
      assert.equal(body.status, "error");
      assert.match(body.message, /^Invalid id ".*": expected 1 to 128 printable ASCII/s);
      assert.equal(api.store.held, 0);
    });
  }
  await t.step("nor a place in the queue", async () => {
    using api = setup();
    await api.take();
    const res = await api.get("/?wait=30s&id=a%20b");
    assert.equal(res.status, 400);
    await res.body?.cancel();
    assert.equal((await api.status()).waiters.count, 0);
  });
  await t.step("128 printable characters are fine", async () => {
    using api = setup();
    const id = "p".repeat(120) + "-._:/@~!";
    const res = await api.get(`/?id=${encodeURIComponent(id)}`, { headers: JSON_ACCEPT });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).id, id);
  });
});

// --- ?wait= -----------------------------------------------------------------

Deno.test("?wait= answers 200 the moment the holder releases its lock", async () => {
  using api = setup();
  const holder = await api.take("/?duration=60s");
  const waiting = api.get("/?wait=30s&id=waiter", { headers: JSON_ACCEPT });
  await assertPending(waiting, "the waiter");
  assert.deepEqual((await api.status()).waiters, { count: 1, ids: ["waiter"] });
  await api.release(holder);
  const res = await waiting;
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.id, "waiter");
  assert.equal(body.token, res.headers.get("Lock-Token"));
  const status = await api.status();
  assert.deepEqual(status.waiters, { count: 0, ids: [] });
  assert.deepEqual(status.holders.map((h) => h.id), ["waiter"]);
});

Deno.test("?wait= answers 423 with the reason when the wait runs out", async () => {
  using api = setup();
  await api.take("/?duration=60s");
  const waiting = api.get("/?wait=5s", { headers: JSON_ACCEPT });
  api.clock.advance(4_999);
  await assertPending(waiting, "the waiter");
  api.clock.advance(1);
  const res = await waiting;
  assert.equal(res.headers.get("Retry-After"), "55");
  assert.deepEqual(await res.json(), {
    status: "locked",
    reason: "busy",
    message: "Locked: the only slot is held; the next frees in 55s",
    retryAfter: 55,
  });
  assert.equal((await api.status()).waiters.count, 0);
  assert.equal(api.store.held, 1);
});

Deno.test("?wait= is cut to maxWaitMs rather than refused", async () => {
  using api = setup({ maxWaitMs: 10_000 });
  await api.take("/?duration=60s");
  const waiting = api.get("/?wait=1h", { headers: JSON_ACCEPT });
  api.clock.advance(9_999);
  await assertPending(waiting, "the waiter");
  api.clock.advance(1);
  await assertRefused(await waiting, 423, "busy");
});

Deno.test("?wait=0 means no wait", async () => {
  using api = setup();
  const free = await api.get("/?wait=0");
  assert.equal(free.status, 200);
  await free.body?.cancel();
  const res = await api.get("/?wait=0", { headers: JSON_ACCEPT });
  await assertRefused(res, 423, "busy");
  assert.equal((await api.status()).waiters.count, 0);
});

Deno.test("?wait= refuses a malformed wait with 400 and takes no slot", async (t) => {
  for (const bad of ["abc", "-1", "1e3", "5x", "1.5.2"]) {
    await t.step(`wait=${JSON.stringify(bad)}`, async () => {
      using api = setup();
      const res = await api.get(`/?wait=${encodeURIComponent(bad)}`, { headers: JSON_ACCEPT });
      assert.equal(res.status, 400);
      const { message } = await res.json();
      assert.match(message, /^Invalid wait "/);
      // Never "expected a positive number" alone: ?wait=0 is valid, and the message says so.
      assert.match(message, /0 for one try/);
      assert.equal(api.store.held, 0);
      assert.equal((await api.status()).waiters.count, 0);
    });
  }
});

Deno.test("--maxWaiters bounds the queue: beyond it 503 with Retry-After and reason queue_full", async () => {
  using api = setup({ maxWaiters: 2 });
  const holder = await api.take();
  const first = api.get("/?wait=30s&id=a");
  const second = api.get("/?wait=30s&id=b");
  const res = await api.get("/?wait=30s&id=c", { headers: JSON_ACCEPT });
  const body = await assertRefused(res, 503, "queue_full");
  assert.equal(body.status, "unavailable");
  assert.equal(
    body.message,
    "Unavailable: 2 clients are already waiting, the most this server allows",
  );
  assert.deepEqual((await api.status()).waiters, { count: 2, ids: ["a", "b"] });

  const text = await api.get("/?wait=30s");
  assert.equal(text.status, 503);
  assert.match(await text.text(), /^Unavailable: /);

  const noWait = await api.get("/", { headers: JSON_ACCEPT });
  await assertRefused(noWait, 423, "queued");

  await api.release(holder);
  const granted = await first;
  assert.equal(granted.status, 200);
  await granted.body?.cancel();
  const next = api.get("/?wait=30s&id=c");
  await assertPending(next, "a waiter that fits again");
  assert.deepEqual((await api.status()).waiters.ids, ["b", "c"]);
  api.service.close();
  await (await second).body?.cancel();
  await (await next).body?.cancel();
});

Deno.test("a granted answer that never reaches its client gives the slot back", async (t) => {
  const lost = () => {
    const completed = Promise.reject(new Error("connection reset"));
    completed.catch(() => {});
    return { completed };
  };

  await t.step("a grant at once", async () => {
    using api = setup();
    const res = await api.request("GET", "/", {}, lost());
    assert.equal(res.status, 200);
    await isSettled(Promise.resolve());
    assert.equal(api.store.held, 0);
  });

  await t.step("a grant after waiting", async () => {
    using api = setup();
    const holder = await api.take();
    let fail = (_: Error) => {};
    const completed = new Promise<void>((_, reject) => fail = reject);
    completed.catch(() => {});
    const waiting = api.request("GET", "/?wait=30s", {}, { completed });
    await api.release(holder);
    assert.equal((await waiting).status, 200);
    assert.equal(api.store.held, 1);
    fail(new Error("connection reset"));
    await isSettled(completed);
    assert.equal(api.store.held, 0);
  });

  await t.step("but not a lock the same id already held", async () => {
    using api = setup();
    await api.take("/?id=web-1");
    const res = await api.request("GET", "/?id=web-1", {}, lost());
    assert.equal(res.status, 200);
    await isSettled(Promise.resolve());
    assert.equal(api.store.held, 1);
  });

  await t.step("a delivered answer keeps its slot", async () => {
    using api = setup();
    const res = await api.request("GET", "/", {}, { completed: Promise.resolve() });
    assert.equal(res.status, 200);
    await isSettled(Promise.resolve());
    assert.equal(api.store.held, 1);
  });
});

Deno.test("a shutting-down service answers waiting and new clients 503 shutting_down", async () => {
  using api = setup();
  await api.take();
  const waiting = api.get("/?wait=30s", { headers: JSON_ACCEPT });
  await assertPending(waiting, "the waiter");
  api.service.close();
  await assertRefused(await waiting, 503, "shutting_down");
  await assertRefused(await api.get("/", { headers: JSON_ACCEPT }), 503, "shutting_down");
});

// --- GET /status ------------------------------------------------------------

Deno.test("GET /status shows slots, holders without their tokens, and waiters in order", async () => {
  using api = setup({ locks: 2 });
  const acquiredAt = iso(api.clock.wallNow());
  const tokens = [await api.take("/?id=h1&duration=20s"), await api.take("/")];
  const waiting = [
    api.get("/?wait=30s&id=w1"),
    api.get("/?wait=30s"),
    api.get("/?wait=30s&id=w2"),
  ];
  const res = await api.get("/status");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("Content-Type") ?? "", /^application\/json/);
  const text = await res.text();
  for (const token of tokens) assert.ok(!text.includes(token), "no token in /status");
  assert.deepEqual(JSON.parse(text), {
    slots: { total: 2, held: 2, free: 0 },
    holders: [
      { id: null, acquiredAt, expiresAt: iso(api.clock.wallNow() + DEFAULT_MS) },
      { id: "h1", acquiredAt, expiresAt: iso(api.clock.wallNow() + 20_000) },
    ],
    waiters: { count: 3, ids: ["w1", null, "w2"] },
    returning: { count: 0, ids: [] },
    dependencies: [],
    gates: [],
    store: { up: true, error: null },
    locking: { allowed: false, reason: "queued", message: "3 clients are waiting ahead" },
  });

  await api.release(tokens[0]!);
  const granted = await waiting[0]!;
  const grantedToken = granted.headers.get("Lock-Token") ?? "";
  await granted.body?.cancel();
  const after = await (await api.get("/status")).text();
  assert.ok(!after.includes(grantedToken), "no token in /status");
  const status = JSON.parse(after) as Status;
  assert.deepEqual(status.waiters, { count: 2, ids: [null, "w2"] });
  assert.deepEqual(status.holders.map((h) => h.id), [null, "w1"]);
  api.service.close();
  for (const w of waiting.slice(1)) await (await w!).body?.cancel();
});

Deno.test("GET /status says whether locking is allowed and why not", async () => {
  using api = setup();
  assert.deepEqual((await api.status()).locking, { allowed: true });
  assert.deepEqual((await api.status()).slots, { total: 1, held: 0, free: 1 });
  await api.take();
  assert.deepEqual((await api.status()).locking, {
    allowed: false,
    reason: "busy",
    message: "the only slot is held; the next frees in 10s",
  });
  assert.equal(api.store.held, 1, "GET /status takes no slot");
});

Deno.test("GET /status reports each dependency from a real checker", async (t) => {
  let answer = 503;
  await using endpoint = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(null, { status: answer }),
  );
  const url = `http://127.0.0.1:${endpoint.addr.port}/ready`;
  const clock = new ManualClock();
  const checker = dependencyChecker([url], clock);
  using api = setup({ gate: checker });

  try {
    await t.step("before the first round", async () => {
      const status = await api.status();
      assert.deepEqual(status.dependencies, [
        { url, up: null, lastCheckedAt: null, lastError: null, latencyMs: null },
      ]);
      assert.equal(status.locking.allowed, false);
      assert.equal(!status.locking.allowed && status.locking.reason, "starting");
    });

    await t.step("down", async () => {
      checker.start();
      await checker.settled();
      const status = await api.status();
      assert.equal(status.dependencies.length, 1);
      const [dependency] = status.dependencies;
      assert.equal(dependency?.url, url);
      assert.equal(dependency.up, false);
      assert.equal(dependency.lastError, "HTTP 503 Service Unavailable");
      assert.equal(dependency.lastCheckedAt, iso(clock.wallNow()));
      assert.equal(typeof dependency.latencyMs, "number");
      assert.deepEqual(status.locking, {
        allowed: false,
        reason: "dependencies",
        message: `dependency ${url} is down (HTTP 503 Service Unavailable)`,
      });
    });

    await t.step("up", async () => {
      answer = 204;
      const waiting = api.get("/?wait=30s&id=patient");
      clock.advance(10_000);
      await checker.settled();
      const granted = await waiting;
      assert.equal(granted.status, 200, "the waiter got the slot when the dependency came up");
      await granted.body?.cancel();
      const status = await api.status();
      const [dependency] = status.dependencies;
      assert.equal(dependency?.up, true);
      assert.equal(dependency.lastError, null);
      assert.equal(dependency.lastCheckedAt, iso(clock.wallNow()));
      assert.deepEqual(status.holders.map((h) => h.id), ["patient"]);
    });
  } finally {
    checker.stop();
  }
});

// --- Routing and reading the request -----------------------------------------

Deno.test("handler grants with GET / and POST /, and answers 423 with the reason and Retry-After", async () => {
  using api = setup({ locks: 2 });
  await api.take("/");
  const post = await api.request("POST", "/");
  assert.equal(post.status, 200);
  assert.equal(await post.text(), "Lock acquired\n");
  api.clock.advance(2_500);
  const res = await api.get("/");
  assert.equal(res.status, 423);
  assert.equal(res.headers.get("Retry-After"), "8");
  assert.equal(await res.text(), "Locked: all 2 slots are held; the next frees in 7.5s\n");
});

Deno.test("handler holds the lock for the default duration, ?duration=, or the default when it is empty", async (t) => {
  for (
    const [query, ms] of [["", DEFAULT_MS], ["?duration=3", 3_000], ["?duration=500ms", 500], [
      "?duration=",
      DEFAULT_MS,
    ]] as const
  ) {
    await t.step(query || "no ?duration=", async () => {
      using api = setup();
      const res = await api.get(`/${query}`);
      assert.equal(res.headers.get("Lock-Duration"), String(ms / 1000));
      await res.body?.cancel();
      api.clock.advance(ms - 1);
      assert.equal(api.store.held, 1);
      api.clock.advance(1);
      assert.equal(api.store.held, 0);
    });
  }
});

Deno.test("handler refuses a malformed ?duration= with 400 and takes no slot", async (t) => {
  const cases: [string, RegExp][] = [
    ["abc", /Invalid duration "abc": expected a positive number of seconds/],
    ["0", /greater than zero/],
    ["-5", /expected a positive number/],
    ["1e3", /expected a positive number/],
  ];
  for (const [value, reason] of cases) {
    await t.step(`duration=${JSON.stringify(value)}`, async () => {
      using api = setup();
      const res = await api.get(`/?duration=${encodeURIComponent(value)}`);
      assert.equal(res.status, 400);
      assert.match(await res.text(), reason);
      assert.equal(api.store.held, 0);
    });
  }
});

Deno.test("handler grants a ?duration= over the longest allowed, cut to it, and says so", async (t) => {
  for (const value of ["61", "99999999999"]) {
    await t.step(`duration=${value}`, async () => {
      using api = setup();
      const res = await api.get(`/?duration=${value}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("Lock-Duration"), "60");
      assert.equal(res.headers.get("Lock-Duration-Requested"), value);
      assert.match(
        await res.text(),
        /^Lock acquired\nWarning: asked for .+, cut to 1m, the longest this server grants\n$/,
      );
      assert.equal((await api.service.status()).leases?.[0]?.remainingMs, MAX_DURATION_MS);
    });
  }
  await t.step("the JSON answer says what was asked and what was granted", async () => {
    using api = setup();
    const res = await api.get("/?duration=720h", { headers: JSON_ACCEPT });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.duration, 60);
    assert.equal(body.requestedDuration, 720 * 3600);
    assert.equal(body.expiresAt, iso(api.clock.wallNow() + MAX_DURATION_MS));
    assert.match(body.warning, /^asked for 720h, cut to 1m/);
  });
  await t.step("a duration within the cap has no warning", async () => {
    using api = setup();
    const res = await api.get("/?duration=60", { headers: JSON_ACCEPT });
    assert.equal(res.headers.get("Lock-Duration"), "60");
    assert.equal(res.headers.get("Lock-Duration-Requested"), null);
    assert.equal((await res.json()).warning, undefined);
  });
});

Deno.test("handler treats an empty parameter as not given", async () => {
  using api = setup();
  const res = await api.get("/?duration=&id=&wait=", { headers: JSON_ACCEPT });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("Lock-Duration"), String(DEFAULT_MS / 1000));
  const body = await res.json();
  assert.equal(body.id, null);
  api.clock.advance(1_000);
  const renewed = await api.request("PUT", `/locks/${body.token}?duration=`);
  assert.equal(renewed.status, 200);
  assert.equal(renewed.headers.get("Lock-Duration"), String(DEFAULT_MS / 1000));
  await renewed.body?.cancel();
  assert.equal((await api.service.status()).leases?.[0]?.remainingMs, DEFAULT_MS);
});

Deno.test("handler answers /healthz with 200 and takes no slot", async () => {
  using api = setup();
  for (const method of ["GET", "HEAD"]) {
    const res = await api.request(method, "/healthz");
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
  assert.equal(api.store.held, 0);
});

Deno.test("handler answers 404 for an unknown path and 405 with Allow for a wrong method", async () => {
  using api = setup();
  const missing = await api.get("/nope");
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
  for (const method of ["DELETE", "PUT", "HEAD"]) {
    const res = await api.request(method, "/");
    assert.equal(res.status, 405);
    assert.equal(res.headers.get("Allow"), "GET, POST");
    await res.body?.cancel();
  }
  const wrong = await api.request("POST", "/healthz");
  assert.equal(wrong.status, 405);
  assert.equal(wrong.headers.get("Allow"), "GET, HEAD");
  await wrong.body?.cancel();
  assert.equal(api.store.held, 0);
});

Deno.test("handler routes on the request target and answers a malformed Host header 400", async (t) => {
  using api = setup();
  const withHost = (path: string, host: string) =>
    Promise.resolve(api.handler(new Request(`http://localhost${path}`, { headers: { host } })));
  await t.step("a Host with a path or query in it", async () => {
    for (
      const host of [
        "x/?duration=5&id=hostinj",
        "x/nope?",
        "x/locks/abc?",
        "a@b",
        "x y",
        "x#y",
        "x\\y",
      ]
    ) {
      const res = await withHost("/healthz", host);
      assert.equal(res.status, 400, host);
      assert.match(await res.text(), /^Invalid Host header/);
    }
    assert.equal(api.store.held, 0);
  });
  await t.step("host names, addresses and ports", async () => {
    for (const host of ["startup-lock", "startup-lock:8888", "10.1.2.3", "[fd00::1]:80"]) {
      const res = await withHost("/healthz", host);
      assert.equal(res.status, 200, host);
      await res.body?.cancel();
    }
  });
});

Deno.test("handler says why it refuses while dependencies gate locking", async (t) => {
  let status = 503;
  await using endpoint = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(null, { status }),
  );
  const url = `http://127.0.0.1:${endpoint.addr.port}/ready`;
  const checkerClock = new ManualClock();
  const checker = dependencyChecker([url], checkerClock);
  using api = setup({ gate: checker });

  await t.step("before the first round: starting", async () => {
    const res = await api.get("/", { headers: JSON_ACCEPT });
    const body = await assertRefused(res, 423, "starting");
    assert.match(
      String(body.message),
      /^Locked: the first dependency check round has not finished/,
    );
  });

  await t.step("a dependency is down: names it and its error", async () => {
    checker.start();
    await checker.settled();
    const res = await api.get("/");
    assert.equal(res.status, 423);
    assert.equal(
      await res.text(),
      `Locked: dependency ${url} is down (HTTP 503 Service Unavailable)\n`,
    );
    assert.equal(res.headers.get("Retry-After"), "12", "next round in 10s, plus the check timeout");
    assert.equal(api.store.held, 0);
  });

  await t.step("the dependency is back: grants", async () => {
    status = 200;
    checkerClock.advance(10_000);
    await checker.settled();
    const res = await api.get("/");
    assert.equal(res.status, 200);
    await res.body?.cancel();
  });
  checker.stop();
});

Deno.test("handler names every dependency that is down in one sentence", async () => {
  const targets = ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"];
  const checker = dependencyChecker(targets, new ManualClock());
  using api = setup({ gate: checker });
  try {
    checker.start();
    await checker.settled();
    const res = await api.get("/");
    assert.equal(res.status, 423);
    assert.match(
      await res.text(),
      /^Locked: 2 dependencies are down: tcp:\/\/127\.0\.0\.1:1 \(.+\), tcp:\/\/127\.0\.0\.1:2 \(.+\)\n$/,
    );
  } finally {
    checker.stop();
  }
});

Deno.test("handler repeats a bad value with its control characters escaped, on one line", async () => {
  using api = setup();
  const res = await api.get(`/?duration=${encodeURIComponent("5\n\u0000")}`);
  assert.equal(res.status, 400);
  const body = await res.text();
  assert.match(body, /^Invalid duration "5\\u000a\\u0000": /);
  assert.equal(body.split("\n").length, 2, "one line and its newline");
  const id = await api.get(`/?id=${encodeURIComponent("a\rb")}`);
  assert.match(await id.text(), /^Invalid id "a\\u000db"/);
});
