// The EventStore contract, one typed suite run against every backend
// (RocksDB's pattern of testing every implementation against one
// interface): RocksDB in a real temporary directory, PostgreSQL on a real
// server started by the test (store/postgres/testing.h). Then what only one
// backend has: a corrupt RocksDB directory; PostgreSQL's schema versions,
// connection failures, a server restart and two writers sharing a database.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "metrics/metrics.h"
#include "store/postgres/postgres_event_store.h"
#include "store/postgres/testing.h"
#include "store/rocksdb/rocksdb_event_store.h"

namespace persona::store {
namespace {

struct RocksDbBackend {
  static constexpr const char* kName = "RocksDb";
  std::filesystem::path dir;
  Status Init() {
    dir = std::filesystem::temp_directory_path() /
          ("persona-store-test-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir);
    return absl::OkStatus();
  }
  StatusOr<std::unique_ptr<EventStore>> Open() {
    RocksDbOptions opt;
    opt.path = dir.string();
    auto s = RocksDbEventStore::Open(opt);
    if (!s.ok()) return s.status();
    return std::unique_ptr<EventStore>(std::move(*s));
  }
  void Cleanup() { std::filesystem::remove_all(dir); }
};

struct PostgresBackend {
  static constexpr const char* kName = "Postgres";
  std::string url;
  Status Init() {
    auto server = testing::PgServer::Get();
    if (!server.ok()) return server.status();
    auto db = (*server)->NewDatabase();
    if (!db.ok()) return db.status();
    url = *db;
    return absl::OkStatus();
  }
  StatusOr<std::unique_ptr<EventStore>> Open() {
    PostgresOptions opt;
    opt.url = url;
    auto s = PostgresEventStore::Open(opt);
    if (!s.ok()) return s.status();
    return std::unique_ptr<EventStore>(std::move(*s));
  }
  void Cleanup() {}
};

model::Event TestEvent(uint64_t seq, std::string type = "message.user") {
  model::Event e;
  e.seq = seq;
  e.id = "id" + std::to_string(seq);
  e.type = std::move(type);
  e.at_ms = 1000 + seq;
  e.hlc = MakeHlc(1000 + seq, 0);
  e.origin = "user";
  e.data["text"] = "hello " + std::to_string(seq);
  return e;
}

// `n` events after `expected` for session `sid` of user "u".
AppendRequest TestAppend(const std::string& sid, uint64_t expected, uint64_t n) {
  AppendRequest r;
  r.session_id = sid;
  r.expected_version = expected;
  for (uint64_t i = 1; i <= n; ++i) r.events.push_back(TestEvent(expected + i));
  r.meta.session_id = sid;
  r.meta.user_id = "u";
  r.meta.version = expected + n;
  return r;
}

template <class Backend>
class EventStoreContract : public ::testing::Test {
 protected:
  void SetUp() override {
    Status st = backend_.Init();
    ASSERT_TRUE(st.ok()) << st;
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    backend_.Cleanup();
  }
  void Reopen() {
    store_.reset();
    auto s = backend_.Open();
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  Status AppendSync(AppendRequest req) {
    std::promise<Status> p;
    store_->Append(std::move(req), [&p](Status st) { p.set_value(st); });
    return p.get_future().get();
  }
  static AppendRequest Req(const std::string& sid, uint64_t expected, uint64_t n) {
    return TestAppend(sid, expected, n);
  }

  Backend backend_;
  std::unique_ptr<EventStore> store_;
};

struct BackendName {
  template <class T>
  static std::string GetName(int) {
    return T::kName;
  }
};
using Backends = ::testing::Types<RocksDbBackend, PostgresBackend>;
TYPED_TEST_SUITE(EventStoreContract, Backends, BackendName);

TYPED_TEST(EventStoreContract, AppendsAreGaplessAndSurviveReopen) {
  ASSERT_TRUE(this->AppendSync(this->Req("s1", 0, 3)).ok());
  ASSERT_TRUE(this->AppendSync(this->Req("s1", 3, 2)).ok());
  this->Reopen();
  auto loaded = this->store_->Load("s1");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->meta.version, 5u);
  ASSERT_EQ(loaded->tail.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(loaded->tail[i].seq, i + 1);
  auto page = this->store_->ReadEvents("s1", 2, 2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].seq, 3u);
  auto back = this->store_->ReadEventsBackward("s1", 5, 10, {});
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->size(), 4u);
  EXPECT_EQ((*back)[0].seq, 4u);
}

// The bytes a caller already serialised (event_json) are what is stored:
// the events read back equal the events, and a count that does not match is
// refused with nothing written.
TYPED_TEST(EventStoreContract, PreSerialisedEventsAreStoredAsGiven) {
  AppendRequest r = this->Req("s1", 0, 3);
  for (const auto& e : r.events)
    r.event_json.push_back(std::make_shared<const std::string>(model::EventToJsonString(e)));
  const std::vector<std::shared_ptr<const std::string>> sent = r.event_json;
  ASSERT_TRUE(this->AppendSync(std::move(r)).ok());
  auto page = this->store_->ReadEvents("s1", 0, 10);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(model::EventToJsonString((*page)[i]), *sent[i]);

  AppendRequest bad = this->Req("s1", 3, 2);
  bad.event_json.push_back(sent[0]);  // one for two events
  EXPECT_TRUE(absl::IsInvalidArgument(this->AppendSync(std::move(bad))));
  auto loaded = this->store_->Load("s1");
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->meta.version, 3u);
}

TYPED_TEST(EventStoreContract, StaleExpectedVersionIsRefusedAndWritesNothing) {
  ASSERT_TRUE(this->AppendSync(this->Req("s1", 0, 2)).ok());
  Status st = this->AppendSync(this->Req("s1", 1, 1));
  EXPECT_TRUE(absl::IsAborted(st)) << st;
  auto loaded = this->store_->Load("s1");
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->meta.version, 2u);
  EXPECT_EQ(loaded->tail.size(), 2u);
}

