// Browser end-to-end test of the web UI with authentication on (SPEC §10).
//
//   PERSONA_BIN=build/src/persona node --test auth.test.mjs
//
// Starts its own `persona serve` with auth.enabled and an HS256 secret,
// mints tokens here (Node's crypto, independent of persona's code), and
// drives Debian's Chromium: the page takes its token from the URL fragment
// (#token=…) and drops it from the address bar, keeps it in sessionStorage,
// sends it on HTTP, SSE (access_token) and MQTT (the CONNECT password); a page
// without a token asks for one; "continue on another device" makes a link
// with a token limited to the session (and a QR code of it) that opens the
// session on a second browser, which stays in sync and can open nothing else.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.PERSONA_BIN ? resolve(process.env.PERSONA_BIN) : "";
const WAIT = Number(process.env.E2E_WAIT_MS || 15000);
const SECRET = "e2e-secret-0123456789abcdef-0123456789";

function mint(claims) {
  const b64 = (s) => Buffer.from(s).toString("base64url");
  const body = `${b64(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64(JSON.stringify({
    aud: "persona", iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 3600, ...claims }))}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

let server, base, tmp, browser;
const pageErrors = [];

async function startServer() {
  tmp = mkdtempSync(join(tmpdir(), "persona-e2e-auth-"));
  server = spawn(BIN, ["serve", "--http-listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0",
    "--data-dir", join(tmp, "data"), "--set", "auth.enabled=true",
    "--set", `auth.jwt.hs256_secret=${SECRET}`], { cwd: resolve(here, "../.."), stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  server.stderr.on("data", (d) => { out += d; });
  return new Promise((ok, fail) => {
    const t = setTimeout(() => fail(new Error("persona did not start:\n" + out)), 30000);
    server.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/"msg":"listening","http":"([^"]+)"/);
      if (m) { clearTimeout(t); ok(`http://${m[1]}`); }
    });
    server.once("exit", (code) => { clearTimeout(t); fail(new Error(`persona exited ${code}:\n${out}`)); });
  });
}

async function newPage(ctx, name, sent) {
  const page = await ctx.newPage();
  page.on("pageerror", (err) => pageErrors.push(`${name}: ${err.message}`));
  if (sent) page.on("websocket", (ws) => ws.on("framesent", (f) => sent.push(Buffer.from(f.payload).toString("latin1"))));
  return page;
}

const value = (page, field) => page.locator(`[data-field="${field}"] .value`);
async function waitValue(page, field, re) {
  await page.locator(`[data-field="${field}"] .value`, { hasText: re }).first().waitFor({ timeout: WAIT });
}
async function say(page, text) {
  const before = await page.locator('#messages [data-role="assistant"]').count();
  await page.locator("#input").fill(text);
  await page.locator("#input").press("Enter");
  await page.waitForFunction((n) => document.querySelectorAll('#messages [data-role="assistant"]').length > n,
    before, { timeout: WAIT });
}
async function editField(page, field, text) {
  const row = page.locator(`[data-field="${field}"]`);
  await row.locator("button.edit").click();
  const input = row.locator(".editor input, .editor select, .editor textarea").first();
  await input.fill(text);
  await input.press("Enter");
}

