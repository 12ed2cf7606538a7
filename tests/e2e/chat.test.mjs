// Browser end-to-end test of the persona web UI (web/index.html).
//
//   PERSONA_URL=http://127.0.0.1:8080 node --test chat.test.mjs
//
// Drives Debian's Chromium through playwright-core: a chat that fills the
// profile, a second tab on the same session, a profile edit that reaches the
// first tab over SSE, and a rejected edit that must surface as an error.
// Optional: E2E_SCREENSHOT=/path/desktop.png, E2E_SCREENSHOT_MOBILE=/path/mobile.png
// (defaults to <E2E_SCREENSHOT>-mobile.png), CHROMIUM=/path/to/chromium.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const BASE = (process.env.PERSONA_URL || "").replace(/\/+$/, "");
const WAIT = Number(process.env.E2E_WAIT_MS || 15000);
const SHOT = process.env.E2E_SCREENSHOT || "";
const SHOT_MOBILE = process.env.E2E_SCREENSHOT_MOBILE || (SHOT ? SHOT.replace(/(\.png)?$/i, "-mobile.png") : "");

let browser, context, page1, page2;
const pageErrors = [];

function watch(page, name) {
  page.on("pageerror", (err) => pageErrors.push(`${name}: ${err.message}`));
  page.on("console", (msg) => {
    if (process.env.E2E_VERBOSE) console.error(`[${name} console.${msg.type()}] ${msg.text()}`);
  });
  return page;
}

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
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
});

after(async () => {
  await browser?.close();
});

test("web UI: chat, live profile, second tab, SSE sync, errors", { timeout: 120000 }, async (t) => {
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

  await t.test("chatting fills the profile", async () => {
    await sendMessage(page1, "Hi, I'm Alice Kim and I'm 34");
    await waitValue(page1, "name", /Alice/);
    await waitValue(page1, "age", /^\s*34\s*$/);
    await sendMessage(page1, "I live in Seoul and I work as a nurse");
    await waitValue(page1, "city", /Seoul/);
    await waitValue(page1, "occupation", /nurse/i);
    assert.equal(await page1.evaluate(() => document.activeElement && document.activeElement.id), "input",
      "focus stays in the message input after sending");
    // Our own messages come back over SSE too; they must not be shown twice.
    await page1.waitForTimeout(700);
    assert.equal(await page1.locator('#messages [data-role="user"]').count(), 2, "two user messages, no duplicates");
    assert.match((await page1.locator("#version").textContent()).trim(), /^\d+$/, "#version shows a number");
  });

  await t.test("a second tab resumes the same session and profile", async () => {
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
  });

  await t.test("an edit in tab 2 reaches tab 1 live (SSE)", async () => {
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
  });

  await t.test("a chat message in tab 2 appears once in tab 1", async () => {
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
    // Edit from tab 1: its version came over SSE, so this also checks that If-Match stays current.
    await page1.bringToFront();   // background tabs get throttled frames; clicks wait on them
    await editField(page1, "age", "500");
    await page1.locator("#error").waitFor({ state: "visible", timeout: WAIT });
    const msg = (await page1.locator("#error").textContent()).trim();
    assert.ok(msg.length > 3, `error bar has a message (${msg})`);
    assert.doesNotMatch(msg, /changed elsewhere|Precondition/i, "a current If-Match is not rejected as stale");
    await waitValue(page1, "age", /^\s*34\s*$/);
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

  await t.test("no uncaught errors in the page", () => {
    assert.deepEqual(pageErrors, []);
  });
});