TYPED_TEST(EventStoreContract, ConcurrentAppendsShareCommits) {
  constexpr int kSessions = 200;
  std::vector<std::promise<Status>> done(kSessions);
  for (int i = 0; i < kSessions; ++i)
    this->store_->Append(this->Req("s" + std::to_string(i), 0, 3),
                         [&done, i](Status st) { done[i].set_value(st); });
  for (auto& d : done) ASSERT_TRUE(d.get_future().get().ok());
  size_t count = 0;
  ASSERT_TRUE(this->store_->ForEachSession([&](const SessionMeta&) { return ++count, true; }).ok());
  EXPECT_EQ(count, static_cast<size_t>(kSessions));
}

TYPED_TEST(EventStoreContract, SnapshotBoundsTheTail) {
  AppendRequest r = this->Req("s1", 0, 10);
  r.snapshot = Snapshot{8, {{"k", "v"}}};
  ASSERT_TRUE(this->AppendSync(std::move(r)).ok());
  auto loaded = this->store_->Load("s1");
  ASSERT_TRUE(loaded.ok());
  ASSERT_TRUE(loaded->snapshot.has_value());
  EXPECT_EQ(loaded->snapshot->seq, 8u);
  ASSERT_EQ(loaded->tail.size(), 2u);
  EXPECT_EQ(loaded->tail[0].seq, 9u);
}

TYPED_TEST(EventStoreContract, IdempotencyRecordsAreAtomicWithEventsAndErasedWithTheSession) {
  AppendRequest r = this->Req("s1", 0, 1);
  r.idempotency = AppendRequest::Idempotency{"s1", "k1", "response-1"};
  ASSERT_TRUE(this->AppendSync(std::move(r)).ok());
  auto got = this->store_->GetIdempotent("s1", "k1");
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, "response-1");
  // A refused append leaves no idempotency record behind.
  AppendRequest stale = this->Req("s1", 0, 1);
  stale.idempotency = AppendRequest::Idempotency{"s1", "k2", "response-2"};
  EXPECT_FALSE(this->AppendSync(std::move(stale)).ok());
  EXPECT_FALSE(this->store_->GetIdempotent("s1", "k2")->has_value());

  AppendRequest erase;
  erase.session_id = "s1";
  erase.erase = true;
  ASSERT_TRUE(this->AppendSync(std::move(erase)).ok());
  EXPECT_TRUE(absl::IsNotFound(this->store_->Load("s1").status()));
  EXPECT_FALSE(this->store_->GetIdempotent("s1", "k1")->has_value());
  EXPECT_TRUE(this->store_->ReadEvents("s1", 0, 100)->empty());
}

TYPED_TEST(EventStoreContract, SessionIdsThatArePrefixesDoNotMix) {
  ASSERT_TRUE(this->AppendSync(this->Req("ab", 0, 2)).ok());
  ASSERT_TRUE(this->AppendSync(this->Req("a", 0, 1)).ok());
  EXPECT_EQ(this->store_->ReadEvents("a", 0, 100)->size(), 1u);
  EXPECT_EQ(this->store_->Load("ab")->tail.size(), 2u);
}