before(async () => {
  if (!BIN) return;
  base = await startServer();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    server.kill("SIGTERM");
    await new Promise((r) => server.once("exit", r));
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test("web UI with auth on: token from the fragment, sign-in, device link", { skip: !BIN && "PERSONA_BIN not set", timeout: 120000 }, async (t) => {
  const alice = mint({ sub: "e2e-alice" });
  const laptop = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const sent = [];
  const page = await newPage(laptop, "laptop", sent);
  let sid;

  await t.test("the page takes #token=…, drops it from the address bar and keeps it for the tab", async () => {
    await page.goto(`${base}/#token=${alice}`);
    await page.locator('#messages [data-role="assistant"]').first().waitFor({ timeout: WAIT });
    assert.equal(new URL(page.url()).hash, "", "the token left the address bar");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("persona.token")), alice);
    sid = await page.evaluate(() => localStorage.getItem("persona.session_id"));
    assert.ok(sid);
    // The session is Alice's: the server took the user from the token.
    const r = await fetch(`${base}/v1/sessions/${sid}`, { headers: { Authorization: `Bearer ${alice}` } });
    assert.equal((await r.json()).user_id, "e2e-alice");
  });

  await t.test("MQTT carries the token as the CONNECT password, and chat fills the profile", async () => {
    await page.locator('#live[data-live="true"]').waitFor({ timeout: WAIT });
    assert.ok(sent.some((f) => f.includes(alice)), "CONNECT carried the token");
    await say(page, "Hi, I'm Alice Kim and I live in Seoul");
    await waitValue(page, "city", /Seoul/);
  });

  await t.test("a page without a token asks for one", async () => {
    const stranger = await browser.newContext();
    const p = await newPage(stranger, "stranger");
    await p.goto(`${base}/`);
    await p.locator("#token-dialog[open]").waitFor({ timeout: WAIT });
    await p.locator("#token-input").fill(mint({ sub: "e2e-carol" }));
    await p.locator("#token-save").click();
    await p.locator('#messages [data-role="assistant"]').first().waitFor({ timeout: WAIT });
    assert.equal(await p.locator("#token-dialog[open]").count(), 0);
    await stranger.close();
  });

  let link;
  await t.test("continue on another device: a link with a session-limited token and its QR code", async () => {
    await page.locator("#device-link").click();
    await page.locator("#link-dialog[open]").waitFor({ timeout: WAIT });
    link = await page.locator("#link-url").inputValue();
    const frag = new URLSearchParams(new URL(link).hash.slice(1));
    assert.equal(frag.get("session"), sid);
    const claims = JSON.parse(Buffer.from(frag.get("token").split(".")[1], "base64url").toString());
    assert.deepEqual(claims.sessions, [sid]);
    assert.equal(claims.sub, "e2e-alice");
    assert.ok(await page.locator("#link-qr svg").count() > 0, "a QR code is drawn");
    await page.locator("#link-close").click();
  });

  await t.test("the link opens the session on another device, in sync both ways", async () => {
    const phoneCtx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
    const phone = await newPage(phoneCtx, "phone");
    await phone.goto(link);
    await waitValue(phone, "city", /Seoul/);
    await phone.locator('#live[data-live="true"]').waitFor({ timeout: WAIT });
    await editField(phone, "city", "Busan");
    await waitValue(page, "city", /Busan/);
    await page.bringToFront();
    await editField(page, "city", "Jeju");
    await waitValue(phone, "city", /Jeju/);
    // The device token opens this session only: a new session is refused.
    await phone.locator("#new-session").click();
    await phone.locator("#error:not([hidden])").waitFor({ timeout: WAIT });
    assert.match(await phone.locator("#error-text").textContent(), /Forbidden|403|may not/);
    await phoneCtx.close();
  });

  await t.test("without WebSocket the page falls back to SSE with access_token", async () => {
    const p = await newPage(laptop, "sse");
    let sseUrl = "";
    p.on("request", (req) => { if (req.resourceType() === "eventsource") sseUrl = req.url(); });
    await p.routeWebSocket(/\/mqtt$/, (ws) => ws.close());
    await p.goto(`${base}/`);   // same tab storage: sessionStorage is per page, so pass it again
    await p.evaluate((tok) => sessionStorage.setItem("persona.token", tok), alice);
    await p.reload();
    await waitValue(p, "city", /Jeju/);
    await p.locator('#live[data-live="true"]').waitFor({ timeout: WAIT });
    assert.match(sseUrl, /access_token=/);
    await page.bringToFront();
    await editField(page, "city", "Daegu");
    await waitValue(p, "city", /Daegu/);
    await p.close();
  });

  await t.test("no uncaught errors in the pages", () => {
    assert.deepEqual(pageErrors, []);
  });
  await laptop.close();
});

// ---------- the KPI dashboard (/dashboard) with auth on: /metrics needs an admin token ----------
const WEB_DIR = resolve(here, "../../web") + "/";
const FROM_DISK = !!process.env.E2E_WEB_FROM_DISK;   // serve the page from web/ instead of the binary
const DASHBOARD_FILES = {
  "/dashboard": ["dashboard.html", "text/html; charset=utf-8"],
  "/assets/uPlot.iife.min.js": ["assets/uPlot.iife.min.js", "text/javascript; charset=utf-8"],
  "/assets/uPlot.min.css": ["assets/uPlot.min.css", "text/css; charset=utf-8"],
};

