// @persona/client against a real persona server (MQTT over WebSocket and TCP).
//
//   node --test test/            (PERSONA_BIN=path/to/persona, default build/src/persona)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import mqtt from "mqtt";
import { connect, PersonaError } from "../src/index.js";
import { startPersona, createSession, repoRoot } from "./persona-server.mjs";

const WAIT = Number(process.env.TEST_WAIT_MS || 10000);
let srv;
const clients = [];

before(async () => { srv = await startPersona(); });
after(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  if (srv) await srv.stop();
});

function open(opts) {
  const c = connect({ mqtt, httpBase: srv.http, reconnectPeriod: 200, ...opts });
  clients.push(c);
  return c;
}

// Records what a watch sees; waitFor(pred) resolves when pred() turns true.
function recorder() {
  const r = { profiles: [], events: [], errors: [], gaps: [], waiters: [] };
  const poke = () => {
    for (const w of [...r.waiters]) if (w.pred()) { r.waiters.splice(r.waiters.indexOf(w), 1); clearTimeout(w.t); w.resolve(); }
  };
  r.handlers = {
    onProfile: (p, info) => { r.profiles.push({ ...p, retained: info.retained }); poke(); },
    onEvent: (e) => { r.events.push(e); poke(); },
    onError: (e, info) => { r.errors.push({ err: e, own: info.own }); poke(); },
    onGap: (g) => { r.gaps.push(g); poke(); },
  };
  r.waitFor = (pred, what = "condition") => {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.t = setTimeout(() => {
        r.waiters.splice(r.waiters.indexOf(w), 1);
        reject(new Error(`timed out waiting for ${what}; seqs ${JSON.stringify(r.events.map((e) => e.seq))}, ` +
          `profile ${JSON.stringify(r.profiles.at(-1))}, errors ${JSON.stringify(r.errors.map((e) => e.err.message))}`));
      }, WAIT);
      r.waiters.push(w);
    });
  };
  r.latest = () => r.profiles.at(-1);
  r.seqs = () => r.events.map((e) => e.seq);
  return r;
}

function assertConsecutive(seqs, msg) {
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, `${msg}: ${JSON.stringify(seqs)}`);
}

for (const transport of ["ws", "tcp"]) {
  test(`over ${transport === "ws" ? "WebSocket" : "TCP"}: profile, edits, messages, errors`, async (t) => {
    const s = await createSession(srv.http, `u_${transport}`);
    const c = open({ url: srv[transport] });
    await c.ready();
    assert.equal(c.connected, true);
    const r = recorder();
    const w = c.watchSession(s.session_id, r.handlers);
    await w.subscribed;

    await t.test("the retained profile arrives at once", async () => {
      await r.waitFor(() => r.profiles.length >= 1, "retained profile");
      assert.equal(r.profiles[0].retained, true);
      assert.equal(r.profiles[0].version, s.version);
      assert.deepEqual(r.profiles[0].profile, {});
      assert.equal(w.version, s.version);
    });

    await t.test("an edit comes back as events and a new profile", async () => {
      const res = await c.edit(s.session_id, { name: "Alice Kim", city: "Seoul" }, { baseVersion: w.version });
      assert.equal(res.confirmed, true);
      await r.waitFor(() => r.latest().profile.city === "Seoul" && r.latest().profile.name === "Alice Kim", "profile");
      const sets = r.events.filter((e) => e.type === "profile.field_set");
      assert.deepEqual(sets.map((e) => e.data.field).sort(), ["city", "name"]);
      for (const e of sets) { assert.equal(e.origin, "device"); assert.equal(e.data.source, "device"); }
      assert.equal(r.latest().meta.city.source, "device");
      assert.equal(r.latest().version, sets.at(-1).seq);
      assert.equal(w.version, r.latest().version);
      // Clearing a field.
      await c.edit(s.session_id, { city: null });
      await r.waitFor(() => r.events.some((e) => e.type === "profile.field_cleared" && e.data.field === "city"), "cleared");
      await r.waitFor(() => !("city" in r.latest().profile), "profile without city");
      assertConsecutive(r.seqs(), "events in seq order");
    });

    await t.test("a message over MQTT gets its reply on the events topic", async () => {
      const { user, reply } = await c.send(s.session_id, "I'm 34 and I work as a nurse");
      assert.equal(user.type, "message.user");
      assert.equal(reply.type, "message.assistant");
      assert.equal(reply.data.reply_to, user.data.message_id);
      assert.ok(reply.data.text.length > 0);
      await r.waitFor(() => r.latest().profile.age === 34, "age learned");
      assert.ok(r.events.some((e) => e.seq === reply.seq));
      assertConsecutive(r.seqs(), "events in seq order");
    });

    await t.test("an invalid edit is refused on the errors topic", async () => {
      const v = w.version;
      await assert.rejects(c.edit(s.session_id, { age: 500 }), (err) => {
        assert.ok(err instanceof PersonaError);
        assert.equal(err.status, 422);
        assert.match(err.detail, /age/);
        return true;
      });
      await r.waitFor(() => r.errors.length >= 1, "error callback");
      assert.equal(r.errors[0].own, true);
      await assert.rejects(c.edit(s.session_id, { no_such_field: "x" }), { status: 422 });
      await assert.rejects(c.edit(s.session_id, { name: "Z" }, { baseVersion: 1 }), { status: 412 });
      assert.equal(w.version, v, "nothing changed");
      assert.equal(r.latest().profile.age, 34);
    });

    await t.test("unwatch stops delivery", async () => {
      await w.unwatch();
      const n = r.events.length;
      const other = open({ url: srv.ws });
      await other.edit(s.session_id, { name: "Later" });
      await new Promise((res) => setTimeout(res, 300));
      assert.equal(r.events.length, n);
    });
  });
}