TYPED_TEST(EventStoreContract, IntakeEntriesLeaveAtomicallyWithTheirEvents) {
  ASSERT_TRUE(this->AppendSync(this->Req("s1", 0, 1)).ok());
  EXPECT_EQ(*this->store_->LastIntakeSeq(), 0u);
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    AppendRequest accept;  // no session: intake entry and pending status only
    accept.intake_add =
        IntakeEntry{seq, "payload-" + std::to_string(seq), "s1", "r" + std::to_string(seq)};
    accept.request_status =
        AppendRequest::RequestStatus{"s1", "r" + std::to_string(seq), "pending"};
    ASSERT_TRUE(this->AppendSync(std::move(accept)).ok());
  }
  EXPECT_EQ(*this->store_->SessionVersion("s1"), 1u);
  EXPECT_TRUE(absl::IsNotFound(this->store_->SessionVersion("nope").status()));
  // Applying r1 appends its events, deletes its entry and records the result
  // in one write; a refused append (stale version) changes none of them.
  AppendRequest stale = this->Req("s1", 0, 1);
  stale.intake_done = AppendRequest::IntakeDone{2, "r2"};
  stale.request_status = AppendRequest::RequestStatus{"s1", "r2", "applied"};
  EXPECT_TRUE(absl::IsAborted(this->AppendSync(std::move(stale))));
  AppendRequest apply = this->Req("s1", 1, 2);
  apply.intake_done = AppendRequest::IntakeDone{1, "r1"};
  apply.request_status = AppendRequest::RequestStatus{"s1", "r1", "applied"};
  ASSERT_TRUE(this->AppendSync(std::move(apply)).ok());
  auto pending = this->store_->FindIntake("s1", "r2");
  ASSERT_TRUE(pending.ok() && pending->has_value());
  EXPECT_EQ((*pending)->payload, "payload-2");
  EXPECT_FALSE(this->store_->FindIntake("s1", "r1")->has_value());  // applied
  EXPECT_FALSE(this->store_->FindIntake("s2", "r2")->has_value());  // another session's id
  this->Reopen();
  // The new run claims what the previous one left, oldest first, once.
  auto left = this->store_->ClaimIntake(1);
  ASSERT_TRUE(left.ok()) << left.status();
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].seq, 2u);
  EXPECT_EQ((*left)[0].payload, "payload-2");
  EXPECT_EQ((*left)[0].session_id, "s1");
  EXPECT_EQ((*left)[0].request_id, "r2");
  left = this->store_->ClaimIntake(10);
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].seq, 3u);
  EXPECT_TRUE(this->store_->ClaimIntake(10)->empty());
  EXPECT_EQ(*this->store_->LastIntakeSeq(), 3u);
  // A claimed entry is applied as the claimer's own.
  AppendRequest apply3 = this->Req("s1", 3, 1);
  apply3.intake_done = AppendRequest::IntakeDone{3, "r3"};
  apply3.request_status = AppendRequest::RequestStatus{"s1", "r3", "applied"};
  // r2 is older and still waits: on a shared store r3 waits for it.
  if (this->store_->Shared()) {
    EXPECT_TRUE(absl::IsAborted(this->AppendSync(apply3)));
    AppendRequest apply2 = this->Req("s1", 3, 1);
    apply2.intake_done = AppendRequest::IntakeDone{2, "r2"};
    apply2.request_status = AppendRequest::RequestStatus{"s1", "r2", "applied"};
    ASSERT_TRUE(this->AppendSync(std::move(apply2)).ok());
    apply3 = this->Req("s1", 4, 1);
    apply3.intake_done = AppendRequest::IntakeDone{3, "r3"};
    apply3.request_status = AppendRequest::RequestStatus{"s1", "r3", "applied"};
  }
  ASSERT_TRUE(this->AppendSync(std::move(apply3)).ok());
  EXPECT_FALSE(this->store_->FindIntake("s1", "r3")->has_value());
  EXPECT_EQ(**this->store_->GetRequestStatus("s1", "r1"), "applied");
  EXPECT_EQ(**this->store_->GetRequestStatus("s1", "r2"),
            this->store_->Shared() ? "applied" : "pending");
  EXPECT_FALSE(this->store_->GetRequestStatus("s1", "r9")->has_value());
  // Erasing the session erases its request statuses.
  AppendRequest erase;
  erase.session_id = "s1";
  erase.erase = true;
  ASSERT_TRUE(this->AppendSync(std::move(erase)).ok());
  EXPECT_FALSE(this->store_->GetRequestStatus("s1", "r1")->has_value());
}

