/**
 * The status page: content negotiation on `/status`, its security headers,
 * and the page itself loaded by a real headless Chromium against the real
 * program with holders, waiters and a failing dependency. The screenshot it
 * takes is `docs/status-page.png`, shown in the README.
 */
import assert from "node:assert/strict";
import type { PerCoreSlots } from "../../../lib/config.ts";
import { LockService } from "../../../lib/core/service.ts";
import { createHandler } from "../../../lib/http/handler.ts";
import type { StatusBody as Status } from "../../../lib/http/render.ts";
import { STATUS_PAGE, statusPageCsp, wantsStatusPage } from "../../../lib/http/status_page.ts";
import { staticToken, type TokenSource } from "../../../lib/http/auth.ts";
import { MemoryLockStore } from "../../../lib/stores/memory.ts";
import { ManualClock } from "../../_clock.ts";
import { startProgram } from "../../_program.ts";
import { eventually } from "../../_wait.ts";
import { which } from "../../_which.ts";

const BROWSER_ACCEPT =
  "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

function setup(auth?: TokenSource, perCore?: PerCoreSlots) {
  const clock = new ManualClock();
  const store = new MemoryLockStore(perCore ? perCore.locksPerCore * perCore.cores : 1, { clock });
  const service = new LockService({ store, clock, maxDurationMs: 60_000 });
  const handler = createHandler({
    service,
    defaultDurationMs: 10_000,
    ...(auth ? { auth } : {}),
    ...(perCore ? { perCore } : {}),
  });
  const get = (accept?: string, headers: Record<string, string> = {}) =>
    Promise.resolve(
      handler(
        new Request("http://localhost/status", {
          headers: accept === undefined ? headers : { Accept: accept, ...headers },
        }),
      ),
    );
  return {
    get,
    [Symbol.dispose]() {
      service.close();
      store.close();
    },
  };
}

Deno.test("wantsStatusPage() asks for the page when Accept names text/html and does not prefer JSON", () => {
  const wants = (accept: string | undefined) =>
    wantsStatusPage(
      new Request("http://localhost/status", accept === undefined ? {} : { headers: { accept } }),
    );
  assert.equal(wants(BROWSER_ACCEPT), true);
  assert.equal(wants("text/html"), true);
  assert.equal(wants("TEXT/HTML; charset=utf-8"), true);
  assert.equal(wants(undefined), false);
  assert.equal(wants("*/*"), false);
  assert.equal(wants("application/json"), false);
  assert.equal(wants("text/html;q=0.5, application/json"), false);
  assert.equal(wants("application/json;q=0.5, text/html"), true);
  assert.equal(wants("text/html;q=0"), false);
  assert.equal(wants("text/plain"), false);
});

Deno.test("GET /status answers the page to a browser and JSON otherwise", async (t) => {
  using api = setup();
  await t.step("a browser gets the page with strict security headers", async () => {
    const res = await api.get(BROWSER_ACCEPT);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(res.headers.get("content-security-policy"), await statusPageCsp());
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.equal(res.headers.get("vary"), "Accept");
    assert.equal(await res.text(), STATUS_PAGE);
  });
  for (const accept of [undefined, "*/*", "application/json"]) {
    await t.step(`Accept ${accept ?? "(none)"} gets JSON`, async () => {
      const res = await api.get(accept);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "application/json");
      assert.equal(res.headers.get("vary"), "Accept");
      assert.deepEqual((await res.json()).slots, { total: 1, held: 0, free: 1 });
    });
  }
});

Deno.test("GET /status shows --locksPerCore and the cores it counted beside the slots", async () => {
  using api = setup(undefined, { locksPerCore: 2, cores: 3 });
  const res = await api.get("application/json");
  assert.deepEqual((await res.json()).slots, {
    total: 6,
    held: 0,
    free: 6,
    locksPerCore: 2,
    cores: 3,
  });
});

Deno.test("GET /status guards the page like the JSON when the server has a token", async () => {
  using api = setup(staticToken("s3cret"));
  const refused = await api.get(BROWSER_ACCEPT);
  assert.equal(refused.status, 401);
  assert.doesNotMatch(await refused.text(), /<html/);
  const page = await api.get(BROWSER_ACCEPT, { Authorization: "Bearer s3cret" });
  assert.equal(page.status, 200);
  assert.equal(await page.text(), STATUS_PAGE);
});

/** What browsers send on a page load, as of 2025. */
const BROWSERS: Record<string, string> = {
  chromium:
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng," +
    "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
  firefox: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
  safari: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
};

