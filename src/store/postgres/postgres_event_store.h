// PostgresEventStore: the EventStore on a PostgreSQL server (SPEC §11), on
// libpq.
//
// Tables (schema version 5, applied at Open; a database whose schema is
// newer than this build knows is refused):
//   persona_sessions    (session_id PK, user_id, version, meta)       meta: SessionMeta JSON
//   persona_events      (session_id, seq) PK, type, body               body: the event JSON
//   persona_snapshots   (session_id PK, seq, state)
//   persona_idempotency (scope, key) PK, response, created_at_ms
//   persona_usage       (user_id PK, calls, tokens_in, tokens_out, cost_usd)
//   persona_intake      (seq PK, payload, session_id, request_id, owner)
//   persona_nodes       (node_id PK, alive_until, fingerprint, number)  live processes: their
//                       schema set and their number in HLC stamps
//   persona_budget      (user_id PK, spent_usd)       the shared budget ledger
//   persona_budget_holds (hold_id PK, user_id, node_id, amount_usd)  AI calls in flight
//   persona_mqtt_sessions (client_key PK, node_id, record, updated_at)  persistent MQTT
//                       sessions, owned by the node the device is on
//   persona_requests    (session_id, request_id) PK, record, created_at_ms
//   persona_schema      (version)
// JSON is stored as text, byte for byte as the engine wrote it (jsonb would
// reorder keys, and replay compares bytes). `seq` is the event's own number,
// never a database sequence: the primary key on (session_id, seq) keeps it
// gapless and unique even with several writers.
//
// One commit thread group-commits everything queued in one transaction:
// BEGIN; lock the batch's session rows (SELECT … FOR UPDATE) and check each
// append's expected version against them; write every accepted append with
// one multi-row statement per table (unnest of arrays); COMMIT, durable with
// synchronous_commit on. An append that fails its version check writes
// nothing (Aborted); a session-creating idempotency key that is already
// live (another writer created a session for it) refuses that append
// (AlreadyExists) and the batch is written again without it. Only after
// COMMIT succeeds is any append acknowledged; if the connection breaks
// mid-way (or during COMMIT, whose outcome is then unknown) every append of
// the batch gets Unavailable, nothing is acknowledged, and the next batch
// reconnects. Health() reports the last failure until a commit succeeds.
//
// Reads use a bounded pool of connections (`pool_size`); a read that finds
// none free within `pool_wait_ms` is Unavailable. Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "store/event_store.h"
#include "store/store_metrics.h"

struct pg_result;  // libpq's PGresult

namespace persona::store {

struct PostgresOptions {
  std::string url;            // postgresql://user:password@host:port/db?… (libpq)
  size_t pool_size = 4;       // read connections at most
  int pool_wait_ms = 2000;    // a read waits this long for a free connection
  size_t max_batch = 1024;    // appends per group commit
  size_t queue_limit = 8192;  // queued appends before ResourceExhausted
  int64_t idempotency_ttl_ms = 48LL * 3600 * 1000;
  int connect_timeout_s = 5;
  // This process's intake entries are its own while it renews its row in
  // persona_nodes (every lease/5); once the lease runs out (it stopped or
  // died) any process may claim them.
  int64_t intake_lease_ms = 5000;
  // What every node serving from this database must agree on (persona's
  // schema set): Open refuses to start beside a live node whose fingerprint
  // differs. Empty (tools such as replay and export): not checked.
  std::string node_fingerprint;
  // Open refuses to start a process whose wall clock differs from the
  // database server's by more than this; afterwards the offset is measured
  // with every lease renewal (persona_clock_offset_ms) and logged when it
  // passes the limit. 0: not checked.
  int64_t max_clock_skew_ms = 1000;
  // This process's wall clock (ms since the epoch); nullptr: NowMillis.
  // Injectable so that tests can skew it.
  int64_t (*now_ms)() = nullptr;
  // MQTT session records untouched this long are deleted (mqtt.session_expiry_s).
  int64_t mqtt_session_ttl_ms = 86400000;
};

class PostgresEventStore final : public EventStore {
 public:
  // The schema version this build writes.
  static constexpr int kSchemaVersion = 6;

  // Connects, applies missing migrations (serialized across processes by an
  // advisory lock), and starts the commit thread. Unavailable names what
  // failed (libpq's message, never the password); FailedPrecondition for a
  // database whose schema is newer than kSchemaVersion.
  static StatusOr<std::unique_ptr<PostgresEventStore>> Open(const PostgresOptions& options);
  ~PostgresEventStore() override;