TYPED_TEST(EventStoreContract, UsageAddsUpAndErasesInOrderWithinABatch) {
  // Many appends in flight at once share commits; usage deltas all add up.
  std::vector<std::promise<Status>> done(50);
  for (int i = 0; i < 50; ++i) {
    AppendRequest r = this->Req("u" + std::to_string(i), 0, 1);
    r.user_usage = AppendRequest::UserUsage{"spender", Usage{1, 10, 20, 0.5}};
    this->store_->Append(std::move(r), [&done, i](Status st) { done[i].set_value(st); });
  }
  for (auto& d : done) ASSERT_TRUE(d.get_future().get().ok());
  auto u = this->store_->UserUsage("spender");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->calls, 50u);
  EXPECT_EQ(u->tokens_out, 1000u);
  EXPECT_DOUBLE_EQ(u->cost_usd, 25.0);
  EXPECT_EQ(this->store_->UserUsage("nobody")->calls, 0u);
  // An append, an erase and a re-creation of one session queued together
  // apply in order.
  std::promise<Status> a, b, c;
  this->store_->Append(this->Req("x", 0, 2), [&](Status st) { a.set_value(st); });
  AppendRequest erase;
  erase.session_id = "x";
  erase.erase = true;
  this->store_->Append(std::move(erase), [&](Status st) { b.set_value(st); });
  this->store_->Append(this->Req("x", 0, 1), [&](Status st) { c.set_value(st); });
  EXPECT_TRUE(a.get_future().get().ok());
  EXPECT_TRUE(b.get_future().get().ok());
  EXPECT_TRUE(c.get_future().get().ok());
  auto head = this->store_->Head("x");
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->version, 1u);
  EXPECT_EQ(head->user_id, "u");
  EXPECT_EQ(this->store_->ReadEvents("x", 0, 10)->size(), 1u);
  // Backward reads filter by type.
  ASSERT_TRUE(this->AppendSync(this->Req("y", 0, 3)).ok());
  auto only = this->store_->ReadEventsBackward("y", 100, 10, {"message.user"});
  ASSERT_TRUE(only.ok());
  EXPECT_EQ(only->size(), 3u);
  EXPECT_TRUE(this->store_->ReadEventsBackward("y", 100, 10, {"other.type"})->empty());
}

// ---------------------------------------------------------------- PostgreSQL only

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = testing::PgServer::Get();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *server;
    auto db = server_->NewDatabase();
    ASSERT_TRUE(db.ok()) << db.status();
    url_ = *db;
  }
  StatusOr<std::unique_ptr<PostgresEventStore>> Open(std::string url = "") {
    PostgresOptions opt;
    opt.url = url.empty() ? url_ : url;
    opt.connect_timeout_s = 2;
    return PostgresEventStore::Open(opt);
  }
  static Status AppendSync(EventStore& s, AppendRequest req) {
    std::promise<Status> p;
    s.Append(std::move(req), [&p](Status st) { p.set_value(st); });
    return p.get_future().get();
  }
  static AppendRequest Req(const std::string& sid, uint64_t expected, uint64_t n) {
    return TestAppend(sid, expected, n);
  }
  testing::PgServer* server_ = nullptr;
  std::string url_;
};

TEST_F(PostgresStoreTest, ADatabaseWithANewerSchemaIsRefused) {
  { ASSERT_TRUE(Open().ok()); }
  ASSERT_TRUE(testing::PgServer::Exec(url_, "INSERT INTO persona_schema VALUES (99)").ok());
  auto s = Open();
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(s.status())) << s.status();
  EXPECT_NE(s.status().message().find("version 99, newer than this persona knows (" +
                                      std::to_string(PostgresEventStore::kSchemaVersion) + ")"),
            std::string::npos)
      << s.status();
}

int64_t SkewedNow() { return NowMillis() + 5000; }

