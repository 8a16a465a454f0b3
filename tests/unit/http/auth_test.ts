/**
 * Access control at the HTTP edge (`lib/http/auth.ts`) and in the handler:
 * the bearer token on every protected route, `/healthz` left open, the token
 * file read again when it changes, and wrong tokens of any length refused.
 */
import assert from "node:assert/strict";
import { LockService } from "../../../lib/core/service.ts";
import {
  FileToken,
  staticToken,
  TOKEN_FILE_CHECK_MS,
  type TokenSource,
} from "../../../lib/http/auth.ts";
import { createHandler } from "../../../lib/http/handler.ts";
import { MemoryLockStore } from "../../../lib/stores/memory.ts";
import { ManualClock } from "../../_clock.ts";

const SECRET = "s3cret-Token_1";
const LOCK_TOKEN = "A".repeat(22);

/** A handler that needs `source`'s token; `using` closes the service and store. */
function setup(source: TokenSource) {
  const clock = new ManualClock();
  const store = new MemoryLockStore(1, { clock });
  const service = new LockService({ store, clock, maxDurationMs: 60_000 });
  const refusals: string[] = [];
  service.events.on((e) => e.type === "edge_refused" && refusals.push(e.reason), ["edge_refused"]);
  const handler = createHandler({
    service,
    defaultDurationMs: 10_000,
    auth: source,
  });
  const request = (method: string, path: string, headers: Record<string, string> = {}) =>
    Promise.resolve(handler(new Request(`http://localhost${path}`, { method, headers })));
  return {
    clock,
    service,
    request,
    refusals,
    [Symbol.dispose]() {
      service.close();
      store.close();
    },
  };
}

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

const PROTECTED: [method: string, path: string][] = [
  ["GET", "/"],
  ["POST", "/?duration=5"],
  ["DELETE", `/locks/${LOCK_TOKEN}`],
  ["PUT", `/locks/${LOCK_TOKEN}?duration=5`],
  ["GET", "/status"],
];

Deno.test("createHandler() with auth answers 401 without the bearer token on every protected route", async (t) => {
  using s = setup(staticToken(SECRET));
  for (const [method, path] of PROTECTED) {
    await t.step(`${method} ${path}`, async () => {
      const res = await s.request(method, path);
      assert.equal(res.status, 401);
      assert.equal(res.headers.get("WWW-Authenticate"), 'Bearer realm="startup-lock"');
      assert.match(await res.text(), /needs an Authorization: Bearer <token> header/);
    });
  }
  assert.deepEqual(s.refusals, PROTECTED.map(() => "unauthorized"));
});

Deno.test("createHandler() with auth answers 401 to a wrong token, without echoing it", async (t) => {
  using s = setup(staticToken(SECRET));
  const wrong = [`${SECRET}x`, SECRET.slice(0, -1), "x", `${SECRET.slice(0, -1)}X`];
  for (const [method, path] of PROTECTED) {
    for (const token of wrong) {
      await t.step(`${method} ${path} with ${token}`, async () => {
        const res = await s.request(method, path, { ...bearer(token), Accept: "application/json" });
        assert.equal(res.status, 401);
        assert.equal(
          res.headers.get("WWW-Authenticate"),
          'Bearer realm="startup-lock", error="invalid_token"',
        );
        const body = await res.text();
        assert.deepEqual(JSON.parse(body), {
          status: "unauthorized",
          message: "Unauthorized: the bearer token is wrong",
        });
        assert.ok(!body.includes(token) && !body.includes(SECRET));
      });
    }
  }
});

Deno.test("createHandler() with auth refuses other schemes and malformed headers", async (t) => {
  using s = setup(staticToken(SECRET));
  for (const header of [SECRET, `Basic ${SECRET}`, "Bearer", "Bearer ", `Bearer ${SECRET} x`]) {
    await t.step(header, async () => {
      const res = await s.request("GET", "/", { Authorization: header });
      assert.equal(res.status, 401);
      await res.body?.cancel();
    });
  }
});

Deno.test("createHandler() with auth serves every protected route with the right token", async () => {
  using s = setup(staticToken(SECRET));
  const take = await s.request("GET", "/", bearer(SECRET));
  assert.equal(take.status, 200);
  await take.body?.cancel();
  const token = take.headers.get("Lock-Token")!;
  const renew = await s.request("PUT", `/locks/${token}?duration=5`, bearer(SECRET));
  assert.equal(renew.status, 200);
  await renew.body?.cancel();
  const status = await s.request("GET", "/status", bearer(SECRET));
  assert.equal((await status.json()).slots.held, 1);
  // The scheme is case-insensitive (RFC 9110 §11.1).
  const release = await s.request("DELETE", `/locks/${token}`, {
    Authorization: `bearer ${SECRET}`,
  });
  assert.equal(release.status, 204);
  assert.deepEqual(s.refusals, []);
});