Deno.test("GET / from a browser is sent to the status page and takes no slot", async (t) => {
  const clock = new ManualClock();
  const store = new MemoryLockStore(1, { clock });
  const service = new LockService({ store, clock, maxDurationMs: 60_000 });
  using _closed = {
    [Symbol.dispose]() {
      service.close();
      store.close();
    },
  };
  const handler = createHandler({ service, defaultDurationMs: 10_000 });
  const get = (headers: Record<string, string>) =>
    Promise.resolve(handler(new Request("http://localhost/", { headers })));
  for (const [browser, accept] of Object.entries(BROWSERS)) {
    await t.step(browser, async () => {
      const res = await get({ Accept: accept });
      assert.equal(res.status, 303);
      assert.equal(res.headers.get("location"), "status");
      assert.equal(res.headers.get("vary"), "Accept");
      assert.equal(res.headers.get("cache-control"), "no-store");
      assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
      assert.match(await res.text(), /<a href="status">/);
      assert.equal(store.held, 0);
    });
  }
  // curl sends */*, the original's Go init client nothing, ours application/json.
  for (const accept of ["*/*", undefined, "application/json"]) {
    await t.step(`Accept ${accept ?? "(none)"} still takes a lock`, async () => {
      const res = await get(accept === undefined ? {} : { Accept: accept });
      assert.equal(res.status, 200, await res.clone().text());
      assert.ok(res.headers.get("Lock-Token"));
      await res.body?.cancel();
      service.release(res.headers.get("Lock-Token")!);
    });
  }
});

/** `'sha256-…'` of `text`, as CSP writes it. */
async function cspHash(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return `'sha256-${btoa(String.fromCharCode(...new Uint8Array(digest)))}'`;
}