TEST_F(PostgresStoreTest, AClockSkewedBySecondsIsRefusedAtStartAndAnotherIsMeasured) {
  PostgresOptions opt;
  opt.url = url_;
  opt.node_fingerprint = "f";
  opt.now_ms = &SkewedNow;
  auto skewed = PostgresEventStore::Open(opt);
  ASSERT_FALSE(skewed.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(skewed.status())) << skewed.status();
  EXPECT_NE(skewed.status().message().find("ms ahead of the database server's, more than "
                                           "store.max_clock_skew_ms (1000)"),
            std::string::npos)
      << skewed.status();
  // It left no live node behind, and a tolerant limit lets it serve.
  EXPECT_EQ(*testing::PgServer::Value(url_, "SELECT count(*) FROM persona_nodes"), "0");
  opt.max_clock_skew_ms = 10000;
  auto tolerated = PostgresEventStore::Open(opt);
  ASSERT_TRUE(tolerated.ok()) << tolerated.status();
  EXPECT_NEAR(static_cast<double>((*tolerated)->ClockOffsetMs()), 5000, 200);
  auto in_sync = Open();
  ASSERT_TRUE(in_sync.ok());
  EXPECT_LT(std::abs((*in_sync)->ClockOffsetMs()), 200);
}

TEST_F(PostgresStoreTest, LiveNodesHaveDistinctNumbersAndAStoppedOnesIsReused) {
  auto a = Open();
  auto b = Open();
  auto c = Open();
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  std::set<uint32_t> numbers{(*a)->NodeNumber(), (*b)->NodeNumber(), (*c)->NodeNumber()};
  EXPECT_EQ(numbers, (std::set<uint32_t>{0, 1, 2}));
  const uint32_t freed = (*b)->NodeNumber();
  (*b)->Close();
  auto d = Open();
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)->NodeNumber(), freed);
}

