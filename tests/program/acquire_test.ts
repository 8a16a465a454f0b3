/**
 * `startup-lock acquire`: its command line, and black-box runs of the real
 * program against the real server, against a stand-in of the original
 * server's protocol, and against stand-ins for answers the real server does
 * not give yet.
 */
import assert from "node:assert/strict";
import { envName } from "../../lib/args.ts";
import type { AcquireOptions } from "../../lib/client/lock.ts";
import {
  ACQUIRE_FLAGS,
  acquireCommand,
  DEFAULT_POLL_INTERVAL_MS,
  defaultId,
} from "../../lib/commands/acquire.ts";
import { UsageError } from "../../lib/errors.ts";
import { freePort, startClient, startOriginalServer, startStandIn, TOKEN } from "../_client.ts";
import { runProgram, startProgram } from "../_program.ts";

function envOf(vars: Record<string, string>): (name: string) => string | undefined {
  return (name) => vars[name];
}

function parse(argv: string[], env: Record<string, string> = {}): AcquireOptions {
  const parsed = acquireCommand.parse(argv, envOf(env));
  assert.equal(parsed.action, "run");
  if (parsed.action !== "run") throw new Error("unreachable");
  return parsed.options;
}

const SERVER = "http://lock:8888";

Deno.test("acquireCommand.parse() waits forever and lets the server pick the duration by default", () => {
  const options = parse(["--server", SERVER], { HOSTNAME: "pod-a" });
  assert.match(options.id, /^pod-a-[0-9a-f]{8}$/);
  assert.deepEqual(
    { ...options, id: "" },
    {
      server: new URL("http://lock:8888/"),
      durationMs: undefined,
      id: "",
      waitMs: undefined,
      tokenFile: undefined,
      pollIntervalMs: DEFAULT_POLL_INTERVAL_MS,
      names: { duration: "--duration", wait: "--wait", tokenFile: "--tokenFile" },
    } satisfies AcquireOptions,
  );
});

Deno.test("acquireCommand.parse() reads every flag, and each from its STARTUP_LOCK_* variable", () => {
  const values: Record<string, string> = {
    server: "https://lock.example/prefix?x=1",
    duration: "90s",
    id: "web-1",
    wait: "2m",
    tokenFile: "/run/app.token",
    pollInterval: "500ms",
    authToken: "s3cret-token",
    logFormat: "text", // sets how notes are written, not an option: tests/program/logs_test.ts
  };
  // --authTokenFile excludes --authToken; tests/auth_flags_test.ts reads it.
  assert.deepEqual(
    Object.keys(values).sort(),
    ACQUIRE_FLAGS.map((f) => f.name).filter((n) => n !== "authTokenFile").sort(),
    "the test covers every flag",
  );
  const expected = {
    server: new URL("https://lock.example/prefix/"),
    durationMs: 90_000,
    id: "web-1",
    waitMs: 120_000,
    tokenFile: "/run/app.token",
    pollIntervalMs: 500,
    authToken: "s3cret-token",
  };
  const argv = Object.entries(values).flatMap(([k, v]) => [`--${k}`, v]);
  assert.deepEqual(parse(argv), {
    ...expected,
    names: { duration: "--duration 90s", wait: "--wait", tokenFile: "--tokenFile" },
    warnings: [
      "--authToken is visible to other users in ps and in the shell history (deno task also " +
      "echoes its command line): use --authTokenFile PATH or STARTUP_LOCK_AUTH_TOKEN instead",
    ],
  });
  const env = Object.fromEntries(Object.entries(values).map(([k, v]) => [envName(k), v]));
  assert.deepEqual(parse([], env), {
    ...expected,
    names: {
      duration: "STARTUP_LOCK_DURATION=90s",
      wait: "STARTUP_LOCK_WAIT",
      tokenFile: "STARTUP_LOCK_TOKEN_FILE",
    },
  });
});