test("two clients on one session stay in sync", async () => {
  const s = await createSession(srv.http, "u_sync");
  const a = open({ url: srv.ws });
  const b = open({ url: srv.tcp });
  const ra = recorder(); const rb = recorder();
  await a.watchSession(s.session_id, ra.handlers).subscribed;
  await b.watchSession(s.session_id, rb.handlers).subscribed;
  await a.edit(s.session_id, { name: "Dana" });
  await b.edit(s.session_id, { city: "Busan" });
  await a.send(s.session_id, "I am 41");
  // An HTTP chat step (another device) reaches both too.
  const res = await fetch(`${srv.http}/v1/sessions/${s.session_id}/messages`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text: "I work as a pilot" }),
  });
  assert.equal(res.status, 200);
  const { version } = await res.json();
  await ra.waitFor(() => ra.latest().version === version, "a at final version");
  await rb.waitFor(() => rb.latest().version === version, "b at final version");
  assert.deepEqual(ra.latest().profile, rb.latest().profile);
  assert.equal(ra.latest().profile.name, "Dana");
  assert.equal(ra.latest().profile.city, "Busan");
  assert.equal(ra.latest().profile.age, 41);
  assert.deepEqual(ra.seqs(), rb.seqs());
  assertConsecutive(ra.seqs(), "a");
  assert.equal(ra.seqs().at(-1), version);
});

test("resume: events queued while offline arrive in order, no gap", async () => {
  const s = await createSession(srv.http, "u_resume");
  // Without httpBase so that nothing could be filled over HTTP: only the broker's queue counts.
  const a = connect({ mqtt, url: srv.tcp, clientId: `resume-${process.pid}-${Date.now()}`, reconnectPeriod: 300 });
  clients.push(a);
  const b = open({ url: srv.ws });
  const ra = recorder();
  await a.watchSession(s.session_id, ra.handlers).subscribed;
  await ra.waitFor(() => ra.profiles.length === 1, "retained");
  let connacks = [];
  a.on("connect", (ck) => connacks.push(ck));
  const offline = new Promise((res) => a.on("offline", res));
  a.mqtt.options.reconnectPeriod = 0;   // stay offline until we say so
  a.mqtt.stream.destroy();
  await offline;
  assert.equal(a.connected, false);

  const rb = recorder();
  await b.watchSession(s.session_id, rb.handlers).subscribed;
  await b.edit(s.session_id, { name: "Erin" });
  await b.edit(s.session_id, { city: "Oslo" });
  await b.send(s.session_id, "I'm 29");
  await b.edit(s.session_id, { city: null });
  // edit() resolves on the events; the snapshot after them may still be on its way.
  const target = (await (await fetch(`${srv.http}/v1/sessions/${s.session_id}/profile`)).json()).version;
  await rb.waitFor(() => rb.latest().version === target, "online client at the final version");
  assert.equal(ra.events.length, 0, "nothing reached the offline client");

  a.mqtt.options.reconnectPeriod = 300;
  a.mqtt.reconnect();
  await ra.waitFor(() => ra.seqs().at(-1) === target, `events up to seq ${target}`);
  assert.equal(connacks[0].sessionPresent, true, "the server kept the session");
  assert.deepEqual(ra.seqs(), rb.seqs(), "the same events as the online client");
  assertConsecutive(ra.seqs(), "queued events");
  assert.equal(ra.seqs()[0], s.version + 1, "starting right after the last one seen");
  assert.deepEqual(ra.gaps, []);
  await ra.waitFor(() => ra.latest().version === target, "latest profile");
  assert.deepEqual(ra.latest().profile, rb.latest().profile);
  await a.close({ forget: true });
});

