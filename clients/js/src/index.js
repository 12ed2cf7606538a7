// @persona/client: real-time sync with a persona server over MQTT 3.1.1
// (WebSocket `ws://host:port/mqtt` or TCP `mqtt://host:1883`). See README.md.
//
// Plain ES module, no build step. It runs unchanged in Node (where it loads
// the `mqtt` npm package) and in browsers (where it uses the UMD global
// `mqtt` from /assets/mqtt.min.js, or whatever `options.mqtt` passes in).
// The server embeds this file and serves it at /assets/persona-client.js.
//
// Topics (SPEC §5):
//   session/{id}/profile      server → clients, retained: {"profile","meta","version"}
//   session/{id}/events       server → clients, QoS 1: {seq,id,type,at,hlc,origin,data}
//   session/{id}/errors       server → clients: problem JSON for a refused command
//   session/{id}/profile/set  client → server: {"fields", "base_version"?, "base_hlc"?}
//   session/{id}/messages     client → server: {"text"}

const DEFAULT_EDIT_TIMEOUT_MS = 10000;
const DEFAULT_SEND_TIMEOUT_MS = 30000;
const GAP_GRACE_MS = 150;       // wait this long for a late event before fetching a gap over HTTP
const FILL_PAGE = 500;          // events per HTTP page when filling a gap

/** Error for a command the server refused (a problem JSON from …/errors) or one that timed out. */
export class PersonaError extends Error {
  constructor(message, { status = 0, title = "", detail = "", problem = null, code = "" } = {}) {
    super(message);
    this.name = "PersonaError";
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.problem = problem;
    this.code = code;
  }
}

function randomId(bytes = 12) {
  const a = new Uint8Array(bytes);
  globalThis.crypto.getRandomValues(a);
  let s = "";
  for (const b of a) s += b.toString(16).padStart(2, "0");
  return s;
}

let textDecoder = null;
function payloadText(p) {
  if (typeof p === "string") return p;
  if (p == null) return "";
  textDecoder = textDecoder || new TextDecoder();
  return textDecoder.decode(p);
}

function parseJson(p) {
  try { return JSON.parse(payloadText(p)); } catch (_) { return undefined; }
}

function problemError(p) {
  const title = (p && p.title) || "Command refused";
  const detail = (p && p.detail) || "";
  return new PersonaError(detail ? `${title}: ${detail}` : title,
    { status: Number(p && p.status) || 0, title, detail, problem: p || null, code: "refused" });
}

async function loadMqtt(given) {
  const pick = (m) => (m && typeof m.connect === "function" ? m
    : m && m.default && typeof m.default.connect === "function" ? m.default : null);
  let lib = pick(given) || pick(globalThis.mqtt);
  if (!lib) {
    // Node (or a bundler): the `mqtt` npm package. In a plain browser page load
    // /assets/mqtt.min.js first, which defines the global `mqtt`.
    const name = "mqtt";
    lib = pick(await import(name));
  }
  if (!lib) throw new Error("@persona/client: MQTT.js not found (load mqtt.min.js or pass options.mqtt)");
  return lib;
}

// Per watched session.
class SessionState {
  constructor(id) {
    this.id = id;
    this.watchers = new Set();   // handler objects {onProfile, onEvent, onError, onGap}
    this.internal = 0;           // edits/sends that subscribed without a watcher
    this.subscribed = false;     // SUBACK received on the current connection/session
    this.subscribing = null;     // Promise while a SUBSCRIBE is in flight
    this.lastSeq = null;         // highest seq delivered in order (null: not known yet)
    this.profileVersion = -1;    // version of the last snapshot delivered
    this.profile = null;
    this.meta = null;
    this.buffer = new Map();     // seq → event received ahead of a gap
    this.fillTarget = 0;         // fill (over HTTP) up to this seq
    this.fillTimer = 0;
    this.fillDue = 0;
    this.refill = false;              // a fill was asked for while one ran
    this.filling = null;
    this.pending = [];           // this client's edits/sends awaiting their outcome, oldest first
  }
  get version() { return Math.max(this.lastSeq ?? -1, this.profileVersion, 0); }
}

