#include "store/rocksdb/rocksdb_event_store.h"

#include <sys/statvfs.h>

#include <charconv>
#include <chrono>
#include <unordered_map>

#include "core/clock.h"
#include "core/ids.h"
#include "core/logging.h"
#include "rocksdb/compaction_filter.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/options_util.h"

namespace persona::store {
namespace {

void PutBigEndian64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (i * 8)) & 0xff));
}

uint64_t GetBigEndian64(std::string_view s) {
  uint64_t v = 0;
  for (int i = 0; i < 8 && i < static_cast<int>(s.size()); ++i)
    v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

std::string MetaKey(std::string_view sid) { return "m:" + std::string(sid); }
std::string VersionKey(std::string_view sid) { return "v:" + std::string(sid); }
std::string SnapshotKey(std::string_view sid) { return "s:" + std::string(sid); }
std::string EventPrefix(std::string_view sid) { return "e:" + std::string(sid) + ":"; }
std::string EventKey(std::string_view sid, uint64_t seq) {
  std::string k = EventPrefix(sid);
  PutBigEndian64(&k, seq);
  return k;
}
std::string IdemPrefix(std::string_view scope) { return "i:" + std::string(scope) + ":"; }
std::string IntakeKey(uint64_t seq) {
  std::string k = "q:";
  PutBigEndian64(&k, seq);
  return k;
}
// An intake value: 0x01, then the session id and the request id each with a
// 4-byte BE length, then the payload. Values written before entries named
// their session and request are the bare payload (a JSON object, never 0x01).
std::string IntakeValue(const IntakeEntry& e) {
  std::string v(1, '\x01');
  for (const std::string* f : {&e.session_id, &e.request_id}) {
    for (int i = 3; i >= 0; --i) v.push_back(static_cast<char>((f->size() >> (i * 8)) & 0xff));
    v += *f;
  }
  v += e.payload;
  return v;
}
Status DecodeIntake(std::string_view key, std::string_view v, IntakeEntry* e) {
  if (key.size() != 10) return absl::DataLossError("corrupt intake key");
  e->seq = GetBigEndian64(key.substr(2));
  if (v.empty() || v[0] != '\x01') {
    e->payload.assign(v);
    return absl::OkStatus();
  }
  v.remove_prefix(1);
  for (std::string* f : {&e->session_id, &e->request_id}) {
    if (v.size() < 4) return absl::DataLossError("corrupt intake entry");
    size_t n = 0;
    for (int i = 0; i < 4; ++i) n = (n << 8) | static_cast<unsigned char>(v[i]);
    v.remove_prefix(4);
    if (v.size() < n) return absl::DataLossError("corrupt intake entry");
    f->assign(v.substr(0, n));
    v.remove_prefix(n);
  }
  e->payload.assign(v);
  return absl::OkStatus();
}
std::string UsageKey(std::string_view user) { return "u:" + std::string(user); }
// An MQTT persistent session: "<run id>\n<written, unix ms>\n<record>".
std::string MqttSessionKey(std::string_view key) { return "c:" + std::string(key); }
std::string RequestPrefix(std::string_view sid) { return "r:" + std::string(sid) + ":"; }
std::string RequestKey(std::string_view sid, std::string_view id) {
  return RequestPrefix(sid) + std::string(id);
}
// A record that expires: 8-byte BE creation time, then the payload.
std::string Timestamped(std::string_view payload) {
  std::string v;
  PutBigEndian64(&v, static_cast<uint64_t>(NowMillis()));
  v += payload;
  return v;
}
// The key just past every key with `prefix` (prefixes end in ':', and ';' follows it).
std::string PrefixEnd(std::string prefix) {
  prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  const std::string msg = std::string(what) + ": " + s.ToString();
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsNoSpace() || s.IsIOError() || s.IsBusy() || s.IsTimedOut() || s.IsTryAgain())
    return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

// Drops idempotency records and request statuses older than the TTL during
// compaction.
class IdempotencyTtlFilter final : public rocksdb::CompactionFilter {
 public:
  explicit IdempotencyTtlFilter(int64_t ttl_ms) : ttl_ms_(ttl_ms) {}
  bool Filter(int, const rocksdb::Slice& key, const rocksdb::Slice& value, std::string*,
              bool*) const override {
    if (!(key.starts_with("i:") || key.starts_with("r:")) || value.size() < 8) return false;
    const int64_t at = static_cast<int64_t>(GetBigEndian64(std::string_view(value.data(), 8)));
    return NowMillis() - at > ttl_ms_;
  }
  const char* Name() const override { return "persona.IdempotencyTtlFilter"; }

 private:
  int64_t ttl_ms_;
};

// u: records are usage totals; a merge adds a delta to them.
class UsageAddOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value,
             std::string* new_value, rocksdb::Logger*) const override {
    Usage total;
    if (existing != nullptr) {
      if (auto v = ParseJson(std::string_view(existing->data(), existing->size())); v.ok())
        total = UsageFromJson(*v);
    }
    if (auto v = ParseJson(std::string_view(value.data(), value.size())); v.ok())
      total.Add(UsageFromJson(*v));
    *new_value = json::serialize(UsageToJson(total));
    return true;
  }
  const char* Name() const override { return "persona.UsageAdd"; }
};

}  // namespace

