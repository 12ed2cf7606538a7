// `persona serve`: wires the embedded defaults together and runs until SIGTERM.
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <thread>

#include "ai/builtin/builtin_provider.h"
#include "ai/cache/response_cache.h"
#include "ai/cache/semantic_cache.h"
#include "ai/gate/intent_gate.h"
#include "ai/llm/bedrock_provider.h"
#include "ai/llm/budget.h"
#include "ai/llm/chain.h"
#include "ai/llm/openai_provider.h"
#include "ai/switch/switching_provider.h"
#include "api/http_api.h"
#include "app/commands.h"
#include "app/upgrade.h"
#include "auth/authenticator.h"
#include "bus/local/local_bus.h"
#include "bus/redis/redis_bus.h"
#include "cache/profile_cache.h"
#include "config/config.h"
#include "core/logging.h"
#include "core/scheduler.h"
#include "engine/applier.h"
#include "engine/engine.h"
#include "flags/flags.h"
#include "limits/concurrency_limiter.h"
#include "limits/rate_limiter.h"
#include "model/schema.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "net/tcp_server.h"
#include "net/tls.h"
#include "realtime/broker.h"
#include "realtime/mqtt_connection.h"
#include "realtime/persona_bridge.h"
#include "realtime/session_mirror.h"
#include "store/postgres/postgres_event_store.h"
#include "store/rocksdb/rocksdb_event_store.h"
#include "tracing/tracer.h"