export class PersonaClient {
  /** @param {import("./index.d.ts").ConnectOptions} options */
  constructor(options = {}) {
    if (!options.url) throw new TypeError("@persona/client: connect({url}) needs a url (ws://host:port/mqtt)");
    this.url = options.url;
    this.httpBase = options.httpBase ? String(options.httpBase).replace(/\/+$/, "") : "";
    this.clientId = options.clientId || "persona-" + randomId(10);
    this._generatedId = !options.clientId;
    this._fetch = options.fetch || (typeof globalThis.fetch === "function" ? globalThis.fetch.bind(globalThis) : null);
    this._sessions = new Map();
    this._listeners = new Map();
    this._closed = false;
    this._mqttOptions = {
      protocolVersion: 4,
      clean: false,                // keep subscriptions and QoS 1 messages across network drops
      reconnectPeriod: 1000,
      connectTimeout: 10000,
      keepalive: 30,
      resubscribe: true,
      ...(options.mqttOptions || {}),
      clientId: this.clientId,
    };
    if (options.clean !== undefined) this._mqttOptions.clean = !!options.clean;
    if (options.reconnectPeriod !== undefined) this._mqttOptions.reconnectPeriod = options.reconnectPeriod;
    if (options.wsOptions) this._mqttOptions.wsOptions = options.wsOptions;
    // With authentication on (SPEC §10) the token is the MQTT CONNECT
    // password and the HTTP bearer token.
    this._token = options.token || null;
    if (this._token) {
      this._mqttOptions.username = this._mqttOptions.username || "persona";
      this._mqttOptions.password = this._token;
    }
    /** The underlying MQTT.js client (null until it is loaded). */
    this.mqtt = null;
    this._lib = null;
    this._readyWaiters = [];
    this._init = this._start(options.mqtt).catch((err) => {
      this._emit("error", err);
      for (const w of this._readyWaiters.splice(0)) w.reject(err);
      throw err;
    });
    this._init.catch(() => {});
  }

  async _start(given) {
    this._lib = await loadMqtt(given);
    if (this._closed) return;
    const c = this._lib.connect(this.url, this._mqttOptions);
    this.mqtt = c;
    c.on("connect", (connack) => this._onConnect(connack));
    c.on("reconnect", () => this._emit("reconnect"));
    c.on("offline", () => this._onOffline());
    c.on("close", () => this._onOffline());
    c.on("error", (err) => this._emit("error", err));
    c.on("message", (topic, payload, packet) => this._onMessage(topic, payload, packet));
  }

  /** Replaces the token (e.g. a refreshed one): used by the next reconnect and every later HTTP call. */
  setToken(token) {
    this._token = token || null;
    if (this._token) {
      this._mqttOptions.username = this._mqttOptions.username || "persona";
      this._mqttOptions.password = this._token;
    } else {
      delete this._mqttOptions.password;
    }
    if (this.mqtt && this.mqtt.options) {
      this.mqtt.options.username = this._mqttOptions.username;
      this.mqtt.options.password = this._mqttOptions.password;
    }
  }

  _headers(extra = {}) {
    return this._token ? { ...extra, Authorization: `Bearer ${this._token}` } : extra;
  }

  /** True while the MQTT connection is up. */
  get connected() { return !!(this.mqtt && this.mqtt.connected); }

  /** Subscribe to "connect" (connack), "reconnect", "offline", "error" (Error), "close". Returns an unsubscribe function. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }
  off(event, fn) { this._listeners.get(event)?.delete(fn); }
  _emit(event, ...args) {
    for (const fn of [...(this._listeners.get(event) || [])]) {
      try { fn(...args); } catch (err) { queueMicrotask(() => { throw err; }); }
    }
  }

  /** Resolves once connected (at once if already); rejects if MQTT.js cannot be loaded or the client is closed. */
  ready() {
    if (this.connected) return Promise.resolve();
    if (this._closed) return Promise.reject(new PersonaError("client closed", { code: "closed" }));
    return new Promise((resolve, reject) => {
      this._readyWaiters.push({ resolve, reject });
    });
  }

  _onConnect(connack) {
    this._wasOnline = true;
    for (const w of this._readyWaiters.splice(0)) w.resolve();
    // A session the server does not remember lost its subscriptions; MQTT.js
    // resubscribes what it knows, and we redo any that never got a SUBACK.
    if (!connack || !connack.sessionPresent) for (const st of this._sessions.values()) st.subscribed = false;
    for (const st of this._sessions.values()) {
      if (!st.subscribed && !st.subscribing) this._subscribe(st).catch(() => {});
      // After a reconnect the retained snapshot or the next event reveals any
      // gap; check once more in case neither comes.
      this._scheduleFill(st, 0, 1000);
    }
    this._emit("connect", connack);
  }

