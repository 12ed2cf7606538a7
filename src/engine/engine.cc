#include "engine/engine.h"

#include <chrono>
#include <cmath>
#include <deque>
#include <random>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/ids.h"
#include "core/logging.h"
#include "core/sync_point.h"
#include "engine/applier.h"

namespace persona::engine {

struct Engine::Actor {
  std::mutex mu;
  std::optional<SessionState> state ABSL_GUARDED_BY(mu);  // nullopt until loaded
  bool deleted ABSL_GUARDED_BY(mu) = false;               // erased, or never existed
  bool evicted ABSL_GUARDED_BY(mu) = false;               // removed from the map; re-fetch
  bool running ABSL_GUARDED_BY(mu) = false;
  struct Queued {
    std::function<void()> task;
    bool background = false;  // runs on the applier's executor
  };
  std::deque<Queued> queue ABSL_GUARDED_BY(mu);
  std::string id;
  // Time the running operation spent waiting on something remote (the
  // model): not queueing, so admission control does not count it.
  int64_t external_ns ABSL_GUARDED_BY(mu) = 0;
};

namespace {

std::string Greeting(const model::Schema& schema, const std::string& lang, std::string* asks) {
  for (const auto& f : schema.fields()) {
    auto it = f.questions.find(lang);
    if (it == f.questions.end()) it = f.questions.find("en");
    if (it != f.questions.end() && !it->second.empty()) {
      *asks = f.name;
      return it->second.front();
    }
  }
  *asks = schema.fields().empty() ? "" : schema.fields().front().name;
  return "Hi! Tell me a little about yourself.";
}

// A request id names its session: "{session_id}.{22-character id}", so the
// status lives (and is erased) with the session.
constexpr size_t kRequestSuffix = 23;

bool SplitRequestId(std::string_view rid, std::string* sid) {
  if (rid.size() <= kRequestSuffix || rid[rid.size() - kRequestSuffix] != '.') return false;
  *sid = std::string(rid.substr(0, rid.size() - kRequestSuffix));
  return IsValidId(*sid) && IsValidId(rid.substr(rid.size() - kRequestSuffix + 1));
}

std::string RequestLocation(std::string_view rid) { return "/v1/requests/" + std::string(rid); }

json::object RequestRecord(const Applying& ap, const std::string& sid, std::string_view status) {
  json::object o;
  o["request_id"] = ap.request_id;
  o["session_id"] = sid;
  o["status"] = status;
  o["accepted_at"] = FormatRfc3339Millis(ap.accepted_at_ms);
  return o;
}

// The final status of a request that was applied: the reply it would have had.
json::object AppliedRecord(const Applying& ap, const std::string& sid, const Reply& reply) {
  json::object rec = RequestRecord(ap, sid, "applied");
  rec["applied_at"] = FormatRfc3339Millis(NowMillis());
  rec["http_status"] = reply.status;
  rec["result"] = reply.body;
  return rec;
}

}  // namespace

Engine::Engine(EngineOptions options, store::EventStore* store, bus::Bus* bus,
               ai::Provider* provider,
               std::map<std::string, std::shared_ptr<const model::Schema>> schemas,
               Executor executor, cache::ProfileCache* cache)
    : options_(std::move(options)),
      store_(store),
      shared_(store->Shared()),
      retry_timer_(shared_ ? std::make_unique<Scheduler>() : nullptr),
      bus_(bus),
      provider_(provider),
      schemas_(std::move(schemas)),
      executor_(std::move(executor)),
      cache_(cache) {
  // Stamps issued through different nodes of one store never tie.
  clock_.SetNode(store->NodeNumber());
  auto& reg = metrics::Default();
  {
    std::vector<double> fine;  // 0.1 ms steps to 5 ms, then coarser
    for (int i = 1; i <= 50; ++i) fine.push_back(i * 1e-4);
    for (double b : {0.0075, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0}) fine.push_back(b);
    own_seconds_ = reg.GetHistogram(
        "persona_ai_step_own_seconds",
        "Time a model-answered step spent in persona itself: the step without the provider call",
        "", fine);
  }
  step_seconds_ =
      reg.GetHistogram("persona_step_seconds", "Chat step latency from receipt to durable reply");
  steps_ = reg.GetCounter("persona_steps_total", "Chat steps completed");
  field_changes_ = reg.GetCounter("persona_profile_changes_total", "Profile fields set or cleared");
  inflight_gauge_ =
      reg.GetGauge("persona_operations_in_flight", "Session operations in flight now");
  inflight_peak_ =
      reg.GetGauge("persona_operations_in_flight_peak", "Peak of persona_operations_in_flight");
  cached_gauge_ = reg.GetGauge("persona_sessions_cached", "Sessions held in memory");
  ai_calls_ = reg.GetCounter("persona_ai_calls_total", "AI provider calls", "provider=\"all\"");
  for (int t = 0; t < 2; ++t) {
    const std::string tier = std::string("tier=\"") + ai::TierName(static_cast<ai::Tier>(t)) + "\"";
    ai_tokens_in_[t] =
        reg.GetCounter("persona_ai_tokens_total", "AI tokens", "direction=\"in\"," + tier);
    ai_tokens_out_[t] =
        reg.GetCounter("persona_ai_tokens_total", "AI tokens", "direction=\"out\"," + tier);
    ai_cost_microusd_[t] =
        reg.GetCounter("persona_ai_cost_microusd_total",
                       "AI spend in millionths of a US dollar (configured prices)", tier);
  }
  ai_llm_answers_ = reg.GetCounter("persona_ai_llm_answers_total", "Steps a model answered");
  ai_avoided_gate_ = reg.GetCounter("persona_ai_calls_avoided_total",
                                    "Steps answered without a model call", "by=\"gate\"");
  ai_avoided_cache_ = reg.GetCounter("persona_ai_calls_avoided_total",
                                     "Steps answered without a model call", "by=\"cache\"");
  const std::string backend =
      "backend=\"" + std::string(cache_ ? cache_->backend() : "none") + "\"";
  cache_hits_ =
      reg.GetCounter("persona_cache_hits_total", "Profile reads answered by the cache", backend);
  cache_misses_ = reg.GetCounter("persona_cache_misses_total",
                                 "Profile reads the cache could not answer", backend);
  accepted_ = reg.GetCounter("persona_intake_accepted_total",
                             "Async requests made durable in the intake and answered 202");
  admission_limit_ = reg.GetGauge("persona_admission_limit",
                                  "Operations allowed in flight now (adaptive, limits.admission)");
  admission_fastest_us_ =
      reg.GetGauge("persona_admission_fastest_microseconds",
                   "The fastest admitted operation of the last interval (the admission signal)");
  admission_shed_ = reg.GetCounter("persona_admission_shed_total",
                                   "Operations refused with 503 because the limit was reached");
  reloads_ = reg.GetCounter("persona_session_reloads_total",
                            "Sessions loaded again because another node had written them");
  conflict_retries_ =
      reg.GetCounter("persona_conflict_retries_total",
                     "Writes run again after another node appended to the session first");
}

Engine::~Engine() = default;

std::string Engine::EventsTopic(const std::string& session_id) {
  return "session/" + session_id + "/events";
}
std::string Engine::ProfileTopic(const std::string& session_id) {
  return "session/" + session_id + "/profile";
}

void Engine::BeginOp() {
  std::lock_guard<std::mutex> l(inflight_mu_);
  ++inflight_;
  inflight_gauge_->Set(inflight_);
  inflight_peak_->SetMax(inflight_);
}

void Engine::EndOp() {
  std::lock_guard<std::mutex> l(inflight_mu_);
  --inflight_;
  inflight_gauge_->Set(inflight_);
  if (inflight_ == 0) inflight_cv_.notify_all();
}

bool Engine::Drain(int timeout_ms) {
  draining_ = true;
  std::unique_lock<std::mutex> l(inflight_mu_);
  return inflight_cv_.wait_for(l, std::chrono::milliseconds(timeout_ms),
                               [&] { return inflight_ == 0; });
}

StatusOr<std::shared_ptr<const model::Schema>> Engine::SchemaFor(const std::string& name) const {
  auto it = schemas_.find(name);
  if (it == schemas_.end()) return absl::InvalidArgumentError("unknown schema '" + name + "'");
  return it->second;
}

std::shared_ptr<Engine::Actor> Engine::GetActor(const std::string& session_id, bool create) {
  Shard& shard = shards_[std::hash<std::string>()(session_id) % kShards];
  std::lock_guard<std::mutex> l(shard.mu);
  auto it = shard.actors.find(session_id);
  if (it != shard.actors.end()) return it->second;
  if (!create) return nullptr;
  // Bound memory: evict idle sessions from this shard when over capacity.
  // A few idle ones per insertion keep the total near the bound without
  // scanning the whole shard each time.
  if (cached_.load() >= options_.max_cached_sessions) {
    int evicted = 0, scanned = 0;
    for (auto e = shard.actors.begin(); e != shard.actors.end() && evicted < 4 && scanned < 64;
         ++scanned) {
      std::unique_lock<std::mutex> al(e->second->mu, std::try_to_lock);
      if (al.owns_lock() && !e->second->running && e->second->queue.empty()) {
        e->second->evicted = true;
        al.unlock();
        e = shard.actors.erase(e);
        cached_.fetch_sub(1);
        ++evicted;
      } else {
        ++e;
      }
    }
  }
  auto a = std::make_shared<Actor>();
  a->id = session_id;
  shard.actors.emplace(session_id, a);
  cached_gauge_->Set(static_cast<int64_t>(cached_.fetch_add(1) + 1));
  return a;
}

Status Engine::Authorize(const auth::Caller& caller, std::string_view session_id,
                         std::string_view owner) {
  if (caller.MayAccessSession(session_id, owner)) {
    if (!caller.system() && (!caller.authenticated() || caller.user_id() == owner))
      active_users_.Touch(std::string(owner));
    return absl::OkStatus();
  }
  return absl::NotFoundError("no such session");  // the same answer as a missing session
}

void Engine::UpdateAdmissionGauges() {
  // Written only when they change: a store on every operation would bounce
  // the gauges' cache lines between the I/O threads.
  const int64_t limit = admission_->limit();
  if (admission_limit_->value() != limit) admission_limit_->Set(limit);
  const int64_t fastest = admission_->last_fastest_ns() / 1000;
  if (admission_fastest_us_->value() != fastest) admission_fastest_us_->Set(fastest);
}

Status Engine::Admissible() const {
  if (admission_ == nullptr || admission_->inflight() < admission_->limit())
    return absl::OkStatus();
  admission_shed_->Inc();
  return WithRetryAfter(
      absl::UnavailableError("server overloaded: too much work in flight, try again"), 1);
}

void Engine::Submit(const std::string& session_id, bool create, Op op, ReplyCallback reject,
                    bool bounded, bool background) {
  // Admission: the applier's work was admitted when it was accepted.
  limits::ConcurrencyLimiter* admission = background ? nullptr : admission_;
  int64_t admitted_ns = 0;
  if (admission != nullptr) {
    const bool admitted = admission->TryAcquire();
    UpdateAdmissionGauges();
    if (!admitted) {
      admission_shed_->Inc();
      return reject(WithRetryAfter(
          absl::UnavailableError("server overloaded: too much work in flight, try again"), 1));
    }
    admitted_ns = admission->NowNs();
  }
  for (;;) {
    std::shared_ptr<Actor> a = GetActor(session_id, true);
    std::function<void()> run;
    bool full = false;
    {
      std::lock_guard<std::mutex> l(a->mu);
      if (a->evicted) continue;  // lost a race with eviction: fetch the new actor
      full = bounded && a->queue.size() >= options_.max_pending_per_session;
      if (!full) {
        BeginOp();
        auto task = [this, a, op = std::move(op), admission, admitted_ns]() mutable {
          auto release = [this, a, admission, admitted_ns] {
            Actor::Queued next;
            int64_t external_ns = 0;
            {
              std::lock_guard<std::mutex> l(a->mu);
              external_ns = std::exchange(a->external_ns, 0);
              if (a->queue.empty()) {
                a->running = false;
              } else {
                next = std::move(a->queue.front());
                a->queue.pop_front();
              }
            }
            if (admission != nullptr) admission->Release(admitted_ns + external_ns);
            EndOp();
            if (next.task) ExecutorFor(next.background)(std::move(next.task));
          };
          op(a, std::move(release));
        };
        if (a->running) {
          a->queue.push_back(Actor::Queued{std::move(task), background});
          return;
        }
        a->running = true;
        run = std::move(task);
      }
    }
    if (full) {  // answered outside the lock: callbacks never run under it
      if (admission != nullptr) admission->Release(admitted_ns);
      reject(absl::ResourceExhaustedError("too many requests pending for this session"));
      return;
    }
    run();
    return;
  }
}

void Engine::Forget(Actor& a) {
  Shard& shard = shards_[std::hash<std::string>()(a.id) % kShards];
  std::lock_guard<std::mutex> l(shard.mu);
  auto it = shard.actors.find(a.id);
  if (it == shard.actors.end() || it->second.get() != &a) return;
  {
    std::lock_guard<std::mutex> al(a.mu);
    // Queued operations will find the session missing too; they hold the actor.
    a.evicted = true;
  }
  shard.actors.erase(it);
  cached_gauge_->Set(static_cast<int64_t>(cached_.fetch_sub(1) - 1));
}

Status Engine::EnsureLoaded(Actor& a, bool for_write) {
  uint64_t have = 0;
  {
    std::lock_guard<std::mutex> l(a.mu);
    if (a.deleted) return absl::NotFoundError("no such session");
    // A write needs no check: a stale state fails its commit's version
    // check, and the write is run again on the reloaded state.
    if (a.state && (!shared_ || for_write)) return absl::OkStatus();
    if (a.state) have = a.state->meta.version;
  }
  if (have > 0) {
    // On a store other processes write too, the state in memory may be
    // behind: one primary-key read says whether it is (read-your-writes
    // across nodes), and only then is the session loaded again.
    auto head = store_->Head(a.id);
    if (head.ok() && head->version == have) return absl::OkStatus();
    if (head.ok()) reloads_->Inc();
    if (!head.ok() && !absl::IsNotFound(head.status())) return head.status();
  }
  auto loaded = store_->Load(a.id);
  if (!loaded.ok()) {
    if (absl::IsNotFound(loaded.status())) {
      {
        std::lock_guard<std::mutex> l(a.mu);
        a.deleted = true;
      }
      Forget(a);
    }
    return loaded.status();
  }
  auto schema = SchemaFor(loaded->meta.schema);
  if (!schema.ok()) return absl::FailedPreconditionError("session uses an unknown schema");
  auto state = Project(*loaded, *schema, options_.history_window);
  if (!state.ok()) return state.status();
  // Stamps read from the log advance this node's clock: a later event here
  // orders after them even if this node's clock is behind.
  if (!loaded->tail.empty()) clock_.Observe(loaded->tail.back().hlc);
  PERSONA_SYNC_POINT("Engine::EnsureLoaded:BeforeAssign");
  std::lock_guard<std::mutex> l(a.mu);
  // A load that raced with a commit on this node must not put an older
  // state over the newer one.
  if (!a.state || state->meta.version >= a.state->meta.version) a.state = std::move(*state);
  return absl::OkStatus();
}

model::Event Engine::NewEvent(std::string_view type, std::string_view origin, json::object data) {
  model::Event e;
  e.id = NewId();
  e.type = std::string(type);
  e.hlc = clock_.Now();
  e.at_ms = HlcMillis(e.hlc);
  e.origin = std::string(origin);
  e.data = std::move(data);
  return e;
}

json::object Engine::ProfileBody(const SessionState& s) const {
  json::object o;
  o["profile"] = s.profile.ValuesJson(s.schema.get());
  o["meta"] = s.profile.MetaJson();
  o["version"] = s.meta.version;
  return o;
}

bool Engine::Prepare(Actor& a, const auth::Caller& caller, std::string_view route,
                     const std::string& key, ReplyCallback& done, std::string* idem,
                     SessionState* s, const std::optional<Applying>& applying) {
  if (auto st = EnsureLoaded(a, /*for_write=*/true); !st.ok()) {
    done(st);
    return false;
  }
  {
    Status allowed;
    {
      std::lock_guard<std::mutex> l(a.mu);
      allowed = a.state ? Authorize(caller, a.id, a.state->meta.user_id)
                        : absl::NotFoundError("no such session");
    }
    if (!allowed.ok()) {
      done(allowed);
      return false;
    }
  }
  if (!key.empty()) {
    *idem = IdempotencyScopeKey(route, key);
    if (AnsweredFromRecord(a.id, *idem, done, applying ? applying->request_id : "")) return false;
  }
  std::lock_guard<std::mutex> l(a.mu);
  *s = *a.state;
  return true;
}

bool Engine::AnsweredFromRecord(std::string_view scope, const std::string& key, ReplyCallback& done,
                                std::string_view own_request) {
  auto prior = store_->GetIdempotent(scope, key);
  if (!prior.ok()) {
    done(prior.status());
    return true;
  }
  if (!prior->has_value()) return false;
  auto rec = ParseJson(**prior);
  if (!rec.ok() || !rec->is_object()) {
    done(absl::DataLossError("corrupt idempotency record"));
    return true;
  }
  // The record an async accept wrote for the request now being applied.
  if (!own_request.empty() && GetString(rec->get_object(), "request_id") == own_request)
    return false;
  Reply r;
  r.status = static_cast<int>(GetInt(rec->get_object(), "status").value_or(200));
  if (const json::value* b = Find(rec->get_object(), "body"); b && b->is_object())
    r.body = b->get_object();
  r.replayed = true;
  done(std::move(r));
  return true;
}

std::string Engine::IdempotencyScopeKey(std::string_view route, std::string_view key) const {
  return std::string(route) + " " + std::string(key);
}

void Engine::Publish(const SessionState& s, const std::vector<EventBytes>& events) {
  const bool everywhere = bus_->Distributed();  // other nodes' subscribers count too
  const std::string topic = EventsTopic(s.meta.session_id);
  if (everywhere || bus_->SubscriberCount(topic) > 0) {
    for (const auto& [seq, bytes] : events) bus_->Publish(topic, bytes, seq);
  }
  const std::string ptopic = ProfileTopic(s.meta.session_id);
  if (everywhere || bus_->SubscriberCount(ptopic) > 0)
    bus_->Publish(ptopic, std::make_shared<const std::string>(json::serialize(ProfileBody(s))),
                  s.meta.version);
}

void Engine::Commit(std::shared_ptr<Actor> a, std::function<void()> release, SessionState next,
                    std::vector<model::Event> events, Reply reply, std::string idempotency_key,
                    ReplyCallback done, const std::optional<Applying>& applying,
                    std::optional<store::Usage> user_usage, tracing::SpanContext trace) {
  store::AppendRequest req;
  req.session_id = next.meta.session_id;
  req.expected_version = next.meta.version;
  for (auto& e : events) {
    e.seq = ++next.meta.version;
    next.Apply(e, options_.history_window);
    if (e.type == model::kMessageUser || e.type == model::kMessageAssistant)
      ++next.meta.message_count;
  }
  req.meta = next.meta;
  // Each event is serialised once: the store writes these bytes and the bus
  // publishes the same ones. The events themselves move into the request.
  std::vector<EventBytes> published;
  published.reserve(events.size());
  req.event_json.reserve(events.size());
  uint64_t field_changes = 0;
  for (const auto& e : events) {
    auto bytes = std::make_shared<const std::string>(model::EventToJsonString(e));
    req.event_json.push_back(bytes);
    published.emplace_back(e.seq, std::move(bytes));
    if (e.type == model::kFieldSet || e.type == model::kFieldCleared) ++field_changes;
  }
  const size_t appended = events.size();
  req.events = std::move(events);
  if (user_usage) req.user_usage = store::AppendRequest::UserUsage{next.meta.user_id, *user_usage};
  // Snapshot whenever the version crosses a multiple of snapshot_every, so a
  // load replays fewer than snapshot_every + (events per request) events.
  if (next.meta.version / options_.snapshot_every != req.expected_version / options_.snapshot_every)
    req.snapshot = store::Snapshot{next.meta.version, next.ToSnapshot()};
  // The reply carries the post-commit profile and version.
  reply.body["version"] = next.meta.version;
  if (reply.body.contains("profile"))
    reply.body["profile"] = next.profile.ValuesJson(next.schema.get());
  if (!idempotency_key.empty()) {
    json::object rec;
    rec["status"] = reply.status;
    rec["body"] = reply.body;
    req.idempotency = store::AppendRequest::Idempotency{
        req.expected_version == 0 ? "_" : req.session_id, idempotency_key, json::serialize(rec)};
  }
  if (applying) {  // the intake entry goes, and the request's result is kept, atomically
    req.intake_done = store::AppendRequest::IntakeDone{applying->intake_seq, applying->request_id};
    req.request_status = store::AppendRequest::RequestStatus{
        req.session_id, applying->request_id,
        json::serialize(AppliedRecord(*applying, req.session_id, reply))};
  }
  auto shared = std::make_shared<std::tuple<SessionState, std::vector<EventBytes>, Reply>>(
      std::move(next), std::move(published), std::move(reply));
  const bool applying_op = applying.has_value();
  // Tracing: the durable commit and the publish are children of the request.
  tracing::Tracer* tracer = trace.valid() && trace.sampled ? tracing::Global() : nullptr;
  const uint64_t commit_start = tracer ? tracing::NowUnixNs() : 0;
  store_->Append(std::move(req), [this, a, release = std::move(release), shared, applying_op,
                                  tracer, trace, commit_start, appended, field_changes,
                                  done = std::move(done)](Status st) mutable {
    if (tracer) {
      tracing::Span span = tracing::ChildSpan(trace, "store.commit", commit_start);
      span.attributes = {{"persona.session_id", a->id},
                         {"persona.events", static_cast<int64_t>(appended)}};
      span.error = !st.ok();
      tracer->Record(std::move(span));
    }
    // Continue on the executor: the commit thread only commits.
    ExecutorFor(applying_op)([this, a, release = std::move(release), shared, done = std::move(done),
                              tracer, trace, field_changes, st = std::move(st)]() mutable {
      if (!st.ok()) {
        if (IsVersionConflict(st)) {
          // Another writer (another node) got there first: the state here
          // is behind, and the next operation loads it again.
          std::lock_guard<std::mutex> l(a->mu);
          a->state.reset();
        }
        done(st);
        release();
        return;
      }
      auto& [state, events, reply] = *shared;
      if (field_changes > 0) field_changes_->Inc(field_changes);
      {
        std::lock_guard<std::mutex> l(a->mu);
        a->state = std::move(state);
      }
      if (cache_) cache_->Invalidate(a->id);
      // Only this operation writes the state until release(), so reading it
      // without the lock is safe here.
      const uint64_t publish_start = tracer ? tracing::NowUnixNs() : 0;
      Publish(*a->state, events);
      if (tracer) {
        tracing::Span span = tracing::ChildSpan(trace, "bus.publish", publish_start);
        span.attributes = {{"persona.session_id", a->id}};
        tracer->Record(std::move(span));
      }
      done(std::move(reply));
      release();
    });
  });
}

void Engine::CreateSession(CreateSessionRequest req, ReplyCallback done) {
  if (draining_) return done(absl::UnavailableError("server is shutting down"));
  if (!req.caller.MayCreateSessions())
    return done(absl::PermissionDeniedError("this token may not create sessions"));
  if (!req.caller.unrestricted() && req.user_id != req.caller.user_id())
    return done(absl::PermissionDeniedError("a session belongs to the token's user"));
  if (!req.caller.system()) active_users_.Touch(req.user_id);
  auto schema = SchemaFor(req.schema);
  if (!schema.ok()) return done(absl::InvalidArgumentError(schema.status().message()));
  std::string idem;
  if (!req.idempotency_key.empty()) {
    // Scoped to the user: another user's key must never replay this answer.
    idem = IdempotencyScopeKey("create", std::to_string(req.user_id.size()) + ":" + req.user_id +
                                             " " + req.idempotency_key);
    {
      std::lock_guard<std::mutex> l(create_mu_);
      if (!creating_keys_.insert(idem).second)
        return done(absl::AlreadyExistsError("a request with this Idempotency-Key is in progress"));
    }
    if (AnsweredFromRecord("_", idem, done)) {
      std::lock_guard<std::mutex> l(create_mu_);
      creating_keys_.erase(idem);
      return;
    }
    done = [this, idem, done = std::move(done)](StatusOr<Reply> r) {
      {
        std::lock_guard<std::mutex> l(create_mu_);
        creating_keys_.erase(idem);
      }
      done(std::move(r));
    };
  }
  const std::string sid = NewId();
  Submit(
      sid, true,
      [this, sid, req = std::move(req), schema = *schema, idem, done](
          std::shared_ptr<Actor> a, std::function<void()> release) mutable {
        SessionState s;
        s.schema = schema;
        s.meta.session_id = sid;
        s.meta.user_id = req.user_id;
        s.meta.schema = req.schema;
        s.meta.metadata = req.metadata;
        std::string asks;
        const std::string greeting = Greeting(*schema, "en", &asks);
        std::vector<model::Event> events;
        json::object created;
        created["user_id"] = req.user_id;
        created["schema"] = req.schema;
        created["metadata"] = req.metadata;
        events.push_back(NewEvent(model::kSessionCreated, "system", std::move(created)));
        s.meta.created_at_ms = events.back().at_ms;
        json::object msg;
        msg["message_id"] = NewId();
        msg["text"] = greeting;
        msg["asks"] = asks;
        msg["lang"] = "en";
        msg["source"] = "builtin";
        events.push_back(NewEvent(model::kMessageAssistant, "ai", msg));
        Reply reply;
        reply.status = 201;
        reply.body["session_id"] = sid;
        reply.body["user_id"] = req.user_id;
        reply.body["schema"] = schema->ToJson();
        reply.body["profile"] = json::object();
        reply.body["version"] = 0;
        json::object r;
        r["text"] = greeting;
        r["message_id"] = msg["message_id"];
        reply.body["reply"] = std::move(r);
        Commit(std::move(a), std::move(release), std::move(s), std::move(events), std::move(reply),
               idem, std::move(done));
      },
      done);
}

bool Engine::IsVersionConflict(const Status& st) {
  return absl::IsAborted(st) && absl::StartsWith(st.message(), "version conflict");
}

ReplyCallback Engine::RetryOnConflict(int attempt, std::function<void(ReplyCallback)> again,
                                      ReplyCallback done) {
  // A commit refused because another writer appended first (another node,
  // on a shared store) is run again on the reloaded state, a few times: the
  // client sent no precondition, so the conflict is not its to see.
  if (!shared_ || attempt >= kConflictRetries) return done;
  return [this, attempt, again = std::move(again),
          done = std::move(done)](StatusOr<Reply> r) mutable {
    if (r.ok() || !IsVersionConflict(r.status())) return done(std::move(r));
    conflict_retries_->Inc();
    // After a random pause that grows with each attempt (up to 64 ms), so
    // two nodes that keep colliding on one session fall out of step.
    const int cap = 1 << std::min(attempt + 1, 6);
    thread_local std::minstd_rand rng(std::random_device{}());
    const auto pause = std::chrono::milliseconds(std::uniform_int_distribution<int>(0, cap)(rng));
    retry_timer_->After(pause, [again = std::move(again), done = std::move(done)]() mutable {
      again(std::move(done));
    });
  };
}

void Engine::PostMessage(MessageRequest req, ReplyCallback done) {
  PostMessage(std::move(req), std::move(done), 0);
}

void Engine::PostMessage(MessageRequest req, ReplyCallback done, int attempt) {
  if (draining_) return done(absl::UnavailableError("server is shutting down"));
  done = RetryOnConflict(
      attempt,
      [this, req, attempt](ReplyCallback d) mutable {
        PostMessage(std::move(req), std::move(d), attempt + 1);
      },
      std::move(done));
  // Someone else's session is refused before it can queue behind the
  // owner's work (or fill its queue): the answer and its timing are those of
  // a missing session. The check inside the operation stays (a race guard).
  if (!req.caller.unrestricted()) {
    if (Status st = Exists(req.caller, req.session_id); !st.ok()) return done(st);
  }
  const auto start = std::chrono::steady_clock::now();
  const std::string sid = req.session_id;
  const bool background = req.applying.has_value();
  Submit(
      sid, true,
      [this, req = std::move(req), done, start](std::shared_ptr<Actor> a,
                                                std::function<void()> release) mutable {
        std::string idem;
        SessionState s;
        if (!Prepare(*a, req.caller, "message", req.idempotency_key, done, &idem, &s, req.applying))
          return release();
        ai::AiRequest ai_req;
        ai_req.schema = s.schema;
        ai_req.profile = s.profile.values();
        ai_req.text = req.text;
        ai_req.asked_field = s.asked_field;
        ai_req.language_hint = s.language;
        ai_req.history.assign(s.history.begin(), s.history.end());
        ai_req.session_id = s.meta.session_id;
        ai_req.user_id = s.meta.user_id;
        ai_req.priority = req.priority;
        tracing::SpanContext ai_trace;
        uint64_t ai_start_ns = 0;  // set when this step's spans are recorded
        if (req.trace.valid() && tracing::Global()) {
          // The model call carries the context, sampled or not.
          ai_trace = tracing::ChildOf(req.trace);
          ai_req.traceparent = tracing::FormatTraceparent(ai_trace);
          if (ai_trace.sampled) ai_start_ns = tracing::NowUnixNs();
        }
        ai_req.on_token = std::move(req.on_token);
        ai_calls_->Inc();
        const auto ai_start = std::chrono::steady_clock::now();
        provider_->Respond(
            std::move(ai_req),
            [this, a, release = std::move(release), s = std::move(s), req = std::move(req),
             idem = std::move(idem), done = std::move(done), start, ai_start, ai_trace,
             ai_start_ns](StatusOr<ai::AiReply> ai_reply) mutable {
              if (tracing::Tracer* tracer = ai_start_ns ? tracing::Global() : nullptr) {
                tracing::Span span;
                span.ctx = ai_trace;
                span.parent_span_id = req.trace.span_id;
                span.name = "ai.respond";
                span.kind = 3;  // client: the model call
                span.start_unix_ns = ai_start_ns;
                span.end_unix_ns = tracing::NowUnixNs();
                if (ai_reply.ok()) {
                  span.attributes = {{"persona.ai.source", ai_reply->source},
                                     {"persona.ai.provider", ai_reply->provider},
                                     {"gen_ai.request.model", ai_reply->model},
                                     {"gen_ai.usage.input_tokens", ai_reply->tokens_in},
                                     {"gen_ai.usage.output_tokens", ai_reply->tokens_out}};
                }
                span.error = !ai_reply.ok();
                tracer->Record(std::move(span));
              }
              const auto ai_elapsed = std::chrono::steady_clock::now() - ai_start;
              {
                std::lock_guard<std::mutex> l(a->mu);
                a->external_ns =
                    std::chrono::duration_cast<std::chrono::nanoseconds>(ai_elapsed).count();
              }
              if (!ai_reply.ok()) {
                done(absl::UnavailableError("AI provider failed: " +
                                            std::string(ai_reply.status().message())));
                return release();
              }
              std::optional<store::Usage> usage;
              if (ai_reply->source == "llm") {
                const int t = static_cast<int>(ai_reply->tier);
                ai_tokens_in_[t]->Inc(ai_reply->tokens_in);
                ai_tokens_out_[t]->Inc(ai_reply->tokens_out);
                ai_llm_answers_->Inc();
                ai_cost_microusd_[t]->Inc(
                    static_cast<uint64_t>(std::llround(ai_reply->cost_usd * 1e6)));
                usage = store::Usage{};
                usage->calls = 1;
                usage->tokens_in = static_cast<uint64_t>(ai_reply->tokens_in);
                usage->tokens_out = static_cast<uint64_t>(ai_reply->tokens_out);
                usage->cost_usd = ai_reply->cost_usd;
                if (ai_reply->tier == ai::Tier::kCheap) {
                  usage->cheap_calls = usage->calls;
                  usage->cheap_tokens_in = usage->tokens_in;
                  usage->cheap_tokens_out = usage->tokens_out;
                  usage->cheap_cost_usd = usage->cost_usd;
                }
              } else if (ai_reply->source == "gate") {
                ai_avoided_gate_->Inc();
                usage = store::Usage{};
                usage->avoided_gate = 1;
              } else if (ai_reply->source == "cache") {
                ai_avoided_cache_->Inc();
                usage = store::Usage{};
                usage->avoided_cache = 1;
              }
              if (usage) s.meta.usage.Add(*usage);
              std::vector<model::Event> events;
              json::object user_msg;
              const std::string message_id = NewId();
              user_msg["message_id"] = message_id;
              user_msg["text"] = req.text;
              user_msg["lang"] = ai_reply->language;
              if (req.applying) user_msg["request_id"] = req.applying->request_id;
              events.push_back(NewEvent(model::kMessageUser, req.origin, std::move(user_msg)));
              json::array changes;
              for (const auto& c : ai_reply->changes) {
                const json::value* prev = s.profile.Get(c.field);
                json::object data;
                data["field"] = c.field;
                if (c.value.is_null()) {
                  if (prev == nullptr || s.schema->Find(c.field) == nullptr) continue;
                  data["previous"] = *prev;
                  data["source"] = "ai";
                  json::object ch;
                  ch["field"] = c.field;
                  ch["value"] = nullptr;
                  ch["previous"] = *prev;
                  changes.push_back(std::move(ch));
                  events.push_back(NewEvent(model::kFieldCleared, "ai", std::move(data)));
                  continue;
                }
                // The provider cannot write fields the schema lacks or invalid values.
                auto valid = s.schema->Validate(c.field, c.value);
                if (!valid.ok()) continue;
                if (prev != nullptr && *prev == *valid) continue;
                data["value"] = *valid;
                data["previous"] = prev ? *prev : json::value(nullptr);
                data["source"] = "ai";
                data["provider"] = ai_reply->provider;
                data["model"] = ai_reply->model;
                json::object ch;
                ch["field"] = c.field;
                ch["value"] = *valid;
                ch["previous"] = prev ? *prev : json::value(nullptr);
                changes.push_back(std::move(ch));
                events.push_back(NewEvent(model::kFieldSet, "ai", std::move(data)));
              }
              json::object bot;
              const std::string reply_id = NewId();
              bot["message_id"] = reply_id;
              bot["text"] = ai_reply->text;
              bot["asks"] = ai_reply->asks;
              bot["lang"] = ai_reply->language;
              bot["reply_to"] = message_id;
              bot["source"] = ai_reply->source;
              bot["provider"] = ai_reply->provider;
              bot["model"] = ai_reply->model;
              if (ai_reply->source == "llm") bot["tier"] = ai::TierName(ai_reply->tier);
              {
                json::object u;  // this call's usage, durable with the step
                u["tokens_in"] = ai_reply->tokens_in;
                u["tokens_out"] = ai_reply->tokens_out;
                u["cost_usd"] = ai_reply->cost_usd;
                u["latency_ms"] = ai_reply->latency_ms;
                bot["usage"] = std::move(u);
              }
              if (!ai_reply->fallbacks.empty()) {
                json::array fb;
                for (const auto& f : ai_reply->fallbacks) fb.push_back(json::string(f));
                bot["fallbacks"] = std::move(fb);
              }
              if (!ai_reply->repair.empty()) bot["repair"] = ai_reply->repair;
              if (!ai_reply->cache_match.empty()) {
                json::object c;
                c["match"] = ai_reply->cache_match;
                c["similarity"] = std::round(ai_reply->cache_similarity * 10000) / 10000;
                bot["cache"] = std::move(c);
              }
              json::object intent;
              if (!ai_reply->intent.empty()) {
                intent["name"] = ai_reply->intent;
                intent["confidence"] = std::round(ai_reply->intent_confidence * 10000) / 10000;
                bot["intent"] = intent;
              }
              events.push_back(NewEvent(model::kMessageAssistant, "ai", std::move(bot)));
              Reply reply;
              reply.body["message_id"] = message_id;
              json::object r;
              r["text"] = ai_reply->text;
              r["message_id"] = reply_id;
              reply.body["reply"] = std::move(r);
              reply.body["changes"] = std::move(changes);
              reply.body["profile"] = json::object();
              reply.body["version"] = 0;
              reply.body["source"] = ai_reply->source;
              if (!intent.empty()) reply.body["intent"] = std::move(intent);
              auto timed = [this, start, ai_elapsed, llm = ai_reply->source == "llm",
                            done = std::move(done)](StatusOr<Reply> r) {
                if (r.ok()) {
                  steps_->Inc();
                  const auto took = std::chrono::steady_clock::now() - start;
                  step_seconds_->Observe(std::chrono::duration<double>(took).count());
                  // What persona itself added to a step a model answered: the
                  // step (queue, prompt, validation, durable commit) without the
                  // provider call, measured within the step.
                  if (llm)
                    own_seconds_->Observe(std::chrono::duration<double>(took - ai_elapsed).count());
                }
                done(std::move(r));
              };
              const std::optional<Applying> applying = req.applying;
              Commit(std::move(a), std::move(release), std::move(s), std::move(events),
                     std::move(reply), idem, std::move(timed), applying, usage, req.trace);
            });
      },
      done, /*bounded=*/!background, background);
}

void Engine::PatchProfile(PatchRequest req, ReplyCallback done) {
  PatchProfile(std::move(req), std::move(done), 0);
}

void Engine::PatchProfile(PatchRequest req, ReplyCallback done, int attempt) {
  if (draining_) return done(absl::UnavailableError("server is shutting down"));
  // With If-Match the client named the version it edits: a conflict is its
  // answer (412 once reloaded), not something to retry.
  if (!req.if_match) {
    done = RetryOnConflict(
        attempt,
        [this, req, attempt](ReplyCallback d) mutable {
          PatchProfile(std::move(req), std::move(d), attempt + 1);
        },
        std::move(done));
  }
  if (!req.caller.unrestricted()) {  // as in PostMessage: before it can queue
    if (Status st = Exists(req.caller, req.session_id); !st.ok()) return done(st);
  }
  const std::string sid = req.session_id;
  const bool bounded = !req.applying;
  Submit(
      sid, true,
      [this, req = std::move(req), done](std::shared_ptr<Actor> a,
                                         std::function<void()> release) mutable {
        std::string idem;
        SessionState s;
        if (!Prepare(*a, req.caller, "patch", req.idempotency_key, done, &idem, &s, req.applying))
          return release();
        if (req.if_match && *req.if_match != s.meta.version && shared_) {
          // The state here may be behind another node's write: look before
          // refusing the client's precondition.
          if (EnsureLoaded(*a).ok()) {
            std::lock_guard<std::mutex> l(a->mu);
            if (a->state) s = *a->state;
          }
        }
        if (req.if_match && *req.if_match != s.meta.version) {
          done(absl::FailedPreconditionError(
              absl::StrCat("profile is at version ", s.meta.version, ", not ", *req.if_match)));
          return release();
        }
        // Validate every field first: a PATCH is all or nothing.
        std::vector<std::pair<std::string, json::value>> accepted;
        for (const auto& kv : req.fields) {
          const std::string field(kv.key());
          if (s.schema->Find(field) == nullptr) {
            done(absl::InvalidArgumentError("schema '" + s.schema->name() + "' has no field '" +
                                            field + "'"));
            return release();
          }
          if (kv.value().is_null()) {
            accepted.emplace_back(field, nullptr);
            continue;
          }
          auto valid = s.schema->Validate(field, kv.value());
          if (!valid.ok()) {
            done(absl::InvalidArgumentError(valid.status().message()));
            return release();
          }
          accepted.emplace_back(field, std::move(*valid));
        }
        std::vector<model::Event> events;
        json::array changes;
        for (auto& [field, value] : accepted) {
          const json::value* prev = s.profile.Get(field);
          if (value.is_null() && prev == nullptr) continue;
          if (prev != nullptr && *prev == value) continue;
          json::object data;
          data["field"] = field;
          if (!value.is_null()) data["value"] = value;
          data["previous"] = prev ? *prev : json::value(nullptr);
          data["source"] = req.source;
          if (req.applying) data["request_id"] = req.applying->request_id;
          model::Event e = NewEvent(value.is_null() ? model::kFieldCleared : model::kFieldSet,
                                    req.source, std::move(data));
          // A device edit based on an older HLC than the field's current
          // stamp loses (last writer wins): it is not appended.
          if (req.base_hlc) {
            auto m = s.profile.meta().find(field);
            if (m != s.profile.meta().end() && m->second.hlc > *req.base_hlc) continue;
          }
          json::object ch;
          ch["field"] = field;
          ch["value"] = value;
          ch["previous"] = prev ? *prev : json::value(nullptr);
          changes.push_back(std::move(ch));
          events.push_back(std::move(e));
        }
        Reply reply;
        reply.body["changes"] = std::move(changes);
        reply.body["profile"] = json::object();
        reply.body["version"] = s.meta.version;
        if (events.empty()) {
          reply.body["profile"] = s.profile.ValuesJson(s.schema.get());
          if (req.applying) {  // nothing to append, but the request is done: record it
            return FinishRequest(
                *req.applying, a->id, std::move(reply),
                [done = std::move(done), release = std::move(release), reply](Status st) mutable {
                  if (st.ok()) {
                    done(std::move(reply));
                  } else {
                    done(st);
                  }
                  release();
                });
          }
          done(std::move(reply));
          return release();
        }
        Commit(std::move(a), std::move(release), std::move(s), std::move(events), std::move(reply),
               idem, std::move(done), req.applying);
      },
      done, bounded, /*background=*/!bounded);
}

void Engine::DeleteSession(const auth::Caller& caller, std::string session_id, ReplyCallback done) {
  if (draining_) return done(absl::UnavailableError("server is shutting down"));
  if (!caller.unrestricted()) {  // as in PostMessage: before it can queue
    if (Status st = Exists(caller, session_id); !st.ok()) return done(st);
  }
  Submit(
      session_id, true,
      [this, caller, done](std::shared_ptr<Actor> a, std::function<void()> release) mutable {
        if (auto st = EnsureLoaded(*a); !st.ok()) {
          done(st);
          return release();
        }
        Status allowed;
        {
          std::lock_guard<std::mutex> l(a->mu);
          allowed = a->state ? Authorize(caller, a->id, a->state->meta.user_id)
                             : absl::NotFoundError("no such session");
        }
        if (!allowed.ok()) {
          done(allowed);
          return release();
        }
        store::AppendRequest req;
        req.session_id = a->id;
        req.erase = true;
        store_->Append(std::move(req), [this, a, done = std::move(done),
                                        release = std::move(release)](Status st) mutable {
          executor_([this, a, st, done = std::move(done), release = std::move(release)]() mutable {
            if (st.ok()) {
              uint64_t version = 0;
              std::string owner;
              {
                std::lock_guard<std::mutex> l(a->mu);
                version = a->state ? a->state->meta.version : 0;
                if (a->state) owner = a->state->meta.user_id;
                a->state.reset();
                a->deleted = true;
              }
              Forget(*a);
              if (options_.on_session_erased && !owner.empty()) options_.on_session_erased(owner);
              if (cache_) cache_->Invalidate(a->id);
              model::Event e = NewEvent(model::kSessionDeleted, "system", {});
              e.seq = version + 1;
              bus_->Publish(EventsTopic(a->id),
                            std::make_shared<const std::string>(model::EventToJsonString(e)),
                            e.seq);
              Reply r;
              r.status = 204;
              done(std::move(r));
            } else {
              done(st);
            }
            release();
          });
        });
      },
      done);
}

StatusOr<json::object> Engine::GetSession(const auth::Caller& caller,
                                          const std::string& session_id) {
  auto a = GetActor(session_id, true);
  if (auto st = EnsureLoaded(*a); !st.ok()) return st;
  std::lock_guard<std::mutex> l(a->mu);
  if (!a->state) return absl::NotFoundError("no such session");
  const SessionState& s = *a->state;
  if (Status st = Authorize(caller, session_id, s.meta.user_id); !st.ok()) return st;
  json::object o = ProfileBody(s);
  o["session_id"] = s.meta.session_id;
  o["user_id"] = s.meta.user_id;
  o["schema"] = s.schema->ToJson();
  o["metadata"] = s.meta.metadata;
  o["created_at"] = FormatRfc3339Millis(s.meta.created_at_ms);
  json::object counts;
  counts["events"] = s.meta.version;
  counts["messages"] = s.meta.message_count;
  o["counts"] = std::move(counts);
  o["usage"] = store::UsageToJson(s.meta.usage);
  return o;
}

StatusOr<std::pair<std::string, uint64_t>> Engine::GetProfileJson(const auth::Caller& caller,
                                                                  const std::string& session_id) {
  // A session in memory answers from its state: the freshest and cheapest
  // source. The cache serves sessions that are not in memory, without
  // loading them. On a shared store another node may have written since:
  // EnsureLoaded below checks.
  if (auto a = shared_ ? nullptr : GetActor(session_id, false)) {
    std::lock_guard<std::mutex> l(a->mu);
    if (a->deleted) return absl::NotFoundError("no such session");
    if (a->state) {
      if (Status st = Authorize(caller, session_id, a->state->meta.user_id); !st.ok()) return st;
      return std::make_pair(json::serialize(ProfileBody(*a->state)), a->state->meta.version);
    }
  }
  if (cache_) {
    // An entry is used only if it was built from the store's current version,
    // so the cache can never answer with less than what was acknowledged.
    // The owner comes from the store too, never from the cache.
    auto head = store_->Head(session_id);
    if (!head.ok()) return head.status();
    if (Status st = Authorize(caller, session_id, head->user_id); !st.ok()) return st;
    if (auto c = cache_->Get(session_id); c && c->version == head->version) {
      cache_hits_->Inc();
      return std::make_pair(std::move(c->body), head->version);
    }
    cache_misses_->Inc();
  }
  auto a = GetActor(session_id, true);
  if (auto st = EnsureLoaded(*a); !st.ok()) return st;
  std::pair<std::string, uint64_t> out;
  {
    std::lock_guard<std::mutex> l(a->mu);
    if (!a->state) return absl::NotFoundError("no such session");
    if (Status st = Authorize(caller, session_id, a->state->meta.user_id); !st.ok()) return st;
    out = std::make_pair(json::serialize(ProfileBody(*a->state)), a->state->meta.version);
  }
  if (cache_) cache_->Put(session_id, cache::CachedProfile{out.first, out.second});
  return out;
}

StatusOr<std::string> Engine::Owner(const auth::Caller& caller, const std::string& session_id) {
  std::string owner;
  bool known = false;
  if (auto a = GetActor(session_id, false)) {
    std::lock_guard<std::mutex> l(a->mu);
    if (a->deleted) return absl::NotFoundError("no such session");
    if (a->state) {
      owner = a->state->meta.user_id;
      known = true;
    }
  }
  if (!known) {
    auto head = store_->Head(session_id);
    if (!head.ok()) return head.status();
    owner = std::move(head->user_id);
  }
  if (Status st = Authorize(caller, session_id, owner); !st.ok()) return st;
  return owner;
}

Status Engine::Exists(const auth::Caller& caller, const std::string& session_id) {
  return Owner(caller, session_id).status();
}

Status Engine::CheckAccess(const auth::Caller& caller, const std::string& session_id) {
  return Exists(caller, session_id);
}

StatusOr<store::Usage> Engine::UserUsage(const auth::Caller& caller, const std::string& user_id) {
  if (!caller.MayReadUser(user_id))
    return absl::PermissionDeniedError("a token may read only its own user's usage");
  return store_->UserUsage(user_id);
}

void Engine::AcceptMessage(MessageRequest req, ReplyCallback done) {
  json::object p;
  p["op"] = "message";
  p["text"] = req.text;
  p["origin"] = req.origin;
  if (req.priority != ai::Priority::kNormal)
    p["priority"] = req.priority == ai::Priority::kLow ? "low" : "high";
  Accept(req.caller, std::move(req.session_id), "message", std::move(req.idempotency_key),
         std::move(p), std::move(done));
}

void Engine::AcceptPatch(PatchRequest req, ReplyCallback done) {
  json::object p;
  p["op"] = "patch";
  p["fields"] = std::move(req.fields);
  if (req.if_match) p["if_match"] = *req.if_match;
  if (req.base_hlc) p["base_hlc"] = HlcToString(*req.base_hlc);
  p["source"] = req.source;
  Accept(req.caller, std::move(req.session_id), "patch", std::move(req.idempotency_key),
         std::move(p), std::move(done));
}

void Engine::Accept(const auth::Caller& caller, std::string session_id, std::string route,
                    std::string idempotency_key, json::object payload, ReplyCallback done) {
  if (draining_) return done(absl::UnavailableError("server is shutting down"));
  if (applier_ == nullptr) return done(absl::FailedPreconditionError("async writes are off"));
  if (Status st = Exists(caller, session_id); !st.ok()) return done(st);
  if (Status st = store_->Health(); !st.ok()) return done(st);
  if (applier_->Full())
    return done(absl::UnavailableError("too many async requests waiting to be applied"));
  std::string idem;
  if (!idempotency_key.empty()) {
    idem = IdempotencyScopeKey(route, idempotency_key);
    const std::string guard = session_id + " " + idem;
    {
      std::lock_guard<std::mutex> l(accept_mu_);
      if (!accepting_keys_.insert(guard).second)
        return done(absl::AlreadyExistsError("a request with this Idempotency-Key is in progress"));
    }
    done = [this, guard, done = std::move(done)](StatusOr<Reply> r) {
      {
        std::lock_guard<std::mutex> l(accept_mu_);
        accepting_keys_.erase(guard);
      }
      done(std::move(r));
    };
    // A key with an answer already (a sync reply, an applied or a pending
    // async request) is answered from its record.
    if (AnsweredFromRecord(session_id, idem, done)) return;
  }
  Applying ap;
  ap.request_id = session_id + "." + NewId();
  ap.intake_seq = applier_->NextSeq();
  ap.accepted_at_ms = NowMillis();
  payload["request_id"] = ap.request_id;
  payload["session_id"] = session_id;
  payload["accepted_at_ms"] = ap.accepted_at_ms;
  if (!idempotency_key.empty()) payload["idempotency_key"] = idempotency_key;

  Reply reply;
  reply.status = 202;
  reply.body = RequestRecord(ap, session_id, "pending");
  reply.body["location"] = RequestLocation(ap.request_id);

  store::AppendRequest req;  // no session: only the intake entry (and the key's record)
  req.intake_add =
      store::IntakeEntry{ap.intake_seq, json::serialize(payload), session_id, ap.request_id};
  if (!idem.empty()) {
    json::object rec;
    rec["status"] = 202;
    rec["body"] = reply.body;
    rec["request_id"] = ap.request_id;
    req.idempotency = store::AppendRequest::Idempotency{session_id, idem, json::serialize(rec)};
  }
  int64_t admitted_ns = 0;
  if (admission_ != nullptr) {
    const bool admitted = admission_->TryAcquire();
    UpdateAdmissionGauges();
    if (!admitted) {
      admission_shed_->Inc();
      return done(WithRetryAfter(
          absl::UnavailableError("server overloaded: too much work in flight, try again"), 1));
    }
    admitted_ns = admission_->NowNs();
  }
  BeginOp();
  store_->Append(
      std::move(req), [this, seq = ap.intake_seq, payload = std::move(payload), admitted_ns,
                       reply = std::move(reply), done = std::move(done)](Status st) mutable {
        // Durable (or refused). Hand over in commit order, then answer.
        if (admission_ != nullptr) admission_->Release(admitted_ns);
        if (st.ok()) {
          accepted_->Inc();
          applier_->Push(seq, std::move(payload));
        }
        executor_(
            [this, st = std::move(st), reply = std::move(reply), done = std::move(done)]() mutable {
              if (st.ok()) {
                done(std::move(reply));
              } else {
                done(st);
              }
              EndOp();
            });
      });
}

void Engine::FinishRequest(const Applying& applying, const std::string& session_id,
                           StatusOr<Reply> outcome, std::function<void(Status)> done) {
  json::object rec;
  if (outcome.ok()) {
    rec = AppliedRecord(applying, session_id, *outcome);
  } else {
    rec = RequestRecord(applying, session_id, "failed");
    rec["failed_at"] = FormatRfc3339Millis(NowMillis());
    json::object err;
    err["code"] = static_cast<int>(outcome.status().code());
    err["message"] = std::string(outcome.status().message());
    rec["error"] = std::move(err);
  }
  store::AppendRequest req;
  req.intake_done = store::AppendRequest::IntakeDone{applying.intake_seq, applying.request_id};
  req.request_status =
      store::AppendRequest::RequestStatus{session_id, applying.request_id, json::serialize(rec)};
  store_->Append(std::move(req), [this, done = std::move(done)](Status st) mutable {
    ExecutorFor(true)([st = std::move(st), done = std::move(done)]() mutable { done(st); });
  });
}

StatusOr<json::object> Engine::GetRequest(const auth::Caller& caller,
                                          const std::string& request_id) {
  std::string sid;
  if (!SplitRequestId(request_id, &sid)) return absl::NotFoundError("no such request");
  // A request is its session's: someone who may not see the session may not
  // see its requests, and gets the answer an unknown request gets.
  if (!caller.unrestricted()) {
    if (Status st = Exists(caller, sid); !st.ok()) {
      if (absl::IsNotFound(st)) return absl::NotFoundError("no such request");
      return st;
    }
  }
  auto rec = store_->GetRequestStatus(sid, request_id);
  if (!rec.ok()) return rec.status();
  if (!rec->has_value()) {
    // Still in the intake (its entry is its record), or unknown.
    if (applier_) {
      if (auto p = applier_->Pending(request_id)) return std::move(*p);
    }
    // On a shared store another process may have accepted it.
    if (shared_) {
      auto e = store_->FindIntake(sid, request_id);
      if (!e.ok()) return e.status();
      if (e->has_value()) {
        auto v = ParseJson((*e)->payload);
        if (!v.ok() || !v->is_object()) return absl::DataLossError("corrupt intake entry");
        return Applier::PendingRecord(request_id, sid,
                                      GetInt(v->get_object(), "accepted_at_ms").value_or(0));
      }
      // Applied (by whichever process) between the two reads above: the
      // status is there now.
      rec = store_->GetRequestStatus(sid, request_id);
      if (!rec.ok()) return rec.status();
    }
    if (!rec->has_value()) return absl::NotFoundError("no such request");
  }
  auto v = ParseJson(**rec);
  if (!v.ok() || !v->is_object()) return absl::DataLossError("corrupt request status");
  return std::move(v->get_object());
}

StatusOr<uint64_t> Engine::Version(const auth::Caller& caller, const std::string& session_id) {
  auto a = GetActor(session_id, true);
  if (auto st = EnsureLoaded(*a); !st.ok()) return st;
  std::lock_guard<std::mutex> l(a->mu);
  if (!a->state) return absl::NotFoundError("no such session");
  if (Status st = Authorize(caller, session_id, a->state->meta.user_id); !st.ok()) return st;
  return a->state->meta.version;
}

StatusOr<json::object> Engine::ListMessages(const auth::Caller& caller,
                                            const std::string& session_id, size_t limit,
                                            uint64_t before) {
  auto version = Version(caller, session_id);
  if (!version.ok()) return version.status();
  if (before == 0 || before > *version + 1) before = *version + 1;
  auto events = store_->ReadEventsBackward(session_id, before, limit + 1,
                                           {model::kMessageUser, model::kMessageAssistant});
  if (!events.ok()) return events.status();
  const bool more = events->size() > limit;
  if (more) events->pop_back();
  json::array msgs;
  for (auto it = events->rbegin(); it != events->rend(); ++it) {
    json::object m;
    m["id"] = GetString(it->data, "message_id").value_or(it->id);
    m["seq"] = it->seq;
    m["role"] = it->type == model::kMessageUser ? "user" : "assistant";
    m["text"] = GetString(it->data, "text").value_or("");
    m["at"] = FormatRfc3339Millis(it->at_ms);
    msgs.push_back(std::move(m));
  }
  json::object o;
  o["messages"] = std::move(msgs);
  if (more && !events->empty()) o["next_before"] = events->back().seq;
  o["version"] = *version;
  return o;
}

StatusOr<std::vector<model::Event>> Engine::ListEvents(const auth::Caller& caller,
                                                       const std::string& session_id,
                                                       uint64_t after, size_t limit) {
  auto version = Version(caller, session_id);
  if (!version.ok()) return version.status();
  return store_->ReadEvents(session_id, after, limit);
}

StatusOr<std::vector<std::pair<uint64_t, bus::Payload>>> BusBackfill::EventsAfter(
    const std::string& session_id, uint64_t after, uint64_t upto) {
  std::vector<std::pair<uint64_t, bus::Payload>> out;
  for (;;) {
    const size_t want = upto == 0 ? 1000 : std::min<uint64_t>(1000, upto - after);
    if (want == 0) return out;
    auto page = store_->ReadEvents(session_id, after, want);
    if (!page.ok()) return page.status();
    for (const auto& e : *page) {
      if (upto != 0 && e.seq > upto) return out;
      out.emplace_back(e.seq, std::make_shared<const std::string>(model::EventToJsonString(e)));
      after = e.seq;
    }
    if (page->size() < want || out.size() >= 100000) return out;
  }
}

StatusOr<std::pair<uint64_t, bus::Payload>> BusBackfill::Profile(const std::string& session_id) {
  auto p = engine_->GetProfileJson(auth::Caller::System(), session_id);
  if (!p.ok()) return p.status();
  return std::make_pair(p->second, std::make_shared<const std::string>(std::move(p->first)));
}

StatusOr<std::unordered_map<std::string, uint64_t>> BusBackfill::Versions(
    const std::vector<std::string>& session_ids) {
  return store_->SessionVersions(session_ids);
}

}  // namespace persona::engine