test("dashboard with auth on: sign-in, admin-only, data with an admin token", { skip: !BIN && "PERSONA_BIN not set", timeout: 120000 }, async (t) => {
  const { readFileSync } = await import("node:fs");
  const errors = [];
  async function dashboard(name) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    if (FROM_DISK) {
      await ctx.route((url) => url.origin === new URL(base).origin && url.pathname in DASHBOARD_FILES, (route) => {
        const [file, type] = DASHBOARD_FILES[new URL(route.request().url()).pathname];
        return route.fulfill({ status: 200, contentType: type, body: readFileSync(WEB_DIR + file) });
      });
    }
    const page = await ctx.newPage();
    page.on("pageerror", (err) => errors.push(`${name}: ${err.message}`));
    const auth = [];   // the Authorization header of every /metrics request
    page.on("request", (req) => { if (new URL(req.url()).pathname === "/metrics") auth.push(req.headers().authorization || ""); });
    return { ctx, page, auth };
  }
  const samples = (page) => page.evaluate(() => window.personaDashboard.sampleCount());
  const liveCharts = (page) => page.evaluate(() => Object.values(window.personaDashboard.charts()).filter((c) => c.state === "live").length);
  const admin = mint({ sub: "e2e-ops", persona_admin: true });
  const user = mint({ sub: "e2e-bob" });

  await t.test("the premise: /metrics is 401 without a token, 403 for a user, 200 for an admin", async () => {
    assert.equal((await fetch(`${base}/metrics`)).status, 401);
    assert.equal((await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${user}` } })).status, 403);
    assert.equal((await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${admin}` } })).status, 200);
    assert.equal((await fetch(`${base}/dashboard`)).status, 200, "the page itself is open (it holds no data)");
  });

  await t.test("no token: the sign-in dialog opens; an admin token pasted there brings data", async () => {
    const { ctx, page, auth } = await dashboard("no-token");
    await page.goto(`${base}/dashboard?interval_ms=300`);
    await page.locator("#token-dialog[open]").waitFor({ timeout: WAIT });
    assert.equal(await page.locator('#banner[data-kind="auth"]').isVisible(), true, "a sign-in banner too");
    assert.equal(await samples(page), 0, "no data without a token");
    assert.ok(auth.length >= 1 && auth.every((h) => h === ""), "no Authorization header without a token");
    await page.locator("#token-input").fill(admin);
    await page.locator("#token-save").click();
    await page.waitForFunction(() => window.personaDashboard.sampleCount() >= 2, null, { timeout: WAIT });
    assert.equal(await page.locator("#token-dialog[open]").count(), 0, "the dialog closed");
    assert.equal(await page.locator("#banner").isVisible(), false, "the banner went away");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("persona.token")), admin, "kept for the tab");
    assert.equal(auth.at(-1), `Bearer ${admin}`);
    await ctx.close();
  });

  await t.test("a user's token (not an admin's): the admin-needed banner and no chart data", async () => {
    const { ctx, page, auth } = await dashboard("user");
    await page.goto(`${base}/dashboard?interval_ms=300#token=${user}`);
    await page.locator('#banner[data-kind="forbidden"]').waitFor({ state: "visible", timeout: WAIT });
    assert.match(await page.locator("#banner").innerText(), /admin token/i);
    assert.match(await page.locator("#banner").innerText(), /persona_admin/);
    assert.equal(new URL(page.url()).hash, "", "the token left the address bar");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("persona.token")), user);
    const before = auth.length;
    await page.waitForTimeout(1200);
    assert.ok(auth.length > before, "still polling (a new token could be given)");
    assert.ok(auth.every((h) => h === `Bearer ${user}`), "the token went as Authorization: Bearer");
    assert.equal(await samples(page), 0, "no samples");
    assert.equal(await liveCharts(page), 0, "no chart drawn");
    assert.equal(await page.locator("canvas").count(), 0, "no canvas at all");
    assert.equal(await page.locator("#token-dialog[open]").count(), 0, "a 403 is not a sign-in prompt");
    assert.equal(await page.locator("#tile-users .value").getAttribute("data-value"), "", "no tile values");
    await ctx.close();
  });

  await t.test("an admin token in the fragment: tiles and charts get data", async () => {
    const { ctx, page, auth } = await dashboard("admin");
    await page.goto(`${base}/dashboard?interval_ms=300#token=${admin}`);
    assert.equal(new URL(page.url()).hash, "", "the token left the address bar");
    // Some traffic of a user, so there is something to show.
    const bobSession = await fetch(`${base}/v1/sessions`, { method: "POST",
      headers: { Authorization: `Bearer ${user}`, "Content-Type": "application/json" }, body: "{}" }).then((r) => r.json());
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`${base}/v1/sessions/${bobSession.session_id}/messages`, { method: "POST",
        headers: { Authorization: `Bearer ${user}`, "Content-Type": "application/json" }, body: JSON.stringify({ text: `I'm Bob, ${30 + i}` }) });
      assert.equal(r.status, 200);
    }
    await page.waitForFunction(() => {
      const c = window.personaDashboard.charts();
      return window.personaDashboard.sampleCount() >= 2 && c.users.state === "live" && c.users.values[0] > 0 &&
        Number(document.querySelector("#tile-users .value").dataset.value) >= 1;
    }, null, { timeout: WAIT });
    assert.ok(await liveCharts(page) >= 5, "the charts are drawn");
    assert.ok(await page.locator("[data-chart] canvas").count() > 0);
    assert.equal(await page.locator("#banner").isVisible(), false);
    assert.ok(auth.length >= 2 && auth.every((h) => h === `Bearer ${admin}`), "every scrape carried the admin token");
    await ctx.close();
  });

  await t.test("no uncaught errors in the dashboard pages", () => {
    assert.deepEqual(errors, []);
  });
});