  _onOffline() {
    if (this._wasOnline === false) return;
    this._wasOnline = false;
    this._emit("offline");
    // Subscriptions still in flight were dropped by MQTT.js; the next connect redoes them.
    for (const st of this._sessions.values()) if (st.subscribing) st.subscribed = false;
  }

  _topics(id) {
    const base = `session/${id}`;
    return { profile: `${base}/profile`, events: `${base}/events`, errors: `${base}/errors`,
      set: `${base}/profile/set`, messages: `${base}/messages` };
  }

  async _subscribe(st) {
    await this._init;
    const t = this._topics(st.id);
    const p = this.mqtt.subscribeAsync({ [t.profile]: { qos: 1 }, [t.events]: { qos: 1 }, [t.errors]: { qos: 1 } })
      .then((granted) => {
        const bad = (granted || []).find((g) => g && g.qos === 128);
        if (bad) throw new PersonaError(`subscription to ${bad.topic} refused`, { code: "subscribe-refused" });
        if (this._sessions.get(st.id) === st) st.subscribed = true;
      }, (err) => {
        // MQTT.js 5 rejects a SUBACK with return code 0x80 itself (a session
        // the token does not grant, SPEC §10).
        if (err && err.packet && err.packet.cmd === "suback")
          throw new PersonaError(`subscription to session ${st.id} refused`, { code: "subscribe-refused" });
        throw err;
      })
      .finally(() => { if (st.subscribing === p) st.subscribing = null; });
    st.subscribing = p;
    return p;
  }

  _state(id) {
    let st = this._sessions.get(id);
    if (!st) { st = new SessionState(id); this._sessions.set(id, st); }
    return st;
  }

  /**
   * Watch a session: its profile (the retained snapshot arrives at once), its
   * events (deduplicated and in seq order, gaps filled over HTTP when
   * httpBase is set) and the errors of commands sent to it.
   */
  watchSession(sessionId, handlers = {}) {
    if (this._closed) throw new PersonaError("client closed", { code: "closed" });
    const id = String(sessionId);
    if (!/^[A-Za-z0-9_-]+$/.test(id)) throw new TypeError(`invalid session id ${JSON.stringify(id)}`);
    const st = this._state(id);
    const h = { ...handlers };
    st.watchers.add(h);
    // Events after afterSeq that happened before the subscription are caught
    // up when the retained snapshot shows a higher version.
    if (handlers.afterSeq != null && st.lastSeq == null) st.lastSeq = Number(handlers.afterSeq);
    if (st.profile && h.onProfile) {
      const snap = { profile: st.profile, meta: st.meta, version: st.profileVersion };
      queueMicrotask(() => { if (st.watchers.has(h)) h.onProfile(snap, { retained: true }); });
    }
    const subscribed = st.subscribed ? Promise.resolve() : (st.subscribing || this._subscribe(st));
    subscribed.catch((err) => { if (st.watchers.has(h)) this._notifyError(st, err, { own: false }); });
    const client = this;
    const acknowledged = subscribed.then(() => undefined);
    acknowledged.catch(() => {});   // reported through onError; awaiting it still rejects
    return {
      sessionId: id,
      /** Resolves once the server acknowledged the subscription. */
      subscribed: acknowledged,
      get version() { return st.version; },
      get lastSeq() { return st.lastSeq; },
      get profile() { return st.profile; },
      get meta() { return st.meta; },
      unwatch: () => client._release(st, h),
    };
  }

  async _release(st, h) {
    if (h) st.watchers.delete(h);
    if (st.watchers.size || st.internal > 0 || st.pending.length) return;
    if (this._sessions.get(st.id) !== st) return;
    this._sessions.delete(st.id);
    clearTimeout(st.fillTimer);
    if (this.mqtt && !this._closed) {
      const t = this._topics(st.id);
      await this.mqtt.unsubscribeAsync([t.profile, t.events, t.errors]).catch(() => {});
    }
  }

  _onMessage(topic, payload, packet) {
    if (!topic.startsWith("session/")) return;
    const rest = topic.slice(8);
    const slash = rest.indexOf("/");
    if (slash < 0) return;
    const st = this._sessions.get(rest.slice(0, slash));
    if (!st) return;   // e.g. queued for a session we stopped watching
    const kind = rest.slice(slash + 1);
    const body = parseJson(payload);
    if (body === undefined || body === null || typeof body !== "object") return;
    if (kind === "events") this._receiveEvent(st, body);
    else if (kind === "profile") this._receiveProfile(st, body, !!(packet && packet.retain));
    else if (kind === "errors") this._receiveError(st, body);
  }

