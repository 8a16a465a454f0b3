import assert from "node:assert/strict";
import {
  describeFetchError,
  durationParam,
  ForeignServerError,
  isReady,
  type LockAnswer,
  MAX_BODY_BYTES,
  releaseLock,
  requestLock,
  retryAfterMs,
} from "../../../lib/client/http.ts";
import { freePort } from "../../_client.ts";

/** Serves `respond` on a free port for the duration of `fn`, recording request URLs. */
async function withServer(
  respond: (request: Request) => Response,
  fn: (base: URL, seen: URL[]) => Promise<void>,
): Promise<void> {
  const seen: URL[] = [];
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    seen.push(new URL(req.url));
    return respond(req);
  });
  await fn(new URL(`http://127.0.0.1:${server.addr.port}/`), seen);
}

const signal = () => AbortSignal.timeout(10_000);
const ask = (base: URL, waitMs?: number): Promise<LockAnswer> =>
  requestLock(base, { durationMs: 1_500, id: "web-1", waitMs }, signal());

Deno.test("durationParam() writes whole seconds as the original expects, else milliseconds", () => {
  assert.equal(durationParam(60_000), "60");
  assert.equal(durationParam(1_500), "1500ms");
});

Deno.test("requestLock() sends duration, id and wait, and reads the token and expiry", async () => {
  const expiresAt = "2026-11-24T04:10:00.000Z";
  await withServer(
    () =>
      Response.json({ status: "acquired", token: "fromBody", expiresAt }, {
        headers: { "Lock-Token": "fromHeader" },
      }),
    async (base, seen) => {
      assert.deepEqual(await ask(base, 30_000), {
        kind: "acquired",
        token: "fromHeader",
        expiresAt: Date.parse(expiresAt),
        durationMs: undefined,
        requestedMs: undefined,
      });
      const query = Object.fromEntries(seen[0]!.searchParams);
      assert.deepEqual(query, { duration: "1500ms", id: "web-1", wait: "30" });
    },
  );
});

Deno.test("requestLock() takes a 200 without a token from the original server", async () => {
  await withServer(() => new Response("Lock acquired"), async (base) => {
    assert.deepEqual(await ask(base), {
      kind: "acquired",
      token: undefined,
      expiresAt: undefined,
      durationMs: undefined,
      requestedMs: undefined,
    });
  });
});

Deno.test("requestLock() takes a 200 HTML page without a token for a server that is no lock server", async () => {
  // What `python3 -m http.server` answers GET / with.
  const page = '<!DOCTYPE HTML>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n' +
    "<title>Directory listing for /?duration=1.5&amp;id=web-1</title>\n</head>\n<body>\n" +
    "<h1>Directory listing</h1>\n</body>\n</html>\n";
  const respond = () =>
    new Response(page, { headers: { "Content-Type": "text/html; charset=utf-8" } });
  await withServer(respond, async (base) => {
    assert.deepEqual(await ask(base), {
      kind: "foreign",
      status: 200,
      message: "Directory listing for /?duration=1.5&id=web-1",
    });
  });
});

Deno.test("requestLock() says what an HTML error page says, not its first line", async (t) => {
  const nginx = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n" +
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
  const untitled =
    "<!DOCTYPE html>\n<html><body><style>p{}</style>\n<p>Down for\n maintenance &amp; " +
    "back soon</p></body></html>";
  const cases: [string, string, number, string][] = [
    ["its title", nginx, 502, "502 Bad Gateway"],
    ["its text without a title", untitled, 503, "Down for maintenance & back soon"],
  ];
  for (const [what, page, status, message] of cases) {
    await t.step(what, async () => {
      const respond = () =>
        new Response(page, { status, headers: { "Content-Type": "text/html" } });
      await withServer(respond, async (base) => {
        const answer = await ask(base);
        assert.equal(answer.kind, "wait");
        assert.equal(answer.kind === "wait" && answer.message, message);
      });
    });
  }
});

