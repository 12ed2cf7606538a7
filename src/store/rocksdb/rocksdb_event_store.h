// RocksDbEventStore: the embedded EventStore.
//
// Key layout (one column family):
//   m:{sid}                  session metadata (JSON)
//   v:{sid}                  version, 8 bytes big-endian (read by the commit thread)
//   e:{sid}:{seq 8B BE}      event (JSON)
//   s:{sid}                  latest snapshot (JSON {"seq", "state"})
//   i:{scope}:{key}          idempotency record: 8-byte BE creation time + response
//   q:{seq 8B BE}            async intake entry (the engine's request JSON)
//   r:{sid}:{request_id}     async request status: 8-byte BE time + status JSON
//   u:{user_id}              AI usage totals (JSON), updated with a summing merge operator
// Session ids never contain ':', so prefixes never overlap.
//
// One commit thread drains the append queue, checks expected versions, and
// writes everything pending as one WriteBatch with sync=true: concurrent
// requests share one fsync (group commit). Idempotency records older than
// the TTL (and request statuses) are dropped by a compaction filter. After a failed commit (a full
// disk) the store refuses appends until it is reopened.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "rocksdb/db.h"
#include "store/event_store.h"
#include "store/store_metrics.h"

namespace persona::store {

struct RocksDbOptions {
  std::string path;
  bool read_only = false;     // for replay/export while a server runs
  size_t max_batch = 1024;    // appends per group commit
  size_t queue_limit = 8192;  // queued appends before ResourceExhausted
  int64_t idempotency_ttl_ms = 48LL * 3600 * 1000;
  bool sync = true;                        // fsync every commit (tests of crash safety need true)
  int64_t mqtt_session_ttl_ms = 86400000;  // MQTT session records older than this are not restored
  // Commits are refused (Unavailable) while the data directory's file system
  // has less free space than this, so RocksDB never runs out mid-write.
  uint64_t min_free_bytes = uint64_t{64} << 20;
};

class RocksDbEventStore final : public EventStore {
 public:
  // Opens (creating if needed) the database. A corrupt or unreadable
  // directory fails with a status that names the path and RocksDB's reason.
  static StatusOr<std::unique_ptr<RocksDbEventStore>> Open(const RocksDbOptions& options);
  ~RocksDbEventStore() override;

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
  StatusOr<std::vector<IntakeEntry>> ClaimIntake(size_t limit) override;
  StatusOr<std::optional<IntakeEntry>> FindIntake(std::string_view session_id,
                                                  std::string_view request_id) override;
  StatusOr<uint64_t> LastIntakeSeq() override;
  StatusOr<std::optional<std::string>> GetRequestStatus(std::string_view session_id,
                                                        std::string_view request_id) override;
  StatusOr<Usage> UserUsage(std::string_view user_id) override;
  Status ForEachSession(const std::function<bool(const SessionMeta&)>& fn) override;
  // MQTT persistent sessions survive a restart or an upgrade of the one
  // process that has this directory: each record carries the run that owns
  // it (a random id per Open) and when it was written.
  Status SaveMqttSessions(
      const std::vector<std::pair<std::string, std::optional<std::string>>>& records) override;
  StatusOr<std::optional<std::string>> TakeMqttSession(std::string_view key) override;
  void Close() override;
  Status Health() const override;

 private:
  struct Pending {
    std::string session_id;
    uint64_t expected_version = 0;
    uint64_t new_version = 0;
    bool erase = false;
    // Keys and values, encoded by Append() on the caller's thread so the
    // commit thread only checks versions, copies bytes and fsyncs.
    std::vector<std::pair<std::string, std::string>> puts;
    // The events' keys and their bytes, shared with the caller (not copied).
    std::vector<std::pair<std::string, std::shared_ptr<const std::string>>> event_puts;
    std::vector<std::string> deletes;
    std::vector<std::pair<std::string, std::string>> merges;
    Done done;
  };
  // Encodes `req` into `p`; InvalidArgument if its events are not contiguous.
  static Status Encode(AppendRequest req, Pending* p);

  explicit RocksDbEventStore(const RocksDbOptions& options);
  void CommitLoop();
  // Adds `p` to `batch` after checking its expected version; returns the
  // status the append will get if the batch is written. `versions` (the
  // batch's sessions' versions so far) is updated only on success.
  Status Stage(const Pending& p, rocksdb::WriteBatch* batch,
               std::unordered_map<std::string, uint64_t>* versions);
  StatusOr<uint64_t> StoredVersion(const std::string& sid);
  // Calls `fn` for intake entries with seq > after, in order, until it
  // returns false.
  Status ScanIntake(uint64_t after, const std::function<bool(IntakeEntry)>& fn);

  RocksDbOptions options_;
  const std::string run_id_;  // owns the MQTT session records this run writes
  std::unique_ptr<rocksdb::DB> db_;
  std::shared_ptr<void> filter_;  // keeps the compaction filter alive

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Set by the first failed commit: from then on every append is refused.
  // RocksDB 7.8 must not be written to again after a failed WAL write (it
  // asserts in WritableFileWriter), and a full disk needs an operator anyway;
  // what was acknowledged stays readable, and a restart resumes writing.
  Status failed_ ABSL_GUARDED_BY(mu_);
  Status low_space_ ABSL_GUARDED_BY(mu_);  // the last commit found the disk nearly full
  std::thread committer_;

  // ClaimIntake hands out what the previous run left: entries up to the
  // last seq stored at the first claim, once each.
  std::mutex claim_mu_;
  std::optional<uint64_t> claim_through_ ABSL_GUARDED_BY(claim_mu_);
  uint64_t claimed_ ABSL_GUARDED_BY(claim_mu_) = 0;

  StoreMetrics metrics_ = StoreMetrics::Register();
};

}  // namespace persona::store