TEST_F(PostgresStoreTest, TwoLiveNodesWithOneNumberAreNoticed) {
  PostgresOptions opt;
  opt.url = url_;
  opt.intake_lease_ms = 500;  // the keeper runs every 100 ms
  auto a = PostgresEventStore::Open(opt);
  auto b = PostgresEventStore::Open(opt);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_NE((*a)->NodeNumber(), (*b)->NodeNumber());
  metrics::Counter* seen = metrics::Default().GetCounter(
      "persona_node_number_collisions_total",
      "Times another live node was found with this node's number (HLC tie-breaker)");
  const uint64_t before = seen->value();
  // As if b had stalled past its lease and a node started meanwhile had
  // taken its number.
  ASSERT_TRUE(testing::PgServer::Exec(
                  url_, "UPDATE persona_nodes SET number = " + std::to_string((*a)->NodeNumber()))
                  .ok());
  for (int i = 0; i < 50 && seen->value() == before; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_GT(seen->value(), before);
}

TEST_F(PostgresStoreTest, TwoProcessesSpendOneBudgetAndADeadOnesHoldsCountAsSpent) {
  PostgresOptions opt;
  opt.url = url_;
  opt.intake_lease_ms = 500;  // the keeper runs every 100 ms
  auto a = PostgresEventStore::Open(opt);
  auto b = PostgresEventStore::Open(opt);
  ASSERT_TRUE(a.ok() && b.ok());
  // The ledger starts from what the user already spent.
  {
    AppendRequest req = Req("s", 0, 1);
    req.user_usage = AppendRequest::UserUsage{"u", Usage{1, 10, 10, 0.25}};
    ASSERT_TRUE(AppendSync(**a, std::move(req)).ok());
  }
  // 8 threads on each process reserve 1/128 at a time against a 1.0 limit:
  // 96 holds fit, whoever asks. (Amounts that are sums of powers of two add
  // up exactly in doubles.)
  constexpr double kHold = 1.0 / 128, kActual = 1.0 / 256;
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  std::mutex mu;
  std::vector<std::string> holds;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      PostgresEventStore* s = (t % 2 ? *a : *b).get();
      for (int i = 0; i < 10; ++i) {
        const std::string id = "h" + std::to_string(t) + "-" + std::to_string(i);
        auto ok = s->ReserveBudget("u", id, kHold, 1.0);
        ASSERT_TRUE(ok.ok()) << ok.status();
        if (*ok) {
          ++granted;
          std::lock_guard<std::mutex> l(mu);
          holds.push_back(id);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 96);
  // Settling releases the hold and books the actual cost: 96 × 1/256 spent
  // leaves room for 48 more holds.
  for (const auto& id : holds) ASSERT_TRUE((*a)->SettleBudget(id, kActual).ok());
  ASSERT_TRUE((*a)->SettleBudget(holds[0], kActual).ok());  // a second settle books nothing
  EXPECT_NEAR(std::stod(*testing::PgServer::Value(
                  url_, "SELECT spent_usd FROM persona_budget WHERE user_id = 'u'")),
              0.25 + 96 * kActual, 0);
  int more = 0;
  while (*(*b)->ReserveBudget("u", "b" + std::to_string(more), kHold, 1.0)) ++more;
  EXPECT_EQ(more, 48);
  // b stops without settling (as if it died): a counts b's holds as spent.
  (*b)->Close();
  for (int i = 0; i < 50; ++i) {
    if (*testing::PgServer::Value(url_, "SELECT count(*) FROM persona_budget_holds") == "0") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(*testing::PgServer::Value(url_, "SELECT count(*) FROM persona_budget_holds"), "0");
  EXPECT_NEAR(std::stod(*testing::PgServer::Value(
                  url_, "SELECT spent_usd FROM persona_budget WHERE user_id = 'u'")),
              1.0, 0);
  EXPECT_FALSE(*(*a)->ReserveBudget("u", "late", kHold, 1.0));
}

TEST_F(PostgresStoreTest, AnMqttSessionRecordBelongsToTheNodeThatTookItLast) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(
      (*a)->SaveMqttSessions({{"dev", std::string("v1")}, {"gone", std::string("x")}}).ok());
  EXPECT_EQ(*(*b)->TakeMqttSession("nobody"), std::nullopt);
  EXPECT_EQ(*(*b)->TakeMqttSession("dev"), std::optional<std::string>("v1"));
  // a no longer owns it: its later writes and deletes leave b's record alone.
  ASSERT_TRUE((*a)->SaveMqttSessions({{"dev", std::string("stale")}}).ok());
  ASSERT_TRUE((*a)->SaveMqttSessions({{"dev", std::nullopt}, {"gone", std::nullopt}}).ok());
  EXPECT_EQ(*testing::PgServer::Value(
                url_, "SELECT record FROM persona_mqtt_sessions WHERE client_key = 'dev'"),
            "v1");
  EXPECT_EQ(*testing::PgServer::Value(url_, "SELECT count(*) FROM persona_mqtt_sessions"), "1");
  ASSERT_TRUE((*b)->SaveMqttSessions({{"dev", std::string("v2")}}).ok());
  // Its owner does not restore it (its own broker ended that session).
  EXPECT_EQ(*(*b)->TakeMqttSession("dev"), std::nullopt);
  EXPECT_EQ(*(*a)->TakeMqttSession("dev"), std::optional<std::string>("v2"));
  // One untouched for the session expiry is gone.
  ASSERT_TRUE(testing::PgServer::Exec(url_,
                                      "UPDATE persona_mqtt_sessions SET updated_at = "
                                      "now() - interval '2 days'")
                  .ok());
  EXPECT_EQ(*(*b)->TakeMqttSession("dev"), std::nullopt);
}

TEST_F(PostgresStoreTest, WrongAddressDatabaseOrUserFailWithAClearMessage) {
  const std::string port = std::to_string(server_->port());
  for (const std::string& url : {std::string("postgresql://postgres@127.0.0.1:1/x"),
                                 "postgresql://postgres@127.0.0.1:" + port + "/no_such_database",
                                 "postgresql://nobody@127.0.0.1:" + port + "/postgres"}) {
    auto s = Open(url);
    ASSERT_FALSE(s.ok()) << url;
    EXPECT_TRUE(absl::IsUnavailable(s.status())) << s.status();
    EXPECT_NE(s.status().message().find("cannot connect to PostgreSQL"), std::string::npos);
  }
}

TEST_F(PostgresStoreTest, TwoWritersOnOneDatabaseNeverLoseOrDuplicateAWrite) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(AppendSync(**a, Req("shared", 0, 1)).ok());
  // Both writers race to append each next version: exactly one wins each.
  std::atomic<uint64_t> wins{0}, conflicts{0};
  auto writer = [&](EventStore* s) {
    for (int i = 0; i < 100; ++i) {
      auto head = s->Head("shared");
      ASSERT_TRUE(head.ok());
      Status st = AppendSync(*s, Req("shared", head->version, 1));
      if (st.ok()) {
        ++wins;
      } else {
        ASSERT_TRUE(absl::IsAborted(st)) << st;
        ++conflicts;
      }
    }
  };
  std::thread ta(writer, a->get()), tb(writer, b->get());
  ta.join();
  tb.join();
  auto loaded = (*a)->Load("shared");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->meta.version, 1 + wins.load());
  ASSERT_EQ(loaded->tail.size(), loaded->meta.version);
  for (size_t i = 0; i < loaded->tail.size(); ++i) EXPECT_EQ(loaded->tail[i].seq, i + 1);
  EXPECT_EQ(wins + conflicts, 200u);
  // Two writers creating sessions under one Idempotency-Key: one wins.
  AppendRequest c1 = Req("created-by-a", 0, 1);
  c1.idempotency = AppendRequest::Idempotency{"_", "create k1", "a's answer"};
  AppendRequest c2 = Req("created-by-b", 0, 1);
  c2.idempotency = AppendRequest::Idempotency{"_", "create k1", "b's answer"};
  ASSERT_TRUE(AppendSync(**a, std::move(c1)).ok());
  Status second = AppendSync(**b, std::move(c2));
  EXPECT_TRUE(absl::IsAlreadyExists(second)) << second;
  EXPECT_TRUE(absl::IsNotFound((*b)->Head("created-by-b").status()));
  EXPECT_EQ(**(*b)->GetIdempotent("_", "create k1"), "a's answer");
}

