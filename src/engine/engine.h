// Engine: the step pipeline.
//
//   message → AI provider → validation against the schema → events appended
//   atomically (group-committed, durable) → in-memory projection updated →
//   events published on the bus → reply.
//
// Every session is an actor: its operations run one at a time, in arrival
// order, and own the session's state from the moment they start until their
// events are durable. Different sessions run concurrently and share fsyncs
// in the store. A reply is produced only after its events are durable, and
// in-memory state only ever reflects durable events, so reads never return
// anything that could be lost.
//
// Mutating calls are asynchronous: the callback runs exactly once, on an
// executor thread. Read calls are synchronous. Thread-safe.
//
// Every call names its auth::Caller. A session the caller may not touch is
// answered exactly like one that does not exist (NotFound, "no such
// session"), so session ids cannot be probed.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "absl/base/thread_annotations.h"
#include "ai/provider.h"
#include "auth/caller.h"
#include "bus/bus.h"
#include "bus/redis/redis_bus.h"
#include "cache/profile_cache.h"
#include "core/clock.h"
#include "core/scheduler.h"
#include "engine/session_state.h"
#include "limits/concurrency_limiter.h"
#include "metrics/active_users.h"
#include "metrics/metrics.h"
#include "model/schema.h"
#include "store/event_store.h"
#include "tracing/tracer.h"

namespace persona::engine {

struct EngineOptions {
  size_t snapshot_every = 64;
  size_t max_cached_sessions = 100000;
  size_t max_pending_per_session = 32;
  size_t history_window = 12;
  std::string node_id = "n1";  // origin of server-generated events
  // Async write mode: accepted requests waiting to be applied, at most.
  size_t max_intake = 100000;
  // Called with the owner of a session once it is erased (the AI response
  // cache forgets that user's answers).
  std::function<void(const std::string& user_id)> on_session_erased;
};

// Set on a request the applier is applying from the async intake: its commit
// also deletes the intake entry and records the request's final status, so
// a request is applied exactly once even across kill -9.
struct Applying {
  std::string request_id;
  uint64_t intake_seq = 0;
  int64_t accepted_at_ms = 0;
};

// The JSON body of a successful mutation and the HTTP status it maps to.
struct Reply {
  int status = 200;
  json::object body;
  bool replayed = false;  // answered from an idempotency record
};
using ReplyCallback = std::function<void(StatusOr<Reply>)>;

// Runs a task on an executor thread (the I/O pool).
using Executor = std::function<void(std::function<void()>)>;

struct CreateSessionRequest {
  auth::Caller caller;
  std::string user_id;
  std::string schema = "default";
  json::object metadata;
  std::string idempotency_key;  // "" if none
};

struct PatchRequest {
  auth::Caller caller;
  std::string session_id;
  json::object fields;  // field → value, or null to clear
  std::optional<uint64_t> if_match;
  std::optional<Hlc> base_hlc;  // device edits: the HLC the device saw (LWW)
  std::string source = "user";  // user | device
  std::string idempotency_key;
  std::optional<Applying> applying;
};

struct MessageRequest {
  auth::Caller caller;
  std::string session_id;
  std::string text;
  std::string idempotency_key;
  std::string origin = "user";
  ai::Priority priority = ai::Priority::kNormal;  // the cost router's (SPEC §12)
  tracing::SpanContext trace;                     // the HTTP request's span, when tracing is on
  std::optional<Applying> applying;
  // Streaming: the reply's text as the model produces it (any thread, in
  // order); the final reply still comes through the ReplyCallback.
  std::function<void(std::string_view)> on_token;
};

class Applier;

class Engine {
 public:
  // `cache` may be null (no profile cache).
  Engine(EngineOptions options, store::EventStore* store, bus::Bus* bus, ai::Provider* provider,
         std::map<std::string, std::shared_ptr<const model::Schema>> schemas, Executor executor,
         cache::ProfileCache* cache = nullptr);
  ~Engine();

  void CreateSession(CreateSessionRequest req, ReplyCallback done);
  void PostMessage(MessageRequest req, ReplyCallback done);
  void PatchProfile(PatchRequest req, ReplyCallback done);
  void DeleteSession(const auth::Caller& caller, std::string session_id, ReplyCallback done);

  // Async write mode. The request is made durable in the intake log and
  // answered 202 {"request_id", "session_id", "status": "pending",
  // "location"}; the applier applies it later. An Idempotency-Key that
  // already has an answer (from either mode) is answered from its record.
  // Requires AttachApplier().
  void AcceptMessage(MessageRequest req, ReplyCallback done);
  void AcceptPatch(PatchRequest req, ReplyCallback done);
  // The status record of an async request: {"request_id", "session_id",
  // "status": pending | applied | failed, …}; NotFound if unknown.
  StatusOr<json::object> GetRequest(const auth::Caller& caller, const std::string& request_id);
  // `background` runs the applier's operations (at a lower priority than
  // the I/O threads, so accepting requests comes before applying them).
  void AttachApplier(Applier* applier, Executor background) {
    applier_ = applier;
    background_ = std::move(background);
  }
  // Admission control: creating sessions, steps, edits and deletions (not
  // the applier's work, which was admitted when it was accepted) each hold
  // a slot of `limiter` until they finish; without a slot they are refused
  // at once with Unavailable (503). Null (the default) admits everything.
  void AttachAdmission(limits::ConcurrencyLimiter* limiter) { admission_ = limiter; }
  // Unavailable (with Retry-After) if admission control would refuse an
  // operation now: lets a transport refuse before it parses the request.
  // Racy by design; Submit decides.
  Status Admissible() const;
  // Records the outcome of an applied request that committed no events of
  // its own (it failed for good, or was answered from an idempotency record)
  // and deletes its intake entry.
  void FinishRequest(const Applying& applying, const std::string& session_id,
                     StatusOr<Reply> outcome, std::function<void(Status)> done);