test("a gap is filled over HTTP when the broker lost the events", async () => {
  const s = await createSession(srv.http, "u_gap");
  const id = `gap-${process.pid}-${Date.now()}`;
  const a = open({ url: srv.ws, clientId: id, clean: true });
  const ra = recorder();
  await a.watchSession(s.session_id, ra.handlers).subscribed;
  await ra.waitFor(() => ra.profiles.length === 1, "retained");
  const offline = new Promise((res) => a.on("offline", res));
  a.mqtt.options.reconnectPeriod = 0;
  a.mqtt.stream.destroy();
  await offline;
  // clean session: the broker queues nothing; the retained profile shows the gap.
  const b = open({ url: srv.ws });
  await b.edit(s.session_id, { name: "Finn" });
  await b.edit(s.session_id, { city: "Rome" });
  const p = await (await fetch(`${srv.http}/v1/sessions/${s.session_id}/profile`)).json();
  a.mqtt.options.reconnectPeriod = 200;
  a.mqtt.reconnect();
  await ra.waitFor(() => ra.seqs().at(-1) === p.version, "filled events");
  assertConsecutive(ra.seqs(), "filled");
  assert.equal(ra.seqs()[0], s.version + 1);
  assert.equal(ra.latest().profile.city, "Rome");
});

test("afterSeq catches up on events before the subscription", async () => {
  const s = await createSession(srv.http, "u_after");
  const b = open({ url: srv.ws });
  await b.edit(s.session_id, { name: "Gus" });
  const a = open({ url: srv.ws });
  const ra = recorder();
  a.watchSession(s.session_id, { ...ra.handlers, afterSeq: 0 });
  await ra.waitFor(() => ra.events.some((e) => e.type === "profile.field_set"), "old events");
  assert.deepEqual(ra.seqs().slice(0, 3), [1, 2, 3]);
  assert.equal(ra.events[0].type, "session.created");
});

test("web/assets/mqtt.min.js is the MQTT.js browser bundle of the installed mqtt version", () => {
  const bundled = readFileSync(join(repoRoot, "web/assets/mqtt.min.js"));
  const dist = readFileSync(join(repoRoot, "clients/js/node_modules/mqtt/dist/mqtt.min.js"));
  assert.ok(bundled.equals(dist), "web/assets/mqtt.min.js differs from node_modules/mqtt: run clients/js/scripts/vendor-mqtt.sh");
});

// Authentication on (SPEC §10): the token is the CONNECT password and the
// HTTP bearer; without it the broker refuses, and a device token sees only
// its own session.
test("with auth on the client carries its token to MQTT and HTTP", async () => {
  const { createHmac } = await import("node:crypto");
  const secret = "client-test-secret-0123456789abcdef-000";
  const b64 = (b) => Buffer.from(b).toString("base64url");
  const mint = (claims) => {
    const body = `${b64(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64(JSON.stringify({
      aud: "persona", exp: Math.floor(Date.now() / 1000) + 600, ...claims }))}`;
    return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
  };
  const authed = await startPersona({ args: ["--set", "auth.enabled=true", "--set", `auth.jwt.hs256_secret=${secret}`] });
  const opened = [];
  try {
    const token = mint({ sub: "js-alice" });
    const res = await fetch(`${authed.http}/v1/sessions`, {
      method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` }, body: "{}" });
    assert.equal(res.status, 201);
    const s = await res.json();
    const c = connect({ mqtt, url: authed.ws, httpBase: authed.http, token, reconnectPeriod: 200 });
    opened.push(c);
    await c.ready();
    const r = recorder();
    c.watchSession(s.session_id, r.handlers);
    await r.waitFor(() => r.profiles.length >= 1, "retained profile");
    await c.edit(s.session_id, { city: "Lisbon" });
    await r.waitFor(() => r.profiles.some((p) => p.profile.city === "Lisbon"), "edit seen");
    // The HTTP gap filler carries the token too.
    const page = await c.fetchEvents(s.session_id, { after: 0, limit: 10 });
    assert.ok(page.events.length >= 2);
    // Without a token the broker refuses the CONNECT (return code 5).
    const anon = mqtt.connect(authed.ws, { reconnectPeriod: 0, connectTimeout: 3000 });
    const err = await new Promise((resolve) => anon.once("error", resolve));
    assert.match(String(err && (err.code ?? err.message)), /5|[Nn]ot authori[sz]ed/);
    anon.end(true);
    // A token of another user cannot watch the session: the subscription is refused.
    const bob = connect({ mqtt, url: authed.ws, httpBase: authed.http, token: mint({ sub: "js-bob" }), reconnectPeriod: 200 });
    opened.push(bob);
    await bob.ready();
    const rb = recorder();
    bob.watchSession(s.session_id, rb.handlers);
    await rb.waitFor(() => rb.errors.length >= 1 || rb.gaps.length >= 1, "refusal");
    assert.equal(rb.profiles.length, 0);
    await assert.rejects(bob.fetchEvents(s.session_id), { status: 404 });
  } finally {
    await Promise.all(opened.map((c) => c.close().catch(() => {})));
    await authed.stop();
  }
});
