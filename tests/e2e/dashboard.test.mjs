// Browser end-to-end test of the live KPI dashboard (web/dashboard.html, GET /dashboard).
//
//   PERSONA_URL=http://127.0.0.1:8080 node --test dashboard.test.mjs
//
// Opens /dashboard?interval_ms=500 in Debian's Chromium (playwright-core), makes
// traffic from Node (sessions, chat steps, 404s) and checks that the tiles and
// the uPlot charts show it; that the page's numbers agree with /metrics read
// here independently (the peak-users gauge, and a rate and a p99 recomputed in
// Node from the very scrapes the page used); the parser and PromQL arithmetic
// on crafted input (escaped label values, +Inf, NaN, a counter reset, bucket
// interpolation); series that appear later; charts of absent features; pause;
// a server that cannot be reached; and a phone-sized layout without horizontal
// scrolling whose charts follow the container's width.
// Optional: E2E_SCREENSHOT=/path/x.png keeps x-dashboard.png and
// x-dashboard-mobile.png (or E2E_DASHBOARD_SCREENSHOT / E2E_DASHBOARD_SCREENSHOT_MOBILE),
// CHROMIUM=/path/to/chromium, E2E_WEB_FROM_DISK=1 serves /dashboard and
// /assets/uPlot.* from web/ in this checkout (tests page changes without a rebuild).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const WEB_DIR = fileURLToPath(new URL("../../web/", import.meta.url));
const FROM_DISK = !!process.env.E2E_WEB_FROM_DISK;
const WEB_FILES = {
  "/dashboard": ["dashboard.html", "text/html; charset=utf-8"],
  "/assets/uPlot.iife.min.js": ["assets/uPlot.iife.min.js", "text/javascript; charset=utf-8"],
  "/assets/uPlot.min.css": ["assets/uPlot.min.css", "text/css; charset=utf-8"],
};

const BASE = (process.env.PERSONA_URL || "").replace(/\/+$/, "");
const WAIT = Number(process.env.E2E_WAIT_MS || 15000);
const INTERVAL = 500;
const shotName = (suffix) => (process.env.E2E_SCREENSHOT || "").replace(/(\.png)?$/i, `-${suffix}.png`);
const SHOT = process.env.E2E_DASHBOARD_SCREENSHOT || (process.env.E2E_SCREENSHOT ? shotName("dashboard") : "");
const SHOT_MOBILE = process.env.E2E_DASHBOARD_SCREENSHOT_MOBILE ||
  (process.env.E2E_SCREENSHOT ? shotName("dashboard-mobile") : "");
const STEP_ROUTE = "/v1/sessions/{id}/messages";
const CHART_IDS = ["step-latency", "route-p99", "errors", "users", "mqtt", "store", "ai", "ai-avoided", "flags", "variants"];

let browser, context, page;
const pageErrors = [];
const consoleErrors = [];
let expectNetworkErrors = false;   // while the test itself cuts /metrics off
const metricsRequests = [];