Deno.test("statusPageCsp() allows exactly the page's inline style and script, and nothing else", async () => {
  const inline = (tag: string) => {
    const all = [...STATUS_PAGE.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g"))];
    assert.equal(all.length, 1, `one inline <${tag}>`);
    return all[0]![1]!;
  };
  const directives = new Map(
    (await statusPageCsp()).split("; ").map((
      d,
    ) => [d.split(" ")[0]!, d.split(" ").slice(1).join(" ")]),
  );
  assert.equal(directives.get("default-src"), "'none'");
  assert.equal(directives.get("script-src"), await cspHash(inline("script")));
  assert.equal(directives.get("style-src"), await cspHash(inline("style")));
  assert.equal(directives.get("connect-src"), "'self'");
  assert.equal(directives.get("frame-ancestors"), "'none'");
  // No external asset, no inline handler, and no HTML built from data.
  assert.doesNotMatch(STATUS_PAGE, /\b(src|href)=/);
  assert.doesNotMatch(STATUS_PAGE, /\son\w+=/);
  assert.doesNotMatch(STATUS_PAGE, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
});

const CHROMIUM = which("chromium");
/** CI installs Chromium (`.ci/run`) and must never skip the browser test. */
const IN_CI = Boolean(Deno.env.get("CI"));
if (!CHROMIUM && !IN_CI) {
  console.error(
    "SKIPPED the status page browser test: chromium not found (apt-get install -y chromium)",
  );
}
/** Set to write the screenshot the README shows; otherwise it goes to a temporary file. */
const SCREENSHOT_TO_DOCS = Boolean(Deno.env.get("UPDATE_SCREENSHOT"));
const DOCS_SCREENSHOT = new URL("../../../docs/status-page.png", import.meta.url).pathname;

/**
 * Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=…`)
 * after letting the page's scripts run for 3 s of virtual time; its stdout.
 */
async function chromium(url: string, args: string[]): Promise<string> {
  assert.ok(CHROMIUM, "chromium not found: .ci/run installs it (apt-get install -y chromium)");
  const profile = await Deno.makeTempDir({ prefix: "status-page-chromium-" });
  try {
    const out = await new Deno.Command(CHROMIUM, {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        `--user-data-dir=${profile}`,
        "--virtual-time-budget=3000",
        ...args,
        url,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `chromium failed:\n${stderr}`);
    return new TextDecoder().decode(out.stdout);
  } finally {
    await Deno.remove(profile, { recursive: true });
  }
}

/** The text a reader sees in a dumped DOM: no script or style, tags as spaces, entities decoded. */
function visibleText(dom: string): string {
  return dom
    .replace(/<(script|style)[^>]*>[\s\S]*?<\/\1>/g, " ")
    .replace(/<[^>]+>/g, " ")
    .replaceAll("&lt;", "<")
    .replaceAll("&gt;", ">")
    .replaceAll("&quot;", '"')
    .replaceAll("&amp;", "&")
    .replace(/\s+/g, " ");
}

Deno.test({
  name:
    "The status page in headless Chromium shows holders, waiters, a failing dependency and gates",
  ignore: !CHROMIUM && !IN_CI,
  async fn() {
    // The dependency: up while the locks are taken (a failing one blocks grants), then stopped.
    const dependency = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const accepting = (async () => {
      try {
        for await (const conn of dependency) conn.close();
      } catch { /* closed */ }
    })();
    const target = `tcp://127.0.0.1:${dependency.addr.port}`;
    await using server = await startProgram([
      "--locks",
      "2",
      "--check",
      target,
      "--passHc",
      "500ms",
      "--failHc",
      "500ms",
      "--checkTimeout",
      "1s",
    ]);
    const status = async () => {
      const res = await fetch(`${server.url}/status`);
      return await res.json() as Status;
    };
    await eventually("the first check round passes", async () => (await status()).locking.allowed);

    const evil = "<img/src/onerror=document.title='pwned'>";
    for (const [id, duration] of [["web-1", "120s"], [evil, "60s"]] as const) {
      const res = await fetch(`${server.url}/?id=${encodeURIComponent(id)}&duration=${duration}`);
      assert.equal(res.status, 200, await res.text());
    }
    const leave = new AbortController();
    const waiting = ["w1", "w2"].map((id) =>
      fetch(`${server.url}/?wait=60s&id=${id}`, { signal: leave.signal }).then(
        (r) => r.body?.cancel(),
        () => {},
      )
    );
    try {
      await eventually("both clients wait", async () => (await status()).waiters.count === 2);
      dependency.close();
      await accepting;
      await eventually(
        "the dependency is down",
        async () => (await status()).dependencies[0]?.up === false,
      );
      const { dependencies: [down] } = await status();
      assert.ok(down?.lastError);

      const dom = await chromium(`${server.url}/status`, ["--dump-dom"]);
      const text = visibleText(dom);
      assert.match(text, /Slots held: 2 of 2/);
      assert.match(text, new RegExp(`Locking refused: dependency ${target} is down`));
      // The holders in order with their remaining time; the hostile id is shown as text.
      const holders = /Holder Remaining (.*?) Waiting/.exec(text)?.[1] ?? "";
      assert.ok(holders.includes(evil), holders);
      const web1 = /web-1 (\d+) s left/.exec(holders);
      assert.ok(web1 && Number(web1[1]) > 60 && Number(web1[1]) <= 120, holders);
      assert.match(holders, /'pwned'> (\d+) s left/);
      assert.equal((dom.match(/class="fill"/g) ?? []).length, 2, "a bar for each holder");
      // Nothing from the id became markup, and no script of its ran.
      assert.doesNotMatch(dom, /<img/i);
      assert.match(dom, /<title>startup-lock status<\/title>/);
      assert.match(text, /Waiting w1 w2 Returning None/);
      assert.ok(text.includes(`${target} down ${down.lastError}`), text);
      assert.match(text, /Gates Gate State Reason dependencies closed dependencies/);
      assert.match(text, /Store up/);

      const png = SCREENSHOT_TO_DOCS
        ? DOCS_SCREENSHOT
        : await Deno.makeTempFile({ prefix: "status-page-", suffix: ".png" });
      try {
        await chromium(`${server.url}/status`, [`--screenshot=${png}`, "--window-size=1000,800"]);
        const image = await Deno.readFile(png);
        assert.deepEqual([...image.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
        const view = new DataView(image.buffer, image.byteOffset);
        assert.deepEqual([view.getUint32(16), view.getUint32(20)], [1000, 800]);
      } finally {
        if (!SCREENSHOT_TO_DOCS) await Deno.remove(png);
      }
    } finally {
      leave.abort();
      await Promise.all(waiting);
      try {
        dependency.close();
      } catch { /* already closed */ }
    }
  },
});

Deno.test("The program sends a browser on / to the status page and keeps the slot free; curl still gets a lock", async () => {
  await using server = await startProgram(["--locks", "1"]);
  const page = await fetch(`${server.url}/`, {
    headers: { Accept: BROWSERS.firefox! },
    redirect: "manual",
  });
  assert.equal(page.status, 303);
  assert.equal(
    new URL(page.headers.get("location")!, `${server.url}/`).href,
    `${server.url}/status`,
  );
  await page.body?.cancel();
  const status = await (await fetch(`${server.url}/status`)).json() as Status;
  assert.deepEqual(status.slots, { total: 1, held: 0, free: 1 });
  const curl = await fetch(`${server.url}/`, { headers: { Accept: "*/*" } });
  assert.equal(curl.status, 200);
  assert.match(await curl.text(), /^Lock acquired/);
});

Deno.test({
  name: "Headless Chromium on / lands on the status page and takes no slot",
  ignore: !CHROMIUM && !IN_CI,
  async fn() {
    await using server = await startProgram(["--locks", "1"]);
    const dom = await chromium(`${server.url}/`, ["--dump-dom"]);
    const text = visibleText(dom);
    assert.match(text, /startup-lock status/);
    const status = await (await fetch(`${server.url}/status`)).json() as Status;
    assert.deepEqual(status.slots, { total: 1, held: 0, free: 1 });
  },
});

Deno.test({
  name: "The status page in headless Chromium shows the slots per core and the cores counted",
  ignore: !CHROMIUM && !IN_CI,
  async fn() {
    await using server = await startProgram(["--locksPerCore", "0.5"]);
    const { slots } = await (await fetch(`${server.url}/status`)).json() as Status;
    const cores = slots.cores ?? 0;
    const text = visibleText(await chromium(`${server.url}/status`, ["--dump-dom"]));
    assert.ok(
      text.includes(
        `Slots held: 0 of ${slots.total} (0.5 per core × ${cores} core${cores === 1 ? "" : "s"})`,
      ),
      text,
    );
  },
});