Deno.test("acquireCommand.parse() prefers a flag over its variable", () => {
  assert.equal(
    parse(["--server", SERVER, "--wait", "5s"], { STARTUP_LOCK_WAIT: "1h" }).waitMs,
    5_000,
  );
});

Deno.test("acquireCommand.parse() takes an id that starts with a dash", () => {
  assert.equal(parse(["--server", SERVER, "--id", "-web-1"]).id, "-web-1");
});

Deno.test("acquireCommand.parse() throws a UsageError naming the flag or variable, the value and what is allowed", async (t) => {
  const cases: { argv: string[]; env?: Record<string, string>; says: string }[] = [
    { argv: [], says: "Missing --server URL (or STARTUP_LOCK_SERVER)" },
    { argv: ["--server", "lock:8888"], says: 'Invalid --server "lock:8888": unsupported scheme' },
    {
      argv: ["--server", "nope"],
      says: 'Invalid --server "nope": expected an http:// or https://',
    },
    { argv: ["--wait", "soon"], says: 'Invalid --wait "soon": expected a positive number' },
    { argv: ["--wait", "-1"], says: 'Invalid --wait "-1"' },
    { argv: ["--duration", "-5"], says: 'Invalid --duration "-5"' },
    { argv: ["--id", "has space"], says: 'Invalid --id "has space": expected 1 to 128 printable' },
    { argv: ["--id", "x".repeat(129)], says: "Invalid --id" },
    {
      argv: [],
      env: { STARTUP_LOCK_POLL_INTERVAL: "often" },
      says: "Invalid STARTUP_LOCK_POLL_INTERVAL",
    },
    { argv: ["--bogus"], says: 'Unknown flag "--bogus"' },
    { argv: ["extra"], says: 'Unexpected argument "extra"' },
    { argv: ["--wait", "--id", "x"], says: "Flag --wait needs a value: DURATION" },
  ];
  for (const { argv, env, says } of cases) {
    await t.step(says, () => {
      const withServer = argv.includes("--server") || says.startsWith("Missing --server")
        ? argv
        : [...argv, "--server", SERVER];
      assert.throws(() => acquireCommand.parse(withServer, envOf(env ?? {})), (error) => {
        assert.ok(error instanceof UsageError);
        assert.ok(error.message.includes(says), error.message);
        return true;
      });
    });
  }
});

Deno.test("defaultId() makes an id the server accepts from any host name", () => {
  assert.match(defaultId(undefined), /^client-[0-9a-f]{8}$/);
  assert.match(defaultId("my host\t1"), /^my-host-1-[0-9a-f]{8}$/);
  const long = defaultId("h".repeat(300));
  assert.equal(long.length, 128);
  assert.notEqual(defaultId("a"), defaultId("a"));
});

Deno.test("acquireCommand.usage() explains its flags, durations and exit codes", () => {
  const usage = acquireCommand.usage();
  assert.match(usage, /^Usage: startup-lock acquire --server URL/);
  assert.match(usage, /124 no lock within --wait/);
  assert.match(usage, /^Durations are /m);
});