  // ---------- events: dedupe, order, fill gaps ----------
  _receiveEvent(st, ev) {
    const seq = typeof ev.seq === "number" ? ev.seq : null;
    if (seq === null) { this._deliver(st, ev); return; }
    if (st.lastSeq === null) st.lastSeq = seq - 1;   // first thing we learn: start here
    if (seq <= st.lastSeq || st.buffer.has(seq)) return;   // duplicate (redelivery, resume, HTTP fill)
    if (seq === st.lastSeq + 1) {
      this._deliver(st, ev);
      this._drain(st);
      return;
    }
    st.buffer.set(seq, ev);
    this._scheduleFill(st, seq - 1, GAP_GRACE_MS);
  }

  _drain(st) {
    while (st.buffer.has(st.lastSeq + 1)) {
      const ev = st.buffer.get(st.lastSeq + 1);
      st.buffer.delete(st.lastSeq + 1);
      this._deliver(st, ev);
    }
  }

  _deliver(st, ev) {
    if (typeof ev.seq === "number" && (st.lastSeq === null || ev.seq > st.lastSeq)) st.lastSeq = ev.seq;
    for (const h of [...st.watchers]) {
      if (h.onEvent) { try { h.onEvent(ev); } catch (err) { queueMicrotask(() => { throw err; }); } }
    }
    this._matchPending(st, ev);
  }

  // Fill everything up to `target` (0: up to the latest known version) after `delay` ms.
  _scheduleFill(st, target, delay) {
    st.fillTarget = Math.max(st.fillTarget, target);
    if (st.filling) { st.refill = true; return; }
    const due = Date.now() + delay;
    if (st.fillTimer) {
      if (st.fillDue <= due) return;   // an earlier check is already scheduled
      clearTimeout(st.fillTimer);
    }
    st.fillDue = due;
    st.fillTimer = setTimeout(() => { st.fillTimer = 0; this._fill(st).catch(() => {}); }, delay);
  }

  async _fill(st) {
    if (st.filling || this._sessions.get(st.id) !== st) return;
    const behind = () => st.lastSeq !== null &&
      (st.buffer.size > 0 || st.fillTarget > st.lastSeq || st.profileVersion > st.lastSeq);
    if (!behind()) return;
    st.filling = (async () => {
      if (this.httpBase && this._fetch) {
        let guard = 0;
        while (behind() && guard++ < 1000) {
          const page = await this.fetchEvents(st.id, { after: st.lastSeq, limit: FILL_PAGE });
          if (this._sessions.get(st.id) !== st) return;
          const list = Array.isArray(page.events) ? page.events : [];
          for (const ev of list) if (ev && typeof ev === "object") this._receiveEvent(st, ev);
          this._drain(st);
          if (list.length === 0) break;
        }
      }
      // Whatever could not be fetched: deliver what we hold, in order, and say so.
      if (st.buffer.size) {
        const seqs = [...st.buffer.keys()].sort((a, b) => a - b);
        const from = st.lastSeq;
        for (const s of seqs) {
          const ev = st.buffer.get(s);
          st.buffer.delete(s);
          if (s > st.lastSeq) this._deliver(st, ev);
        }
        for (const h of [...st.watchers]) if (h.onGap) h.onGap({ after: from, before: seqs[0] });
      }
    })();
    try { await st.filling; }
    catch (err) {
      for (const h of [...st.watchers]) if (h.onGap) h.onGap({ after: st.lastSeq, error: err });
      // Try again shortly: the HTTP API may have been down with the broker up.
      st.filling = null;
      this._scheduleFill(st, 0, 2000);
      return;
    } finally { st.filling = null; }
    st.fillTarget = 0;
    if (st.refill) { st.refill = false; this._scheduleFill(st, 0, 0); }
  }

  /** One page of a session's events over HTTP: GET {httpBase}/v1/sessions/{id}/events?after=&limit=. */
  async fetchEvents(sessionId, { after = 0, limit = 100 } = {}) {
    if (!this.httpBase || !this._fetch) throw new PersonaError("httpBase is not set", { code: "no-http" });
    const url = `${this.httpBase}/v1/sessions/${encodeURIComponent(sessionId)}/events?after=${after}&limit=${limit}`;
    const res = await this._fetch(url, { headers: this._headers({ Accept: "application/json" }), cache: "no-store" });
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
    if (!res.ok) throw problemError(data && typeof data === "object" ? data : { title: `HTTP ${res.status}`, status: res.status });
    return data && typeof data === "object" ? data : { events: [] };
  }