RocksDbEventStore::RocksDbEventStore(const RocksDbOptions& options)
    : options_(options), run_id_(NewId()) {}

StatusOr<std::unique_ptr<RocksDbEventStore>> RocksDbEventStore::Open(
    const RocksDbOptions& options) {
  std::unique_ptr<RocksDbEventStore> store(new RocksDbEventStore(options));
  rocksdb::Options opt;
  opt.create_if_missing = !options.read_only;
  opt.paranoid_checks = true;
  opt.IncreaseParallelism(2);
  opt.max_open_files = 512;
  opt.keep_log_file_num = 4;
  opt.max_total_wal_size = 256 << 20;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  opt.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  auto filter = std::make_shared<IdempotencyTtlFilter>(options.idempotency_ttl_ms);
  opt.compaction_filter = filter.get();
  opt.merge_operator = std::make_shared<UsageAddOperator>();
  store->filter_ = filter;

  rocksdb::DB* db = nullptr;
  rocksdb::Status s = options.read_only ? rocksdb::DB::OpenForReadOnly(opt, options.path, &db)
                                        : rocksdb::DB::Open(opt, options.path, &db);
  if (!s.ok()) {
    return absl::FailedPreconditionError("cannot open the RocksDB store at '" + options.path +
                                         "': " + s.ToString());
  }
  store->db_.reset(db);
  if (!options.read_only) store->committer_ = std::thread([p = store.get()] { p->CommitLoop(); });
  return store;
}

RocksDbEventStore::~RocksDbEventStore() { Close(); }

void RocksDbEventStore::Close() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (committer_.joinable()) committer_.join();
  if (db_) {
    // The memtable goes to a table file here, so the next Open replays no
    // log: a zero-downtime upgrade waits for that Open.
    if (!options_.read_only) {
      db_->FlushWAL(true).PermitUncheckedError();
      rocksdb::FlushOptions fo;
      fo.wait = true;
      db_->Flush(fo).PermitUncheckedError();
    }
    db_->Close().PermitUncheckedError();
  }
}

Status RocksDbEventStore::Encode(AppendRequest req, Pending* p) {
  p->session_id = std::move(req.session_id);
  p->expected_version = req.expected_version;
  p->erase = req.erase;
  if (req.erase) return absl::OkStatus();
  const std::string& sid = p->session_id;
  if (!sid.empty()) {
    uint64_t seq = req.expected_version;
    if (!req.event_json.empty() && req.event_json.size() != req.events.size())
      return absl::InvalidArgumentError("append: event_json does not match events");
    p->puts.reserve(4);
    p->event_puts.reserve(req.events.size());
    for (size_t i = 0; i < req.events.size(); ++i) {
      const model::Event& e = req.events[i];
      if (e.seq != seq + 1) return absl::InvalidArgumentError("append: events are not contiguous");
      seq = e.seq;
      p->event_puts.emplace_back(
          EventKey(sid, e.seq),
          req.event_json.empty() ? std::make_shared<const std::string>(model::EventToJsonString(e))
                                 : std::move(req.event_json[i]));
    }
    p->new_version = seq;
    // The version record also names the owner, so an authorization check on
    // a session that is not in memory costs one read (Head).
    std::string vbytes;
    PutBigEndian64(&vbytes, seq);
    vbytes += req.meta.user_id;
    p->puts.emplace_back(VersionKey(sid), std::move(vbytes));
    p->puts.emplace_back(MetaKey(sid), json::serialize(SessionMetaToJson(req.meta)));
    if (req.snapshot) p->puts.emplace_back(SnapshotKey(sid), SnapshotToJson(*req.snapshot));
  } else if (!req.events.empty()) {
    return absl::InvalidArgumentError("append: events without a session");
  }
  if (req.idempotency) {
    p->puts.emplace_back(IdemPrefix(req.idempotency->scope) + req.idempotency->key,
                         Timestamped(req.idempotency->response));
  }
  if (req.intake_add)
    p->puts.emplace_back(IntakeKey(req.intake_add->seq), IntakeValue(*req.intake_add));
  // One process owns this store: its entries are never taken over, and its
  // actors apply each session's entries in order.
  if (req.intake_done) p->deletes.push_back(IntakeKey(req.intake_done->seq));
  if (req.user_usage && !req.user_usage->delta.empty()) {
    p->merges.emplace_back(UsageKey(req.user_usage->user_id),
                           json::serialize(UsageToJson(req.user_usage->delta)));
  }
  if (req.request_status) {
    p->puts.emplace_back(RequestKey(req.request_status->session_id, req.request_status->request_id),
                         Timestamped(req.request_status->record));
  }
  return absl::OkStatus();
}