Deno.test("requestLock() tells this server's refusals from the original's by their JSON", async () => {
  const json = Response.json({ status: "locked", message: "Locked: busy" }, { status: 423 });
  await withServer(() => json, async (base) => {
    assert.deepEqual(await ask(base), {
      kind: "wait",
      status: 423,
      message: "Locked: busy",
      json: true,
      retryAfterMs: undefined,
    });
  });
  await withServer(() => new Response("\n Locked \n", { status: 423 }), async (base) => {
    assert.deepEqual(await ask(base), {
      kind: "wait",
      status: 423,
      message: "Locked",
      json: false,
      retryAfterMs: undefined,
    });
  });
  await withServer(() => new Response("", { status: 502 }), async (base) => {
    assert.deepEqual(await ask(base), {
      kind: "wait",
      status: 502,
      message: "HTTP 502 Bad Gateway",
      json: false,
      retryAfterMs: undefined,
    });
  });
});

Deno.test("requestLock() reports a 400 as refused, with the server's message", async () => {
  const message = 'Invalid duration "7200": expected at most 3600 seconds (--maxDuration)';
  await withServer(
    () => Response.json({ status: "error", message }, { status: 400 }),
    async (base) => {
      assert.deepEqual(await ask(base), { kind: "refused", status: 400, message });
    },
  );
});

Deno.test("requestLock() reads the duration granted and the one asked for when it was cut", async (t) => {
  await t.step("from the headers", async () => {
    await withServer(
      () =>
        Response.json({ status: "acquired", token: "t", duration: 9, requestedDuration: 9 }, {
          headers: { "Lock-Duration": "3600", "Lock-Duration-Requested": "7200" },
        }),
      async (base) => {
        const answer = await ask(base);
        assert.ok(answer.kind === "acquired");
        assert.equal(answer.durationMs, 3_600_000);
        assert.equal(answer.requestedMs, 7_200_000);
      },
    );
  });
  await t.step("from the JSON fields when there are no headers", async () => {
    await withServer(
      () => Response.json({ status: "acquired", token: "t", duration: 1.5, requestedDuration: 60 }),
      async (base) => {
        const answer = await ask(base);
        assert.ok(answer.kind === "acquired");
        assert.equal(answer.durationMs, 1_500);
        assert.equal(answer.requestedMs, 60_000);
      },
    );
  });
});

Deno.test("releaseLock() answers released on 204, gone on this server's 404, and throws otherwise", async () => {
  let respond = () => new Response(null, { status: 204 });
  await withServer(() => respond(), async (base, seen) => {
    assert.equal(await releaseLock(base, "tok_en-1", signal()), "released");
    assert.equal(seen[0]!.pathname, "/locks/tok_en-1");
    respond = () => Response.json({ status: "error", message: "No such lock" }, { status: 404 });
    assert.equal(await releaseLock(base, "tok_en-1", signal()), "gone");
    respond = () => new Response("oops", { status: 500 });
    await assert.rejects(releaseLock(base, "tok_en-1", signal()), /^Error: HTTP 500: oops/);
  });
});

Deno.test("releaseLock() recognises answers no startup-lock server gives", async (t) => {
  const cases: [string, () => Response, RegExp][] = [
    ["the original's grant", () => new Response("Lock acquired"), /^answered 200 "Lock acquired"/],
    ["the original's 423", () => new Response("Locked", { status: 423 }), /^answered 423 "Locked"/],
    [
      "a page that is not there",
      () => new Response("404 page not found\n", { status: 404 }),
      /^answered 404 "404 page not found" to DELETE: not a startup-lock server/,
    ],
  ];
  for (const [what, respond, message] of cases) {
    await t.step(what, async () => {
      await withServer(respond, async (base) => {
        await assert.rejects(releaseLock(base, "t", signal()), (error: unknown) => {
          assert.ok(error instanceof ForeignServerError);
          assert.match(error.message, message);
          return true;
        });
      });
    });
  }
});