  // ---------- profile snapshots ----------
  _receiveProfile(st, snap, retained) {
    const v = typeof snap.version === "number" ? snap.version : Number(snap.version);
    if (!Number.isFinite(v)) return;
    if (v <= st.profileVersion) return;   // a resubscribe's retained copy, or older than what we have
    st.profileVersion = v;
    st.profile = snap.profile && typeof snap.profile === "object" ? snap.profile : {};
    st.meta = snap.meta && typeof snap.meta === "object" ? snap.meta : {};
    if (st.lastSeq === null) st.lastSeq = v;          // events up to v are in this snapshot
    else if (v > st.lastSeq) this._scheduleFill(st, v, GAP_GRACE_MS);   // events we missed
    const out = { profile: st.profile, meta: st.meta, version: v };
    for (const h of [...st.watchers]) {
      if (h.onProfile) { try { h.onProfile(out, { retained }); } catch (err) { queueMicrotask(() => { throw err; }); } }
    }
    this._matchPendingSnapshot(st, v);
  }

  // ---------- errors ----------
  _receiveError(st, problem) {
    const err = problemError(problem);
    // Match by request id if the server echoes it; else blame our oldest
    // outstanding command on this session (the topic is shared by every
    // client of the session, so with none outstanding it is someone else's).
    let idx = -1;
    if (problem.request_id != null) idx = st.pending.findIndex((p) => p.requestId === String(problem.request_id));
    else if (st.pending.length) idx = 0;
    let own = false;
    if (idx >= 0) {
      const p = st.pending[idx];
      own = true;
      this._settle(st, p, err, null);
    }
    this._notifyError(st, err, { own });
  }

  _notifyError(st, err, info) {
    for (const h of [...st.watchers]) {
      if (h.onError) { try { h.onError(err, info); } catch (e) { queueMicrotask(() => { throw e; }); } }
    }
  }

  // ---------- commands ----------
  async _command(sessionId, kind, payload, extra, timeoutMs, onTimeout) {
    if (this._closed) throw new PersonaError("client closed", { code: "closed" });
    const id = String(sessionId);
    if (!/^[A-Za-z0-9_-]+$/.test(id)) throw new TypeError(`invalid session id ${JSON.stringify(id)}`);
    const st = this._state(id);
    st.internal++;
    try {
      if (!st.subscribed) await (st.subscribing || this._subscribe(st));
    } catch (err) {
      st.internal--;
      this._release(st, null);
      throw err;
    }
    const requestId = randomId(8);
    const p = { kind, requestId, base: st.version, events: [], ...extra };
    const done = new Promise((resolve, reject) => { p.resolve = resolve; p.reject = reject; });
    st.pending.push(p);
    st.internal--;
    p.timer = setTimeout(() => onTimeout(st, p), timeoutMs);
    const t = this._topics(id);
    const body = JSON.stringify({ ...payload, request_id: requestId });
    this.mqtt.publishAsync(kind === "edit" ? t.set : t.messages, body, { qos: 1 })
      .catch((err) => this._settle(st, p, new PersonaError(`publish failed: ${err.message}`, { code: "publish" }), null));
    return done;
  }

  _settle(st, p, err, value) {
    const i = st.pending.indexOf(p);
    if (i < 0) return;
    st.pending.splice(i, 1);
    clearTimeout(p.timer);
    if (err) p.reject(err); else p.resolve(value);
    if (!st.watchers.size && !st.pending.length && !st.internal) this._release(st, null);
  }

  /**
   * Edit profile fields from this device: publishes {fields, base_version?,
   * base_hlc?} to session/{id}/profile/set. Resolves with {confirmed: true,
   * version, events} once the change is seen on the events topic, rejects with
   * a PersonaError (status 422, 412, 404…) when the server refuses it.
   * A change that alters nothing produces no answer: after timeoutMs it
   * resolves with {confirmed: false}.
   */
  edit(sessionId, fields, { baseVersion, baseHlc, timeoutMs = DEFAULT_EDIT_TIMEOUT_MS } = {}) {
    if (!fields || typeof fields !== "object" || Array.isArray(fields)) {
      return Promise.reject(new TypeError("edit(sessionId, fields): fields must be an object"));
    }
    const payload = { fields };
    if (baseVersion != null) payload.base_version = Number(baseVersion);
    if (baseHlc != null) payload.base_hlc = String(baseHlc);
    return this._command(sessionId, "edit", payload, { fields: new Set(Object.keys(fields)), seen: new Set() },
      timeoutMs, (st, p) => this._settle(st, p, null, { confirmed: false, version: st.version, events: p.events }));
  }

