#include "config/config.h"

#include <yaml-cpp/yaml.h>

#include <functional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace persona::config {
namespace {

// A setter decodes one scalar key into the Config; it returns an error
// message (without the key) or "".
using Setter = std::function<std::string(Config&, const YAML::Node&)>;

template <typename T>
std::string Decode(const YAML::Node& n, T* out, const char* what) {
  try {
    *out = n.as<T>();
    return "";
  } catch (const YAML::Exception&) {
    return std::string("expected ") + what;
  }
}

Setter Str(std::string Config::*m) {
  return [m](Config& c, const YAML::Node& n) { return Decode(n, &(c.*m), "a string"); };
}
template <typename S>
Setter SubStr(S Config::*s, std::string S::*m) {
  return [s, m](Config& c, const YAML::Node& n) { return Decode(n, &((c.*s).*m), "a string"); };
}
template <typename S, typename I>
Setter SubInt(S Config::*s, I S::*m, int64_t lo, int64_t hi) {
  return [s, m, lo, hi](Config& c, const YAML::Node& n) -> std::string {
    int64_t v;
    if (auto err = Decode(n, &v, "an integer"); !err.empty()) return err;
    if (v < lo || v > hi) return absl::StrCat("must be between ", lo, " and ", hi);
    (c.*s).*m = static_cast<I>(v);
    return "";
  };
}
// A list of strings: a YAML sequence, or one string of comma-separated items
// (for environment variables and --set).
Setter StrList(std::vector<std::string>* (*field)(Config&)) {
  return [field](Config& c, const YAML::Node& n) -> std::string {
    std::vector<std::string> out;
    try {
      if (n.IsSequence()) {
        for (const auto& e : n) out.push_back(e.as<std::string>());
      } else {
        for (auto part : absl::StrSplit(n.as<std::string>(), ',', absl::SkipWhitespace()))
          out.emplace_back(absl::StripAsciiWhitespace(part));
      }
    } catch (const YAML::Exception&) {
      return "expected a list of strings";
    }
    *field(c) = std::move(out);
    return "";
  };
}
Setter Bool(bool* (*field)(Config&)) {
  return [field](Config& c, const YAML::Node& n) { return Decode(n, field(c), "true or false"); };
}
Setter Double(double* (*field)(Config&), double lo, double hi) {
  return [field, lo, hi](Config& c, const YAML::Node& n) -> std::string {
    double v;
    if (auto err = Decode(n, &v, "a number"); !err.empty()) return err;
    if (!(v >= lo && v <= hi)) return absl::StrCat("must be between ", lo, " and ", hi);
    *field(c) = v;
    return "";
  };
}
Setter IntAt(int* (*field)(Config&), int64_t lo, int64_t hi) {
  return [field, lo, hi](Config& c, const YAML::Node& n) -> std::string {
    int64_t v;
    if (auto err = Decode(n, &v, "an integer"); !err.empty()) return err;
    if (v < lo || v > hi) return absl::StrCat("must be between ", lo, " and ", hi);
    *field(c) = static_cast<int>(v);
    return "";
  };
}
Setter StrAt(std::string* (*field)(Config&)) {
  return [field](Config& c, const YAML::Node& n) { return Decode(n, field(c), "a string"); };
}

Setter Int(int Config::*m, int64_t lo, int64_t hi) {
  return [m, lo, hi](Config& c, const YAML::Node& n) -> std::string {
    int64_t v;
    if (auto err = Decode(n, &v, "an integer"); !err.empty()) return err;
    if (v < lo || v > hi) return absl::StrCat("must be between ", lo, " and ", hi);
    c.*m = static_cast<int>(v);
    return "";
  };
}
Setter OneOf(Setter inner, std::function<std::string(const Config&)> get,
             std::set<std::string> allowed) {
  return [inner, get, allowed](Config& c, const YAML::Node& n) -> std::string {
    if (auto err = inner(c, n); !err.empty()) return err;
    if (!allowed.count(get(c))) {
      std::string list;
      for (const auto& a : allowed) absl::StrAppend(&list, list.empty() ? "" : " | ", a);
      return "must be one of " + list;
    }
    return "";
  };
}

struct Key {
  const char* path;
  const char* default_text;
  Setter set;
};

const std::vector<Key>& Keys() {
  static const std::vector<Key> keys = {
      {"http.listen", "127.0.0.1:8080", SubStr(&Config::http, &Config::Http::listen)},
      {"http.max_body_bytes", "1048576",
       SubInt(&Config::http, &Config::Http::max_body_bytes, 1, int64_t{1} << 30)},
      {"http.max_header_bytes", "16384",
       SubInt(&Config::http, &Config::Http::max_header_bytes, 1024, 1 << 20)},
      {"http.request_timeout_ms", "15000",
       SubInt(&Config::http, &Config::Http::request_timeout_ms, 100, 3600000)},
      {"http.idle_timeout_ms", "60000",
       SubInt(&Config::http, &Config::Http::idle_timeout_ms, 100, 3600000)},
      {"http.max_connections", "20000",
       SubInt(&Config::http, &Config::Http::max_connections, 1, 1000000)},
      {"mqtt.listen", "127.0.0.1:1883", SubStr(&Config::mqtt, &Config::Mqtt::listen)},
      {"mqtt.websocket_path", "/mqtt", SubStr(&Config::mqtt, &Config::Mqtt::websocket_path)},
      {"mqtt.max_connections", "20000",
       SubInt(&Config::mqtt, &Config::Mqtt::max_connections, 1, 1000000)},
      {"mqtt.max_packet_bytes", "262144",
       SubInt(&Config::mqtt, &Config::Mqtt::max_packet_bytes, 64, 256 << 20)},
      {"mqtt.max_queued_messages", "1000",
       SubInt(&Config::mqtt, &Config::Mqtt::max_queued_messages, 1, 10000000)},
      {"mqtt.max_inflight", "64", SubInt(&Config::mqtt, &Config::Mqtt::max_inflight, 1, 65535)},
      {"mqtt.max_sessions", "100000",
       SubInt(&Config::mqtt, &Config::Mqtt::max_sessions, 1, 100000000)},
      {"mqtt.session_expiry_s", "86400",
       SubInt(&Config::mqtt, &Config::Mqtt::session_expiry_s, 1, 100000000)},
      {"mqtt.max_retained", "100000",
       SubInt(&Config::mqtt, &Config::Mqtt::max_retained, 0, 100000000)},
      {"data_dir", "./persona-data", Str(&Config::data_dir)},
      {"write_mode", "sync",
       OneOf(Str(&Config::write_mode), [](const Config& c) { return c.write_mode; },
             {"sync", "async"})},
      {"schemas_dir", "./schemas", Str(&Config::schemas_dir)},
      {"store.backend", "rocksdb",
       OneOf(SubStr(&Config::store, &Config::Store::backend),
             [](const Config& c) { return c.store.backend; }, {"rocksdb", "postgres"})},
      {"store.url", "", SubStr(&Config::store, &Config::Store::url)},
      {"store.snapshot_every", "64",
       SubInt(&Config::store, &Config::Store::snapshot_every, 1, 1000000)},
      {"store.max_batch", "1024", SubInt(&Config::store, &Config::Store::max_batch, 1, 100000)},
      {"store.min_free_bytes", "67108864",
       SubInt(&Config::store, &Config::Store::min_free_bytes, 0, int64_t{1} << 50)},
      {"store.pool_size", "4", SubInt(&Config::store, &Config::Store::pool_size, 1, 1000)},
      {"store.max_clock_skew_ms", "1000",
       SubInt(&Config::store, &Config::Store::max_clock_skew_ms, 0, 3600000)},
      {"store.queue_limit", "8192",
       SubInt(&Config::store, &Config::Store::queue_limit, 1, 10000000)},
      {"cache.backend", "memory",
       OneOf(SubStr(&Config::cache, &Config::Cache::backend),
             [](const Config& c) { return c.cache.backend; }, {"memory", "redis", "none"})},
      {"cache.url", "", SubStr(&Config::cache, &Config::Cache::url)},
      {"cache.ttl_s", "3600", SubInt(&Config::cache, &Config::Cache::ttl_s, 1, 100000000)},
      {"cache.max_entries", "100000",
       SubInt(&Config::cache, &Config::Cache::max_entries, 1, 100000000)},
      {"cache.timeout_ms", "50", SubInt(&Config::cache, &Config::Cache::timeout_ms, 1, 60000)},
      {"async.batch_size", "256", SubInt(&Config::async, &Config::Async::batch_size, 1, 100000)},
      {"async.max_delay_ms", "2", SubInt(&Config::async, &Config::Async::max_delay_ms, 0, 60000)},
      {"async.max_pending", "100000",
       SubInt(&Config::async, &Config::Async::max_pending, 1, 100000000)},
      {"bus.backend", "local",
       OneOf(SubStr(&Config::bus, &Config::Bus::backend),
             [](const Config& c) { return c.bus.backend; }, {"local", "redis"})},
      {"bus.url", "", SubStr(&Config::bus, &Config::Bus::url)},
      {"ai.deadline_ms", "10000", SubInt(&Config::ai, &Config::Ai::deadline_ms, 1, 600000)},
      {"ai.budget_usd_per_user", "0",
       [](Config& c, const YAML::Node& n) {
         std::string err = Decode(n, &c.ai.budget_usd_per_user, "a number of US dollars");
         if (err.empty() && c.ai.budget_usd_per_user < 0) err = "must be >= 0";
         return err;
       }},
      {"ai.breaker_failures", "5", SubInt(&Config::ai, &Config::Ai::breaker_failures, 1, 1000)},
      {"ai.gate.enabled", "false", Bool([](Config& c) { return &c.ai.gate.enabled; })},
      {"ai.gate.threshold", "0",
       [](Config& c, const YAML::Node& n) {
         std::string err = Decode(n, &c.ai.gate.threshold, "a number");
         if (err.empty() && (c.ai.gate.threshold < 0 || c.ai.gate.threshold > 1))
           err = "must be between 0 and 1 (0: the calibrated threshold)";
         return err;
       }},
      {"ai.gate.model", "", StrAt([](Config& c) { return &c.ai.gate.model; })},
      {"ai.cache.enabled", "false", Bool([](Config& c) { return &c.ai.cache.enabled; })},
      {"ai.cache.ttl_s", "3600",
       [](Config& c, const YAML::Node& n) {
         std::string err = Decode(n, &c.ai.cache.ttl_s, "a number of seconds");
         if (err.empty() && (c.ai.cache.ttl_s < 1 || c.ai.cache.ttl_s > 30 * 86400))
           err = "must be between 1 and 2592000";
         return err;
       }},
      {"ai.cache.max_entries", "100000",
       [](Config& c, const YAML::Node& n) {
         std::string err = Decode(n, &c.ai.cache.max_entries, "a number");
         if (err.empty() && (c.ai.cache.max_entries < 1 || c.ai.cache.max_entries > 10000000))
           err = "must be between 1 and 10000000";
         return err;
       }},
      {"ai.cache.semantic", "true", Bool([](Config& c) { return &c.ai.cache.semantic; })},
      {"ai.cache.semantic_threshold", "0.8",
       [](Config& c, const YAML::Node& n) {
         std::string err = Decode(n, &c.ai.cache.semantic_threshold, "a number");
         if (err.empty() &&
             (c.ai.cache.semantic_threshold <= 0 || c.ai.cache.semantic_threshold > 1))
           err = "must be greater than 0 and at most 1 (a cosine similarity)";
         return err;
       }},
      {"ai.router.downgrade_at", "0.8",
       [](Config& c, const YAML::Node& n) {
         std::string err = Decode(n, &c.ai.router.downgrade_at, "a number");
         if (err.empty() && (c.ai.router.downgrade_at <= 0 || c.ai.router.downgrade_at > 1))
           err = "must be greater than 0 and at most 1 (a share of ai.budget_usd_per_user)";
         return err;
       }},
      {"ai.breaker_cooldown_ms", "10000",
       SubInt(&Config::ai, &Config::Ai::breaker_cooldown_ms, 1, 3600000)},
#define PERSONA_TLS(listener)                                                                     \
  {#listener ".tls.cert_file", "", StrAt([](Config& c) { return &c.listener.tls.cert_file; })},   \
      {#listener ".tls.key_file", "", StrAt([](Config& c) { return &c.listener.tls.key_file; })}, \
      {#listener ".tls.client_ca_file", "",                                                       \
       StrAt([](Config& c) { return &c.listener.tls.client_ca_file; })},                          \
      {#listener ".tls.require_client_cert", "false",                                             \
       Bool([](Config& c) { return &c.listener.tls.require_client_cert; })}
      PERSONA_TLS(http),
      PERSONA_TLS(mqtt),
#undef PERSONA_TLS
      {"mqtt.open_topics", "auto",
       OneOf(SubStr(&Config::mqtt, &Config::Mqtt::open_topics),
             [](const Config& c) { return c.mqtt.open_topics; }, {"auto", "true", "false"})},
      {"auth.enabled", "false", Bool([](Config& c) { return &c.auth.enabled; })},
      {"auth.jwt.algorithms", "[HS256]", StrList([](Config& c) { return &c.auth.jwt.algorithms; })},
      {"auth.jwt.hs256_secret", "", StrAt([](Config& c) { return &c.auth.jwt.hs256_secret; })},
      {"auth.jwt.hs256_secret_env", "",
       StrAt([](Config& c) { return &c.auth.jwt.hs256_secret_env; })},
      {"auth.jwt.public_keys_file", "",
       StrAt([](Config& c) { return &c.auth.jwt.public_keys_file; })},
      {"auth.jwt.issuer", "", StrAt([](Config& c) { return &c.auth.jwt.issuer; })},
      {"auth.jwt.audience", "persona", StrAt([](Config& c) { return &c.auth.jwt.audience; })},
      {"auth.jwt.leeway_s", "30", IntAt([](Config& c) { return &c.auth.jwt.leeway_s; }, 0, 3600)},
#define PERSONA_LIMIT(name, default_rate, default_burst)           \
  {"limits." #name ".rate", default_rate,                          \
   Double([](Config& c) { return &c.limits.name.rate; }, 0, 1e9)}, \
      {"limits." #name ".burst", default_burst,                    \
       Double([](Config& c) { return &c.limits.name.burst; }, 0, 1e9)}
      PERSONA_LIMIT(http_per_user, "100", "200"),
      PERSONA_LIMIT(http_per_address, "0 (off)", "0"),
      PERSONA_LIMIT(mqtt_publish_per_user, "100", "200"),
      PERSONA_LIMIT(mqtt_publish_per_address, "0 (off)", "0"),
      PERSONA_LIMIT(connections_per_address, "100", "1000"),
#undef PERSONA_LIMIT
      {"limits.max_tracked_keys", "100000",
       IntAt([](Config& c) { return &c.limits.max_tracked_keys; }, 16, 100000000)},
      {"limits.admission.enabled", "true",
       Bool([](Config& c) { return &c.limits.admission.enabled; })},
      {"limits.admission.target_ms", "20",
       IntAt([](Config& c) { return &c.limits.admission.target_ms; }, 1, 60000)},
      {"limits.admission.interval_ms", "100",
       IntAt([](Config& c) { return &c.limits.admission.interval_ms; }, 10, 60000)},
      {"limits.admission.min_limit", "8",
       IntAt([](Config& c) { return &c.limits.admission.min_limit; }, 1, 1000000)},
      {"limits.admission.max_limit", "4096",
       IntAt([](Config& c) { return &c.limits.admission.max_limit; }, 1, 1000000)},
      {"limits.admission.initial_limit", "256",
       IntAt([](Config& c) { return &c.limits.admission.initial_limit; }, 1, 1000000)},
      {"engine.max_cached_sessions", "100000",
       SubInt(&Config::engine, &Config::Engine::max_cached_sessions, 1, 100000000)},
      {"engine.max_pending_per_session", "32",
       SubInt(&Config::engine, &Config::Engine::max_pending_per_session, 1, 100000)},
      {"engine.history_window", "12",
       SubInt(&Config::engine, &Config::Engine::history_window, 0, 1000)},
      {"threads", "0 (one per core)", Int(&Config::threads, 0, 1024)},
      {"log_level", "info",
       OneOf(Str(&Config::log_level), [](const Config& c) { return c.log_level; },
             {"trace", "debug", "info", "warn", "error", "off"})},
      {"idempotency_ttl_s", "172800", Int(&Config::idempotency_ttl_s, 86400, 365 * 86400)},
      {"shutdown_grace_ms", "10000", Int(&Config::shutdown_grace_ms, 0, 600000)},
      {"flags.file", "", StrAt([](Config& c) { return &c.flags.file; })},
      {"tracing.otlp_endpoint", "",
       [](Config& c, const YAML::Node& n) {
         std::string err = Decode(n, &c.tracing.otlp_endpoint, "a URL");
         if (err.empty() && !c.tracing.otlp_endpoint.empty() &&
             !c.tracing.otlp_endpoint.starts_with("http://") &&
             !c.tracing.otlp_endpoint.starts_with("https://"))
           err = "must be an http:// or https:// URL (e.g. http://collector:4318/v1/traces)";
         return err;
       }},
      {"tracing.sample_ratio", "1",
       [](Config& c, const YAML::Node& n) {
         std::string err = Decode(n, &c.tracing.sample_ratio, "a number");
         if (err.empty() && (c.tracing.sample_ratio < 0 || c.tracing.sample_ratio > 1))
           err = "must be between 0 and 1";
         return err;
       }},
      {"tracing.service_name", "persona",
       StrAt([](Config& c) { return &c.tracing.service_name; })},
  };
  return keys;
}

std::string DecodeProviders(Config& c, const YAML::Node& n) {
  if (!n.IsSequence() || n.size() == 0) return "expected a non-empty list of providers";
  std::vector<AiProviderConfig> out;
  for (size_t i = 0; i < n.size(); ++i) {
    const YAML::Node p = n[i];
    const std::string at = absl::StrCat("[", i, "].");
    if (!p.IsMap()) return at + ": expected a mapping";
    AiProviderConfig pc;
    try {
      pc.name = p["name"].as<std::string>("");
      pc.kind = p["kind"].as<std::string>("");
      pc.base_url = p["base_url"].as<std::string>("");
      pc.model = p["model"].as<std::string>("");
      pc.api_key_env = p["api_key_env"].as<std::string>("");
      pc.region = p["region"].as<std::string>("");
      pc.endpoint_url = p["endpoint_url"].as<std::string>("");
      pc.aws_access_key_id = p["aws_access_key_id"].as<std::string>("");
      pc.aws_secret_access_key = p["aws_secret_access_key"].as<std::string>("");
      pc.aws_session_token = p["aws_session_token"].as<std::string>("");
      pc.timeout_ms = p["timeout_ms"].as<int>(8000);
      pc.price_in_per_mtok = p["price_in_per_mtok"].as<double>(0);
      pc.price_out_per_mtok = p["price_out_per_mtok"].as<double>(0);
      pc.max_tokens = p["max_tokens"].as<int>(512);
      pc.max_retries = p["max_retries"].as<int>(2);
      pc.temperature = p["temperature"].as<double>(0.2);
      pc.tier = p["tier"].as<std::string>("primary");
      for (const auto& kv : p) {
        static const char* kKnown[] = {"name",
                                       "kind",
                                       "base_url",
                                       "model",
                                       "api_key_env",
                                       "region",
                                       "endpoint_url",
                                       "aws_access_key_id",
                                       "aws_secret_access_key",
                                       "aws_session_token",
                                       "timeout_ms",
                                       "price_in_per_mtok",
                                       "price_out_per_mtok",
                                       "max_tokens",
                                       "max_retries",
                                       "temperature",
                                       "tier"};
        const std::string k = kv.first.as<std::string>();
        bool known = false;
        for (const char* n : kKnown) known = known || k == n;
        if (!known) return at + k + ": unknown key";
      }
    } catch (const YAML::Exception& e) {
      return at + ": " + e.what();
    }
    if (pc.kind != "builtin" && pc.kind != "openai" && pc.kind != "bedrock")
      return at + "kind: must be one of builtin | openai | bedrock";
    if (pc.name.empty()) pc.name = pc.kind;
    if (pc.tier != "primary" && pc.tier != "cheap") return at + "tier: must be primary | cheap";
    if (pc.kind == "builtin" && p["tier"])
      return at + "tier: not for kind builtin (it costs nothing and always answers last)";
    if (pc.timeout_ms < 1 || pc.timeout_ms > 600000) return at + "timeout_ms: must be 1..600000";
    if (pc.max_tokens < 1 || pc.max_tokens > 1000000) return at + "max_tokens: must be 1..1000000";
    if (pc.max_retries < 0 || pc.max_retries > 10) return at + "max_retries: must be 0..10";
    if (pc.price_in_per_mtok < 0 || pc.price_out_per_mtok < 0) return at + "prices must be >= 0";
    if (pc.kind == "openai" && pc.base_url.empty())
      return at + "base_url: required for kind openai (e.g. https://api.openai.com/v1)";
    if (pc.kind != "builtin" && pc.model.empty()) return at + "model: required";
    if (pc.kind == "bedrock" && pc.region.empty() && pc.endpoint_url.empty())
      return at + "region: required for kind bedrock";
    out.push_back(std::move(pc));
  }
  c.ai.providers = std::move(out);
  return "";
}

// Walks `node` and applies every scalar leaf; unknown keys are errors.
Status Apply(Config& c, const YAML::Node& node, const std::string& prefix) {
  if (!node.IsMap())
    return absl::InvalidArgumentError((prefix.empty() ? "config" : prefix) +
                                      ": expected a mapping");
  for (const auto& kv : node) {
    const std::string key =
        prefix.empty() ? kv.first.as<std::string>() : prefix + "." + kv.first.as<std::string>();
    if (key == "ai.providers") {
      if (auto err = DecodeProviders(c, kv.second); !err.empty())
        return absl::InvalidArgumentError(key + err);
      continue;
    }
    if (kv.second.IsMap()) {
      if (auto st = Apply(c, kv.second, key); !st.ok()) return st;
      continue;
    }
    const Key* found = nullptr;
    for (const auto& k : Keys())
      if (key == k.path) found = &k;
    if (found == nullptr) return absl::InvalidArgumentError(key + ": unknown configuration key");
    if (auto err = found->set(c, kv.second); !err.empty())
      return absl::InvalidArgumentError(key + ": " + err);
  }
  return absl::OkStatus();
}

// Sets root[a][b]… = value for the dotted path.
void SetPath(YAML::Node root, const std::string& path, const std::string& value) {
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  YAML::Node n = root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (!n[parts[i]] || !n[parts[i]].IsMap()) n[parts[i]] = YAML::Node(YAML::NodeType::Map);
    n.reset(n[parts[i]]);
  }
  if (path == "ai.providers" || (!value.empty() && (value[0] == '[' || value[0] == '{'))) {
    n[parts.back()] = YAML::Load(value);
  } else {
    n[parts.back()] = value;
  }
}

}  // namespace

StatusOr<Config> Load(const std::string& config_file, const std::map<std::string, std::string>& env,
                      const std::map<std::string, std::string>& overrides) {
  YAML::Node root(YAML::NodeType::Map);
  if (!config_file.empty()) {
    try {
      root = YAML::LoadFile(config_file);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(config_file + ": " + e.what());
    }
    if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  }
  std::vector<std::string> ignored_env;
  try {
    for (const auto& [name, value] : env) {
      if (!name.starts_with("PERSONA_")) continue;
      std::string path = absl::AsciiStrToLower(name.substr(8));
      if (path == "config") continue;  // PERSONA_CONFIG names the file itself
      path = absl::StrReplaceAll(path, {{"__", "."}});
      bool known = path == "ai.providers";
      for (const auto& k : Keys()) known = known || path == k.path;
      if (!known) {
        ignored_env.push_back(name);
        continue;
      }
      SetPath(root, path, value);
    }
    for (const auto& [path, value] : overrides) SetPath(root, path, value);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(std::string("override: ") + e.what());
  }
  Config c;
  c.ignored_env = std::move(ignored_env);
  if (auto st = Apply(c, root, ""); !st.ok()) return st;
  if (c.store.backend == "postgres" && c.store.url.empty())
    return absl::InvalidArgumentError("store.url: required when store.backend is postgres");
  if (c.cache.backend == "redis" && c.cache.url.empty())
    return absl::InvalidArgumentError("cache.url: required when cache.backend is redis");
  if (c.bus.backend == "redis" && c.bus.url.empty())
    return absl::InvalidArgumentError("bus.url: required when bus.backend is redis");
  if (c.bus.backend == "redis" && c.store.backend != "postgres")
    return absl::InvalidArgumentError(
        "bus.backend: redis joins nodes that share a store: it needs store.backend postgres");
  for (const auto& [name, t] :
       {std::pair<const char*, const TlsConfig*>{"http", &c.http.tls}, {"mqtt", &c.mqtt.tls}}) {
    const bool any = !t->cert_file.empty() || !t->key_file.empty() || !t->client_ca_file.empty() ||
                     t->require_client_cert;
    if (any && (t->cert_file.empty() || t->key_file.empty()))
      return absl::InvalidArgumentError(std::string(name) +
                                        ".tls: cert_file and key_file are both required");
    if (t->require_client_cert && t->client_ca_file.empty())
      return absl::InvalidArgumentError(std::string(name) +
                                        ".tls.require_client_cert: needs client_ca_file");
  }
  if (!c.auth.jwt.hs256_secret.empty() && !c.auth.jwt.hs256_secret_env.empty())
    return absl::InvalidArgumentError(
        "auth.jwt.hs256_secret_env: give either hs256_secret or hs256_secret_env, not both");
  {
    const auto& a = c.limits.admission;
    if (a.min_limit > a.max_limit)
      return absl::InvalidArgumentError("limits.admission.min_limit: must not exceed max_limit");
    if (a.initial_limit < a.min_limit || a.initial_limit > a.max_limit)
      return absl::InvalidArgumentError(
          "limits.admission.initial_limit: must be between min_limit and max_limit");
  }
  const std::pair<const char*, const Config::Limit*> limits[] = {
      {"http_per_user", &c.limits.http_per_user},
      {"http_per_address", &c.limits.http_per_address},
      {"mqtt_publish_per_user", &c.limits.mqtt_publish_per_user},
      {"mqtt_publish_per_address", &c.limits.mqtt_publish_per_address},
      {"connections_per_address", &c.limits.connections_per_address}};
  for (const auto& [name, l] : limits) {
    if (l->rate > 0 && l->burst < 1)
      return absl::InvalidArgumentError(absl::StrCat("limits.", name,
                                                     ".burst: must be at least 1 when the rate "
                                                     "is set"));
  }
  return c;
}

std::map<std::string, std::string> PersonaEnvironment() {
  std::map<std::string, std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    if (!kv.starts_with("PERSONA_")) continue;
    const size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    out[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  return out;
}

std::string KeysHelp() {
  std::string out =
      "Configuration keys (YAML path; env PERSONA_<PATH with __ for dots>; --set key=value):\n";
  for (const auto& k : Keys())
    absl::StrAppend(&out, "  ", k.path, " (default ", k.default_text, ")\n");
  absl::StrAppend(&out, "  ai.providers (default [{name: offline, kind: builtin}])\n");
  return out;
}

}  // namespace persona::config