Deno.test("isReady() is true for 2xx only, and false when nothing answers", async () => {
  let status = 503;
  await withServer(() => new Response(null, { status }), async (base) => {
    assert.equal(await isReady(base, 5_000, signal()), false);
    status = 204;
    assert.equal(await isReady(base, 5_000, signal()), true);
  });
  assert.equal(await isReady(new URL(`http://127.0.0.1:${freePort()}/`), 5_000, signal()), false);
});

Deno.test("describeFetchError() keeps the cause of a failed connection, not the URL", async () => {
  const url = `http://127.0.0.1:${freePort()}/`;
  const error = await fetch(url).then(() => undefined, (e) => e);
  const line = describeFetchError(error);
  assert.ok(!line.includes(url), line);
  assert.match(line, /refused/i);
});

Deno.test("retryAfterMs() reads Retry-After in seconds and ignores dates and nonsense", () => {
  assert.equal(retryAfterMs("1"), 1_000);
  assert.equal(retryAfterMs(" 120 "), 120_000);
  assert.equal(retryAfterMs(null), undefined);
  assert.equal(retryAfterMs("Wed, 21 Oct 2026 07:28:00 GMT"), undefined);
  assert.equal(retryAfterMs("-5"), undefined);
  assert.equal(retryAfterMs("1.5"), undefined);
});

Deno.test("requestLock() reads no more than MAX_BODY_BYTES of an endless body", async () => {
  let sent = 0;
  const chunk = new Uint8Array(64 * 1024).fill(0x41);
  await withServer(
    () =>
      new Response(
        new ReadableStream({
          pull(controller) {
            sent += chunk.byteLength;
            controller.enqueue(chunk);
          },
        }),
        { status: 423 },
      ),
    async (base) => {
      const answer = await ask(base);
      assert.equal(answer.kind, "wait");
      // Before the fix the client read until its signal aborted, holding every byte.
      assert.ok(sent < 64 * MAX_BODY_BYTES, `the server sent ${sent} bytes`);
    },
  );
});

Deno.test("requestLock() writes a server's control and bidi characters as escapes", async (t) => {
  const hostile = "\x1b[2J\x1b]0;pwned\x07\u009b31m\u202eabc";
  const expected = "\\u001b[2J\\u001b]0;pwned\\u0007\\u009b31m\\u202eabc";
  await t.step("in a JSON message", async () => {
    await withServer(() => Response.json({ message: hostile }, { status: 423 }), async (base) => {
      const answer = await ask(base);
      assert.equal(answer.kind === "wait" && answer.message, expected);
    });
  });
  await t.step("in a plain-text message", async () => {
    await withServer(() => new Response(`${hostile}\n`, { status: 400 }), async (base) => {
      const answer = await ask(base);
      assert.equal(answer.kind === "refused" && answer.message, expected);
    });
  });
  await t.step("in a release refusal", async () => {
    await withServer(() => new Response(`${hostile}\n`, { status: 500 }), async (base) => {
      await assert.rejects(
        releaseLock(base, "AAAAAAAAAAAAAAAAAAAAAA", signal()),
        (error: Error) => error.message === `HTTP 500: ${expected}`,
      );
    });
  });
});

Deno.test("requestLock() refuses a token it could not pass on unharmed", async (t) => {
  for (
    const [name, respond] of [
      [
        "a header with a tab",
        () => new Response("ok", { headers: { "Lock-Token": "a\tb" } }),
      ],
      ["a header with a space", () => new Response("ok", { headers: { "Lock-Token": "a b" } })],
      ["a JSON line break", () => Response.json({ token: "x\nEVIL=1" })],
      ["a JSON escape sequence", () => Response.json({ token: "x\x1b[2J" })],
      ["a JSON token too long", () => Response.json({ token: "x".repeat(2000) })],
    ] as const
  ) {
    await t.step(name, async () => {
      await withServer(respond, async (base) => {
        const answer = await ask(base);
        assert.equal(answer.kind, "badToken");
        assert.ok(answer.kind === "badToken" && /^[\x20-\x7e]*$/.test(answer.token));
      });
    });
  }
});