  void Append(AppendRequest req, Done done) override;
  StatusOr<LoadedSession> Load(std::string_view session_id) override;
  StatusOr<std::vector<model::Event>> ReadEvents(std::string_view session_id, uint64_t after,
                                                 size_t limit) override;
  StatusOr<std::vector<model::Event>> ReadEventsBackward(
      std::string_view session_id, uint64_t before, size_t limit,
      const std::vector<std::string_view>& types) override;
  StatusOr<std::optional<std::string>> GetIdempotent(std::string_view session_scope,
                                                     std::string_view key) override;
  StatusOr<SessionHead> Head(std::string_view session_id) override;
  StatusOr<std::unordered_map<std::string, uint64_t>> SessionVersions(
      const std::vector<std::string>& session_ids) override;
  bool Shared() const override { return true; }
  StatusOr<std::vector<IntakeEntry>> ClaimIntake(size_t limit) override;
  StatusOr<std::optional<IntakeEntry>> FindIntake(std::string_view session_id,
                                                  std::string_view request_id) override;
  StatusOr<uint64_t> LastIntakeSeq() override;
  StatusOr<std::optional<std::string>> GetRequestStatus(std::string_view session_id,
                                                        std::string_view request_id) override;
  StatusOr<Usage> UserUsage(std::string_view user_id) override;
  StatusOr<bool> ReserveBudget(std::string_view user_id, std::string_view hold_id,
                               double amount_usd, double limit_usd) override;
  Status SettleBudget(std::string_view hold_id, double actual_usd) override;
  Status SaveMqttSessions(
      const std::vector<std::pair<std::string, std::optional<std::string>>>& records) override;
  StatusOr<std::optional<std::string>> TakeMqttSession(std::string_view key) override;
  uint32_t NodeNumber() const override { return node_number_; }
  int64_t ClockOffsetMs() const override { return clock_offset_ms_.load(); }
  Status ForEachSession(const std::function<bool(const SessionMeta&)>& fn) override;
  void Close() override;
  Status Health() const override;
  // This process's name in persona_nodes and the intake's owner column.
  const std::string& node_id() const { return node_id_; }

  struct Pending;  // an encoded append (internal)
  class Connection;
  struct ResultFree {
    void operator()(pg_result* r) const;
  };
  using Result = std::unique_ptr<pg_result, ResultFree>;  // a libpq PGresult

 private:
  explicit PostgresEventStore(const PostgresOptions& options);
  void CommitLoop();
  // Writes `batch` in one transaction; fills `results` (one per append).
  // `reconnected`: on a connection opened because the last one had died.
  Status CommitBatch(std::vector<Pending>& batch, std::vector<Status>* results,
                     bool reconnected = false);
  void ExpireRecords();
  // Picks the lowest number no live process holds (0 … kHlcMaxNodes-1).
  Status TakeNodeNumber();
  // Renews this process's lease on its intake entries and measures its
  // clock's offset from the database server's.
  Status Heartbeat();
  void KeeperLoop();

  // Runs one read on a pooled connection (retried once on a fresh one if the
  // pooled one had died).
  StatusOr<Result> Query(const char* sql, const std::vector<std::string>& params = {});
  // A read connection from the pool, returned on destruction.
  class Lease;
  StatusOr<Lease> Borrow();
  void GiveBack(std::unique_ptr<Connection> c, bool healthy);

  PostgresOptions options_;
  std::unique_ptr<Connection> writer_;  // the commit thread's

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Status health_ ABSL_GUARDED_BY(mu_);  // the last commit's failure, until one succeeds
  std::thread committer_;
  std::thread keeper_;                 // the heartbeat
  std::condition_variable keeper_cv_;  // wakes it to stop
  std::string node_id_;                // host:pid:random, new every run
  uint32_t node_number_ = 0;           // set by Open, before any thread starts
  std::atomic<int64_t> clock_offset_ms_{0};
  bool skew_reported_ = false;  // the keeper's: offset past the limit already logged

  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(pool_mu_);
  size_t open_ ABSL_GUARDED_BY(pool_mu_) = 0;  // read connections open (idle or lent)

  StoreMetrics metrics_ = StoreMetrics::Register();
  metrics::Gauge* clock_offset_gauge_;
  metrics::Counter* number_collisions_;
  bool number_shared_reported_ = false;  // the keeper's
  metrics::Counter* budget_errors_;
};

}  // namespace persona::store