  /**
   * A chat step over MQTT (session/{id}/messages). Resolves with {user, reply}
   * (the message.user and message.assistant events) once the reply arrives.
   */
  send(sessionId, text, { timeoutMs = DEFAULT_SEND_TIMEOUT_MS } = {}) {
    if (typeof text !== "string" || !text.trim()) return Promise.reject(new TypeError("send(sessionId, text): text must be a non-blank string"));
    return this._command(sessionId, "send", { text }, { text, user: null },
      timeoutMs, (st, p) => this._settle(st, p, new PersonaError("no reply within " + timeoutMs + " ms", { code: "timeout" }), null));
  }

  _matchPending(st, ev) {
    if (!st.pending.length || typeof ev.seq !== "number") return;
    const d = ev.data && typeof ev.data === "object" ? ev.data : {};
    for (const p of [...st.pending]) {
      if (ev.seq <= p.base) continue;
      if (p.kind === "edit") {
        if ((ev.type === "profile.field_set" || ev.type === "profile.field_cleared") &&
            ev.origin === "device" && p.fields.has(d.field) && !p.seen.has(d.field)) {
          p.seen.add(d.field);
          p.events.push(ev);
          if (p.seen.size === p.fields.size) this._settle(st, p, null, { confirmed: true, version: ev.seq, events: p.events });
          return;
        }
      } else if (p.kind === "send") {
        if (!p.user && ev.type === "message.user" && ev.origin === "device" && d.text === p.text) {
          p.user = ev; p.events.push(ev);
          return;
        }
        if (p.user) {
          if (ev.type !== "message.user") p.events.push(ev);
          if (ev.type === "message.assistant" && d.reply_to === (p.user.data && p.user.data.message_id)) {
            this._settle(st, p, null, { user: p.user, reply: ev, events: p.events });
            return;
          }
        }
      }
    }
  }

  // A snapshot after some of an edit's events: the server publishes it after
  // all events of one change, so fields without an event were no-ops.
  _matchPendingSnapshot(st, version) {
    for (const p of [...st.pending]) {
      if (p.kind === "edit" && p.events.length && version >= p.events[p.events.length - 1].seq) {
        this._settle(st, p, null, { confirmed: true, version, events: p.events });
      }
    }
  }

  /**
   * Disconnect. With clean:false the server keeps this client's session (and
   * queues for it) until the same clientId reconnects; forget: true (the
   * default when the clientId was generated) discards it.
   */
  async close({ forget = this._generatedId } = {}) {
    if (this._closed) return;
    this._closed = true;
    for (const st of this._sessions.values()) {
      clearTimeout(st.fillTimer);
      for (const p of [...st.pending]) this._settle(st, p, new PersonaError("client closed", { code: "closed" }), null);
    }
    this._sessions.clear();
    for (const w of this._readyWaiters.splice(0)) w.reject(new PersonaError("client closed", { code: "closed" }));
    await this._init.catch(() => {});
    if (this.mqtt) await this.mqtt.endAsync(true).catch(() => {});
    if (forget && this._lib && this._mqttOptions.clean === false) {
      // MQTT 3.1.1 discards a session when the same clientId connects with clean session set.
      try {
        const c = this._lib.connect(this.url, { ...this._mqttOptions, clean: true, reconnectPeriod: 0, connectTimeout: 3000 });
        await new Promise((resolve) => {
          const t = setTimeout(resolve, 3000);
          c.once("connect", () => { clearTimeout(t); resolve(); });
          c.once("error", () => { clearTimeout(t); resolve(); });
        });
        await c.endAsync(true).catch(() => {});
      } catch (_) { /* best effort */ }
    }
    this._emit("close");
  }
}

/** Connect to a persona server's MQTT broker. Returns at once; see client.ready(). */
export function connect(options) {
  return new PersonaClient(options);
}

export default { connect, PersonaClient, PersonaError };
