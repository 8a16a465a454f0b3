/**
 * The status page: `GET /status` from a browser answers one self-contained
 * HTML page (inline style and script, no other asset) that fetches the JSON
 * form of `/status` every {@linkcode REFRESH_MS} and renders it with DOM APIs.
 * Server data only ever becomes text nodes: holder ids are chosen by clients.
 * A browser that opens `/` is sent here (`toStatusPage()` in `render.ts`)
 * instead of taking a slot. The handler loads this module at the first
 * request for the page (`wantsStatusPage()` in `request.ts` decides): a
 * server nobody looks at never loads it.
 *
 * A strict `Content-Security-Policy` allows exactly the inline style and
 * script, by their SHA-256 hashes computed once at module load, and fetches
 * to the same origin only.
 *
 * @module
 */

/** How often the page fetches `/status` again: often enough to watch a start-up, cheap to serve. */
export const REFRESH_MS = 1500;

const STYLE = `
:root { color-scheme: light; font: 15px/1.4 system-ui, sans-serif; color: #1d2330; }
body { margin: 0 auto; max-width: 960px; padding: 16px 24px; background: #f6f7f9; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 18px 0 6px; text-transform: uppercase; letter-spacing: .04em; color: #556; }
#banner { padding: 8px 12px; border-radius: 6px; margin: 10px 0; font-weight: 600; }
#banner.ok { background: #dcf3e3; color: #14532d; }
#banner.no { background: #fde2e1; color: #7f1d1d; }
#banner.error { background: #fff1c2; color: #6b4e00; }
#summary, #updated { color: #556; }
table { border-collapse: collapse; width: 100%; background: #fff; border-radius: 6px; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid #e4e6eb; vertical-align: middle; }
th { font-weight: 600; font-size: 13px; color: #556; }
.id { font-family: ui-monospace, monospace; word-break: break-all; }
.anonymous { font-style: italic; color: #778; }
.bar { width: 260px; height: 12px; background: #e4e6eb; border-radius: 6px; overflow: hidden; }
.fill { height: 100%; background: #3b82f6; transition: width 1s linear; }
.up { color: #15803d; font-weight: 600; }
.down { color: #b91c1c; font-weight: 600; }
.unknown { color: #778; }
.empty { color: #778; font-style: italic; margin: 4px 0; }
ol { margin: 4px 0; background: #fff; border-radius: 6px; padding: 6px 6px 6px 36px; }
`;

