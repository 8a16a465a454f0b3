/**
 * Restart safety (`--stateFile`): atomic writes shared by the grants around
 * them, reading back at start, a corrupt file set aside, and the real program
 * killed with SIGKILL while it holds locks.
 */
import assert from "node:assert/strict";
import { StoreUnavailableError } from "../../../lib/core/store.ts";
import { MAX_TIMER_MS } from "../../../lib/duration.ts";
import { RecoveryGate } from "../../../lib/gates/recovery.ts";
import { FileLockStore } from "../../../lib/stores/file.ts";
import {
  checkWritable,
  claimStateFile,
  formatState,
  loadState,
  parseState,
  STATE_FILE_MODE,
  StateWriter,
  type StoredLock,
} from "../../../lib/stores/state_file.ts";
import { ManualClock } from "../../_clock.ts";
import { runProgram, startProgram } from "../../_program.ts";
import { storeContract } from "../../_store_contract.ts";

const LOCK: StoredLock = { token: "tokA", id: "web-1", acquiredAt: 1_000, expiresAt: 61_000 };

storeContract("FileLockStore (a memory store kept in a state file)", async (capacity) => {
  const dir = await Deno.makeTempDir();
  const clock = new ManualClock();
  const store = new FileLockStore(capacity, `${dir}/locks.json`, { clock });
  return {
    store,
    advance: (ms) => Promise.resolve(clock.advance(ms)),
    dispose: async () => {
      await store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
});

Deno.test("formatState() and parseState() round-trip the held locks", () => {
  const locks = [LOCK, { ...LOCK, token: "tokB", id: undefined }];
  assert.deepEqual(parseState(formatState(locks)), locks);
});

Deno.test("parseState() says what is wrong with a file it cannot use", async (t) => {
  const cases: [string, RegExp][] = [
    ["", /it is empty/],
    ['{"version":1,"locks":[{"tok', /not JSON \(cut short\?\)/],
    ['{"version":2,"locks":[]}', /unknown version 2/],
    ['{"version":1}', /no list of locks/],
    [
      '{"version":1,"locks":[{"token":"a","id":null,"acquiredAt":"x","expiresAt":1}]}',
      /lock 1 is malformed/,
    ],
  ];
  for (const [text, reason] of cases) {
    await t.step(JSON.stringify(text), () => assert.throws(() => parseState(text), reason));
  }
});

Deno.test("loadState() starts empty without a file, and drops locks that expired while stopped", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/locks.json`;
  assert.deepEqual(await loadState(path), { kind: "missing" });
  await Deno.writeTextFile(path, formatState([LOCK, { ...LOCK, token: "old", expiresAt: 500 }]));
  assert.deepEqual(await loadState(path, 2_000), { kind: "loaded", locks: [LOCK], expired: 1 });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadState() moves a corrupt file aside and reports when it was last written", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/locks.json`;
  await Deno.writeTextFile(path, '{"version":1,"locks":[{"tok');
  const mtime = (await Deno.stat(path)).mtime!.getTime();
  const loaded = await loadState(path);
  assert.equal(loaded.kind, "corrupt");
  assert.ok(loaded.kind === "corrupt");
  assert.match(loaded.reason, /not JSON/);
  assert.equal(loaded.modifiedAt, mtime);
  assert.match(loaded.movedTo ?? "", /locks\.json\.corrupt-\d{4}-/);
  assert.equal(await Deno.readTextFile(loaded.movedTo!), '{"version":1,"locks":[{"tok');
  await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("checkWritable() refuses a path whose directory takes no file", async () => {
  await assert.rejects(
    checkWritable("/nonexistent-dir/locks.json"),
    /cannot write in its directory/,
  );
});

Deno.test("StateWriter writes grants that arrive together in one or two writes, atomically", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/locks.json`;
  const locks: StoredLock[] = [];
  const writer = new StateWriter(path, () => [...locks]);
  const saves: Promise<void>[] = [];
  for (let i = 0; i < 100; i++) {
    locks.push({ ...LOCK, token: `t${i}`, id: `app-${i}` });
    saves.push(writer.save());
  }
  await Promise.all(saves);
  assert.ok(writer.writes <= 3, `${writer.writes} writes for 100 grants`);
  assert.equal(parseState(await Deno.readTextFile(path)).length, 100);
  const left = [...Deno.readDirSync(dir)].map((e) => e.name);
  assert.deepEqual(left, ["locks.json"], "no temporary file is left");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("StateWriter keeps the file readable by the server's user alone, whatever was there", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/locks.json`;
  // A temporary file left by a crash, readable by everyone.
  Deno.writeTextFileSync(`${path}.tmp-${Deno.pid}`, "", { mode: 0o644 });
  Deno.chmodSync(`${path}.tmp-${Deno.pid}`, 0o644);
  const writer = new StateWriter(path, () => [LOCK]);
  await writer.save();
  assert.equal(Deno.statSync(path).mode! & 0o777, STATE_FILE_MODE);
  assert.equal(STATE_FILE_MODE, 0o600);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("FileLockStore answers a grant only once it is on disk, and undoes it when the write fails", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/locks.json`;
  const store = new FileLockStore(2, path);
  const result = await store.acquire({ durationMs: 60_000, id: "web-1" });
  assert.ok(result.granted);
  assert.deepEqual(parseState(await Deno.readTextFile(path)).map((l) => l.token), [
    result.lease.token,
  ]);
  await Deno.remove(dir, { recursive: true }); // The next write fails.
  await assert.rejects(
    Promise.resolve(store.acquire({ durationMs: 60_000, id: "web-2" })),
    StoreUnavailableError,
  );
  assert.equal(store.held, 1, "a grant that is not on disk is undone");
  await store.close();
});

Deno.test("FileLockStore answers an id asking again only once its renewed expiry is on disk", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/locks.json`;
  const clock = new ManualClock();
  const store = new FileLockStore(1, path, { clock });
  const first = await store.acquire({ durationMs: 3_000, id: "web-1" });
  assert.ok(first.granted);
  clock.advance(2_800);
  const again = await store.acquire({ durationMs: 60_000, id: "web-1" });
  assert.ok(again.granted && again.existing);
  assert.equal(again.lease.expiresAt, clock.wallNow() + 60_000);
  // A restart now must keep the holder for the whole renewed lease, not the 200 ms left.
  assert.deepEqual(parseState(await Deno.readTextFile(path)), [{
    token: first.lease.token,
    id: "web-1",
    acquiredAt: first.lease.acquiredAt,
    expiresAt: again.lease.expiresAt,
  }]);
  await Deno.remove(dir, { recursive: true }); // The next write fails.
  await assert.rejects(
    Promise.resolve(store.acquire({ durationMs: 60_000, id: "web-1" })),
    StoreUnavailableError,
  );
  assert.equal(store.held, 1, "a renewal that is not on disk takes nothing away");
  await store.close();
});

Deno.test("FileLockStore writes the state file when a lock expires, so a restart counts only what expired while stopped", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/locks.json`;
    const clock = new ManualClock();
    const store = new FileLockStore(2, path, { clock });
    const short = await store.acquire({ durationMs: 1_000, id: "short" });
    const long = await store.acquire({ durationMs: 60_000, id: "long" });
    assert.ok(short.granted && long.granted);
    clock.advance(1_000); // "short" expires while the server runs.
    await store.close(); // The server stops; "long" expires while it is stopped.
    const loaded = await loadState(path, clock.wallNow() + 120_000);
    assert.deepEqual(loaded, { kind: "loaded", locks: [], expired: 1 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkWritable() names the state file, never its probe file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/missing/locks.json`;
    await assert.rejects(checkWritable(path), (error: Error) => {
      assert.doesNotMatch(error.message, /probe/);
      assert.equal(
        error.message,
        "cannot write in its directory: No such file or directory (os error 2)",
      );
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileLockStore holds the locks read back, also beyond a lowered capacity", () => {
  const clock = new ManualClock();
  const now = clock.wallNow();
  const restore = [1, 2, 3].map((i) => ({
    token: `t${i}`,
    id: `app-${i}`,
    acquiredAt: now - 1_000,
    expiresAt: now + i * 10_000,
  }));
  const store = new FileLockStore(1, "/nonexistent-dir/locks.json", { clock, restore });
  assert.equal(store.held, 3);
  assert.equal(store.byToken("t2")?.remainingMs, 20_000);
  const refused = store.acquire({ durationMs: 1_000 });
  assert.ok(!("then" in refused) && !refused.granted, "no grant while more than N hold");
  clock.advance(20_000);
  assert.equal(store.held, 1, "the holders expire by their durations");
  clock.advance(10_000);
  assert.equal(store.held, 0);
});

Deno.test("RecoveryGate is closed until its instant, then opens and says so", () => {
  const clock = new ManualClock();
  const gate = new RecoveryGate(clock.wallNow() + 5_000, clock);
  let opened = 0;
  gate.onChange(() => opened++);
  gate.start();
  assert.deepEqual(gate.state(), {
    open: false,
    denial: { reason: "recovering", cause: "state_file", retryAfterMs: 5_000 },
  });
  clock.advance(5_000);
  assert.deepEqual(gate.state(), { open: true });
  assert.equal(opened, 1);
});

async function take(url: string, query: string): Promise<string | undefined> {
  const res = await fetch(`${url}/${query}`);
  await res.body?.cancel();
  return res.status === 200 ? res.headers.get("Lock-Token") ?? undefined : undefined;
}

Deno.test("server keeps its holders across kill -9 with --stateFile, and a token from before still releases", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/locks.json`;
  const flags = ["--locks", "2", "--timeout", "60s", "--stateFile", path];
  let tokens: string[];
  {
    await using first = await startProgram(flags);
    await first.waitForLog(/State file .* does not exist yet/);
    // A storm of 50 clients: exactly two get a lock.
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => take(first.url, `?id=app-${i}`)),
    );
    tokens = answers.filter((t): t is string => t !== undefined);
    assert.equal(tokens.length, 2);
    assert.equal(await first.stop("SIGKILL"), 137);
  }
  {
    await using second = await startProgram(flags);
    await second.waitForLog(/State file .*: 2 locks still held/);
    const storm = await Promise.all(
      Array.from({ length: 50 }, (_, i) => take(second.url, `?id=late-${i}`)),
    );
    assert.deepEqual(storm.filter((t) => t !== undefined), [], "never more than 2 holders");
    const status = await (await fetch(`${second.url}/status`)).json();
    assert.equal(status.slots.held, 2);
    const released = await fetch(`${second.url}/locks/${tokens[0]}`, { method: "DELETE" });
    assert.equal(released.status, 204, "a token granted before the restart still releases");
    assert.ok(await take(second.url, "?id=next"), "the freed slot is granted again");
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("server with a corrupt state file starts, sets it aside and grants nothing until --maxDuration has passed", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/locks.json`;
  await Deno.writeTextFile(path, "{ truncated");
  await using server = await startProgram(["--stateFile", path, "--maxDuration", "10m"]);
  await server.waitForLog(
    /ERROR State file .* is unreadable \(it is not JSON \(cut short\?\)\); moved it to .*corrupt-/,
  );
  const res = await fetch(`${server.url}/`, { headers: { Accept: "application/json" } });
  assert.equal(res.status, 423);
  const body = await res.json();
  assert.equal(body.reason, "recovering");
  assert.ok(body.retryAfter > 590 && body.retryAfter <= 600, String(body.retryAfter));
  const status = await (await fetch(`${server.url}/status`)).json();
  assert.deepEqual(status.gates[0], { name: "recovery", open: false, reason: "recovering" });
  const names = [...Deno.readDirSync(dir)].map((e) => e.name);
  assert.ok(names.some((n) => n.startsWith("locks.json.corrupt-")), names.join(", "));
  await server.stop();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("server refuses to start when the state file's directory takes no file", async () => {
  const { code, stderr } = await runProgram(["--stateFile", "/nonexistent-dir/locks.json"]);
  assert.equal(code, 2);
  assert.match(
    stderr,
    /Cannot use --stateFile "\/nonexistent-dir\/locks\.json": cannot write in its directory/,
  );
  assert.doesNotMatch(stderr, /Listening/);
});

Deno.test("loadState() refuses a path that is not a regular file, and never moves it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // `--stateFile /tmp` once moved /tmp aside as a "corrupt" state file.
    const path = `${dir}/state`;
    await Deno.mkdir(path);
    await Deno.writeTextFile(`${path}/keep.txt`, "kept");
    await assert.rejects(loadState(path), /^Error: it is a directory, not a file$/);
    assert.equal(await Deno.readTextFile(`${path}/keep.txt`), "kept");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["state"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server refuses to start when --stateFile names a directory, and leaves it in place", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { code, stderr } = await runProgram(["--stateFile", dir]);
    assert.equal(code, 2);
    assert.match(stderr, /Cannot use --stateFile ".*": it is a directory, not a file/);
    assert.doesNotMatch(stderr, /Listening|corrupt/);
    assert.ok((await Deno.stat(dir)).isDirectory);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "server refuses a --stateFile under /dev with one line that names the user's path and no flag of Deno's",
  // Deno lets a program write to device paths (/dev/shm included) only with every permission.
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const path = "/dev/shm/startup-lock-test-locks.json";
    const { code, stderr } = await runProgram(["--stateFile", path]);
    assert.equal(code, 2);
    const [line = "", ...rest] = stderr.trim().split("\n");
    assert.deepEqual(rest, []);
    assert.match(line, /Cannot use --stateFile "\/dev\/shm\/startup-lock-test-locks\.json": /);
    assert.doesNotMatch(line, /probe|--allow-all/);
    assert.match(line, /use a file elsewhere/);
  },
});

Deno.test("FileLockStore never asks for a timer longer than setTimeout can run, for a lock read back weeks ahead", () => {
  // A state file edited by hand (or a clock set back while stopped) can hold a lock that ends in
  // 30 days: setTimeout fires a longer delay at once, which became a busy loop flooding stderr.
  const clock = new ManualClock();
  const delays: number[] = [];
  const recording = {
    now: () => clock.now(),
    wallNow: () => clock.wallNow(),
    setTimeout: (fn: () => void, ms: number) => (delays.push(ms), clock.setTimeout(fn, ms)),
    clearTimeout: (id: number | ReturnType<typeof setTimeout>) => clock.clearTimeout(id),
  };
  const now = clock.wallNow();
  const month = 30 * 24 * 3_600_000;
  const restore = [{ token: "far", id: "far", acquiredAt: now, expiresAt: now + month }];
  const store = new FileLockStore(1, "/nonexistent-dir/locks.json", { clock: recording, restore });
  assert.ok(delays.length > 0);
  assert.ok(delays.every((ms) => ms <= MAX_TIMER_MS), delays.join(", "));
  clock.advance(MAX_TIMER_MS);
  assert.equal(store.held, 1, "a timer cut to the longest one does not end the lock early");
  assert.ok(delays.every((ms) => ms <= MAX_TIMER_MS), delays.join(", "));
  clock.advance(month - MAX_TIMER_MS);
  assert.equal(store.held, 0, "it ends at its expiry");
});

Deno.test("server holds a lock read back no longer than --maxDuration from its start, and stays quiet", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/locks.json`;
  const now = Date.now();
  const month = 30 * 24 * 3_600_000;
  await Deno.writeTextFile(
    path,
    formatState([{
      token: "fzq14KuP018l4fidD_miqQ",
      id: "edited",
      acquiredAt: now,
      expiresAt: now + month,
    }]),
  );
  await using server = await startProgram(["--stateFile", path, "--maxDuration", "10m"]);
  await server.waitForLog(/State file .*: 1 lock still held/);
  const status = await (await fetch(`${server.url}/status`)).json();
  const expiresAt = Date.parse(status.holders[0].expiresAt);
  assert.ok(expiresAt <= Date.now() + 10 * 60_000, status.holders[0].expiresAt);
  assert.equal(await server.stop(), 0);
  assert.doesNotMatch(server.log.join("\n"), /TimeoutOverflowWarning/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("server with a corrupt state file written under a clock that ran ahead waits --maxDuration from now, not years", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/locks.json`;
  await Deno.writeTextFile(path, "{ truncated");
  // Written while the node's clock was years ahead (a VM booted before NTP set it right).
  await Deno.utime(path, new Date("2030-01-01"), new Date("2030-01-01"));
  await using server = await startProgram(["--stateFile", path, "--maxDuration", "10m"]);
  await server.waitForLog(/ERROR State file .* is unreadable/);
  const res = await fetch(`${server.url}/`, { headers: { Accept: "application/json" } });
  const body = await res.json();
  assert.equal(body.reason, "recovering");
  assert.ok(body.retryAfter > 0 && body.retryAfter <= 600, String(body.retryAfter));
  assert.equal(await server.stop(), 0);
  assert.doesNotMatch(server.log.join("\n"), /TimeoutOverflowWarning/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a second server on the same state file refuses to start, and a server after kill -9 of the first does not", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/locks.json`;
  {
    await using first = await startProgram(["--stateFile", path, "--timeout", "60s"]);
    assert.ok(await take(first.url, "?id=web-1"));
    // Each would overwrite the other's locks: a restart would then forget the first one's holder.
    // Bounded: a second server that does start would otherwise serve until the test times out.
    const second = await runProgram(["--host", "127.0.0.1", "--port", "0", "--stateFile", path], {
      signal: AbortSignal.timeout(30_000),
    });
    assert.equal(second.code, 2);
    assert.match(
      second.stderr,
      /Cannot use --stateFile ".*locks\.json": another server uses it \(it holds .*locks\.json\.lock\): give each server its own state file/,
    );
    assert.equal(second.stderr.trim().split("\n").length, 1, second.stderr);
    assert.ok(await take(first.url, "?id=web-1"), "the first server still holds its lock");
    assert.equal(await first.stop("SIGKILL"), 137);
  }
  await using next = await startProgram(["--stateFile", path]);
  await next.waitForLog(/State file .*: 1 lock still held/);
  assert.equal(await take(next.url, "?id=web-2"), undefined, "web-1's lock survived");
  await next.stop();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("claimStateFile() holds PATH.lock until closed, and says why it cannot", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/locks.json`;
  const claim = await claimStateFile(path);
  await assert.rejects(
    claimStateFile(path),
    /another server uses it \(it holds .*locks\.json\.lock\)/,
  );
  claim.close();
  (await claimStateFile(path)).close();
  await Deno.mkdir(`${dir}/other.json.lock`);
  await assert.rejects(
    claimStateFile(`${dir}/other.json`),
    /^Error: cannot open .*other\.json\.lock: Is a directory/,
  );
  await Deno.remove(dir, { recursive: true });
});