  // Reads. NotFound for unknown sessions.
  StatusOr<json::object> GetSession(const auth::Caller& caller, const std::string& session_id);
  // {"profile", "meta", "version"}; `version` is also returned separately for ETags.
  StatusOr<std::pair<std::string, uint64_t>> GetProfileJson(const auth::Caller& caller,
                                                            const std::string& session_id);
  StatusOr<json::object> ListMessages(const auth::Caller& caller, const std::string& session_id,
                                      size_t limit, uint64_t before);
  StatusOr<std::vector<model::Event>> ListEvents(const auth::Caller& caller,
                                                 const std::string& session_id, uint64_t after,
                                                 size_t limit);
  // A user's AI usage over all their sessions; PermissionDenied unless the
  // caller may read that user.
  StatusOr<store::Usage> UserUsage(const auth::Caller& caller, const std::string& user_id);
  // The session's current version (after loading it); NotFound if unknown.
  StatusOr<uint64_t> Version(const auth::Caller& caller, const std::string& session_id);
  // NotFound unless the session exists and `caller` may touch it.
  Status CheckAccess(const auth::Caller& caller, const std::string& session_id);
  // The user the session belongs to, if `caller` may touch it (else NotFound).
  StatusOr<std::string> Owner(const auth::Caller& caller, const std::string& session_id);

  // Topic carrying every event of a session, as event JSON, in seq order.
  static std::string EventsTopic(const std::string& session_id);
  // Topic carrying the profile snapshot {"profile", "meta", "version"} after each change.
  static std::string ProfileTopic(const std::string& session_id);

  bus::Bus* bus() const { return bus_; }
  const std::map<std::string, std::shared_ptr<const model::Schema>>& schemas() const {
    return schemas_;
  }

  // Refuses new mutations (Unavailable) and waits up to `timeout_ms` for
  // in-flight ones to finish. Returns true if everything finished.
  bool Drain(int timeout_ms);
  bool draining() const { return draining_.load(); }
  // OK while the store accepts writes.
  Status StorageHealth() const { return store_->Health(); }

 private:
  struct Actor;
  using Op = std::function<void(std::shared_ptr<Actor>, std::function<void()> release)>;

  std::shared_ptr<Actor> GetActor(const std::string& session_id, bool create);
  // Runs `op` exclusively on the session; `reject` gets the status if the
  // session's queue is full (`bounded`; the applier bounds itself).
  void Submit(const std::string& session_id, bool create, Op op, ReplyCallback reject,
              bool bounded = true, bool background = false);
  // NotFound ("no such session") unless `caller` may act on a session of `owner`.
  // Checks the caller may use the session, and counts its user as active
  // (the concurrent-users KPI) when the caller is that user's own client.
  Status Authorize(const auth::Caller& caller, std::string_view session_id, std::string_view owner);
  // Where an operation's continuations run: the applier's own thread for
  // requests from the intake, the I/O pool otherwise.
  const Executor& ExecutorFor(bool background) const {
    return background && background_ ? background_ : executor_;
  }
  // Loads the session state into the actor if needed (called inside an op).
  // On a shared store a read first checks the store's version (one
  // primary-key read) and reloads if another node wrote; `for_write` skips
  // that check (the commit's version check catches a stale state).
  Status EnsureLoaded(Actor& a, bool for_write = false);
  // Removes the actor from the map (the session does not exist).
  void Forget(Actor& a);
  StatusOr<std::shared_ptr<const model::Schema>> SchemaFor(const std::string& name) const;