// An async request accepted by `s` for session `sid` (no events yet).
AppendRequest Accept(const std::string& sid, const std::string& rid) {
  AppendRequest r;
  r.intake_add = IntakeEntry{0, "{\"request_id\":\"" + rid + "\"}", sid, rid};
  return r;
}

// Applying `rid`: one event on `sid` after `expected`, the entry's deletion
// and its status, in one append.
AppendRequest ApplyReq(const std::string& sid, uint64_t expected, const std::string& rid) {
  AppendRequest r = TestAppend(sid, expected, 1);
  r.intake_done = AppendRequest::IntakeDone{0, rid};
  r.request_status = AppendRequest::RequestStatus{sid, rid, "applied"};
  return r;
}

TEST_F(PostgresStoreTest, AnApplierClaimsOnlyTheEntriesOfAProcessThatStopped) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(AppendSync(**a, Req("x", 0, 1)).ok());
  ASSERT_TRUE(AppendSync(**a, Accept("x", "x.1")).ok());
  ASSERT_TRUE(AppendSync(**a, Accept("x", "x.2")).ok());
  ASSERT_TRUE(AppendSync(**b, Accept("y", "y.1")).ok());
  // Every process sees every pending request; none claims a live one's.
  EXPECT_TRUE((*b)->FindIntake("x", "x.1")->has_value());
  EXPECT_TRUE((*a)->FindIntake("y", "y.1")->has_value());
  EXPECT_TRUE((*b)->ClaimIntake(100)->empty());
  EXPECT_TRUE((*a)->ClaimIntake(100)->empty());
  (*a)->Close();  // stopped: its entries are free at once
  auto got = (*b)->ClaimIntake(100);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].request_id, "x.1");  // in acceptance order
  EXPECT_EQ((*got)[1].request_id, "x.2");
  EXPECT_LT((*got)[0].seq, (*got)[1].seq);
  EXPECT_TRUE((*b)->ClaimIntake(100)->empty());
  // The claimer applies them as its own, in order.
  EXPECT_TRUE(absl::IsAborted(AppendSync(**b, ApplyReq("x", 1, "x.2"))));
  ASSERT_TRUE(AppendSync(**b, ApplyReq("x", 1, "x.1")).ok());
  ASSERT_TRUE(AppendSync(**b, ApplyReq("x", 2, "x.2")).ok());
  EXPECT_EQ(*(*b)->SessionVersion("x"), 3u);
  EXPECT_FALSE((*b)->FindIntake("x", "x.1")->has_value());
}

TEST_F(PostgresStoreTest, AnEntryTakenOverIsAppliedByTheClaimerOnly) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(AppendSync(**a, Req("x", 0, 1)).ok());
  ASSERT_TRUE(AppendSync(**a, Accept("x", "x.1")).ok());
  // a stalls past its lease (as in a long pause or a network partition).
  ASSERT_TRUE(testing::PgServer::Exec(url_,
                                      "UPDATE persona_nodes SET alive_until = now() - "
                                      "interval '1 second' WHERE node_id = '" +
                                          (*a)->node_id() + "'")
                  .ok());
  auto got = (*b)->ClaimIntake(100);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  // a wakes up and applies it: refused, nothing written.
  Status late = AppendSync(**a, ApplyReq("x", 1, "x.1"));
  EXPECT_TRUE(IsIntakeTaken(late)) << late;
  EXPECT_EQ(*(*a)->SessionVersion("x"), 1u);
  EXPECT_FALSE((*a)->GetRequestStatus("x", "x.1")->has_value());
  ASSERT_TRUE(AppendSync(**b, ApplyReq("x", 1, "x.1")).ok());
  EXPECT_EQ(*(*a)->SessionVersion("x"), 2u);
  EXPECT_EQ(**(*a)->GetRequestStatus("x", "x.1"), "applied");
}

