// Browser end-to-end test of the persona web UI (web/index.html).
//
//   PERSONA_URL=http://127.0.0.1:8080 node --test chat.test.mjs
//
// Drives Debian's Chromium through playwright-core: a chat that fills the
// profile, a second window on the same session, profile edits in either
// window's panel that reach the other live over MQTT/WebSocket (sent as MQTT
// profile/set, not HTTP), and a rejected edit that must surface as an error in
// the window that made it only.
// Optional: E2E_SCREENSHOT=/path/desktop.png, E2E_SCREENSHOT_MOBILE=/path/mobile.png
// (defaults to <E2E_SCREENSHOT>-mobile.png), CHROMIUM=/path/to/chromium,
// E2E_WEB_FROM_DISK=1 serves / and /assets/* from web/ in this checkout (while
// the API and /mqtt go to the server): tests page changes without rebuilding.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const WEB_DIR = fileURLToPath(new URL("../../web/", import.meta.url));
const FROM_DISK = !!process.env.E2E_WEB_FROM_DISK;
const WEB_FILES = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/assets/mqtt.min.js": ["assets/mqtt.min.js", "text/javascript; charset=utf-8"],
  "/assets/persona-client.js": ["../clients/js/src/index.js", "text/javascript; charset=utf-8"],
  "/assets/qrcode.js": ["assets/qrcode.js", "text/javascript; charset=utf-8"],
};

const BASE = (process.env.PERSONA_URL || "").replace(/\/+$/, "");
const WAIT = Number(process.env.E2E_WAIT_MS || 15000);
const SHOT = process.env.E2E_SCREENSHOT || "";
const SHOT_MOBILE = process.env.E2E_SCREENSHOT_MOBILE || (SHOT ? SHOT.replace(/(\.png)?$/i, "-mobile.png") : "");

let browser, context, page1, page2;
const pageErrors = [];
const net = new Map();   // page name → {sockets: [url], mqttSent: [string], patches, eventSources}

function watch(page, name) {
  const n = { sockets: [], mqttSent: [], patches: 0, eventSources: 0 };
  net.set(name, n);
  page.on("pageerror", (err) => pageErrors.push(`${name}: ${err.message}`));
  page.on("console", (msg) => {
    if (process.env.E2E_VERBOSE) console.error(`[${name} console.${msg.type()}] ${msg.text()}`);
  });
  page.on("websocket", (ws) => {
    n.sockets.push(ws.url());
    // MQTT packets are binary frames; keep a latin1 view to find topic names.
    ws.on("framesent", (f) => n.mqttSent.push(Buffer.isBuffer(f.payload) ? f.payload.toString("latin1") : String(f.payload)));
  });
  page.on("request", (req) => {
    if (req.method() === "PATCH") n.patches++;
    if (req.resourceType() === "eventsource") n.eventSources++;
  });
  return page;
}

const usesMqtt = (name) => net.get(name).sockets.some((u) => /^wss?:\/\/[^/]+\/mqtt$/.test(u));
const sentOn = (name, topicSuffix) => net.get(name).mqttSent.some((f) => f.includes(topicSuffix));

const value = (page, field) => page.locator(`[data-field="${field}"] .value`);

async function waitValue(page, field, re) {
  try {
    await page.locator(`[data-field="${field}"] .value`, { hasText: re }).first().waitFor({ timeout: WAIT });
  } catch (err) {
    const now = await value(page, field).textContent().catch(() => "<missing>");
    const error = await page.locator("#error").textContent().catch(() => "");
    throw new Error(`field ${field}: expected ${re}, shows ${JSON.stringify(now)}; error bar: ${JSON.stringify(error)}`);
  }
}

async function sendMessage(page, text) {
  const before = await page.locator('#messages [data-role="assistant"]').count();
  await page.locator("#input").fill(text);
  await page.locator("#input").press("Enter");
  await page.locator('#messages [data-role="user"]', { hasText: text }).first().waitFor({ timeout: WAIT });
  await page.waitForFunction(
    (n) => document.querySelectorAll('#messages [data-role="assistant"]').length > n, before, { timeout: WAIT });
}

async function editField(page, field, text) {
  const row = page.locator(`[data-field="${field}"]`);
  await row.locator("button.edit").click();
  const input = row.locator(".editor input, .editor select, .editor textarea").first();
  await input.waitFor({ timeout: WAIT });
  await input.fill(text);
  await input.press("Enter");
}

before(async () => {
  assert.ok(BASE, "set PERSONA_URL, e.g. http://127.0.0.1:8080 (tests/e2e/run.sh does this)");
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      // A page fulfilled by page.route has no address, so Chromium counts it as public
      // and blocks its WebSocket to 127.0.0.1 (Local Network Access); not so when served.
      ...(FROM_DISK ? ["--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests"] : [])],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  if (FROM_DISK) {
    await context.route((url) => url.origin === new URL(BASE).origin && url.pathname in WEB_FILES, (route) => {
      const [file, type] = WEB_FILES[new URL(route.request().url()).pathname];
      return route.fulfill({ status: 200, contentType: type, body: readFileSync(WEB_DIR + file) });
    });
  }
});

