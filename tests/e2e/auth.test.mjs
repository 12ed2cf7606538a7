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