namespace persona::app {

namespace asio = boost::asio;

namespace {

// Idle connections each hold a descriptor: use all the process may have.
void RaiseFdLimit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

StatusOr<auth::JwtOptions> JwtOptionsFrom(const config::Config& cfg) {
  const auto& j = cfg.auth.jwt;
  auth::JwtOptions o;
  o.algorithms = j.algorithms;
  o.hs256_secret = j.hs256_secret;
  if (!j.hs256_secret_env.empty()) {
    const char* v = std::getenv(j.hs256_secret_env.c_str());
    if (v == nullptr || *v == '\0')
      return absl::InvalidArgumentError("auth.jwt.hs256_secret_env: the variable " +
                                        j.hs256_secret_env + " is not set");
    o.hs256_secret = v;
  }
  o.public_keys_file = j.public_keys_file;
  o.issuer = j.issuer;
  o.audience = j.audience;
  o.leeway_s = j.leeway_s;
  return o;
}

std::string DefaultGateModel() {
  // Built by scripts/train_gate.py into gate/ beside the binary.
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ((ec ? std::filesystem::path(".") : exe.parent_path()) / "gate" / "intent.bin").string();
}

StatusOr<config::Config> LoadConfig(const ServeFlags& flags) {
  return config::Load(flags.config_file, config::PersonaEnvironment(), flags.overrides);
}

StatusOr<std::unique_ptr<store::EventStore>> OpenStore(const config::Config& cfg, bool read_only,
                                                       const std::string& node_fingerprint) {
  if (cfg.store.backend == "postgres") {
    store::PostgresOptions opt;
    opt.url = cfg.store.url;
    opt.node_fingerprint = node_fingerprint;
    opt.max_clock_skew_ms = read_only || node_fingerprint.empty() ? 0 : cfg.store.max_clock_skew_ms;
    opt.pool_size = static_cast<size_t>(cfg.store.pool_size);
    opt.mqtt_session_ttl_ms = static_cast<int64_t>(cfg.mqtt.session_expiry_s) * 1000;
    opt.max_batch = static_cast<size_t>(cfg.store.max_batch);
    opt.queue_limit = static_cast<size_t>(cfg.store.queue_limit);
    opt.idempotency_ttl_ms = static_cast<int64_t>(cfg.idempotency_ttl_s) * 1000;
    auto s = store::PostgresEventStore::Open(opt);
    if (!s.ok())
      return absl::Status(s.status().code(), "store.url: " + std::string(s.status().message()));
    return std::unique_ptr<store::EventStore>(std::move(*s));
  }
  std::error_code ec;
  if (!read_only) {
    std::filesystem::create_directories(cfg.data_dir, ec);
    if (ec)
      return absl::FailedPreconditionError("data_dir '" + cfg.data_dir + "': " + ec.message());
  }
  store::RocksDbOptions opt;
  opt.path = (std::filesystem::path(cfg.data_dir) / "events").string();
  opt.read_only = read_only;
  opt.max_batch = static_cast<size_t>(cfg.store.max_batch);
  opt.queue_limit = static_cast<size_t>(cfg.store.queue_limit);
  opt.min_free_bytes = static_cast<uint64_t>(cfg.store.min_free_bytes);
  opt.idempotency_ttl_ms = static_cast<int64_t>(cfg.idempotency_ttl_s) * 1000;
  opt.mqtt_session_ttl_ms = static_cast<int64_t>(cfg.mqtt.session_expiry_s) * 1000;
  auto s = store::RocksDbEventStore::Open(opt);
  if (!s.ok()) return s.status();
  return std::unique_ptr<store::EventStore>(std::move(*s));
}

int Serve(const ServeFlags& flags) {
  auto cfg = LoadConfig(flags);
  if (!cfg.ok()) {
    std::cerr << "persona: invalid configuration: " << cfg.status().message() << "\n";
    return 2;
  }
  InitLogging(cfg->log_level);
  for (const auto& name : cfg->ignored_env)
    LogWarn("ignoring environment variable that names no configuration key", {{"name", name}});
  std::signal(SIGPIPE, SIG_IGN);
  RaiseFdLimit();

  auto schemas = model::LoadSchemas(cfg->schemas_dir);
  if (!schemas.ok()) {
    LogError("cannot load schemas", {{"error", std::string(schemas.status().message())}});
    std::cerr << "persona: schemas: " << schemas.status().message() << "\n";
    return 2;
  }
  // Identity (SPEC §10). Off: every caller is Caller::Open().
  std::unique_ptr<auth::Authenticator> authenticator;
  if (cfg->auth.enabled) {
    auto jwt = JwtOptionsFrom(*cfg);
    StatusOr<std::unique_ptr<auth::JwtVerifier>> verifier =
        jwt.ok() ? auth::JwtVerifier::Create(*jwt) : jwt.status();
    if (!verifier.ok()) {
      const std::string msg(verifier.status().message());
      std::cerr << "persona: invalid configuration: "
                << (msg.starts_with("auth.") ? msg : "auth.jwt." + msg) << "\n";
      return 2;
    }
    authenticator = std::make_unique<auth::Authenticator>(std::move(*verifier));
  } else {
    authenticator = std::make_unique<auth::Authenticator>();
  }
  // Limits: token buckets, and admission control for work that queues.
  const size_t tracked = static_cast<size_t>(cfg->limits.max_tracked_keys);
  auto bucket = [tracked](const config::Config::Limit& l) {
    return std::make_unique<limits::RateLimiter>(limits::RateLimit{l.rate, l.burst}, tracked);
  };
  auto http_per_user = bucket(cfg->limits.http_per_user);
  auto http_per_address = bucket(cfg->limits.http_per_address);
  auto mqtt_per_user = bucket(cfg->limits.mqtt_publish_per_user);
  auto mqtt_per_address = bucket(cfg->limits.mqtt_publish_per_address);
  auto connections_per_address = bucket(cfg->limits.connections_per_address);
  limits::ConcurrencyOptions admission_opt;
  admission_opt.enabled = cfg->limits.admission.enabled;
  admission_opt.target = std::chrono::milliseconds(cfg->limits.admission.target_ms);
  admission_opt.interval = std::chrono::milliseconds(cfg->limits.admission.interval_ms);
  admission_opt.min_limit = cfg->limits.admission.min_limit;
  admission_opt.max_limit = cfg->limits.admission.max_limit;
  admission_opt.initial_limit = cfg->limits.admission.initial_limit;
  limits::ConcurrencyLimiter admission(admission_opt);

  // Nodes sharing a database must run the same schema set: its fingerprint
  // (FNV-1a of every schema's canonical JSON, by name) is compared at start.
  std::string fingerprint;
  {
    uint64_t h = 1469598103934665603ULL;
    for (const auto& [name, schema] : *schemas) {
      for (char ch : name + "\n" + json::serialize(schema->ToJson()) + "\n") {
        h ^= static_cast<unsigned char>(ch);
        h *= 1099511628211ULL;
      }
    }
    char hex[17];
    std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
    // Not the persona version: a rolling upgrade runs two at once (an
    // incompatible one is refused by the database's schema version).
    fingerprint = "schemas " + std::string(hex) + " (" + std::to_string(schemas->size()) + ")";
  }
  // Zero-downtime upgrade (SPEC §13): held from here until this process
  // serves, so two cannot start (or take over) in one data directory at once.
  auto start_lock = StartLock::Acquire(cfg->data_dir);
  if (!start_lock.ok()) {
    LogError("cannot start", {{"error", std::string(start_lock.status().message())}});
    std::cerr << "persona: " << start_lock.status().message() << "\n";
    return 2;
  }
  // A server already running here hands its listening sockets over, then
  // drains and closes the store; this process opens it after. Or this is a
  // server that took its own listeners back from a new process that failed.
  const std::optional<Listeners> taken_back = InheritedListeners();
  if (taken_back) LogInfo("serving again on the listeners taken back");
  auto inherited = taken_back ? StatusOr<std::optional<Listeners>>(taken_back)
                              : TakeOver(cfg->data_dir, cfg->shutdown_grace_ms + 10000);
  if (!inherited.ok()) {
    LogError("cannot take over", {{"error", std::string(inherited.status().message())}});
    std::cerr << "persona: " << inherited.status().message() << "\n";
    return 2;
  }
  Listeners adopted = inherited->value_or(Listeners{});
  // Descriptors the process does not end up using are closed on return
  // (after the store: a process that fails to start closes its connection
  // to the one it took over from last, which then takes the listeners back).
  struct CloseUnused {
    Listeners* l;
    ~CloseUnused() {
      for (int fd : {l->http, l->mqtt, l->confirm})
        if (fd >= 0) ::close(fd);
    }
  } close_unused{&adopted};
  const auto store_t0 = std::chrono::steady_clock::now();
  auto store = OpenStore(*cfg, false, fingerprint);
  if (store.ok())
    LogInfo("store open", {{"backend", cfg->store.backend},
                           {"ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::steady_clock::now() - store_t0)
                                      .count()}});
  if (!store.ok()) {
    LogError("cannot open store", {{"error", std::string(store.status().message())}});
    std::cerr << "persona: " << store.status().message() << "\n";
    return 2;
  }

  const int threads =
      cfg->threads > 0 ? cfg->threads : std::max(1u, std::thread::hardware_concurrency());
  asio::io_context ioc(threads);
  auto work = asio::make_work_guard(ioc);

  // The bus: in-process, or Redis between nodes that share a PostgreSQL store.
  bus::LocalBus local_bus;
  std::unique_ptr<bus::RedisBus> redis_bus;
  if (cfg->bus.backend == "redis") {
    bus::RedisBusOptions bopt;
    bopt.url = cfg->bus.url;
    auto made = bus::RedisBus::Create(bopt);
    if (!made.ok()) {
      std::cerr << "persona: invalid configuration: " << made.status().message() << "\n";
      return 2;
    }
    redis_bus = std::move(*made);
  }
  bus::Bus& bus = redis_bus ? static_cast<bus::Bus&>(*redis_bus) : local_bus;
  // AI: the configured providers in order, the built-in rules last.
  std::string rules_name = "offline";
  for (const auto& p : cfg->ai.providers)
    if (p.kind == "builtin") {
      rules_name = p.name;
      break;
    }
  auto rules = std::make_shared<ai::BuiltinProvider>(rules_name);
  Scheduler scheduler;
  std::unique_ptr<net::HttpClient> http_client;
  // Nodes sharing a store spend one budget: the store keeps the ledger.
  ai::llm::SharedLedger shared_ledger;
  if ((*store)->Shared()) {
    store::EventStore* s = store->get();
    shared_ledger.reserve = [s](const std::string& user, const std::string& hold, double amount,
                                double limit) {
      return s->ReserveBudget(user, hold, amount, limit);
    };
    shared_ledger.settle = [s](const std::string& hold, double actual) {
      return s->SettleBudget(hold, actual);
    };
    shared_ledger.spent = [s](const std::string& user) -> StatusOr<double> {
      auto u = s->UserUsage(user);
      if (!u.ok()) return u.status();
      return u->cost_usd;
    };
  }
  ai::llm::BudgetLedger budget(
      cfg->ai.budget_usd_per_user,
      [&store](const std::string& user) -> StatusOr<double> {
        auto u = (*store)->UserUsage(user);
        if (!u.ok()) return u.status();
        return u->cost_usd;
      },
      std::move(shared_ledger));
  std::vector<ai::llm::ChainEntry> chain_entries;
  auto model_options = [](const config::AiProviderConfig& p, ai::llm::ModelOptions* o) {
    o->name = p.name;
    o->model = p.model;
    o->max_tokens = p.max_tokens;
    o->temperature = p.temperature;
    o->price_in_per_mtok = p.price_in_per_mtok;
    o->price_out_per_mtok = p.price_out_per_mtok;
  };
  for (const auto& p : cfg->ai.providers) {
    if (p.kind == "builtin") break;  // always answers: nothing after it is reached
    if (!http_client) http_client = std::make_unique<net::HttpClient>();
    ai::llm::ChainEntry e;
    e.timeout_ms = p.timeout_ms;
    e.max_retries = p.max_retries;
    e.tier = p.tier == "cheap" ? ai::Tier::kCheap : ai::Tier::kPrimary;
    if (p.kind == "openai") {
      ai::llm::OpenAiOptions o;
      model_options(p, &o);
      o.base_url = p.base_url;
      if (!p.api_key_env.empty()) {
        const char* key = std::getenv(p.api_key_env.c_str());
        if (key == nullptr || *key == '\0') {
          LogWarn("AI provider key variable is not set; calling without a key",
                  {{"provider", p.name}, {"api_key_env", p.api_key_env}});
        } else {
          o.api_key = key;
        }
      }
      e.provider =
          std::make_shared<ai::llm::OpenAiProvider>(std::move(o), http_client.get(), rules);
    } else if (p.kind == "bedrock") {
      ai::llm::BedrockOptions o;
      model_options(p, &o);
      o.region = p.region;
      o.endpoint_url = p.endpoint_url;
      auto env = [](const char* name) {
        const char* v = std::getenv(name);
        return std::string(v ? v : "");
      };
      auto pick = [](const std::string& configured, std::string from_env) {
        return configured.empty() ? from_env : configured;
      };
      o.credentials = {pick(p.aws_access_key_id, env("AWS_ACCESS_KEY_ID")),
                       pick(p.aws_secret_access_key, env("AWS_SECRET_ACCESS_KEY")),
                       pick(p.aws_session_token, env("AWS_SESSION_TOKEN"))};
      if (o.credentials.access_key_id.empty() || o.credentials.secret_access_key.empty())
        LogWarn(
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set; Bedrock calls will be "
            "refused and answered by the next provider",
            {{"provider", p.name}});
      e.provider =
          std::make_shared<ai::llm::BedrockProvider>(std::move(o), http_client.get(), rules);
    }
    chain_entries.push_back(std::move(e));
  }
  ai::llm::ChainOptions chain_opt;
  chain_opt.deadline_ms = cfg->ai.deadline_ms;
  chain_opt.breaker_failures = cfg->ai.breaker_failures;
  chain_opt.breaker_cooldown_ms = cfg->ai.breaker_cooldown_ms;
  chain_opt.downgrade_at = cfg->ai.router.downgrade_at;
  const bool rules_only = chain_entries.empty();
  ai::llm::ProviderChain chain(std::move(chain_entries), rules, chain_opt, &scheduler, &budget);
  ai::Provider* provider = rules_only ? static_cast<ai::Provider*>(rules.get()) : &chain;
  // Tracing: spans go to the OTLP endpoint from a background thread.
  std::unique_ptr<tracing::Tracer> tracer;
  struct TracerGuard {
    ~TracerGuard() { tracing::SetGlobal(nullptr); }
  } tracer_guard;
  if (!cfg->tracing.otlp_endpoint.empty()) {
    tracer = std::make_unique<tracing::Tracer>(
        tracing::TracerOptions{.endpoint = cfg->tracing.otlp_endpoint,
                               .service_name = cfg->tracing.service_name,
                               .sample_ratio = cfg->tracing.sample_ratio});
    tracing::SetGlobal(tracer.get());
    LogInfo("tracing on", {{"otlp_endpoint", cfg->tracing.otlp_endpoint}});
  }
  // Feature flags (flags.file) may switch the gate, the cache and the model
  // per user: then the gate and the cache are built even when their config
  // default is off, and each step's switches come from the flags.
  std::unique_ptr<flags::FlagFile> flag_file;
  if (!cfg->flags.file.empty()) {
    auto opened = flags::FlagFile::Open(cfg->flags.file);
    if (!opened.ok()) {
      std::cerr << "persona: invalid configuration: " << opened.status().message() << "\n";
      return 2;
    }
    flag_file = std::move(*opened);
    LogInfo("feature flags on", {{"file", cfg->flags.file},
                                 {"flags", static_cast<int64_t>(flag_file->Current()->size())}});
  }
  const bool build_gate = cfg->ai.gate.enabled || flag_file;
  const bool build_cache = cfg->ai.cache.enabled || flag_file;
  // The intent gate's model: for the gate, and for the semantic cache's
  // sentence vectors.
  std::unique_ptr<ai::IntentGate> gate;
  const bool semantic_cache = build_cache && cfg->ai.cache.semantic;
  if (build_gate || semantic_cache) {
    const std::string model = cfg->ai.gate.model.empty() ? DefaultGateModel() : cfg->ai.gate.model;
    auto loaded = ai::IntentGate::Load(model, cfg->ai.gate.threshold);
    if (!loaded.ok()) {
      std::cerr << "persona: invalid configuration: " << loaded.status().message()
                << (cfg->ai.gate.enabled ? "" : " (needed by ai.cache.semantic or flags.file)")
                << "\n";
      return 2;
    }
    gate = std::move(*loaded);
  }
  // The intent gate answers what persona can answer alone, before any model.
  std::unique_ptr<ai::GateProvider> gated;
  if (build_gate) {
    gated = std::make_unique<ai::GateProvider>(gate.get(), provider, rules.get());
    provider = gated.get();
    if (cfg->ai.gate.enabled) LogInfo("intent gate on", {{"threshold", gate->threshold()}});
  }
  // The response cache comes first (SPEC §12: the cache, the gate, then the chain).
  std::unique_ptr<ai::ResponseCache> response_cache;
  std::unique_ptr<ai::SemanticCache> semantic;
  std::unique_ptr<ai::CachingProvider> cached;
  if (build_cache) {
    response_cache = std::make_unique<ai::ResponseCache>(
        ai::ResponseCacheOptions{.ttl_s = cfg->ai.cache.ttl_s,
                                 .max_entries = static_cast<size_t>(cfg->ai.cache.max_entries)});
    if (semantic_cache) {
      semantic = std::make_unique<ai::SemanticCache>(
          gate.get(),
          ai::SemanticCacheOptions{.threshold = cfg->ai.cache.semantic_threshold,
                                   .ttl_s = cfg->ai.cache.ttl_s,
                                   .max_entries = static_cast<size_t>(cfg->ai.cache.max_entries)});
    }
    cached = std::make_unique<ai::CachingProvider>(response_cache.get(), semantic.get(), provider);
    provider = cached.get();
  }
  // Each step's switches: the flags for its user, else the configuration.
  std::unique_ptr<ai::SwitchingProvider> switched;
  if (flag_file) {
    auto decide = [ff = flag_file.get(), gate_on = cfg->ai.gate.enabled,
                   cache_on = cfg->ai.cache.enabled](ai::AiRequest& r) {
      const std::shared_ptr<const flags::FlagSet> set = ff->Current();
      r.use_gate = gate_on;
      r.use_cache = cache_on;
      ai::SwitchingProvider::Variants variants;
      for (const char* key : {"persona.gate", "persona.cache", "persona.model"}) {
        if (!set->Has(key)) continue;
        const flags::Resolution res = set->Evaluate(key, r.user_id);
        flags::CountEvaluation(res);
        if (!res.error_code.empty()) continue;
        variants.emplace_back(key, res.variant);
        if (std::string_view(key) == "persona.model") {
          if (res.value.is_string()) r.prefer_provider = std::string(res.value.get_string());
        } else if (res.value.is_bool()) {
          (std::string_view(key) == "persona.gate" ? r.use_gate : r.use_cache) =
              res.value.get_bool();
        }
      }
      return variants;
    };
    switched = std::make_unique<ai::SwitchingProvider>(std::move(decide), provider);
    provider = switched.get();
  }
  engine::EngineOptions eopt;
  eopt.snapshot_every = static_cast<size_t>(cfg->store.snapshot_every);
  eopt.max_cached_sessions = static_cast<size_t>(cfg->engine.max_cached_sessions);
  eopt.max_pending_per_session = static_cast<size_t>(cfg->engine.max_pending_per_session);
  eopt.history_window = static_cast<size_t>(cfg->engine.history_window);
  eopt.max_intake = static_cast<size_t>(cfg->async.max_pending);
  if (response_cache)
    eopt.on_session_erased = [c = response_cache.get(),
                              sc = semantic.get()](const std::string& user) {
      c->EraseUser(user);
      if (sc) sc->EraseUser(user);
    };
  std::unique_ptr<cache::ProfileCache> cache;
  if (cfg->cache.backend != "none") {
    cache::CacheOptions copt;
    copt.backend = cfg->cache.backend;
    copt.url = cfg->cache.url;
    copt.ttl_s = cfg->cache.ttl_s;
    copt.max_entries = static_cast<size_t>(cfg->cache.max_entries);
    copt.timeout_ms = cfg->cache.timeout_ms;
    auto made = cache::MakeProfileCache(copt);
    if (!made.ok()) {
      std::cerr << "persona: invalid configuration: cache: " << made.status().message() << "\n";
      return 2;
    }
    cache = std::move(*made);
  }
  engine::Engine engine(
      eopt, store->get(), &bus, provider, *schemas,
      [&ioc](std::function<void()> fn) { asio::post(ioc, std::move(fn)); }, cache.get());
  engine::BusBackfill backfill(&engine, store->get());
  if (redis_bus) redis_bus->SetBackfill(&backfill);
  // The bus reads through the engine and the store: it stops before them.
  struct StopBus {
    bus::RedisBus* bus;
    ~StopBus() {
      if (bus) bus->Stop();
    }
  } stop_bus{redis_bus.get()};
  // Async writes: the applier resumes what a previous run accepted before
  // anything new is accepted.
  engine::ApplierOptions aopt;
  aopt.batch_size = static_cast<size_t>(cfg->async.batch_size);
  aopt.max_delay_ms = cfg->async.max_delay_ms;
  aopt.max_pending = static_cast<size_t>(cfg->async.max_pending);
  engine::Applier applier(aopt, &engine, store->get());
  if (Status st = applier.Recover(); !st.ok()) {
    LogError("cannot read the async intake", {{"error", std::string(st.message())}});
    std::cerr << "persona: async intake: " << st.message() << "\n";
    return 2;
  }
  engine.AttachApplier(&applier, applier.Background());
  if (admission.enabled()) engine.AttachAdmission(&admission);
  api::HttpApiOptions api_opt;
  api_opt.async_default = cfg->write_mode == "async";
  api_opt.auth = authenticator.get();
  if (flag_file) api_opt.flags = [ff = flag_file.get()] { return ff->Current(); };
  if (http_per_user->enabled()) api_opt.per_user = http_per_user.get();
  if (http_per_address->enabled()) api_opt.per_address = http_per_address.get();
  // Profile reads may wait on Redis or PostgreSQL: not on the I/O threads.
  if (cfg->cache.backend == "redis" || cfg->store.backend == "postgres")
    api_opt.blocking_read_threads = 4;
  api::HttpApi api(&engine, api_opt);

  net::ServerOptions sopt;
  sopt.max_body_bytes = cfg->http.max_body_bytes;
  sopt.max_header_bytes = cfg->http.max_header_bytes;
  sopt.request_timeout_ms = cfg->http.request_timeout_ms;
  sopt.idle_timeout_ms = cfg->http.idle_timeout_ms;
  sopt.max_connections = cfg->http.max_connections;
  net::HttpServer server(ioc, sopt, &api);
  // TLS (SPEC §10): per listener, certificates reloaded on SIGHUP.
  auto tls_for = [](const config::TlsConfig& t,
                    const char* listener) -> StatusOr<std::shared_ptr<net::TlsContext>> {
    if (t.cert_file.empty()) return std::shared_ptr<net::TlsContext>();
    auto ctx =
        net::TlsContext::Create({t.cert_file, t.key_file, t.client_ca_file, t.require_client_cert});
    if (!ctx.ok())
      return absl::InvalidArgumentError(std::string(listener) + ".tls." +
                                        std::string(ctx.status().message()));
    return ctx;
  };
  auto http_tls = tls_for(cfg->http.tls, "http");
  auto mqtt_tls = http_tls.ok() ? tls_for(cfg->mqtt.tls, "mqtt") : http_tls;
  if (!http_tls.ok() || !mqtt_tls.ok()) {
    std::cerr << "persona: invalid configuration: "
              << (!http_tls.ok() ? http_tls.status() : mqtt_tls.status()).message() << "\n";
    return 2;
  }
  if (*http_tls) server.SetTls(*http_tls);
  // Real-time sync: the MQTT broker over TCP and over WebSocket at /mqtt.
  realtime::BrokerOptions bopt;
  bopt.max_queued_messages = static_cast<size_t>(cfg->mqtt.max_queued_messages);
  bopt.max_inflight = static_cast<size_t>(cfg->mqtt.max_inflight);
  bopt.max_sessions = static_cast<size_t>(cfg->mqtt.max_sessions);
  bopt.max_retained = static_cast<size_t>(cfg->mqtt.max_retained);
  bopt.session_expiry_ms = static_cast<int64_t>(cfg->mqtt.session_expiry_s) * 1000;
  realtime::Broker broker(bopt);
  realtime::RegisterMqttMetrics();
  // Persistent MQTT sessions are written to the store, so they follow a
  // device to whichever node it reconnects to (several nodes on PostgreSQL)
  // and survive a restart or an upgrade (RocksDB too).
  std::unique_ptr<realtime::SessionMirror> session_mirror;
  {
    session_mirror = std::make_unique<realtime::SessionMirror>(&broker, store->get());
    broker.SetMirror(session_mirror.get());
  }
  struct Unmirror {  // connections that outlive the mirror find no sink
    realtime::Broker* broker;
    ~Unmirror() { broker->SetMirror(nullptr); }
  } unmirror{&broker};
  realtime::BridgeOptions bridge_opt;
  if (session_mirror) bridge_opt.sessions = store->get();
  bridge_opt.auth = authenticator.get();
  bridge_opt.open_topics =
      cfg->mqtt.open_topics == "auto" ? !cfg->auth.enabled : cfg->mqtt.open_topics == "true";
  if (mqtt_per_user->enabled()) bridge_opt.publish_per_user = mqtt_per_user.get();
  if (mqtt_per_address->enabled()) bridge_opt.publish_per_address = mqtt_per_address.get();
  realtime::PersonaBridge bridge(&engine, &broker, bridge_opt);
  realtime::MqttOptions mopt;
  mopt.max_packet_bytes = static_cast<size_t>(cfg->mqtt.max_packet_bytes);
  mopt.max_connections = cfg->mqtt.max_connections;
  auto serve_mqtt = [&broker, &bridge, mopt](std::shared_ptr<net::Conn> conn) {
    realtime::ServeMqtt(std::move(conn), &broker, &bridge, mopt);
  };
  // MQTT over WebSocket: an ?access_token on the upgrade (RFC 6750 §2.3) is
  // checked here, so a bad one gets 401 instead of a WebSocket; a good one
  // stands in for the CONNECT password.
  auto ws_gate = [&authenticator](const net::Request& req,
                                  std::string* credential) -> std::optional<net::Response> {
    if (!authenticator->enabled()) return std::nullopt;
    const std::string_view target = req.target();
    const size_t q = target.find('?');
    if (q == std::string_view::npos) return std::nullopt;
    std::string token = net::QueryParameter(target.substr(q + 1), "access_token").value_or("");
    if (token.empty()) return std::nullopt;
    if (auto caller = authenticator->FromToken(token); !caller.ok()) {
      net::Response res(net::http::status::unauthorized, req.version());
      res.set(net::http::field::content_type, "application/problem+json");
      res.set(net::http::field::www_authenticate,
              "Bearer realm=\"persona\", error=\"invalid_token\"");
      res.body() = R"({"type":"/problems/unauthorized","title":"Unauthorized","status":401,)"
                   R"("detail":"invalid access_token"})";
      return res;
    }
    *credential = std::move(token);
    return std::nullopt;
  };
  if (!cfg->mqtt.websocket_path.empty())
    server.SetWebSocketRoute(cfg->mqtt.websocket_path, "mqtt", serve_mqtt, ws_gate);
  net::TcpServer mqtt_server(ioc, cfg->mqtt.max_connections, serve_mqtt);
  if (*mqtt_tls) mqtt_server.SetTls(*mqtt_tls);
  // New connections per client address, HTTP and MQTT together.
  if (connections_per_address->enabled()) {
    auto admit = [limiter = connections_per_address.get()](std::string_view address) {
      return limiter->Take(address) == 0;
    };
    const std::string body =
        R"({"type":"/problems/too-many-requests","title":"Too Many Requests","status":429,)"
        R"("detail":"too many connections from this address"})";
    server.SetConnectionFilter(
        admit,
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/problem+json\r\n"
        "Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body);
    // CONNACK with return code 3, server unavailable (MQTT 3.1.1 §3.2.2.3).
    mqtt_server.SetConnectionFilter(admit, std::string("\x20\x02\x00\x03", 4));
  }
  // An inherited listener is used when the configuration asks for its port
  // (or any port); otherwise it is closed and the configured one opened.
  auto inherit = [](int* fd, const std::string& listen) -> int {
    if (*fd < 0) return -1;
    auto hp = net::SplitHostPort(listen);
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    uint16_t port = 0;
    if (::getsockname(*fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
      port = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                              : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (listen == "off" || !hp.ok() || (hp->second != 0 && hp->second != port)) {
      LogWarn("not using an inherited listener: the configured address differs",
              {{"listen", listen}, {"inherited_port", static_cast<int64_t>(port)}});
      ::close(*fd);  // its accept queue must not outlive the old process
      *fd = -1;
      return -1;
    }
    const int out = *fd;
    *fd = -1;  // owned by the server from here
    return out;
  };
  std::string mqtt_address = "off";
  if (const int fd = inherit(&adopted.mqtt, cfg->mqtt.listen);
      fd >= 0 || cfg->mqtt.listen != "off") {
    auto mqtt_port = fd >= 0 ? mqtt_server.Adopt(fd) : mqtt_server.Listen(cfg->mqtt.listen);
    if (!mqtt_port.ok()) {
      LogError("cannot listen", {{"error", std::string(mqtt_port.status().message())}});
      std::cerr << "persona: mqtt: " << mqtt_port.status().message() << "\n";
      return 2;
    }
    mqtt_address = net::SplitHostPort(cfg->mqtt.listen)->first + ":" + std::to_string(*mqtt_port);
  }

  const int http_fd = inherit(&adopted.http, cfg->http.listen);
  auto port = http_fd >= 0 ? server.Adopt(http_fd) : server.Listen(cfg->http.listen);
  if (!port.ok()) {
    LogError("cannot listen", {{"error", std::string(port.status().message())}});
    std::cerr << "persona: " << port.status().message() << "\n";
    return 2;
  }

  // SIGHUP: reload the JWT keys (the configuration is read again; only
  // auth.jwt takes effect without a restart). A bad reload keeps the old keys.
  asio::signal_set hup(ioc, SIGHUP);
  std::function<void(const boost::system::error_code&, int)> on_hup = [&](const boost::system::
                                                                              error_code& ec,
                                                                          int) {
    if (ec) return;
    auto fresh = LoadConfig(flags);
    StatusOr<auth::JwtOptions> jwt =
        fresh.ok() ? JwtOptionsFrom(*fresh) : StatusOr<auth::JwtOptions>(fresh.status());
    Status st = jwt.ok() ? authenticator->Reload(*jwt) : jwt.status();
    if (st.ok()) {
      LogInfo("reloaded", {{"what", "auth.jwt"}});
    } else {
      LogWarn("reload failed; keeping the previous keys", {{"error", std::string(st.message())}});
    }
    // Certificates: the same files, read again (new paths need a restart).
    const std::pair<const char*, net::TlsContext*> contexts[] = {{"http.tls", http_tls->get()},
                                                                 {"mqtt.tls", mqtt_tls->get()}};
    for (const auto& [name, tls] : contexts) {
      if (tls == nullptr) continue;
      if (Status ts = tls->Reload(); ts.ok()) {
        LogInfo("reloaded", {{"what", name}});
      } else {
        LogWarn("reload failed; keeping the previous certificate",
                {{"what", name}, {"error", std::string(ts.message())}});
      }
    }
    hup.async_wait(on_hup);
  };
  hup.async_wait(on_hup);

  // Stops serving: stop accepting, finish in-flight steps, flush, close the
  // store. For an upgrade the connections are closed too (idle ones at once,
  // the others after their response) and MQTT clients are disconnected, so
  // they reconnect to the process that took the listeners over.
  std::atomic<bool> stopped{false};
  auto stop_serving = [&](bool upgrade) {
    if (stopped.exchange(true)) return;
    api.SetDraining();
    server.StopAccepting();
    mqtt_server.StopAccepting();
    if (upgrade) {
      server.CloseConnections();
      broker.DisconnectAll();
      if (!server.WaitForRequests(cfg->shutdown_grace_ms))
        LogWarn("upgrade: requests still unanswered after the grace period");
    }
    applier.Stop();  // after the batch in flight; the rest stays in the intake
    const bool drained = engine.Drain(cfg->shutdown_grace_ms);
    // Let the last responses reach their sockets.
    if (upgrade) {
      server.WaitForRequests(cfg->shutdown_grace_ms);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (redis_bus) redis_bus->Stop();
    if (session_mirror) session_mirror->Stop();  // the last cursors, before the store closes
    (*store)->Close();
    LogInfo("stopped", {{"drained", drained}, {"upgrade", upgrade}});
  };
  auto end_process = [&] {
    boost::system::error_code ignored;
    hup.cancel(ignored);
    work.reset();
    ioc.stop();
  };
  // Answers a takeover by a new process on the same data directory.
  std::unique_ptr<Handover> handover;
  {
    auto h = Handover::Start(
        cfg->data_dir, Listeners{server.listener_fd(), mqtt_server.listener_fd()},
        [&] { stop_serving(true); }, [&] { asio::post(ioc, end_process); });
    if (h.ok()) {
      handover = std::move(*h);
    } else {
      LogWarn("no zero-downtime upgrade", {{"reason", std::string(h.status().message())}});
    }
  }
  start_lock->reset();  // serving: the next process may take over
  auto hp = net::SplitHostPort(cfg->http.listen);
  LogInfo("listening", {{"http", hp->first + ":" + std::to_string(*port)},
                        {"tls", std::string(*http_tls ? "http " : "") + (*mqtt_tls ? "mqtt" : "")},
                        {"mqtt", mqtt_address},
                        {"mqtt_websocket", cfg->mqtt.websocket_path},
                        {"data_dir", cfg->data_dir},
                        {"write_mode", cfg->write_mode},
                        {"cache", cfg->cache.backend},
                        {"auth", cfg->auth.enabled},
                        {"threads", threads},
                        {"upgraded", http_fd >= 0 && !taken_back},
                        {"taken_back", taken_back.has_value()},
                        {"version", PERSONA_VERSION}});
  ConfirmServing(&adopted);  // the process this one took over from may exit now

  // Graceful shutdown: stop accepting, finish in-flight steps, flush, exit 0.
  std::thread stopper;
  asio::signal_set signals(ioc, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (handover && handover->taking_over()) {
      LogInfo("ignoring a signal: a takeover is under way", {{"signal", sig}});
      return;
    }
    LogInfo("shutting down", {{"signal", sig}});
    stopper = std::thread([&] {
      handover.reset();  // no takeover from here on
      stop_serving(false);
      end_process();
    });
  });

  applier.Start();
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  if (stopper.joinable()) stopper.join();
  return 0;
}

}  // namespace persona::app