after(async () => {
  await browser?.close();
});

test("web UI: chat, live profile, second window, MQTT sync, errors", { timeout: 120000 }, async (t) => {
  await t.test("first visit creates a session and greets", async () => {
    page1 = watch(await context.newPage(), "page1");
    const res = await page1.goto(BASE + "/");
    assert.equal(res.status(), 200, "GET / serves the web UI");
    await page1.locator('#messages [data-role="assistant"]').first().waitFor({ timeout: WAIT });
    const greeting = (await page1.locator('#messages [data-role="assistant"]').first().textContent()).trim();
    assert.ok(greeting.length > 0, "the first assistant message is not empty");
    assert.ok(await page1.locator('[data-field="name"]').count() === 1, "profile lists the schema field name");
    const sid = await page1.evaluate(() => localStorage.getItem("persona.session_id"));
    assert.ok(sid && /^[A-Za-z0-9_-]+$/.test(sid), `session id kept in localStorage (${sid})`);
    assert.equal(await page1.evaluate(() => document.activeElement && document.activeElement.id), "input",
      "focus starts in the message input");
  });

  await t.test("live updates come over MQTT on a WebSocket at /mqtt", async () => {
    await page1.locator('#live[data-live="true"]').waitFor({ timeout: WAIT }).catch(() => {
      throw new Error("the live indicator never turned on");
    });
    assert.ok(usesMqtt("page1"), `page opened ws(s)://host/mqtt (saw ${JSON.stringify(net.get("page1").sockets)})`);
    assert.ok(sentOn("page1", "/events"), "page subscribed to session/{id}/events");
    assert.equal(net.get("page1").eventSources, 0, "no SSE EventSource while the WebSocket works");
  });

  await t.test("chatting fills the profile", async () => {
    await sendMessage(page1, "Hi, I'm Alice Kim and I'm 34");
    await waitValue(page1, "name", /Alice/);
    await waitValue(page1, "age", /^\s*34\s*$/);
    await sendMessage(page1, "I live in Seoul and I work as a nurse");
    await waitValue(page1, "city", /Seoul/);
    await waitValue(page1, "occupation", /nurse/i);
    assert.equal(await page1.evaluate(() => document.activeElement && document.activeElement.id), "input",
      "focus stays in the message input after sending");
    // Our own messages come back over MQTT too; they must not be shown twice.
    await page1.waitForTimeout(700);
    assert.equal(await page1.locator('#messages [data-role="user"]').count(), 2, "two user messages, no duplicates");
    assert.match((await page1.locator("#version").textContent()).trim(), /^\d+$/, "#version shows a number");
  });

  await t.test("a second window resumes the same session and profile", async () => {
    page2 = watch(await context.newPage(), "page2");
    await page2.goto(BASE + "/");
    await waitValue(page2, "name", /Alice/);
    await waitValue(page2, "age", /^\s*34\s*$/);
    await waitValue(page2, "city", /Seoul/);
    await waitValue(page2, "occupation", /nurse/i);
    const sid1 = await page1.evaluate(() => localStorage.getItem("persona.session_id"));
    const sid2 = await page2.evaluate(() => localStorage.getItem("persona.session_id"));
    assert.equal(sid2, sid1, "same session in both tabs");
    await page2.locator('#messages [data-role="user"]', { hasText: "I live in Seoul" }).first()
      .waitFor({ timeout: WAIT });
    await page2.locator('#live[data-live="true"]').waitFor({ timeout: WAIT });
    assert.ok(usesMqtt("page2"), "window 2 uses MQTT over WebSocket too");
  });

  await t.test("an edit in window 2's panel reaches window 1 live (MQTT)", async () => {
    await page2.bringToFront();
    const v1 = Number((await page1.locator("#version").textContent()).trim());
    await editField(page2, "city", "Busan");
    await waitValue(page2, "city", /Busan/);
    await waitValue(page1, "city", /Busan/);
    await page1.locator('[data-field="city"].flash').waitFor({ timeout: WAIT }).catch(() => {
      throw new Error("the changed field is not highlighted in tab 1");
    });
    await page1.waitForFunction((v) => Number(document.querySelector("#version").textContent) > v, v1,
      { timeout: WAIT });
    assert.equal(await page2.locator("#error").isVisible(), false, "no error after a valid edit");
    assert.ok(sentOn("page2", "/profile/set"), "the edit was published on session/{id}/profile/set");
    assert.equal(net.get("page2").patches, 0, "no HTTP PATCH while MQTT is live");
    await page2.locator('[data-field="city"] .src', { hasText: "device" }).waitFor({ timeout: WAIT });
  });

  await t.test("an edit in window 1's panel reaches window 2 live (MQTT)", async () => {
    await page1.bringToFront();
    const v2 = Number((await page2.locator("#version").textContent()).trim());
    await editField(page1, "occupation", "doctor");
    await waitValue(page1, "occupation", /doctor/);
    await waitValue(page2, "occupation", /doctor/);
    await page2.waitForFunction((v) => Number(document.querySelector("#version").textContent) > v, v2,
      { timeout: WAIT });
    assert.ok(sentOn("page1", "/profile/set"), "window 1 published on profile/set");
    assert.equal(net.get("page1").patches, 0, "no HTTP PATCH from window 1");
    assert.equal(await page1.locator("#error").isVisible(), false, "no error after a valid edit");
    assert.equal(await page1.locator('[data-field="occupation"].editing').count(), 0, "the editor closed");
    assert.equal(await page1.locator("#version").textContent(), await page2.locator("#version").textContent(),
      "both windows show the same version");
  });

  await t.test("a chat message in window 2 appears once in window 1", async () => {
    const text = "My email is alice.kim@example.com";
    await sendMessage(page2, text);
    await page1.locator('#messages [data-role="user"]', { hasText: text }).first().waitFor({ timeout: WAIT });
    await page1.waitForTimeout(500);
    assert.equal(await page1.locator('#messages [data-role="user"]', { hasText: text }).count(), 1, "tab 1: once");
    assert.equal(await page2.locator('#messages [data-role="user"]', { hasText: text }).count(), 1, "tab 2: once");
    const n1 = await page1.locator('#messages [data-role]').count();
    const n2 = await page2.locator('#messages [data-role]').count();
    assert.equal(n1, n2, "both tabs show the same conversation");
  });

  await t.test("an invalid edit shows the server's error and keeps the old value", async () => {
    // Edit from window 1: its version came over MQTT, so this also checks that base_version stays current.
    await page1.bringToFront();   // background tabs get throttled frames; clicks wait on them
    await editField(page1, "age", "500");
    await page1.locator("#error").waitFor({ state: "visible", timeout: WAIT });
    const msg = (await page1.locator("#error").textContent()).trim();
    assert.ok(msg.length > 3, `error bar has a message (${msg})`);
    assert.doesNotMatch(msg, /changed elsewhere|Precondition/i, "a current If-Match is not rejected as stale");
    await waitValue(page1, "age", /^\s*34\s*$/);
    assert.equal(await page2.locator("#error").isVisible(), false,
      "the other window does not show an error for a command it did not send");
    assert.equal(net.get("page1").patches, 0, "the refused edit went over MQTT too");
    // The user can dismiss it.
    await page1.locator("#error-dismiss").click();
    await page1.locator("#error").waitFor({ state: "hidden", timeout: WAIT });
    await page1.locator('[data-field="age"] .cancel').click().catch(() => {});
  });

  await t.test("layout: side by side on desktop, stacked on a phone", async () => {
    const chat = await page1.locator("#chat").boundingBox();
    const prof = await page1.locator("#profile").boundingBox();
    assert.ok(prof.x > chat.x + chat.width / 2, "desktop: profile to the right of the chat");
    if (SHOT) await page1.screenshot({ path: SHOT, fullPage: false });

    const phone = watch(await context.newPage(), "phone");
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(BASE + "/");
    await waitValue(phone, "city", /Busan/);
    const c = await phone.locator("#chat").boundingBox();
    const p = await phone.locator("#profile").boundingBox();
    assert.ok(p.y >= c.y + c.height - 1, "phone: profile below the chat");
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    assert.equal(overflow, false, "phone: no horizontal scrolling");
    if (SHOT_MOBILE) await phone.screenshot({ path: SHOT_MOBILE, fullPage: true });
    await phone.close();
  });

  await t.test("without WebSocket the page falls back to SSE and still syncs", async () => {
    const sse = watch(await context.newPage(), "sse");
    await sse.routeWebSocket(/\/mqtt$/, (ws) => ws.close());   // as if a proxy refused the upgrade
    await sse.goto(BASE + "/");
    await waitValue(sse, "city", /Busan/);
    await sse.locator('#live[data-live="true"]').waitFor({ timeout: WAIT });
    assert.ok(net.get("sse").eventSources > 0, "an EventSource was opened");
    await page1.bringToFront();
    await editField(page1, "city", "Daegu");
    await waitValue(sse, "city", /Daegu/);
    await sse.bringToFront();
    await editField(sse, "city", "Incheon");
    await waitValue(page1, "city", /Incheon/);
    assert.ok(net.get("sse").patches > 0, "edits go over HTTP PATCH without MQTT");
    const shown = await sse.locator("#error").isVisible();
    assert.equal(shown, false, "no error in the SSE window" +
      (shown ? ": " + await sse.locator("#error-text").textContent() : ""));
    await sse.close();
  });

  await t.test("the server serves this checkout's web/ files", { skip: FROM_DISK && "E2E_WEB_FROM_DISK" }, async () => {
    for (const [path, [file]] of Object.entries(WEB_FILES)) {
      const res = await fetch(BASE + path);
      assert.equal(res.status, 200, `GET ${path}`);
      const served = Buffer.from(await res.arrayBuffer());
      assert.ok(served.equals(readFileSync(WEB_DIR + file)),
        `GET ${path} differs from web/${file}: rebuild persona (the web files are compiled in)`);
    }
  });

  await t.test("no uncaught errors in the page", () => {
    assert.deepEqual(pageErrors, []);
  });
});
