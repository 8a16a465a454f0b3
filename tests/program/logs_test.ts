/**
 * The real program's logs: `--logFormat json` (and its variable) for the
 * server and the client commands, no whole token at any level, and grants
 * that go on while nobody reads stderr.
 */
import assert from "node:assert/strict";
import { freePort, TOKEN } from "../_client.ts";
import { programCommand, runProgram, startProgram } from "../_program.ts";

/** Parses every line as a JSON log line with `time`, `level` and `msg`. */
function parseLines(lines: readonly string[]): Record<string, unknown>[] {
  return lines.filter((l) => l !== "").map((line) => {
    const entry = JSON.parse(line);
    assert.match(entry.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, line);
    assert.ok(["debug", "info", "warn", "error"].includes(entry.level), line);
    assert.equal(typeof entry.msg, "string", line);
    return entry;
  });
}

async function acquire(url: string, id: string): Promise<string> {
  const res = await fetch(`${url}/?id=${id}`);
  await res.body?.cancel();
  assert.equal(res.status, 200);
  const token = res.headers.get("Lock-Token");
  assert.match(token ?? "", TOKEN);
  return token!;
}

Deno.test("startup-lock --logFormat json --logLevel debug writes JSON lines with the events' fields and no whole token", async () => {
  await using server = await startProgram(["--logFormat", "json", "--logLevel", "debug"]);
  const tokens: string[] = [];
  const first = await acquire(server.url, "web-1");
  tokens.push(first);
  const busy = await fetch(`${server.url}/?id=web-2`);
  await busy.body?.cancel();
  assert.equal(busy.status, 423);
  const renewed = await fetch(`${server.url}/locks/${first}?duration=30s`, { method: "PUT" });
  await renewed.body?.cancel();
  const released = await fetch(`${server.url}/locks/${first}`, { method: "DELETE" });
  await released.body?.cancel();
  assert.equal(released.status, 204);
  const second = await acquire(server.url, "web-3");
  tokens.push(second);
  await server.waitForLog(/"id":"web-3"/);
  assert.equal(await server.stop(), 0);

  const entries = parseLines(server.log);
  const output = server.log.join("\n");
  for (const token of tokens) assert.ok(!output.includes(token), `whole token in:\n${output}`);
  const granted = entries.find((e) => e.event === "granted" && e.id === "web-1");
  assert.ok(granted, output);
  assert.equal(granted.level, "info");
  assert.equal(granted.token, first.slice(0, 6));
  assert.equal(granted.durationMs, 10_000);
  assert.equal(granted.waitedMs, 0);
  assert.ok(entries.some((e) => e.event === "denied" && e.reason === "busy"), output);
  assert.ok(entries.some((e) => e.event === "renewed" && e.durationMs === 30_000), output);
  assert.ok(entries.some((e) => e.event === "released" && typeof e.heldMs === "number"), output);
  assert.equal(entries.at(-1)?.msg, "Stopped");
});

