// Applier: applies requests accepted in async write mode.
//
// The engine writes each accepted request into the store's intake log
// (group-committed, durable) and hands it here. One applier thread takes up
// to `batch_size` requests at a time (waiting at most `max_delay_ms` for a
// batch to fill), submits them all to the engine, whose per-session actors
// keep each session's requests in intake order and whose group commit makes
// one batch share few fsyncs, and waits for the batch before taking the next.
//
// Applying a request commits its events, the request's final status and the
// deletion of its intake entry in one atomic write, so after a kill -9 the
// entries still in the intake are exactly the ones not applied: Recover()
// claims them and they are applied once.
//
// On a store several processes share (PostgreSQL) each process applies the
// entries it accepted, and every claim_every_ms claims those of a process
// that stopped or died (its lease ran out): any node's applier may take any
// request, and the store's owner check makes sure only one applies it. A request that fails for
// good (the session is gone, a value the schema rejects, a stale If-Match) gets a "failed" status;
// one that fails for a passing reason (storage refusing writes, shutting down) stays queued and is
// retried after `retry_ms`.
//
// The applier's share of the work (the AI, building and encoding events) runs
// on its own worker thread at a lower scheduling priority (nice +10) than the
// I/O threads: under load, answering and accepting requests comes first and
// the intake absorbs the burst; when the load falls, the applier catches up.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "core/json.h"
#include "engine/engine.h"
#include "metrics/metrics.h"
#include "store/event_store.h"

namespace persona::engine {

struct ApplierOptions {
  size_t batch_size = 256;
  int max_delay_ms = 2;
  size_t max_pending = 100000;  // accepted, not yet applied; more are refused
  int retry_ms = 200;
  // On a shared store: how often to claim entries of processes that stopped.
  int claim_every_ms = 1000;
};

class Applier {
 public:
  Applier(ApplierOptions options, Engine* engine, store::EventStore* store);
  ~Applier();

  // Reloads what a previous run left in the intake. Call before Start() and
  // before the server accepts requests.
  Status Recover();
  void Start();
  // Stops after the batch in flight; what is left stays in the intake.
  void Stop();

  // The seq for a new intake entry (increasing).
  uint64_t NextSeq() { return next_seq_.fetch_add(1); }
  // True when `max_pending` requests wait: new ones are refused.
  bool Full() const { return depth_.load() >= options_.max_pending; }
  size_t depth() const { return depth_.load(); }
  // Hands over an entry that is durable in the intake.
  void Push(uint64_t seq, json::object payload);
  // The status of a request still waiting in the intake ({"request_id",
  // "session_id", "status": "pending", "accepted_at"}), or nullopt. Pending
  // requests have no stored status record: the intake entry is the record.
  std::optional<json::object> Pending(const std::string& request_id);
  static json::object PendingRecord(const std::string& request_id, const std::string& session_id,
                                    int64_t accepted_at_ms);
  // Runs tasks on the low-priority worker (for Engine::AttachApplier).
  Executor Background();

 private:
  struct Item {
    uint64_t seq = 0;
    json::object payload;
  };
  void Loop();
  // Queues at most `limit` entries store_->ClaimIntake hands over; how many.
  StatusOr<size_t> Claim(size_t limit);
  // How many more requests may wait before max_pending is reached.
  size_t Room() const;
  void WorkerLoop();
  // Applies one item; `done` gets true if it is finished (applied or failed
  // for good), false if it must be retried.
  void Apply(Item item, std::function<void(bool)> done);

  ApplierOptions options_;
  Engine* engine_;
  store::EventStore* store_;
  std::atomic<uint64_t> next_seq_{1};
  std::atomic<size_t> depth_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  struct PendingInfo {
    std::string session_id;
    int64_t accepted_at_ms = 0;
  };
  // Every request accepted and not finished (queued or in the batch in flight).
  std::unordered_map<std::string, PendingInfo> pending_ ABSL_GUARDED_BY(mu_);
  void AddPending(const json::object& payload) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
  // The low-priority worker and its tasks (bounded by the batch in flight).
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  std::condition_variable tasks_cv_;
  bool worker_stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;

  metrics::Gauge* depth_gauge_;
  metrics::Histogram* batch_size_;
  metrics::Histogram* lag_seconds_;
  metrics::Counter* applied_;
  metrics::Counter* failed_;
  metrics::Counter* retried_;
  metrics::Counter* claimed_;
  metrics::Counter* taken_;
};

}  // namespace persona::engine