Deno.test("acquire prints the token on stdout, writes --tokenFile and exits 0", async () => {
  await using server = await startProgram();
  const dir = await Deno.makeTempDir();
  try {
    const tokenFile = `${dir}/token`;
    const { code, stdout, stderr } = await runProgram([
      "acquire",
      "--server",
      server.url,
      "--duration",
      "60s",
      "--id",
      "web-1",
      "--tokenFile",
      tokenFile,
    ]);
    assert.equal(code, 0, stderr);
    const token = stdout.trim();
    assert.match(token, TOKEN);
    assert.equal(stdout, `${token}\n`, "only the token on stdout");
    assert.equal((await Deno.readTextFile(tokenFile)).trim(), token);
    assert.match(stderr, /Acquired the lock as web-1 until \d{4}-/);
    await server.waitForLog(/Lock granted to web-1 for 1m/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("acquire with the same --id gets the same lock back, so retries are idempotent", async () => {
  await using server = await startProgram();
  const args = ["acquire", "--server", server.url, "--duration", "60", "--id", "retry-me"];
  const first = await runProgram(args);
  const again = await runProgram([...args, "--wait", "1s"]);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, first.stdout);
});

Deno.test("acquire exits 124 when --wait runs out while another client holds the lock", async () => {
  await using server = await startProgram();
  const holder = await runProgram(["acquire", "--server", server.url, "--duration", "60s"]);
  assert.equal(holder.code, 0, holder.stderr);
  const { code, stdout, stderr } = await runProgram([
    "acquire",
    "--server",
    server.url,
    "--wait",
    "1s",
  ]);
  assert.equal(code, 124, stderr);
  assert.equal(stdout, "");
  assert.match(stderr, /Waiting: Locked: the only slot is held/);
  assert.match(stderr, /Gave up: no lock within 1s \(--wait\); last reason: Locked: /);
});

Deno.test("acquire --wait 0 tries once, like ?wait=0: a free slot is granted, a held one gives up at once", async () => {
  await using server = await startProgram();
  for (const zero of ["0", "0s", "0ms"]) {
    assert.equal(parse(["--server", SERVER, "--wait", zero]).waitMs, 0);
  }
  const first = await runProgram(["acquire", "--server", server.url, "--wait", "0"]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /^[A-Za-z0-9_-]{22}\n$/);
  const second = await runProgram(["acquire", "--server", server.url, "--wait", "0"]);
  assert.equal(second.code, 124, second.stderr);
  assert.equal(second.stdout, "");
  assert.match(
    second.stderr,
    /^startup-lock: Gave up: no lock at the first try \(--wait 0\); last reason: Locked: the only slot is held[^\n]*\n$/,
    "one line, and no 'Waiting' before it",
  );
});

Deno.test("a waiting acquire gets the lock as soon as the holder releases it", async () => {
  await using server = await startProgram();
  const first = await runProgram(["acquire", "--server", server.url, "--duration", "60s"]);
  assert.equal(first.code, 0, first.stderr);
  // Waiting at most 30 s for a lock held for 60 s: only the release can explain success.
  await using waiter = startClient(["acquire", "--duration", "60s", "--wait", "30s"], {
    STARTUP_LOCK_SERVER: server.url,
  });
  await waiter.waitForLine("stderr", /Waiting: Locked: /);
  const release = await runProgram([
    "release",
    "--server",
    server.url,
    "--token",
    first.stdout.trim(),
  ]);
  assert.equal(release.code, 0, release.stderr);
  assert.equal(await waiter.exited(), 0, waiter.stderr.join("\n"));
  assert.match(waiter.stdout.join("\n"), TOKEN);
  assert.notEqual(waiter.stdout[0], first.stdout.trim());
});

Deno.test("acquire takes a lock cut to the server's --maxDuration and says so in the user's terms", async () => {
  await using server = await startProgram(["--maxDuration", "1m"]);
  const { code, stdout, stderr } = await runProgram([
    "acquire",
    "--server",
    server.url,
    "--duration",
    "2m",
  ]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^[A-Za-z0-9_-]{22}\n$/);
  assert.match(stderr, /^startup-lock: The server granted 1m, less than --duration 2m/m);
  await server.waitForLog(
    /WARN .*Lock granted to .* for 1m: it asked for 2m, longer than --maxDuration/,
  );
});

Deno.test("acquire retries an unreachable server until --wait runs out, then exits 124", async () => {
  const url = `http://127.0.0.1:${freePort()}`;
  const { code, stdout, stderr } = await runProgram([
    "acquire",
    "--server",
    url,
    "--wait",
    "2s",
    "--pollInterval",
    "200ms",
  ]);
  assert.equal(code, 124, stderr);
  assert.equal(stdout, "");
  const waiting = stderr.split("\n").filter((l) => l.includes(`Waiting: cannot reach ${url}/`));
  assert.ok(waiting.length >= 2, `retried:\n${stderr}`);
  assert.match(stderr, /Gave up: no lock within 2s \(--wait\); last reason: cannot reach /);
});

Deno.test("acquire gets the lock once an unreachable server comes up", async () => {
  const port = freePort();
  await using client = startClient([
    "acquire",
    "--server",
    `http://127.0.0.1:${port}`,
    "--wait",
    "30s",
    "--pollInterval",
    "200ms",
  ]);
  await client.waitForLine("stderr", /Waiting: cannot reach/);
  await using _server = await startProgram(["--port", String(port)]);
  assert.equal(await client.exited(), 0, client.stderr.join("\n"));
  assert.match(client.stdout[0] ?? "", TOKEN);
});

Deno.test("acquire polls a server of the original protocol until it grants, and says there is no token", async () => {
  await using original = startOriginalServer(3);
  const { code, stdout, stderr } = await runProgram([
    "acquire",
    "--server",
    original.url,
    "--duration",
    "60",
    "--pollInterval",
    "100ms",
  ]);
  assert.equal(code, 0, stderr);
  assert.equal(stdout, "", "no token to print");
  const waiting = stderr.split("\n").filter((l) => l === "startup-lock: Waiting: Locked");
  assert.equal(waiting.length, 3, stderr);
  assert.match(stderr, /the server gave no token .*it will expire by its duration/);
  assert.equal(original.requests.length, 4);
  for (const url of original.requests) assert.equal(url.searchParams.get("duration"), "60");
});

Deno.test("acquire exits 1 with one line, at the first answer, when --server is a web server and no lock server", async (t) => {
  // What `python3 -m http.server` answers: a directory listing for GET /, an error page otherwise.
  const listing = "<!DOCTYPE HTML>\n<html>\n<head>\n<title>Directory listing for /</title>\n" +
    "</head>\n<body><h1>Directory listing for /</h1></body>\n</html>\n";
  const error = "<!DOCTYPE HTML>\n<html>\n<head>\n<title>Error response</title>\n</head>\n" +
    "<body><p>Error code: 404</p></body>\n</html>\n";
  await using web = startStandIn((request) =>
    new URL(request.url).pathname === "/"
      ? new Response(listing, { headers: { "Content-Type": "text/html; charset=utf-8" } })
      : new Response(error, { status: 404, headers: { "Content-Type": "text/html" } })
  );
  const cases: [string, string, string][] = [
    [
      "a page for GET /",
      `${web.url}/`,
      `startup-lock: ${web.url}/ is not a lock server: it answered HTTP 200 with an HTML page ` +
      '("Directory listing for /") and no lock token; check --server',
    ],
    [
      "a 404 page",
      `${web.url}/lock`,
      "startup-lock: The server refused the request (HTTP 404): Error response; check --server",
    ],
  ];
  for (const [what, server, says] of cases) {
    await t.step(what, async () => {
      const before = web.requests.length;
      const { code, stdout, stderr } = await runProgram([
        "acquire",
        "--server",
        server,
        "--wait",
        "1m",
      ]);
      assert.equal(code, 1, stderr);
      assert.equal(stdout, "");
      assert.equal(stderr.trim(), says);
      assert.equal(web.requests.length - before, 1, "asking again cannot help");
    });
  }
});

Deno.test("acquire gives the lock back and exits 1 with one line when it cannot print the token", async () => {
  await using server = await startProgram();
  // A full disk behind stdout: the token reaches nobody, so nobody could release the lock.
  const { code, stdout, stderr } = await runProgram(["acquire", "--server", server.url], {
    wrapper: ["sh", "-c", 'exec "$@" >/dev/full', "sh"],
  });
  assert.equal(code, 1, stderr);
  assert.equal(stdout, "");
  assert.match(
    stderr,
    /^startup-lock: Cannot print the token on stdout: No space left on device \(os error 28\)$/m,
  );
  assert.match(stderr, /^startup-lock: Released the lock: the token could not be printed$/m);
  assert.doesNotMatch(stderr, /Uncaught| {4}at /);
  const status = await (await fetch(`${server.url}/status`)).json();
  assert.equal(status.slots.held, 0, "the lock was given back");
});

Deno.test("acquire writes an empty --tokenFile when the server gives no token", async () => {
  await using original = startOriginalServer(0);
  const dir = await Deno.makeTempDir();
  try {
    const tokenFile = `${dir}/token`;
    await Deno.writeTextFile(tokenFile, "stale-token-of-an-earlier-run\n");
    const { code, stderr } = await runProgram([
      "acquire",
      "--server",
      original.url,
      "--tokenFile",
      tokenFile,
    ]);
    assert.equal(code, 0, stderr);
    assert.equal(await Deno.readTextFile(tokenFile), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("acquire gives the lock back and exits 1 when it cannot write --tokenFile", async () => {
  await using server = await startProgram();
  const { code, stdout, stderr } = await runProgram([
    "acquire",
    "--server",
    server.url,
    "--duration",
    "60s",
    "--tokenFile",
    "/nonexistent-dir/token",
  ]);
  assert.equal(code, 1, stderr);
  assert.equal(stdout, "");
  assert.match(
    stderr,
    /Cannot write --tokenFile "\/nonexistent-dir\/token": .*; released the lock/,
  );
  const next = await runProgram(["acquire", "--server", server.url, "--wait", "5s"]);
  assert.equal(next.code, 0, next.stderr);
});

Deno.test("acquire names itself after HOSTNAME with a random suffix when no --id is given", async () => {
  await using server = await startProgram(["--locks", "2"]);
  const env = { HOSTNAME: "node-7" };
  const a = await runProgram(["acquire", "--server", server.url], { env });
  const b = await runProgram(["acquire", "--server", server.url], { env });
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  const idA = /Acquired the lock as (\S+)/.exec(a.stderr)?.[1];
  const idB = /Acquired the lock as (\S+)/.exec(b.stderr)?.[1];
  assert.match(idA ?? "", /^node-7-[0-9a-f]{8}$/);
  assert.match(idB ?? "", /^node-7-[0-9a-f]{8}$/);
  assert.notEqual(idA, idB, "two invocations on one host never share a lock");
  assert.notEqual(a.stdout, b.stdout);
});

/** This machine's name as the system reports it. */
async function systemHostname(): Promise<string> {
  const out = await new Deno.Command("uname", { args: ["-n"], stdout: "piped" }).output();
  assert.equal(out.code, 0, "uname -n");
  return new TextDecoder().decode(out.stdout).trim();
}

Deno.test("acquire names itself after the system's host name when HOSTNAME is not set", async () => {
  await using server = await startProgram();
  const host = await systemHostname();
  assert.ok(host !== "", "the machine has a name");
  // bash does not export HOSTNAME: the program must ask the system.
  const { code, stderr } = await runProgram(["acquire", "--server", server.url], {
    env: { HOSTNAME: "" },
  });
  assert.equal(code, 0, stderr);
  const id = /Acquired the lock as (\S+)/.exec(stderr)?.[1] ?? "";
  assert.equal(id, `${host}-${id.slice(-8)}`, stderr);
  assert.match(id.slice(-8), /^[0-9a-f]{8}$/);
  await server.waitForLog(new RegExp(`Lock granted to ${id.replace(/[.]/g, "\\.")} `));
});

Deno.test("acquire gives up with the server's latest reason, not its first", async () => {
  await using server = await startProgram();
  const holder = await runProgram(["acquire", "--server", server.url, "--duration", "30s"]);
  assert.equal(holder.code, 0, holder.stderr);
  const { code, stderr } = await runProgram(["acquire", "--server", server.url, "--wait", "3s"]);
  assert.equal(code, 124, stderr);
  const reasons = [...stderr.matchAll(/^startup-lock: Waiting: (.*)$/gm)].map((m) => m[1]);
  const last = /^startup-lock: Gave up: no lock within 3s \(--wait\); last reason: (.*)$/m
    .exec(stderr)?.[1];
  assert.ok(reasons.length >= 2, stderr);
  assert.match(reasons[0]!, /the next frees in /);
  // The time until the slot frees shrinks between answers: only a fresh answer names the last.
  assert.notEqual(reasons.at(-1), reasons[0], stderr);
  assert.equal(last, reasons.at(-1), stderr);
});

Deno.test("acquire asks again at once when a wait in the server's queue ends without a lock", async () => {
  // Waits of at most 200 ms, and a poll interval of an hour: only asking again at once, to
  // keep its place in the queue, makes more than two requests within --wait.
  await using server = await startProgram(["--maxWait", "200ms"]);
  const holder = await runProgram(["acquire", "--server", server.url, "--duration", "60s"]);
  assert.equal(holder.code, 0, holder.stderr);
  const { code, stderr } = await runProgram([
    "acquire",
    "--server",
    server.url,
    "--wait",
    "3s",
    "--pollInterval",
    "1h",
  ]);
  assert.equal(code, 124, stderr);
  const waiting = stderr.split("\n").filter((l) => l.includes("Waiting: Locked: "));
  assert.ok(waiting.length >= 4, `asked again at once:\n${stderr}`);
});

/** A server that grants as the server does when it cuts `?duration=` to its --maxDuration. */
function startCuttingServer(grantedSeconds: number) {
  return startStandIn((request) => {
    const requested = Number(new URL(request.url).searchParams.get("duration"));
    const cut = requested > grantedSeconds;
    return Response.json({
      status: "acquired",
      message: "Lock acquired",
      token: "AAAAAAAAAAAAAAAAAAAAAA",
      expiresAt: new Date(Date.now() + grantedSeconds * 1000).toISOString(),
      duration: grantedSeconds,
      ...(cut
        ? {
          requestedDuration: requested,
          warning: `duration cut to ${grantedSeconds} seconds (--maxDuration)`,
        }
        : {}),
    }, {
      headers: {
        "Lock-Token": "AAAAAAAAAAAAAAAAAAAAAA",
        "Lock-Duration": String(grantedSeconds),
        ...(cut ? { "Lock-Duration-Requested": String(requested) } : {}),
      },
    });
  });
}

Deno.test("acquire says in the user's own terms when the server granted less than --duration", async (t) => {
  await using stub = startCuttingServer(3600);
  await t.step("--duration 2h", async () => {
    const { code, stdout, stderr } = await runProgram([
      "acquire",
      "--server",
      stub.url,
      "--duration",
      "2h",
    ]);
    assert.equal(code, 0, stderr);
    assert.equal(stdout, "AAAAAAAAAAAAAAAAAAAAAA\n");
    assert.match(stderr, /^startup-lock: The server granted 1h, less than --duration 2h: /m);
    assert.doesNotMatch(stderr, /7200/, "the user typed 2h, not 7200");
  });
  await t.step("STARTUP_LOCK_DURATION", async () => {
    const { code, stderr } = await runProgram(["acquire", "--server", stub.url], {
      env: { STARTUP_LOCK_DURATION: "120m" },
    });
    assert.equal(code, 0, stderr);
    assert.match(stderr, /The server granted 1h, less than STARTUP_LOCK_DURATION=120m: /);
  });
  await t.step("nothing to say when it granted what was asked", async () => {
    const { code, stderr } = await runProgram([
      "acquire",
      "--server",
      stub.url,
      "--duration",
      "30m",
    ]);
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stderr, /granted/);
  });
});

Deno.test("acquire names the --duration the user typed when the server refuses its duration", async () => {
  await using stub = startStandIn(() =>
    Response.json({
      status: "error",
      message: 'Invalid duration "7200": expected at most 3600 seconds (--maxDuration)',
    }, { status: 400 })
  );
  const { code, stderr } = await runProgram(["acquire", "--server", stub.url, "--duration", "2h"]);
  assert.equal(code, 1, stderr);
  assert.match(
    stderr,
    /^startup-lock: The server refused the request \(HTTP 400\): Invalid duration "7200": .* \(asked with --duration 2h\)$/m,
  );
});