Status RocksDbEventStore::Health() const {
  std::lock_guard<std::mutex> l(mu_);
  return failed_.ok() ? low_space_ : failed_;
}

void RocksDbEventStore::Append(AppendRequest req, Done done) {
  if (options_.read_only) {
    done(absl::FailedPreconditionError("store opened read-only"));
    return;
  }
  Pending p;
  if (Status st = Encode(std::move(req), &p); !st.ok()) {
    done(std::move(st));
    return;
  }
  p.done = std::move(done);
  Status refused;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) {
      refused = absl::UnavailableError("store is shutting down");
    } else if (!failed_.ok()) {
      refused = failed_;
    } else if (queue_.size() >= options_.queue_limit) {
      refused = absl::ResourceExhaustedError("commit queue is full");
    } else {
      queue_.push_back(std::move(p));
      metrics_.queue_depth->Set(static_cast<int64_t>(queue_.size()));
      cv_.notify_one();
      return;
    }
  }
  // Refused: answer on the caller's thread, outside the lock.
  p.done(std::move(refused));
}

StatusOr<uint64_t> RocksDbEventStore::StoredVersion(const std::string& sid) {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), VersionKey(sid), &v);
  if (s.IsNotFound()) return uint64_t{0};
  if (!s.ok()) return FromRocks(s, "read version");
  return GetBigEndian64(v);
}

Status RocksDbEventStore::Stage(const Pending& p, rocksdb::WriteBatch* batch,
                                std::unordered_map<std::string, uint64_t>* versions) {
  if (p.session_id.empty()) {  // intake bookkeeping only: no session, no version
    for (const auto& [k, v] : p.puts) batch->Put(k, v);
    for (const auto& k : p.deletes) batch->Delete(k);
    for (const auto& [k, v] : p.merges) batch->Merge(k, v);
    return absl::OkStatus();
  }
  auto it = versions->find(p.session_id);
  uint64_t current;
  if (it != versions->end()) {
    current = it->second;
  } else {
    auto v = StoredVersion(p.session_id);
    if (!v.ok()) return v.status();
    current = *v;
  }
  if (p.erase) {
    batch->Delete(MetaKey(p.session_id));
    batch->Delete(VersionKey(p.session_id));
    batch->Delete(SnapshotKey(p.session_id));
    const std::string ep = EventPrefix(p.session_id);
    batch->DeleteRange(ep, PrefixEnd(ep));
    const std::string ip = IdemPrefix(p.session_id);
    batch->DeleteRange(ip, PrefixEnd(ip));
    const std::string rp = RequestPrefix(p.session_id);
    batch->DeleteRange(rp, PrefixEnd(rp));
    (*versions)[p.session_id] = 0;
    return absl::OkStatus();
  }
  if (current != p.expected_version) {
    return absl::AbortedError("version conflict: expected " + std::to_string(p.expected_version) +
                              ", stored " + std::to_string(current));
  }
  for (const auto& [k, v] : p.event_puts) batch->Put(k, *v);
  for (const auto& [k, v] : p.puts) batch->Put(k, v);
  for (const auto& k : p.deletes) batch->Delete(k);
  for (const auto& [k, v] : p.merges) batch->Merge(k, v);
  (*versions)[p.session_id] = p.new_version;
  return absl::OkStatus();
}