TEST_F(PostgresStoreTest, ConcurrentClaimersNeverTakeTheSameEntry) {
  {
    auto a = Open();
    ASSERT_TRUE(a.ok());
    std::vector<std::promise<Status>> done(300);
    for (int i = 0; i < 300; ++i)
      (*a)->Append(Accept("s" + std::to_string(i % 7), "r" + std::to_string(i)),
                   [&done, i](Status st) { done[i].set_value(st); });
    for (auto& d : done) ASSERT_TRUE(d.get_future().get().ok());
  }  // a stops
  auto b = Open();
  auto c = Open();
  ASSERT_TRUE(b.ok() && c.ok());
  std::vector<std::string> by_b, by_c;
  auto claim = [](PostgresEventStore* s, std::vector<std::string>* out) {
    for (;;) {
      auto got = s->ClaimIntake(7);
      ASSERT_TRUE(got.ok()) << got.status();
      if (got->empty()) return;
      for (auto& e : *got) out->push_back(e.request_id);
    }
  };
  std::thread tb(claim, b->get(), &by_b);
  std::thread tc(claim, c->get(), &by_c);
  tb.join();
  tc.join();
  std::set<std::string> all(by_b.begin(), by_b.end());
  all.insert(by_c.begin(), by_c.end());
  EXPECT_EQ(all.size(), 300u);
  EXPECT_EQ(by_b.size() + by_c.size(), 300u);  // no entry twice
  EXPECT_EQ(std::set<std::string>(by_b.begin(), by_b.end()).size(), by_b.size());
  EXPECT_EQ(std::set<std::string>(by_c.begin(), by_c.end()).size(), by_c.size());
}

TEST_F(PostgresStoreTest, ADatabaseRestartRefusesThenRecoversWithoutLosingAcknowledgedWrites) {
  auto s = Open();
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(AppendSync(**s, Req("r", 0, 2)).ok());
  // After a restart the commit connection is dead; the next batch finds out
  // at BEGIN (nothing of it sent yet) and goes on a new connection.
  ASSERT_TRUE(server_->Restart().ok());
  ASSERT_TRUE(AppendSync(**s, Req("r", 2, 1)).ok());
  uint64_t version = 3;
  // While the database is down, writes are refused (Unavailable, with a
  // Retry-After), never acknowledged; they recover by themselves.
  ASSERT_TRUE(server_->Halt().ok());
  Status down = AppendSync(**s, Req("r", version, 1));
  EXPECT_TRUE(absl::IsUnavailable(down)) << down;
  EXPECT_GE(RetryAfterOf(down), 1);
  EXPECT_FALSE((*s)->Health().ok());
  ASSERT_TRUE(server_->Resume().ok());
  int refused = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    Status st = AppendSync(**s, Req("r", version, 1));
    if (st.ok()) break;
    ASSERT_TRUE(absl::IsUnavailable(st)) << st;
    ++refused;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_LE(refused, 1);
  EXPECT_TRUE((*s)->Health().ok());
  ++version;
  // Reads recover too (a broken pooled connection is replaced).
  StatusOr<LoadedSession> loaded = absl::UnavailableError("not yet");
  for (int i = 0; i < 10 && !loaded.ok(); ++i) loaded = (*s)->Load("r");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->meta.version, version);
  EXPECT_EQ(loaded->tail.size(), version);
}

TEST(RocksDbStoreOpen, CorruptDirectoryFailsWithAClearMessage) {
  auto dir =
      std::filesystem::temp_directory_path() / ("persona-corrupt-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    RocksDbOptions opt;
    opt.path = dir.string();
    auto s = RocksDbEventStore::Open(opt);
    ASSERT_TRUE(s.ok());
  }
  // Destroy the MANIFEST pointer.
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename() == "CURRENT") {
      std::ofstream(e.path(), std::ios::trunc) << "MANIFEST-999999\n";
    }
  }
  RocksDbOptions opt;
  opt.path = dir.string();
  auto s = RocksDbEventStore::Open(opt);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(dir.string()), std::string_view::npos) << s.status();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace persona::store