// ---------- an independent reading of /metrics (not the page's code) ----------
function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line.trim() || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)/.exec(line);
    assert.ok(m, `unparsable /metrics line: ${line}`);
    const labels = {};
    for (const l of (m[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    const v = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    out.push({ name: m[1], labels, value: v, key: m[1] + JSON.stringify(Object.entries(labels).sort()) });
  }
  return out;
}
const pick = (samples, name, f = () => true) => samples.filter((s) => s.name === name && f(s.labels));
const total = (samples, name, f) => pick(samples, name, f).reduce((a, s) => a + s.value, 0);

function increase(prev, cur, name, f) {
  const before = new Map(pick(prev, name, f).map((s) => [s.key, s.value]));
  let d = 0;
  for (const s of pick(cur, name, f)) {
    const p = before.get(s.key);
    d += p === undefined ? s.value : s.value >= p ? s.value - p : s.value;
  }
  return d;
}

// PromQL's histogram_quantile over the increase of the _bucket series (summed by le).
function quantileOfIncrease(q, prev, cur, name, f) {
  const byLe = new Map();
  const before = new Map(pick(prev, name + "_bucket", f).map((s) => [s.key, s.value]));
  for (const s of pick(cur, name + "_bucket", f)) {
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    const p = before.get(s.key) ?? 0;
    byLe.set(le, (byLe.get(le) || 0) + (s.value >= p ? s.value - p : s.value));
  }
  const b = [...byLe].sort((x, y) => x[0] - y[0]);
  const n = b.length ? b[b.length - 1][1] : 0;
  if (!n) return null;
  const rank = q * n;
  for (let i = 0; i < b.length; i++) {
    if (b[i][1] >= rank) {
      if (b[i][0] === Infinity) return b[i - 1][0] * 1000;
      const lo = i ? b[i - 1][0] : 0, below = i ? b[i - 1][1] : 0;
      return (lo + (b[i][0] - lo) * (rank - below) / (b[i][1] - below)) * 1000;   // ms
    }
  }
  return null;
}

async function scrape() {
  const res = await fetch(BASE + "/metrics");
  assert.equal(res.status, 200, "GET /metrics (auth off)");
  return parseMetrics(await res.text());
}

// ---------- traffic ----------
async function call(method, path, body) {
  const res = await fetch(BASE + path, { method, headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  return { status: res.status, data: text && res.headers.get("content-type")?.includes("json") ? JSON.parse(text) : text };
}

function startTraffic(users = 3) {
  let stop = false;
  const stats = { steps: 0, notFound: 0, errors: [] };
  const tag = Math.random().toString(36).slice(2, 8);
  const done = (async () => {
    const sids = [];
    for (let i = 0; i < users; i++) {
      const r = await call("POST", "/v1/sessions", { user_id: `e2e-dash-${tag}-${i}` });
      if (r.status !== 201) { stats.errors.push(`POST /v1/sessions → ${r.status}`); continue; }
      sids.push(r.data.session_id);
    }
    const lines = ["Hi, I'm Dana Park and I'm 41", "I live in Seoul", "I work as a pilot", "thanks!", "what do you know?"];
    for (let n = 0; !stop; n++) {
      for (const sid of sids) {
        const r = await call("POST", `/v1/sessions/${sid}/messages`, { text: lines[n % lines.length] });
        if (r.status === 200 || r.status === 202) stats.steps++;
        else stats.errors.push(`POST messages → ${r.status}`);
      }
      const nf = await call("GET", n % 2 ? "/v1/sessions/no-such-session" : "/no/such/route");
      if (nf.status === 404) stats.notFound++;
      await new Promise((r) => setTimeout(r, 60));
    }
  })();
  return { stats, stop: async () => { stop = true; await done; return stats; } };
}

// ---------- page helpers ----------
function watch(p, name, { consoleErrorsCount = true } = {}) {
  p.on("pageerror", (err) => pageErrors.push(`${name}: ${err.message}`));
  p.on("console", (msg) => {
    if (process.env.E2E_VERBOSE) console.error(`[${name} console.${msg.type()}] ${msg.text()}`);
    if (msg.type() !== "error" || !consoleErrorsCount) return;
    if (expectNetworkErrors && /Failed to load resource|ERR_/.test(msg.text())) return;
    consoleErrors.push(`${name}: ${msg.text()}`);
  });
  p.on("request", (req) => { if (new URL(req.url()).pathname === "/metrics") metricsRequests.push({ page: name, at: Date.now() }); });
  return p;
}
const tileValue = (p, id) => p.locator(`#tile-${id} .value`).getAttribute("data-value").then((v) => (v === "" || v === null ? null : Number(v)));
const charts = (p) => p.evaluate(() => window.personaDashboard.charts());

async function waitFor(p, fn, arg, what) {
  try {
    return await (await p.waitForFunction(fn, arg, { timeout: WAIT, polling: 100 })).jsonValue();
  } catch (err) {
    const state = await p.evaluate(() => ({
      banner: document.querySelector("#banner")?.hidden ? "" : document.querySelector("#banner")?.textContent,
      status: document.querySelector("#statusline")?.textContent.replace(/\s+/g, " "),
      tiles: [...document.querySelectorAll(".tile")].map((t) => `${t.id}=${t.querySelector(".value").dataset.value}`),
    })).catch(() => ({}));
    throw new Error(`${what}: not within ${WAIT} ms (${err.message.split("\n")[0]}); page: ${JSON.stringify(state)}`);
  }
}

async function layoutProblems(p) {
  return p.evaluate(() => {
    const problems = [];
    const vw = window.innerWidth;
    if (document.documentElement.scrollWidth > vw) problems.push(`scrollWidth ${document.documentElement.scrollWidth} > innerWidth ${vw}`);
    for (const [id, u] of Object.entries(window.personaDashboard.plots)) {
      const r = u.root.getBoundingClientRect();
      const box = u.root.parentElement.clientWidth;
      if (u.width > vw || r.width > vw || r.right > vw + 0.5) problems.push(`${id}: chart ${u.width}px / box right ${r.right} beyond ${vw}`);
      if (Math.abs(u.width - box) > 2) problems.push(`${id}: chart ${u.width}px in a ${box}px container (not resized)`);
      for (const c of u.root.querySelectorAll("canvas"))
        if (c.getBoundingClientRect().right > vw + 0.5) problems.push(`${id}: canvas past the viewport`);
    }
    return problems;
  });
}

before(async () => {
  assert.ok(BASE, "set PERSONA_URL, e.g. http://127.0.0.1:8080 (tests/e2e/run.sh does this)");
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  context = await newContext({ viewport: { width: 1280, height: 900 } });
});

async function newContext(opts) {
  const ctx = await browser.newContext(opts);
  if (FROM_DISK) {
    await ctx.route((url) => url.origin === new URL(BASE).origin && url.pathname in WEB_FILES, (route) => {
      const [file, type] = WEB_FILES[new URL(route.request().url()).pathname];
      return route.fulfill({ status: 200, contentType: type, body: readFileSync(WEB_DIR + file) });
    });
  }
  return ctx;
}

after(async () => {
  await browser?.close();
});

test("dashboard: live KPIs from /metrics", { timeout: 180000 }, async (t) => {
  let traffic;
  t.after(async () => { await traffic?.stop().catch(() => {}); });

  await t.test("the page loads and polls /metrics at ?interval_ms", async () => {
    page = watch(await context.newPage(), "desktop");
    const res = await page.goto(`${BASE}/dashboard?interval_ms=${INTERVAL}`);
    assert.equal(res.status(), 200, "GET /dashboard");
    assert.match(await page.title(), /persona/i);
    assert.equal(await page.evaluate(() => typeof window.uPlot), "function", "uPlot loaded from /assets");
    assert.equal(await page.evaluate(() => window.personaDashboard.intervalMs), INTERVAL);
    assert.equal(await page.locator("[data-chart]").count(), CHART_IDS.length, "one card per chart");
    for (const id of CHART_IDS) {
      const sec = page.locator(`[data-chart="${id}"]`);
      assert.ok((await sec.locator("h2").textContent()).trim().length > 0, `${id} has a heading`);
      assert.ok((await sec.locator(".plot").getAttribute("aria-label")).length > 0, `${id} has an aria-label`);
    }
    await waitFor(page, () => window.personaDashboard.sampleCount() >= 2, null, "two samples");
    const from = Date.now();
    const n0 = metricsRequests.filter((r) => r.page === "desktop").length;
    await page.waitForTimeout(2600);
    const polled = metricsRequests.filter((r) => r.page === "desktop" && r.at >= from).length;
    assert.ok(polled >= 3 && polled <= 8, `about one scrape per ${INTERVAL} ms (${polled} in 2.6 s, ${n0} before)`);
    assert.match(await page.locator("#server").textContent(), new RegExp(new URL(BASE).host.replace(/\./g, "\\.")));
    assert.notEqual((await page.locator("#last-scrape").textContent()).trim(), "never", "the last scrape time shows");
    assert.equal(await page.locator("#banner").isVisible(), false, "no banner while scrapes succeed");
  });

  await t.test("?interval_ms is at least 250, and 2 s by default", async () => {
    const p = watch(await context.newPage(), "interval");
    await p.goto(`${BASE}/dashboard?interval_ms=10`);
    assert.equal(await p.evaluate(() => window.personaDashboard.intervalMs), 250);
    await p.goto(`${BASE}/dashboard`);
    assert.equal(await p.evaluate(() => window.personaDashboard.intervalMs), 2000);
    await p.close();
  });

  await t.test("parsing and PromQL arithmetic on crafted input", async () => {
    const r = await page.evaluate(() => {
      const d = window.personaDashboard;
      const text = [
        "# HELP x_total a counter with \"quotes\"",
        "# TYPE x_total counter",
        'x_total{path="a \\"quoted\\" \\\\ value\\nnext",code="2xx"} 3',
        'x_total{code="4xx" , path="p"} 1e3 1700000000000',
        "g_up +Inf",
        "g_down -Inf",
        "g_nan NaN",
        'h_bucket{le="0.1"} 10',
        'h_bucket{le="0.2"} 20',
        'h_bucket{le="+Inf"} 20',
        "broken{le=\"1\" 3",
        "",
      ].join("\n");
      const p = d.parse(text);
      const q = (qq, b) => d.histogramQuantile(qq, b);
      const inf = [{ le: 1, count: 5 }, { le: 2, count: 5 }, { le: Infinity, count: 10 }];
      const prev = d.index(d.parse("persona_steps_total 100\npersona_http_responses_total{route=\"x\",code=\"4xx\"} 50\n" +
        'persona_http_request_duration_seconds_bucket{route="/v1/sessions/{id}/messages",le="0.001"} 90\n' +
        'persona_http_request_duration_seconds_bucket{route="/v1/sessions/{id}/messages",le="0.01"} 100\n' +
        'persona_http_request_duration_seconds_bucket{route="/v1/sessions/{id}/messages",le="+Inf"} 100\n'));
      const cur = d.index(d.parse("persona_steps_total 7\npersona_http_responses_total{route=\"x\",code=\"4xx\"} 54\n" +
        'persona_http_request_duration_seconds_bucket{route="/v1/sessions/{id}/messages",le="0.001"} 92\n' +
        'persona_http_request_duration_seconds_bucket{route="/v1/sessions/{id}/messages",le="0.01"} 110\n' +
        'persona_http_request_duration_seconds_bucket{route="/v1/sessions/{id}/messages",le="+Inf"} 110\n'));
      const v = d.derive(prev, cur, 2);
      // after a restart every counter is lower: the whole histogram is the increase
      const restarted = d.index(d.parse(
        'persona_http_request_duration_seconds_bucket{route="/v1/sessions/{id}/messages",le="0.001"} 1\n' +
        'persona_http_request_duration_seconds_bucket{route="/v1/sessions/{id}/messages",le="0.01"} 4\n' +
        'persona_http_request_duration_seconds_bucket{route="/v1/sessions/{id}/messages",le="+Inf"} 4\n'));
      const v2 = d.derive(cur, restarted, 1);
      const STEP = "/v1/sessions/{id}/messages";
      const kpi = (users, cost, tok, cache, gate, store, flag) => d.index(d.parse([
        `persona_concurrent_users ${users}`,
        `persona_ai_cost_microusd_total{tier="primary"} ${cost[0]}`, `persona_ai_cost_microusd_total{tier="cheap"} ${cost[1]}`,
        `persona_ai_tokens_total{direction="in",tier="primary"} ${tok[0]}`, `persona_ai_tokens_total{direction="out",tier="primary"} ${tok[1]}`,
        `persona_ai_tokens_total{direction="in",tier="cheap"} ${tok[2]}`, `persona_ai_tokens_total{direction="out",tier="cheap"} ${tok[3]}`,
        `persona_response_cache_total{outcome="hit"} ${cache[0]}`, `persona_response_cache_total{outcome="semantic_hit"} ${cache[1]}`,
        `persona_response_cache_total{outcome="miss"} ${cache[2]}`,
        `persona_gate_total{outcome="answered"} ${gate[0]}`, `persona_gate_total{outcome="passed"} ${gate[1]}`,
        `persona_store_appends_total ${store[0]}`, `persona_store_fsyncs_total ${store[1]}`,
        ...flag.map(([f, v, n]) => `persona_flag_evaluations_total{flag="${f}",variant="${v}"} ${n}`),
        ...flag.flatMap(([f, v, n]) => [
          `persona_variant_http_responses_total{flag="${f}",variant="${v}",route="${STEP}",code="2xx"} ${10 * n}`,
          `persona_variant_http_responses_total{flag="${f}",variant="${v}",route="${STEP}",code="5xx"} ${n}`,
          `persona_variant_http_request_duration_seconds_bucket{flag="${f}",variant="${v}",route="${STEP}",le="0.01"} ${10 * n}`,
          `persona_variant_http_request_duration_seconds_bucket{flag="${f}",variant="${v}",route="${STEP}",le="+Inf"} ${11 * n}`]),
      ].join("\n")));
      const k0 = kpi(4, [1000, 0], [10, 20, 30, 40], [5, 5, 5], [7, 7], [100, 10], [["persona.model", "a", 3]]);
      const k1 = kpi(4, [3000, 400], [20, 40, 30, 50], [6, 6, 7], [8, 10], [120, 14], [["persona.model", "a", 5], ["persona.model", "b", 4]]);
      const kv = d.derive(k0, k1, 2);
      const idle = d.derive(k0, kpi(0, [3000, 400], [10, 20, 30, 40], [5, 5, 5], [7, 7], [100, 10], []), 2);
      return {
        kv, idleCost: idle.costPerUser, idleSpend: idle.aiUsdPerHour, idleCache: idle.cacheHit, idleBatch: idle.batch,
        samples: p.samples, errors: p.errors,
        q50: q(0.5, [{ le: 0.1, count: 10 }, { le: 0.2, count: 20 }, { le: Infinity, count: 20 }]),
        q75: q(0.75, [{ le: 0.2, count: 20 }, { le: Infinity, count: 20 }, { le: 0.1, count: 10 }]),
        qInf: q(0.9, inf), noInf: q(0.5, [{ le: 1, count: 3 }]), empty: q(0.5, [{ le: 1, count: 0 }, { le: Infinity, count: 0 }]),
        steps: v.steps, r4xx: v.r4xx, p50: v.stepP50, p99: v.stepP99, resetP50: v2.stepP50, off: "flag:x:y" in v,
        hasCache: "cacheHit" in v,
      };
    });
    assert.equal(r.errors, 1, "the broken line is skipped and counted");
    const [a, b, up, down, nan] = r.samples;
    assert.deepEqual({ ...a.labels }, { path: 'a "quoted" \\ value\nnext', code: "2xx" }, "escaped label value");
    assert.equal(a.value, 3);
    assert.deepEqual([b.labels.code, b.labels.path, b.value], ["4xx", "p", 1000], "spaces, exponent, timestamp");
    assert.equal(up.value, Infinity);
    assert.equal(down.value, -Infinity);
    assert.ok(Number.isNaN(nan.value), "NaN");
    assert.equal(r.samples.length, 8, "8 samples (the broken line dropped)");
    assert.ok(Math.abs(r.q50 - 0.1) < 1e-12, `p50 at the top of the first bucket (${r.q50})`);
    assert.ok(Math.abs(r.q75 - 0.15) < 1e-12, `p75 interpolated inside (0.1, 0.2] (${r.q75})`);
    assert.equal(r.qInf, 2, "a rank in +Inf answers the highest finite bound");
    assert.ok(Number.isNaN(r.noInf), "no +Inf bucket: NaN");
    assert.ok(Number.isNaN(r.empty), "no observations: NaN");
    assert.equal(r.steps, 3.5, "a counter that went down (100 → 7) is a reset: 7 in 2 s, not negative");
    assert.equal(r.r4xx, 2, "4 more 4xx in 2 s");
    // Δ buckets: 2 at ≤1 ms, 8 more at ≤10 ms (of 10): p50 rank 5 → 1 + 9·(3/8) ms; p99 rank 9.9 → 1 + 9·(7.9/8)
    assert.ok(Math.abs(r.p50 - (1 + 9 * 3 / 8)) < 1e-9, `step p50 ${r.p50} ms`);
    assert.ok(Math.abs(r.p99 - (1 + 9 * 7.9 / 8)) < 1e-9, `step p99 ${r.p99} ms`);
    assert.ok(Math.abs(r.resetP50 - (1 + 9 * 1 / 3)) < 1e-9, `after a restart the histogram restarts (${r.resetP50} ms)`);
    // 2,400 µUSD in 2 s = 1,200 µUSD/s = $4.32 an hour, over 4 concurrent users: $1.08 per user per hour
    assert.ok(Math.abs(r.kv.aiUsdPerHour - 4.32) < 1e-9, `AI spend ${r.kv.aiUsdPerHour} $/h`);
    assert.ok(Math.abs(r.kv.costPerUser - 1.08) < 1e-9, `cost per active user ${r.kv.costPerUser} $/h`);
    assert.equal(r.idleCost, null, "no concurrent users: no cost per user (not Infinity)");
    assert.ok(r.idleSpend > 0, "but the spend is still shown");
    assert.equal(r.kv["tier:primary"], 15, "tokens/s of a tier sum both directions: (10 + 20) / 2");
    assert.equal(r.kv["tier:cheap"], 5, "(0 + 10) / 2");
    assert.equal(r.kv.cacheHit, 50, "1 hit + 1 semantic hit of 4 lookups");
    assert.equal(r.kv.gateAnswered, 25, "1 answered of 4 classified");
    assert.equal(r.idleCache, null, "no lookups: no hit rate (not 0 %, not NaN)");
    assert.equal(r.kv.batch, 5, "20 appends in 4 fsyncs");
    assert.equal(r.idleBatch, null, "no fsyncs: no batch size");
    assert.equal(r.kv["flag:persona.model:a"], 1, "flag:variant per second");
    assert.equal(r.kv["flag:persona.model:b"], 2, "a variant that appeared since the last scrape counts from 0");
    // Variant a: Δ 20 2xx + 2 5xx → 2/22 5xx; Δ buckets 20 at ≤10 ms of 22: p99 rank 21.78 in +Inf → 10 ms.
    assert.ok(Math.abs(r.kv["v5xx:persona.model:a"] - 100 * 2 / 22) < 1e-9, `5xx share of a ${r.kv["v5xx:persona.model:a"]}`);
    assert.equal(r.kv["vp99:persona.model:a"], 10, "p99 of a in the +Inf bucket: the highest finite bound, 10 ms");
    assert.ok(Math.abs(r.kv["v5xx:persona.model:b"] - 100 * 4 / 44) < 1e-9, "a new variant counts from 0");
    assert.equal(r.off, false);
    assert.equal(r.hasCache, false, "an absent metric makes no series");
  });

  await t.test("traffic shows in the tiles and the charts", async () => {
    traffic = startTraffic(3);
    await waitFor(page, () => {
      const v = (id) => Number(document.querySelector(`#tile-${id} .value`).dataset.value || "0");
      return v("steps") > 0 && v("4xx") > 0 && v("users") >= 1;
    }, null, "steps/s > 0, 4xx/s > 0 and concurrent users ≥ 1 in the tiles");
    const steps = await tileValue(page, "steps");
    assert.match(await page.locator("#tile-steps .value").innerText(), /^\d[\d.,]*\s*\/s$/, "the steps tile reads as a rate");
    assert.ok(steps > 0 && steps < 10000, `steps/s ${steps}`);
    await waitFor(page, (route) => {
      const c = window.personaDashboard.charts();
      return c["step-latency"].state === "live" && c["step-latency"].values.every((n) => n > 0) &&
        c["route-p99"].keys.includes("route:" + route) && c.errors.values[0] > 0 && c.users.values[0] > 0;
    }, STEP_ROUTE, "the latency, per-route, error and user charts have data");
    const c = await charts(page);
    assert.deepEqual(c["step-latency"].labels, ["p50", "p95", "p99"]);
    for (const id of ["step-latency", "route-p99", "errors", "users", "mqtt", "store", "ai"]) {
      assert.equal(c[id].state, "live", `${id} is drawn (${JSON.stringify(c[id])})`);
      assert.ok(await page.locator(`[data-chart="${id}"] canvas`).count() > 0, `${id} has a canvas`);
      assert.ok(c[id].points >= 2, `${id} has points`);
    }
    const ok = await page.evaluate(() => {
      const u = window.personaDashboard.plots["step-latency"];
      const p99 = u.data[3].filter((x) => x != null);
      const p50 = u.data[1].filter((x) => x != null);
      return p99.length > 0 && p99.every((x) => x > 0) && p50.every((x, i) => x <= p99[i] + 1e-9);
    });
    assert.ok(ok, "latency values are positive and p50 ≤ p99");
    assert.match(await page.locator('[data-chart="step-latency"] .plot').getAttribute("aria-label"), /p99 [\d.]+ ms/,
      "the chart's label reads the latest p99");
    assert.deepEqual(traffic.stats.errors, [], "the traffic itself was answered");
  });

  await t.test("the page's numbers match /metrics read independently", async () => {
    // The same two scrapes the page used, recomputed here.
    const got = await waitFor(page, () => {
      const d = window.personaDashboard;
      const last = d.samples().at(-1);
      const pair = d.lastPair();
      return last && pair && last.v.steps > 0 && last.v.stepP99 != null && last.v.r4xx > 0 ? { v: last.v, pair } : null;
    }, null, "a sample with steps, 4xx and a step p99");
    const prev = parseMetrics(got.pair.prev), cur = parseMetrics(got.pair.cur), dt = got.pair.dt;
    const close = (a, b, what) => assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: page ${a}, test ${b}`);
    close(got.v.steps, increase(prev, cur, "persona_steps_total") / dt, "steps/s");
    close(got.v.r4xx, increase(prev, cur, "persona_http_responses_total", (l) => l.code === "4xx") / dt, "4xx/s");
    for (const [q, k] of [[0.5, "stepP50"], [0.95, "stepP95"], [0.99, "stepP99"]])
      close(got.v[k], quantileOfIncrease(q, prev, cur, "persona_http_request_duration_seconds", (l) => l.route === STEP_ROUTE), k);
    close(got.v.users, total(cur, "persona_concurrent_users"), "concurrent users");
    // Per flag variant (run.sh's flags file splits the users over two
    // variants of persona.write_mode): the step p99 and the 5xx share.
    if (pick(cur, "persona_variant_http_responses_total").length) {
      const vkeys = Object.keys(got.v).filter((k) => k.startsWith("vp99:"));
      assert.ok(vkeys.length >= 1, `a step p99 per variant (${Object.keys(got.v)})`);
      for (const k of vkeys) {
        const [flag, variant] = [k.slice(5, k.lastIndexOf(":")), k.slice(k.lastIndexOf(":") + 1)];
        const f = (l) => l.flag === flag && l.variant === variant;
        close(got.v[k], quantileOfIncrease(0.99, prev, cur, "persona_variant_http_request_duration_seconds",
          (l) => f(l) && l.route === STEP_ROUTE), k);
        const n = increase(prev, cur, "persona_variant_http_responses_total", f);
        close(got.v["v5xx:" + flag + ":" + variant],
          100 * increase(prev, cur, "persona_variant_http_responses_total", (l) => f(l) && l.code === "5xx") / n,
          "5xx share " + k);
      }
    }

    await traffic.stop();
    // The peak only moves with new users: once traffic stops it must settle on the gauge
    // (which persona refreshes once a second, so give it that long to count the 3 users).
    let peak = 0;
    for (const until = Date.now() + 5000; Date.now() < until; await new Promise((r) => setTimeout(r, 200))) {
      peak = total(await scrape(), "persona_concurrent_users_peak");
      if (peak >= 3) break;
    }
    assert.ok(peak >= 3, `persona_concurrent_users_peak ${peak} counts the test's 3 users`);
    await waitFor(page, (p) => document.querySelector("#tile-users-peak .value").dataset.value === String(p), peak,
      `the peak tile shows persona_concurrent_users_peak (${peak})`);
    assert.equal((await page.locator("#tile-users-peak .value").innerText()).trim(), String(peak), "and reads it as text");
    // The cost tile is defined (see its footnote) and numeric once users are active.
    assert.match(await page.locator("#cost-def").innerText(), /AI spend rate per hour.*÷ concurrent users/s);
    assert.match(await page.locator("#tile-cost").getAttribute("title"), /micro-USD/);
  });

  await t.test("an MQTT client shows in the MQTT tile and chart", async () => {
    // A raw MQTT 3.1.1 client over the HTTP port's WebSocket (/mqtt), from a
    // page of its own: CONNECT, then QoS 0 PUBLISHes on an open topic.
    // (not the dashboard: its /favicon.ico 404 is no concern of this test)
    const mq = watch(await context.newPage(), "mqtt-client", { consoleErrorsCount: false });
    await mq.goto(BASE + "/healthz");
    const code = await mq.evaluate(async (url) => {
      const enc = new TextEncoder();
      const str = (s) => { const b = enc.encode(s); return [b.length >> 8, b.length & 255, ...b]; };
      const packet = (type, body) => {
        const head = [type];
        let n = body.length;
        do { let d = n % 128; n = Math.floor(n / 128); if (n) d |= 128; head.push(d); } while (n);
        return new Uint8Array([...head, ...body]);
      };
      const ws = new WebSocket(url, "mqtt");
      ws.binaryType = "arraybuffer";
      await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error("WebSocket /mqtt failed")); });
      const connack = new Promise((ok) => { ws.onmessage = (e) => ok([...new Uint8Array(e.data)]); });
      ws.send(packet(0x10, [...str("MQTT"), 4, 0x02, 0, 60, ...str("e2e-dash-" + Math.random().toString(36).slice(2, 10))]));
      const ack = await connack;
      window.e2eMqtt = { ws, publish: (n) => { for (let i = 0; i < n; i++) ws.send(packet(0x30, [...str("e2e/dashboard"), ...enc.encode("hi " + i)])); } };
      return ack[0] === 0x20 ? ack[3] : -1;
    }, BASE.replace(/^http/, "ws") + "/mqtt");
    assert.equal(code, 0, "CONNACK accepted");
    try {
      const gauge = async () => total(await scrape(), "persona_mqtt_connections");
      assert.ok(await gauge() >= 1, "persona_mqtt_connections counts the client");
      // Compare with the gauge read between two of the page's scrapes, until both agree.
      let last;
      for (let i = 0; i < 20; i++) {
        const g = await gauge();
        last = await tileValue(page, "mqtt");
        if (last === g && g >= 1) break;
        await page.waitForTimeout(INTERVAL / 2);
      }
      const g = await gauge();
      assert.equal(last, g, `the MQTT tile shows persona_mqtt_connections (${g})`);
      await mq.evaluate(() => window.e2eMqtt.publish(20));
      await waitFor(page, () => {
        const u = window.personaDashboard.plots.mqtt;
        const i = u ? u.series.findIndex((s) => s.label === "in/s") : -1;
        return i > 0 && u.data[i].some((x) => x > 0);
      }, null, "MQTT messages in per second in the chart");
    } finally {
      await mq.evaluate(() => window.e2eMqtt && window.e2eMqtt.ws.close()).catch(() => {});
      await mq.close();
    }
  });

  await t.test("a route seen later gets its own series", async () => {
    const before = (await charts(page))["route-p99"].keys;
    const route = ["/openapi.json", "/healthz", "/readyz"].find((r) => !before.includes("route:" + r));
    assert.ok(route, `a route not yet in the chart (${before})`);
    for (let i = 0; i < 3; i++) await fetch(BASE + route);
    const after = await waitFor(page, (k) => {
      const c = window.personaDashboard.charts()["route-p99"];
      return c.keys.includes(k) ? c : null;
    }, "route:" + route, `a series for ${route}`);
    assert.ok(after.keys.length > before.length, "one more series");
    const seriesInPlot = await page.evaluate(() => window.personaDashboard.plots["route-p99"].series.length);
    assert.equal(seriesInPlot, after.keys.length + 1, "the uPlot instance has every series (plus x)");
    assert.ok(after.labels.includes(route), `the legend names ${route}`);
  });

  await t.test("a feature that is off shows no data instead of a chart", async () => {
    const s = await scrape();
    const has = (n) => s.some((x) => x.name === n);
    const c = await charts(page);
    const cases = [["flags", has("persona_flag_evaluations_total")],
      ["variants", has("persona_variant_http_responses_total")],
      ["ai-avoided", has("persona_response_cache_total") || has("persona_gate_total")]];
    for (const [id, on] of cases) {
      const text = (await page.locator(`[data-chart="${id}"]`).innerText());
      if (on) {
        assert.equal(c[id].state, "live", `${id}: its metric exists, so it is drawn (${JSON.stringify(c[id])})`);
        assert.ok(c[id].keys.length > 0, `${id}: with a series`);
        assert.ok(await page.locator(`[data-chart="${id}"] canvas`).count() > 0, `${id}: a canvas`);
        assert.doesNotMatch(text, /feature off/);
      } else {
        assert.equal(c[id].state, "off", `${id}: its metric is absent`);
        assert.match(text, /no data \(feature off\)/);
        assert.equal(await page.locator(`[data-chart="${id}"] canvas`).count(), 0, `${id}: no empty chart`);
        assert.match(await page.locator(`[data-chart="${id}"] .plot`).getAttribute("aria-label"), /feature off/);
      }
    }
  });

  await t.test("pause stops polling, resume goes on", async () => {
    await page.locator("#pause").click();
    assert.equal(await page.locator("#pause").getAttribute("aria-pressed"), "true");
    assert.equal(await page.locator("#statusline").getAttribute("data-state"), "paused");
    await page.waitForTimeout(100);   // a scrape in flight may still land
    const n0 = await page.evaluate(() => window.personaDashboard.sampleCount());
    const r0 = metricsRequests.filter((r) => r.page === "desktop").length;
    await page.waitForTimeout(INTERVAL * 4);
    assert.equal(await page.evaluate(() => window.personaDashboard.sampleCount()), n0, "no samples while paused");
    assert.equal(metricsRequests.filter((r) => r.page === "desktop").length, r0, "no requests while paused");
    await page.locator("#pause").click();
    assert.equal(await page.locator("#pause").getAttribute("aria-pressed"), "false");
    await waitFor(page, (n) => window.personaDashboard.sampleCount() > n || window.personaDashboard.sampleCount() === window.personaDashboard.ringSize, n0, "samples again after resume");
    assert.equal(await page.locator("#statusline").getAttribute("data-state"), "live");
  });

  await t.test("a server that cannot be reached: a banner, and polling goes on", async () => {
    const kept = await page.evaluate(() => window.personaDashboard.sampleCount());
    expectNetworkErrors = true;
    await page.route((url) => url.pathname === "/metrics", (route) => route.abort("connectionrefused"));
    try {
      await page.locator('#banner[data-kind="network"]').waitFor({ state: "visible", timeout: WAIT });
      assert.match(await page.locator("#banner").innerText(), /Cannot reach the server/);
      assert.equal(await page.locator("#statusline").getAttribute("data-state"), "error");
      const r0 = metricsRequests.filter((r) => r.page === "desktop").length;
      await page.waitForTimeout(INTERVAL * 3);
      assert.ok(metricsRequests.filter((r) => r.page === "desktop").length > r0, "still polling");
      assert.ok(await page.evaluate(() => window.personaDashboard.sampleCount()) >= kept, "the charts keep their data");
      assert.ok(await page.locator('[data-chart="step-latency"] canvas').count() > 0, "and stay drawn");
    } finally {
      await page.unroute((url) => url.pathname === "/metrics").catch(() => {});
      await page.unrouteAll({ behavior: "ignoreErrors" }).catch(() => {});
    }
    await page.locator("#banner").waitFor({ state: "hidden", timeout: WAIT });
    expectNetworkErrors = false;
    const n = await page.evaluate(() => window.personaDashboard.scrapes);
    await waitFor(page, (k) => window.personaDashboard.scrapes > k, n, "scrapes succeed again");
    assert.deepEqual(pageErrors, [], "no uncaught errors while the server was away");
  });

  await t.test("layout: a grid on desktop, one column on a phone, no horizontal scrolling", async () => {
    const boxes = await page.locator("[data-chart]").evaluateAll((els) => els.map((e) => e.getBoundingClientRect().x));
    assert.ok(new Set(boxes.map(Math.round)).size >= 2, `desktop: more than one column (${boxes})`);
    assert.deepEqual(await layoutProblems(page), [], "desktop");
    if (SHOT) await page.screenshot({ path: SHOT, fullPage: true });

    // The same page made narrow: ResizeObserver → uPlot.setSize.
    const wide = (await charts(page))["step-latency"].width;
    await page.setViewportSize({ width: 390, height: 844 });
    await waitFor(page, () => window.personaDashboard.plots["step-latency"].width < 390, null, "charts resized");
    assert.ok((await charts(page))["step-latency"].width < wide, "narrower than on the desktop");
    assert.deepEqual(await layoutProblems(page), [], "resized to a phone");

    // A fresh phone.
    const phoneCtx = await newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    const phone = watch(await phoneCtx.newPage(), "phone");
    await phone.goto(`${BASE}/dashboard?interval_ms=${INTERVAL}`);
    await waitFor(phone, () => window.personaDashboard.charts().users.state === "live", null, "phone: a chart drawn");
    await phone.waitForTimeout(300);
    assert.equal(await phone.evaluate(() => window.innerWidth), 390);
    assert.deepEqual(await layoutProblems(phone), [], "phone");
    const xs = await phone.locator("[data-chart]").evaluateAll((els) => els.map((e) => Math.round(e.getBoundingClientRect().x)));
    assert.equal(new Set(xs).size, 1, `phone: one column (${xs})`);
    const tiles = await phone.locator(".tile").evaluateAll((els) => els.map((e) => e.getBoundingClientRect().right));
    assert.ok(tiles.every((r) => r <= 390), "phone: tiles inside the screen");
    if (SHOT_MOBILE) await phone.screenshot({ path: SHOT_MOBILE, fullPage: true });
    await phoneCtx.close();
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await t.test("the server serves this checkout's dashboard files", { skip: FROM_DISK && "E2E_WEB_FROM_DISK" }, async () => {
    for (const [path, [file, type]] of Object.entries(WEB_FILES)) {
      const res = await fetch(BASE + path);
      assert.equal(res.status, 200, `GET ${path}`);
      assert.equal(res.headers.get("content-type"), type, `GET ${path} content type`);
      const served = Buffer.from(await res.arrayBuffer());
      assert.ok(served.equals(readFileSync(WEB_DIR + file)),
        `GET ${path} differs from web/${file}: rebuild persona (the web files are compiled in)`);
    }
  });

  await t.test("no uncaught errors or console errors in the pages", () => {
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(consoleErrors, []);
  });
});