Deno.test("createHandler() with auth takes no slot for a refused acquire", async () => {
  using s = setup(staticToken(SECRET));
  for (let i = 0; i < 3; i++) {
    const res = await s.request("GET", "/?id=intruder", bearer("wrong"));
    assert.equal(res.status, 401);
    await res.body?.cancel();
  }
  const status = await s.request("GET", "/status", bearer(SECRET));
  const body = await status.json();
  assert.equal(body.slots.held, 0);
  assert.equal(body.waiters.count, 0);
});

Deno.test("createHandler() with auth leaves /healthz open, and unknown paths answer 404", async () => {
  using s = setup(staticToken(SECRET));
  const health = await s.request("GET", "/healthz");
  assert.equal(health.status, 200);
  await health.body?.cancel();
  const head = await s.request("HEAD", "/healthz");
  assert.equal(head.status, 200);
  const missing = await s.request("GET", "/nope");
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
  assert.deepEqual(s.refusals, []);
});

/** A token file and a handler that reads it, on a manual clock. */
async function fileSetup(initial: string) {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/token`;
  await Deno.writeTextFile(path, `${initial}\n`);
  const clock = new ManualClock();
  const notes: string[] = [];
  const log = {
    info: (m: string) => notes.push(`info: ${m}`),
    warn: (m: string) => notes.push(`warn: ${m}`),
  };
  const source = new FileToken(path, { clock, log });
  const s = setup(source);
  const statusOf = async (token: string) => {
    const res = await s.request("GET", "/status", bearer(token));
    await res.body?.cancel();
    return res.status;
  };
  /** Writes the file through a new file renamed over it, as Kubernetes and editors do. */
  const rotate = async (content: string) => {
    await Deno.writeTextFile(`${path}.new`, content);
    await Deno.rename(`${path}.new`, path);
  };
  return {
    path,
    clock,
    notes,
    statusOf,
    rotate,
    async [Symbol.asyncDispose]() {
      s[Symbol.dispose]();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("FileToken takes a rotated token within a second, and refuses the old one", async () => {
  await using f = await fileSetup("old-token");
  assert.equal(await f.statusOf("old-token"), 200);
  await f.rotate("new-token\n");
  assert.equal(await f.statusOf("old-token"), 200, "not looked at again within a second");
  f.clock.advance(TOKEN_FILE_CHECK_MS);
  assert.equal(await f.statusOf("new-token"), 200);
  assert.equal(await f.statusOf("old-token"), 401);
  assert.deepEqual(f.notes, [`info: Reloaded the auth token from --authTokenFile "${f.path}"`]);
  assert.ok(!f.notes.join("\n").includes("token\n"));
});

Deno.test("FileToken notices a rewrite in place", async () => {
  await using f = await fileSetup("old-token");
  await Deno.writeTextFile(f.path, "newer-token-longer\n");
  f.clock.advance(TOKEN_FILE_CHECK_MS);
  assert.equal(await f.statusOf("newer-token-longer"), 200);
  assert.equal(await f.statusOf("old-token"), 401);
});

Deno.test("FileToken keeps the last good token while the file is missing or invalid, and says so once", async () => {
  await using f = await fileSetup("good-token");
  await Deno.remove(f.path);
  for (let i = 0; i < 3; i++) {
    f.clock.advance(TOKEN_FILE_CHECK_MS);
    assert.equal(await f.statusOf("good-token"), 200);
  }
  await f.rotate("");
  f.clock.advance(TOKEN_FILE_CHECK_MS);
  assert.equal(await f.statusOf("good-token"), 200);
  assert.equal(f.notes.length, 1, f.notes.join("\n"));
  assert.match(
    f.notes[0]!,
    /^warn: Cannot read --authTokenFile ".*": .*; keeping the last good token$/,
  );

  await f.rotate("next-token\n");
  f.clock.advance(TOKEN_FILE_CHECK_MS);
  assert.equal(await f.statusOf("next-token"), 200);
  assert.equal(await f.statusOf("good-token"), 401);
  assert.match(f.notes.at(-1)!, /^info: Reloaded the auth token/);
});

Deno.test("new FileToken() throws when the file is missing, empty or holds whitespace", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.throws(() => new FileToken(`${dir}/missing`), Deno.errors.NotFound);
    await Deno.writeTextFile(`${dir}/empty`, "\n");
    assert.throws(() => new FileToken(`${dir}/empty`), RangeError);
    await Deno.writeTextFile(`${dir}/spaces`, "a b");
    assert.throws(() => new FileToken(`${dir}/spaces`), RangeError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