Deno.test("startup-lock --logFormat json gives every line an event, start-up and shutdown included", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const args = ["--logFormat", "json", "--stateFile", `${dir}/locks.json`, "--locks", "2"];
    const events = async (id: string, extra: string[] = [], headers = {}) => {
      await using server = await startProgram([...args, ...extra]);
      const res = await fetch(`${server.url}/?id=${id}`, { headers });
      await res.body?.cancel();
      assert.equal(res.status, 200);
      await server.waitForLog(/"event":"granted"/);
      assert.equal(await server.stop(), 0);
      const entries = parseLines(server.log);
      for (const entry of entries) {
        assert.match(String(entry.event), /^[a-z_]+$/, `no event: ${JSON.stringify(entry)}`);
      }
      return entries.map((e) => e.event);
    };
    const first = await events("web-1");
    assert.deepEqual(
      [first[0], first[1], first.at(-2), first.at(-1)],
      ["state_file_missing", "listening", "shutting_down", "stopped"],
    );
    const second = await events("web-2", ["--authToken", "s3cret-token"], {
      Authorization: "Bearer s3cret-token",
    });
    assert.deepEqual(second.slice(0, 3), ["secret_in_flag", "state_file_loaded", "listening"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startup-lock names the user's --stateFile, not an internal file, when it cannot use it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/missing/locks.json`;
    const out = await runProgram(["--logFormat", "json", "--stateFile", path]);
    assert.equal(out.code, 2, out.stderr);
    const [line, ...more] = parseLines(out.stderr.split("\n"));
    assert.equal(more.length, 0, out.stderr);
    assert.equal(line!.event, "state_file_unusable");
    assert.equal(line!.level, "error");
    assert.equal(
      line!.msg,
      `Cannot use --stateFile "${path}": cannot write in its directory: ` +
        "No such file or directory (os error 2)",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startup-lock takes its log format from STARTUP_LOCK_LOG_FORMAT", async () => {
  await using server = await startProgram([], { env: { STARTUP_LOCK_LOG_FORMAT: "json" } });
  await acquire(server.url, "env-1");
  await server.waitForLog(/"event":"granted"/);
  assert.equal(await server.stop(), 0);
  assert.equal(parseLines(server.log).at(-1)?.msg, "Stopped");
});

Deno.test("startup-lock exits 2 naming --logFormat for an unknown format", async () => {
  const out = await runProgram(["--logFormat", "xml"]);
  assert.equal(out.code, 2);
  assert.match(out.stderr, /Invalid --logFormat "xml": expected one of text, json/);
});

Deno.test("startup-lock acquire and release --logFormat json write their notes as JSON lines", async () => {
  await using server = await startProgram([]);
  const acquired = await runProgram([
    "acquire",
    "--server",
    server.url,
    "--id",
    "client-1",
    "--logFormat",
    "json",
  ]);
  assert.equal(acquired.code, 0, acquired.stderr);
  const token = acquired.stdout.trim();
  assert.match(token, TOKEN);
  const notes = parseLines(acquired.stderr.split("\n"));
  assert.ok(
    notes.some((n) => /^Acquired the lock as client-1/.test(String(n.msg))),
    acquired.stderr,
  );

  const release = () =>
    runProgram(["release", "--server", server.url], {
      env: { STARTUP_LOCK_LOG_FORMAT: "json", STARTUP_LOCK_TOKEN: token },
    });
  const released = await release();
  assert.equal(released.code, 0, released.stderr);
  const again = await release(); // the lock is gone now: a note says so
  const gone = parseLines(again.stderr.split("\n"));
  assert.equal(gone.length, 1, again.stderr);
  for (const out of [acquired, released, again]) assert.ok(!out.stderr.includes(token));
  assert.deepEqual(notes.map((n) => n.event), ["acquired"]);
  assert.deepEqual(parseLines(released.stderr.split("\n")).map((n) => n.event), ["released"]);
  assert.deepEqual(gone.map((n) => n.event), ["already_gone"]);
});

Deno.test("startup-lock acquire --logFormat json says at warn level that it gave up", async () => {
  await using server = await startProgram([]);
  const args = ["acquire", "--server", server.url, "--logFormat", "json", "--wait", "0"];
  assert.equal((await runProgram(args)).code, 0);
  const out = await runProgram(args);
  assert.equal(out.code, 124, out.stderr);
  const lines = parseLines(out.stderr.split("\n"));
  assert.deepEqual(lines.map((l) => [l.event, l.level]), [["gave_up", "warn"]]);
});

Deno.test("startup-lock keeps granting while nobody reads its stderr", async () => {
  const port = freePort();
  const { command, args } = programCommand();
  const child = new Deno.Command(command, {
    args: [...args, "--host", "127.0.0.1", "--port", String(port), "--logLevel", "debug"],
    env: { NO_COLOR: "1", PATH: Deno.env.get("PATH") ?? "" },
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped", // and not read until the grants are done: the pipe fills up
  }).spawn();
  const url = `http://127.0.0.1:${port}`;
  try {
    for (let tries = 0;; tries++) {
      try {
        const res = await fetch(`${url}/healthz`);
        await res.body?.cancel();
        if (res.ok) break;
      } catch (error) {
        if (tries > 200) throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const tokens: string[] = [];
    for (let i = 0; i < 500; i++) {
      const token = await acquire(url, `stalled-${i}-${"x".repeat(40)}`);
      tokens.push(token);
      const res = await fetch(`${url}/locks/${token}`, { method: "DELETE" });
      await res.body?.cancel();
      assert.equal(res.status, 204);
    }
    assert.equal(tokens.length, 500);
  } finally {
    child.kill("SIGTERM");
  }
  const stderr = await new Response(child.stderr).text();
  const { code } = await child.status;
  assert.equal(code, 0);
  const lines = stderr.trimEnd().split("\n");
  assert.match(lines.at(-1) ?? "", /Stopped$/);
  const granted = lines.filter((l) => l.includes("Lock granted to stalled-")).length;
  const dropped = lines.map((l) => /(\d+) log lines? dropped/.exec(l)?.[1]).filter(Boolean);
  assert.ok(granted + dropped.reduce((n, d) => n + Number(d), 0) >= 500, stderr.slice(-2000));
});