void RocksDbEventStore::CommitLoop() {
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  for (;;) {
    std::vector<Pending> batch;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      const size_t n = std::min(queue_.size(), options_.max_batch);
      batch.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      metrics_.queue_depth->Set(static_cast<int64_t>(queue_.size()));
    }
    const auto start = std::chrono::steady_clock::now();
    rocksdb::WriteBatch wb;
    std::unordered_map<std::string, uint64_t> versions;
    std::vector<Status> results;
    results.reserve(batch.size());
    for (const auto& p : batch) {
      // A refused append is rolled back so it leaves nothing behind. Stage
      // changes `versions` only when it succeeds, so nothing needs undoing
      // there (it used to be copied for every append: quadratic in a
      // backlog of max_batch appends).
      wb.SetSavePoint();
      Status st = Stage(p, &wb, &versions);
      if (st.ok()) {
        wb.PopSavePoint().PermitUncheckedError();
      } else {
        wb.RollbackToSavePoint().PermitUncheckedError();
      }
      results.push_back(std::move(st));
    }
    Status write_status;
    {
      std::lock_guard<std::mutex> l(mu_);
      write_status = failed_;  // appends queued before an earlier failure
    }
    if (write_status.ok() && wb.Count() > 0) {
      // A full disk must never reach RocksDB: Debian's build asserts (aborts)
      // in its WAL writer after a failed append. Refuse while space is short;
      // it recovers by itself when space is freed.
      struct statvfs fs;
      Status space;
      if (::statvfs(options_.path.c_str(), &fs) == 0) {
        const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
        if (free_bytes < options_.min_free_bytes + wb.GetDataSize())
          space = absl::UnavailableError("disk nearly full: " + std::to_string(free_bytes) +
                                         " bytes free, store.min_free_bytes is " +
                                         std::to_string(options_.min_free_bytes));
      }
      {
        std::lock_guard<std::mutex> l(mu_);
        low_space_ = space;
      }
      if (!space.ok()) {
        write_status = space;
        metrics_.commit_errors->Inc();
      }
    }
    if (write_status.ok() && wb.Count() > 0) {
      rocksdb::Status s = db_->Write(wo, &wb);
      if (!s.ok()) {
        metrics_.commit_errors->Inc();
        LogError("store commit failed; refusing writes until restarted",
                 {{"error", s.ToString()}, {"batch", batch.size()}});
        write_status = absl::UnavailableError("storage failed (" + s.ToString() +
                                              "); writes are refused until persona restarts");
        std::lock_guard<std::mutex> l(mu_);
        failed_ = write_status;
      } else {
        metrics_.fsyncs->Inc();
      }
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    metrics_.commit_seconds->Observe(secs);
    metrics_.batch_size->Observe(static_cast<double>(batch.size()));
    for (size_t i = 0; i < batch.size(); ++i) {
      Status st = results[i].ok() ? write_status : results[i];
      if (st.ok()) metrics_.appends->Inc();
      batch[i].done(std::move(st));
    }
  }
}

StatusOr<LoadedSession> RocksDbEventStore::Load(std::string_view session_id) {
  LoadedSession out;
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), MetaKey(session_id), &v);
  if (s.IsNotFound()) return absl::NotFoundError("no such session");
  if (!s.ok()) return FromRocks(s, "read session");
  auto parsed = ParseJson(v);
  if (!parsed.ok()) return absl::DataLossError("session meta is corrupt");
  auto meta = SessionMetaFromJson(*parsed);
  if (!meta.ok()) return meta.status();
  out.meta = std::move(*meta);
  uint64_t after = 0;
  s = db_->Get(rocksdb::ReadOptions(), SnapshotKey(session_id), &v);
  if (s.ok()) {
    auto sn = SnapshotFromJson(v);
    if (!sn.ok()) return sn.status();
    after = sn->seq;
    out.snapshot = std::move(*sn);
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "read snapshot");
  }
  auto tail = ReadEvents(session_id, after, SIZE_MAX);
  if (!tail.ok()) return tail.status();
  out.tail = std::move(*tail);
  const uint64_t last = out.tail.empty() ? after : out.tail.back().seq;
  if (last != out.meta.version) {
    return absl::DataLossError("session " + std::string(session_id) + ": events end at " +
                               std::to_string(last) + " but version is " +
                               std::to_string(out.meta.version));
  }
  return out;
}