const SCRIPT = `
"use strict";
const REFRESH_MS = ${REFRESH_MS};
const $ = (id) => document.getElementById(id);
let offsetMs = 0;

/** An element with text (never HTML) and an optional class. */
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.append(cell instanceof Node ? cell : el("span", cell));
    tr.append(td);
  }
  return tr;
}

function table(headers, rows, emptyText) {
  if (rows.length === 0) return el("p", emptyText, "empty");
  const t = document.createElement("table");
  const head = document.createElement("tr");
  for (const h of headers) head.append(el("th", h));
  t.append(head, ...rows);
  return t;
}

function idNode(id) {
  return id === null ? el("span", "anonymous", "id anonymous") : el("span", id, "id");
}

function list(ids, emptyText) {
  if (ids.length === 0) return el("p", emptyText, "empty");
  const ol = document.createElement("ol");
  for (const id of ids) {
    const li = document.createElement("li");
    li.append(idNode(id));
    ol.append(li);
  }
  return ol;
}

function state(value, yes, no) {
  if (value === null) return el("span", "unknown", "unknown");
  return value ? el("span", yes, "up") : el("span", no, "down");
}

function banner(text, cls) {
  const b = $("banner");
  b.textContent = text;
  b.className = cls;
}

function render(s) {
  const now = Date.now() + offsetMs;
  const held = s.slots.held === null ? "unknown (the store does not answer)" : s.slots.held;
  $("summary").textContent = "Slots held: " + held + " of " + s.slots.total +
    (s.slots.cores === undefined ? "" : " (" + s.slots.locksPerCore + " per core × " +
      s.slots.cores + (s.slots.cores === 1 ? " core)" : " cores)"));
  banner(
    s.locking.allowed ? "Locking allowed" : "Locking refused: " + s.locking.message,
    s.locking.allowed ? "ok" : "no",
  );
  $("holders").replaceChildren(table(["Holder", "Remaining", ""], s.holders.map((h) => {
    const start = Date.parse(h.acquiredAt);
    const end = Date.parse(h.expiresAt);
    // The clock offset comes from a Date header of whole seconds: never show more than the lease.
    const left = Math.max(0, Math.min(end - start, end - now));
    const fraction = end > start ? Math.min(1, left / (end - start)) : 0;
    const bar = el("div", undefined, "bar");
    const fill = el("div", undefined, "fill");
    fill.style.width = (fraction * 100).toFixed(1) + "%";
    bar.append(fill);
    return row([idNode(h.id), bar, Math.ceil(left / 1000) + " s left"]);
  }), "No holders"));
  $("waiters").replaceChildren(list(s.waiters.ids, "Nobody is waiting"));
  $("returning").replaceChildren(list(s.returning.ids, "None"));
  $("dependencies").replaceChildren(table(
    ["Dependency", "State", "Last error", "Latency", "Last checked"],
    s.dependencies.map((d) => row([
      el("span", d.url, "id"),
      state(d.up, "up", "down"),
      d.lastError ?? "",
      d.latencyMs === null ? "" : d.latencyMs.toFixed(1) + " ms",
      d.lastCheckedAt === null ? "never" : new Date(d.lastCheckedAt).toLocaleTimeString(),
    ])),
    "No dependency checks",
  ));
  $("gates").replaceChildren(table(
    ["Gate", "State", "Reason"],
    s.gates.map((g) => row([g.name, state(g.open, "open", "closed"), g.reason ?? ""])),
    "No gates",
  ));
  $("store").replaceChildren(
    state(s.store.up, "up", "down"),
    el("span", s.store.error === null ? "" : " " + s.store.error),
  );
  $("updated").textContent = "Updated " + new Date().toLocaleTimeString() +
    "; refreshes every " + REFRESH_MS / 1000 + " s";
}

async function refresh() {
  try {
    const res = await fetch(location.pathname, {
      headers: { Accept: "application/json" },
      cache: "no-store",
      credentials: "same-origin",
    });
    if (res.status === 401) {
      banner(
        "Unauthorized (401): this server needs a bearer token, which this page cannot send. " +
          "Read /status with curl -H 'Authorization: Bearer TOKEN' instead.",
        "error",
      );
      return;
    }
    if (!res.ok) {
      banner("The server answered " + res.status + " " + res.statusText, "error");
      return;
    }
    const date = Date.parse(res.headers.get("Date") ?? "");
    // The Date header has whole seconds: add half of one for the mean truncation.
    if (!Number.isNaN(date)) offsetMs = date + 500 - Date.now();
    render(await res.json());
  } catch (error) {
    banner("Cannot reach the server: " + error.message, "error");
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}
refresh();
`;

/** The page; `STYLE` and `SCRIPT` must stay byte-identical to what the hashes cover. */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>startup-lock status</title>
<style>${STYLE}</style>
</head>
<body>
<h1>startup-lock status</h1>
<p id="summary">Loading…</p>
<div id="banner" class="error">Loading /status…</div>
<h2>Holders</h2>
<div id="holders"></div>
<h2>Waiting</h2>
<div id="waiters"></div>
<h2>Returning</h2>
<div id="returning"></div>
<h2>Dependencies</h2>
<div id="dependencies"></div>
<h2>Gates</h2>
<div id="gates"></div>
<h2>Store</h2>
<div id="store"></div>
<p id="updated"></p>
<script>${SCRIPT}</script>
</body>
</html>
`;

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return `'sha256-${btoa(String.fromCharCode(...new Uint8Array(digest)))}'`;
}

let csp: Promise<string> | undefined;

/**
 * The page's `Content-Security-Policy`: its own inline style and script,
 * same-origin fetches, nothing else. Computed at the first request for the
 * page, not at start: Web Crypto's digest makes the runtime touch about 1 MB
 * more of its own code, which a server nobody looks at need not hold.
 */
export function statusPageCsp(): Promise<string> {
  return csp ??= (async () =>
    [
      "default-src 'none'",
      `script-src ${await sha256(SCRIPT)}`,
      `style-src ${await sha256(STYLE)}`,
      "connect-src 'self'",
      "img-src 'none'",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join("; "))();
}

/** The status page as a response, with its security headers. */
export async function statusPage(): Promise<Response> {
  return new Response(STATUS_PAGE, {
    headers: {
      "Content-Type": "text/html; charset=utf-8",
      "Content-Security-Policy": await statusPageCsp(),
      "X-Content-Type-Options": "nosniff",
      "Cache-Control": "no-store",
      "Referrer-Policy": "no-referrer",
      Vary: "Accept",
    },
  });
}