  // Appends `events` for the actor's session and, once durable, applies them,
  // publishes them and calls `done` with `reply`.
  void Commit(std::shared_ptr<Actor> a, std::function<void()> release, SessionState next,
              std::vector<model::Event> events, Reply reply, std::string idempotency_key,
              ReplyCallback done, const std::optional<Applying>& applying = std::nullopt,
              std::optional<store::Usage> user_usage = std::nullopt,
              tracing::SpanContext trace = {});
  // Writes a request into the intake and answers 202.
  void Accept(const auth::Caller& caller, std::string session_id, std::string route,
              std::string idempotency_key, json::object payload, ReplyCallback done);
  void PostMessage(MessageRequest req, ReplyCallback done, int attempt);
  void PatchProfile(PatchRequest req, ReplyCallback done, int attempt);
  // A store refusal because another writer appended first.
  static bool IsVersionConflict(const Status& st);
  static constexpr int kConflictRetries = 20;
  // `done`, or on a shared store a callback that runs `again` (the same
  // request, reloaded) instead of reporting a version conflict.
  ReplyCallback RetryOnConflict(int attempt, std::function<void(ReplyCallback)> again,
                                ReplyCallback done);
  // OK if the session exists (resident, or in the store) and `caller` may touch it.
  Status Exists(const auth::Caller& caller, const std::string& session_id);
  model::Event NewEvent(std::string_view type, std::string_view origin, json::object data);
  // An event's seq and its JSON, serialised once for the store and the bus.
  using EventBytes = std::pair<uint64_t, std::shared_ptr<const std::string>>;
  void Publish(const SessionState& s, const std::vector<EventBytes>& events);
  json::object ProfileBody(const SessionState& s) const;
  std::string IdempotencyScopeKey(std::string_view route, std::string_view key) const;
  // The start of a session operation: loads the session, answers from the
  // idempotency record of `key` (if any), and copies the state into `*s`.
  // False if `done` was already called (the caller releases the actor).
  bool Prepare(Actor& a, const auth::Caller& caller, std::string_view route, const std::string& key,
               ReplyCallback& done, std::string* idem, SessionState* s,
               const std::optional<Applying>& applying);
  // If `key` has a stored response in `scope` (or the lookup fails), answers
  // `done` with it and returns true. A pending record of `own_request` (the
  // request being applied) is not an answer.
  bool AnsweredFromRecord(std::string_view scope, const std::string& key, ReplyCallback& done,
                          std::string_view own_request = {});
  void BeginOp();
  void EndOp();
  void UpdateAdmissionGauges();

  EngineOptions options_;
  store::EventStore* store_;
  // Other processes write to the store too (PostgreSQL): states in memory
  // are checked against the store before use.
  bool shared_ = false;
  // Runs requests again after a version conflict (shared stores only).
  std::unique_ptr<Scheduler> retry_timer_;
  bus::Bus* bus_;
  ai::Provider* provider_;
  std::map<std::string, std::shared_ptr<const model::Schema>> schemas_;
  Executor executor_;
  cache::ProfileCache* cache_;
  Applier* applier_ = nullptr;
  limits::ConcurrencyLimiter* admission_ = nullptr;
  Executor background_;
  HybridClock clock_;

  static constexpr size_t kShards = 64;
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::shared_ptr<Actor>> actors ABSL_GUARDED_BY(mu);
  };
  std::array<Shard, kShards> shards_;
  std::atomic<size_t> cached_{0};

  std::mutex create_mu_;
  std::unordered_set<std::string> creating_keys_ ABSL_GUARDED_BY(create_mu_);
  // Idempotency keys of async requests being written into the intake.
  std::mutex accept_mu_;
  std::unordered_set<std::string> accepting_keys_ ABSL_GUARDED_BY(accept_mu_);

  std::atomic<bool> draining_{false};
  std::mutex inflight_mu_;
  std::condition_variable inflight_cv_;
  int64_t inflight_ ABSL_GUARDED_BY(inflight_mu_) = 0;

  metrics::Histogram* step_seconds_;
  metrics::ActiveUsers active_users_{metrics::ActiveUsers::Options{}};
  metrics::Histogram* own_seconds_;
  metrics::Counter* steps_;
  metrics::Counter* field_changes_;
  metrics::Gauge* inflight_gauge_;
  metrics::Gauge* inflight_peak_;
  metrics::Gauge* cached_gauge_;
  metrics::Counter* ai_calls_;
  // By tier (primary, cheap): tokens in and out, and spend.
  metrics::Counter* ai_tokens_in_[2];
  metrics::Counter* ai_tokens_out_[2];
  metrics::Counter* ai_cost_microusd_[2];
  metrics::Counter* ai_llm_answers_;
  metrics::Counter* ai_avoided_gate_;
  metrics::Counter* ai_avoided_cache_;
  metrics::Counter* cache_hits_;
  metrics::Counter* cache_misses_;
  metrics::Counter* accepted_;
  metrics::Gauge* admission_limit_;
  metrics::Gauge* admission_fastest_us_;
  metrics::Counter* admission_shed_;
  metrics::Counter* reloads_;
  metrics::Counter* conflict_retries_;
};

// What the Redis bus reads when messages went missing: the store's events
// and the engine's current profile, as the engine publishes them.
class BusBackfill final : public bus::Backfill {
 public:
  BusBackfill(Engine* engine, store::EventStore* store) : engine_(engine), store_(store) {}
  StatusOr<std::vector<std::pair<uint64_t, bus::Payload>>> EventsAfter(
      const std::string& session_id, uint64_t after, uint64_t upto) override;
  StatusOr<std::pair<uint64_t, bus::Payload>> Profile(const std::string& session_id) override;
  StatusOr<std::unordered_map<std::string, uint64_t>> Versions(
      const std::vector<std::string>& session_ids) override;

 private:
  Engine* engine_;
  store::EventStore* store_;
};

}  // namespace persona::engine