StatusOr<std::vector<model::Event>> RocksDbEventStore::ReadEvents(std::string_view session_id,
                                                                  uint64_t after, size_t limit) {
  std::vector<model::Event> out;
  const std::string prefix = EventPrefix(session_id);
  const std::string end = PrefixEnd(prefix);
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(EventKey(session_id, after + 1)); it->Valid() && out.size() < limit; it->Next()) {
    auto e = model::EventFromJsonString(std::string_view(it->value().data(), it->value().size()));
    if (!e.ok()) return absl::DataLossError("corrupt event: " + std::string(e.status().message()));
    out.push_back(std::move(*e));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "read events");
  return out;
}

StatusOr<std::vector<model::Event>> RocksDbEventStore::ReadEventsBackward(
    std::string_view session_id, uint64_t before, size_t limit,
    const std::vector<std::string_view>& types) {
  std::vector<model::Event> out;
  const std::string prefix = EventPrefix(session_id);
  rocksdb::ReadOptions ro;
  rocksdb::Slice lower(prefix);
  ro.iterate_lower_bound = &lower;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  if (before == 0) return out;
  for (it->SeekForPrev(EventKey(session_id, before - 1)); it->Valid() && out.size() < limit;
       it->Prev()) {
    if (!it->key().starts_with(prefix)) break;
    auto e = model::EventFromJsonString(std::string_view(it->value().data(), it->value().size()));
    if (!e.ok()) return absl::DataLossError("corrupt event: " + std::string(e.status().message()));
    bool wanted = types.empty();
    for (auto t : types) wanted = wanted || e->type == t;
    if (wanted) out.push_back(std::move(*e));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "read events");
  return out;
}

StatusOr<std::optional<std::string>> RocksDbEventStore::GetIdempotent(
    std::string_view session_scope, std::string_view key) {
  std::string v;
  const std::string k = IdemPrefix(session_scope) + std::string(key);
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), k, &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "read idempotency key");
  if (v.size() < 8) return absl::DataLossError("corrupt idempotency record");
  const int64_t at = static_cast<int64_t>(GetBigEndian64(v));
  if (NowMillis() - at > options_.idempotency_ttl_ms) return std::optional<std::string>();
  return std::optional<std::string>(v.substr(8));
}

StatusOr<SessionHead> RocksDbEventStore::Head(std::string_view session_id) {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), VersionKey(session_id), &v);
  if (s.IsNotFound()) return absl::NotFoundError("no such session");
  if (!s.ok()) return FromRocks(s, "read version");
  if (v.size() < 8) return absl::DataLossError("corrupt version record");
  SessionHead head;
  head.version = GetBigEndian64(v);
  head.user_id = v.substr(8);
  if (head.user_id.empty()) {
    // Written before version records named their owner: read the metadata.
    std::string m;
    s = db_->Get(rocksdb::ReadOptions(), MetaKey(session_id), &m);
    if (s.IsNotFound()) return absl::NotFoundError("no such session");
    if (!s.ok()) return FromRocks(s, "read metadata");
    auto parsed = ParseJson(m);
    if (!parsed.ok()) return absl::DataLossError("corrupt session metadata");
    auto meta = SessionMetaFromJson(*parsed);
    if (!meta.ok()) return meta.status();
    head.user_id = meta->user_id;
  }
  return head;
}

Status RocksDbEventStore::ScanIntake(uint64_t after, const std::function<bool(IntakeEntry)>& fn) {
  rocksdb::ReadOptions ro;
  const std::string end = "q;";
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(IntakeKey(after + 1)); it->Valid(); it->Next()) {
    IntakeEntry e;
    if (Status st = DecodeIntake(std::string_view(it->key().data(), it->key().size()),
                                 std::string_view(it->value().data(), it->value().size()), &e);
        !st.ok())
      return st;
    if (!fn(std::move(e))) break;
  }
  if (!it->status().ok()) return FromRocks(it->status(), "read intake");
  return absl::OkStatus();
}

StatusOr<std::vector<IntakeEntry>> RocksDbEventStore::ClaimIntake(size_t limit) {
  std::lock_guard<std::mutex> l(claim_mu_);
  if (!claim_through_) {  // the first claim: everything the previous run left
    auto last = LastIntakeSeq();
    if (!last.ok()) return last.status();
    claim_through_ = *last;
  }
  std::vector<IntakeEntry> out;
  Status st = ScanIntake(claimed_, [&](IntakeEntry e) {
    if (e.seq > *claim_through_ || out.size() >= limit) return false;
    out.push_back(std::move(e));
    return true;
  });
  if (!st.ok()) return st;
  claimed_ = out.empty() ? *claim_through_ : out.back().seq;
  return out;
}

