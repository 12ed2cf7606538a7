// Types for @persona/client (src/index.js).

/** A persona event (SPEC §2), as published on session/{id}/events. */
export interface PersonaEvent<D = Record<string, unknown>> {
  seq: number;
  id: string;
  type: "session.created" | "message.user" | "message.assistant" | "profile.field_set"
    | "profile.field_cleared" | "session.deleted" | (string & {});
  at: string;
  /** Hybrid logical clock, a decimal string. */
  hlc: string;
  origin: string;
  data: D;
}

export interface FieldMeta {
  updated_at?: string;
  source?: string;
  hlc?: string;
  [key: string]: unknown;
}

/** The profile snapshot on session/{id}/profile (retained). */
export interface ProfileSnapshot {
  profile: Record<string, unknown>;
  meta: Record<string, FieldMeta>;
  /** The session's version: the seq of its latest event. */
  version: number;
}

/** A problem JSON (RFC 9457) from session/{id}/errors or the HTTP API. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  [key: string]: unknown;
}

export declare class PersonaError extends Error {
  name: "PersonaError";
  /** HTTP-like status: 422 invalid, 412 stale base_version, 404 unknown session; 0 when not from the server. */
  status: number;
  title: string;
  detail: string;
  problem: Problem | null;
  /** "refused" (server), "timeout", "closed", "publish", "subscribe-refused", "no-http". */
  code: string;
}

/** The subset of MQTT.js this client uses (the `mqtt` npm package or the browser global). */
export interface MqttLike {
  connect(url: string, options?: Record<string, unknown>): any;
}

export interface ConnectOptions {
  /** ws://host:port/mqtt, wss://…, or mqtt://host:1883 (TCP, Node only). */
  url: string;
  /** http://host:port of the persona HTTP API: used to fetch events missed in a gap. */
  httpBase?: string;
  /** Stable MQTT client id (needed to resume a session after a restart); default: random per client. */
  clientId?: string;
  /** MQTT.js; default: globalThis.mqtt (browser UMD bundle) or import("mqtt") (Node). */
  mqtt?: MqttLike;
  /** MQTT clean session; default false (the broker queues QoS 1 events while offline). */
  clean?: boolean;
  /** ms between reconnect attempts (MQTT.js); default 1000; 0 disables reconnecting. */
  reconnectPeriod?: number;
  /** Passed to MQTT.js for WebSocket connections. */
  wsOptions?: Record<string, unknown>;
  /** Extra MQTT.js options (keepalive, username, password, …). */
  mqttOptions?: Record<string, unknown>;
  /** fetch implementation for httpBase; default globalThis.fetch. */
  fetch?: typeof fetch;
  /**
   * A bearer token (JWT) when the server has authentication on: the MQTT
   * CONNECT password (user name "persona") and the HTTP Authorization header.
   */
  token?: string;
}

export interface WatchHandlers {
  /** The retained snapshot at once (retained: true), then one after every change. Never an older version. */
  onProfile?(snapshot: ProfileSnapshot, info: { retained: boolean }): void;
  /** Each event once, in seq order. */
  onEvent?(event: PersonaEvent): void;
  /**
   * A refused command on this session. own: it was matched to a command of this
   * client (which then also rejects); the topic is shared by all clients of the session.
   */
  onError?(error: PersonaError, info: { own: boolean }): void;
  /** Events between `after` and `before` could not be delivered (no httpBase, or HTTP failed). */
  onGap?(gap: { after: number | null; before?: number; error?: unknown }): void;
  /**
   * The last seq the caller already has (e.g. from GET /v1/sessions/{id}):
   * events after it that happened before the subscription are fetched over HTTP.
   * Default: start at the retained snapshot's version.
   */
  afterSeq?: number;
}

export interface Watch {
  readonly sessionId: string;
  /** Resolves once the broker acknowledged the subscription. */
  readonly subscribed: Promise<void>;
  /** Highest version known (events delivered or snapshot). */
  readonly version: number;
  readonly lastSeq: number | null;
  readonly profile: Record<string, unknown> | null;
  readonly meta: Record<string, FieldMeta> | null;
  unwatch(): Promise<void>;
}

export interface EditOptions {
  /** Sent as base_version: the server refuses the edit (412) if the session moved on. */
  baseVersion?: number;
  /** Sent as base_hlc (a decimal string). */
  baseHlc?: string | bigint;
  /** Resolve unconfirmed after this long without an answer (default 10000). */
  timeoutMs?: number;
}

export interface EditResult {
  /** false: no event came within timeoutMs (most likely the edit changed nothing). */
  confirmed: boolean;
  version: number;
  events: PersonaEvent[];
}

export interface SendResult {
  user: PersonaEvent;
  reply: PersonaEvent;
  events: PersonaEvent[];
}

export declare class PersonaClient {
  /** Replaces the token: used by the next reconnect and every later HTTP call. */
  setToken(token: string | null): void;
  constructor(options: ConnectOptions);
  readonly url: string;
  readonly httpBase: string;
  readonly clientId: string;
  /** The underlying MQTT.js client (null until MQTT.js is loaded). */
  readonly mqtt: any;
  readonly connected: boolean;
  on(event: "connect", fn: (connack: { sessionPresent: boolean; returnCode?: number }) => void): () => void;
  on(event: "reconnect" | "offline" | "close", fn: () => void): () => void;
  on(event: "error", fn: (error: Error) => void): () => void;
  off(event: string, fn: (...args: any[]) => void): void;
  ready(): Promise<void>;
  watchSession(sessionId: string, handlers?: WatchHandlers): Watch;
  /** Publish on session/{id}/profile/set; null clears a field. */
  edit(sessionId: string, fields: Record<string, unknown>, options?: EditOptions): Promise<EditResult>;
  /** Publish on session/{id}/messages; resolves with the reply event. */
  send(sessionId: string, text: string, options?: { timeoutMs?: number }): Promise<SendResult>;
  /** GET {httpBase}/v1/sessions/{id}/events?after=&limit= */
  fetchEvents(sessionId: string, options?: { after?: number; limit?: number }):
    Promise<{ events: PersonaEvent[]; next_after?: number }>;
  close(options?: { forget?: boolean }): Promise<void>;
}

export declare function connect(options: ConnectOptions): PersonaClient;

declare const _default: {
  connect: typeof connect;
  PersonaClient: typeof PersonaClient;
  PersonaError: typeof PersonaError;
};
export default _default;
