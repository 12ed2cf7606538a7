// The typed configuration (SPEC §7a) and its loading: YAML file, then
// PERSONA_* environment variables, then command-line overrides.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"

namespace persona::config {

struct AiProviderConfig {
  std::string name;
  std::string kind;  // builtin | openai | bedrock
  std::string base_url;
  std::string model;
  std::string api_key_env;
  std::string region;
  std::string endpoint_url;
  // bedrock: credentials, when not taken from AWS_ACCESS_KEY_ID,
  // AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (config wins when set).
  std::string aws_access_key_id;
  std::string aws_secret_access_key;
  std::string aws_session_token;
  int timeout_ms = 8000;
  double price_in_per_mtok = 0;
  double price_out_per_mtok = 0;
  int max_tokens = 512;  // the reply's token limit (also bounds the cost reserved)
  int max_retries = 2;   // on 429, 5xx and connection failures, while the deadline allows
  double temperature = 0.2;
  std::string tier = "primary";  // primary | cheap (the cost router, SPEC §12)
};

// TLS on a listener (SPEC §10): on when cert_file is set.
struct TlsConfig {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // ask for client certificates signed by these CAs
  bool require_client_cert = false;
};

struct Config {
  struct Http {
    std::string listen = "127.0.0.1:8080";
    uint64_t max_body_bytes = 1 << 20;
    uint64_t max_header_bytes = 16 << 10;
    int request_timeout_ms = 15000;  // whole request (headers and body) must arrive within this
    int idle_timeout_ms = 60000;     // keep-alive connection with no request
    int max_connections = 20000;
    TlsConfig tls;
  } http;
  struct Mqtt {
    std::string listen = "127.0.0.1:1883";  // "off" disables MQTT over TCP
    std::string websocket_path = "/mqtt";   // "" disables MQTT over WebSocket
    int max_connections = 20000;
    int max_packet_bytes = 256 << 10;
    int max_queued_messages = 1000;  // QoS 1 per session, while slow or offline
    int max_inflight = 64;           // unacknowledged QoS 1 per session
    int max_sessions = 100000;       // client sessions, online and offline
    int max_retained = 100000;       // retained topics (plain broker use)
    int session_expiry_s = 86400;    // offline persistent sessions are discarded after this
    // Topics outside session/…: "auto" = open with auth off, refused with it on.
    std::string open_topics = "auto";
    TlsConfig tls;
  } mqtt;
  std::string data_dir = "./persona-data";
  std::string write_mode = "sync";  // sync | async
  std::string schemas_dir = "./schemas";
  struct Store {
    std::string backend = "rocksdb";  // rocksdb | postgres
    std::string url;
    int snapshot_every = 64;                     // events between profile snapshots
    int max_batch = 1024;                        // steps per group commit at most
    int queue_limit = 8192;                      // pending commits before 503
    int64_t min_free_bytes = int64_t{64} << 20;  // refuse writes below this much free disk
    int pool_size = 4;                           // postgres: read connections
    // postgres: a node whose clock differs from the database server's by
    // more is refused at start (and logged when it drifts past it later).
    int max_clock_skew_ms = 1000;
  } store;
  struct Cache {
    std::string backend = "memory";  // memory | redis | none
    std::string url;                 // redis://[:password@]host[:port][/db]
    int ttl_s = 3600;
    int max_entries = 100000;  // memory: profiles held at most
    int timeout_ms = 50;       // redis: connect and command timeout
  } cache;
  struct Async {
    int batch_size = 256;      // requests the applier applies at once
    int max_delay_ms = 2;      // how long a batch may wait to fill
    int max_pending = 100000;  // accepted and not yet applied; more get 503
  } async;
  struct Bus {
    std::string backend = "local";
    std::string url;
  } bus;
  struct Ai {
    int deadline_ms = 10000;
    double budget_usd_per_user = 0;  // 0: no limit
    int breaker_failures = 5;        // failures in a row that open a provider's circuit
    int breaker_cooldown_ms = 10000;
    std::vector<AiProviderConfig> providers{{.name = "offline", .kind = "builtin"}};
    struct Gate {
      bool enabled = false;
      // 0: the threshold calibrated on CLINC150's val split (intent.json
      // beside the model); else this one.
      double threshold = 0;
      std::string model;  // "": gate/intent.bin beside the persona binary
    } gate;
    struct ResponseCache {
      bool enabled = false;
      int ttl_s = 3600;
      int max_entries = 100000;
      // The semantic half (needs the gate's model, ai.gate.model): on with
      // the cache unless switched off; a hit needs at least this cosine
      // similarity (chosen on CLINC150 val, README).
      bool semantic = true;
      double semantic_threshold = 0.8;
    } cache;
    struct Router {
      // The share of budget_usd_per_user past which a user's steps go to
      // cheap-tier providers only.
      double downgrade_at = 0.8;
    } router;
  } ai;
  struct Auth {
    bool enabled = false;
    struct Jwt {
      std::vector<std::string> algorithms{"HS256"};
      std::string hs256_secret;
      std::string hs256_secret_env;  // the name of a variable holding the secret
      std::string public_keys_file;  // PEM or JWKS (RS256, ES256, EdDSA)
      std::string issuer;
      std::string audience = "persona";
      int leeway_s = 30;
    } jwt;
  } auth;
  // Token buckets (rate per second, burst) and admission control (SPEC §10).
  struct Limit {
    double rate = 0;  // 0 = off
    double burst = 0;
  };
  struct Limits {
    Limit http_per_user{100, 200};             // HTTP requests per authenticated user
    Limit http_per_address{0, 0};              // HTTP requests per client address
    Limit mqtt_publish_per_user{100, 200};     // MQTT PUBLISHes per authenticated user
    Limit mqtt_publish_per_address{0, 0};      // MQTT PUBLISHes per client address
    Limit connections_per_address{100, 1000};  // new TCP connections (HTTP and MQTT)
    int max_tracked_keys = 100000;             // buckets kept per limiter
    struct Admission {
      bool enabled = true;
      int target_ms = 20;  // the fastest request in an interval waits longer: shed
      int interval_ms = 100;
      int min_limit = 8;
      int max_limit = 4096;
      int initial_limit = 256;
    } admission;
  } limits;
  struct Engine {
    int max_cached_sessions = 100000;
    int max_pending_per_session = 32;
    int history_window = 12;
  } engine;
  int threads = 0;  // I/O threads; 0 = one per core
  std::string log_level = "info";
  int idempotency_ttl_s = 48 * 3600;
  int shutdown_grace_ms = 10000;
  // Feature flags (SPEC §13): a file in flagd's flag-definition format, "" = none.
  struct Flags {
    std::string file;
  } flags;
  // Tracing (SPEC §13): spans as OTLP/HTTP JSON to this URL (…/v1/traces); "" = off.
  struct Tracing {
    std::string otlp_endpoint;
    std::string service_name = "persona";
    // The share of new traces recorded (a caller's traceparent decides for
    // its own: its sampled flag).
    double sample_ratio = 1.0;
  } tracing;

  // PERSONA_* environment variables that name no key (ignored, not fatal:
  // the environment is shared with other tools). Serve logs them.
  std::vector<std::string> ignored_env;
};

// Builds the configuration: defaults, then the YAML file (if `config_file`
// is non-empty), then environment variables from `env` (PERSONA_HTTP__LISTEN
// → http.listen), then `overrides` ("http.listen" → "127.0.0.1:0").
// InvalidArgument names the offending key, e.g. "http.max_body_bytes: expected
// a positive integer".
StatusOr<Config> Load(const std::string& config_file, const std::map<std::string, std::string>& env,
                      const std::map<std::string, std::string>& overrides);

// The environment as a map (PERSONA_* only).
std::map<std::string, std::string> PersonaEnvironment();

// One line per configuration key with its default, for --help.
std::string KeysHelp();

}  // namespace persona::config