StatusOr<std::optional<IntakeEntry>> RocksDbEventStore::FindIntake(std::string_view session_id,
                                                                   std::string_view request_id) {
  // A scan: the engine asks only shared stores (its applier knows every
  // pending request of a store one process owns).
  std::optional<IntakeEntry> found;
  Status st = ScanIntake(0, [&](IntakeEntry e) {
    if (e.session_id == session_id && e.request_id == request_id) found = std::move(e);
    return !found;
  });
  if (!st.ok()) return st;
  return found;
}

StatusOr<uint64_t> RocksDbEventStore::LastIntakeSeq() {
  rocksdb::ReadOptions ro;
  const std::string lower = "q:";
  rocksdb::Slice lo(lower);
  ro.iterate_lower_bound = &lo;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  it->SeekForPrev("q;");
  if (!it->status().ok()) return FromRocks(it->status(), "read intake");
  if (!it->Valid() || !it->key().starts_with("q:") || it->key().size() != 10) return uint64_t{0};
  return GetBigEndian64(std::string_view(it->key().data() + 2, 8));
}

StatusOr<std::optional<std::string>> RocksDbEventStore::GetRequestStatus(
    std::string_view session_id, std::string_view request_id) {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), RequestKey(session_id, request_id), &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "read request status");
  if (v.size() < 8) return absl::DataLossError("corrupt request status");
  return std::optional<std::string>(v.substr(8));
}

StatusOr<Usage> RocksDbEventStore::UserUsage(std::string_view user_id) {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), UsageKey(user_id), &v);
  if (s.IsNotFound()) return Usage{};
  if (!s.ok()) return FromRocks(s, "read usage");
  auto parsed = ParseJson(v);
  if (!parsed.ok()) return absl::DataLossError("corrupt usage record");
  return UsageFromJson(*parsed);
}

Status RocksDbEventStore::ForEachSession(const std::function<bool(const SessionMeta&)>& fn) {
  rocksdb::ReadOptions ro;
  const std::string end = "m;";
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek("m:"); it->Valid(); it->Next()) {
    auto parsed = ParseJson(std::string_view(it->value().data(), it->value().size()));
    if (!parsed.ok()) return absl::DataLossError("corrupt session meta");
    auto meta = SessionMetaFromJson(*parsed);
    if (!meta.ok()) return meta.status();
    if (!fn(*meta)) break;
  }
  return FromRocks(it->status(), "scan sessions");
}

Status RocksDbEventStore::SaveMqttSessions(
    const std::vector<std::pair<std::string, std::optional<std::string>>>& records) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  rocksdb::WriteBatch batch;
  for (const auto& [key, record] : records) {
    // Only this run's records, or new ones (the same rule as PostgreSQL's).
    std::string v;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), MqttSessionKey(key), &v);
    if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "read mqtt session");
    if (s.ok() && !v.starts_with(run_id_ + "\n")) continue;
    if (record) {
      batch.Put(MqttSessionKey(key), run_id_ + "\n" + std::to_string(now) + "\n" + *record);
    } else if (s.ok()) {
      batch.Delete(MqttSessionKey(key));
    }
  }
  // Not synced: a crash loses at most the last writes' cursor progress, and
  // those events come again (QoS 1 is at-least-once); Close() flushes.
  return FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "write mqtt sessions");
}

StatusOr<std::optional<std::string>> RocksDbEventStore::TakeMqttSession(std::string_view key) {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), MqttSessionKey(key), &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "read mqtt session");
  const size_t a = v.find('\n');
  const size_t b = a == std::string::npos ? a : v.find('\n', a + 1);
  if (b == std::string::npos) return absl::DataLossError("corrupt mqtt session record");
  // This run's own record describes a session its broker ended.
  if (std::string_view(v).substr(0, a) == run_id_) return std::optional<std::string>();
  int64_t written = 0;
  const std::string_view ts = std::string_view(v).substr(a + 1, b - a - 1);
  std::from_chars(ts.data(), ts.data() + ts.size(), written);
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  if (now - written > options_.mqtt_session_ttl_ms) return std::optional<std::string>();
  std::string record = v.substr(b + 1);
  s = db_->Put(rocksdb::WriteOptions(), MqttSessionKey(key),
               run_id_ + "\n" + std::to_string(now) + "\n" + record);
  if (!s.ok()) return FromRocks(s, "take mqtt session");
  return std::optional<std::string>(std::move(record));
}

}  // namespace persona::store
