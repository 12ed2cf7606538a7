// The EventStore contract, run against the RocksDB backend in a real
// temporary directory.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>

#include "store/rocksdb/rocksdb_event_store.h"

namespace persona::store {
namespace {

class RocksDbStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("persona-store-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    RocksDbOptions opt;
    opt.path = dir_.string();
    auto s = RocksDbEventStore::Open(opt);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  Status AppendSync(AppendRequest req) {
    std::promise<Status> p;
    store_->Append(std::move(req), [&p](Status st) { p.set_value(st); });
    return p.get_future().get();
  }
  static model::Event Ev(uint64_t seq, std::string type = "message.user") {
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
  static AppendRequest Req(const std::string& sid, uint64_t expected, uint64_t n) {
    AppendRequest r;
    r.session_id = sid;
    r.expected_version = expected;
    for (uint64_t i = 1; i <= n; ++i) r.events.push_back(Ev(expected + i));
    r.meta.session_id = sid;
    r.meta.user_id = "u";
    r.meta.version = expected + n;
    return r;
  }

  std::filesystem::path dir_;
  std::unique_ptr<RocksDbEventStore> store_;
};

TEST_F(RocksDbStoreTest, AppendsAreGaplessAndSurviveReopen) {
  ASSERT_TRUE(AppendSync(Req("s1", 0, 3)).ok());
  ASSERT_TRUE(AppendSync(Req("s1", 3, 2)).ok());
  Reopen();
  auto loaded = store_->Load("s1");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->meta.version, 5u);
  ASSERT_EQ(loaded->tail.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(loaded->tail[i].seq, i + 1);
  auto page = store_->ReadEvents("s1", 2, 2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].seq, 3u);
  auto back = store_->ReadEventsBackward("s1", 5, 10, {});
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->size(), 4u);
  EXPECT_EQ((*back)[0].seq, 4u);
}

TEST_F(RocksDbStoreTest, StaleExpectedVersionIsRefusedAndWritesNothing) {
  ASSERT_TRUE(AppendSync(Req("s1", 0, 2)).ok());
  Status st = AppendSync(Req("s1", 1, 1));
  EXPECT_TRUE(absl::IsAborted(st)) << st;
  auto loaded = store_->Load("s1");
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->meta.version, 2u);
  EXPECT_EQ(loaded->tail.size(), 2u);
}

TEST_F(RocksDbStoreTest, ConcurrentAppendsShareCommits) {
  constexpr int kSessions = 200;
  std::vector<std::promise<Status>> done(kSessions);
  for (int i = 0; i < kSessions; ++i)
    store_->Append(Req("s" + std::to_string(i), 0, 3),
                   [&done, i](Status st) { done[i].set_value(st); });
  for (auto& d : done) ASSERT_TRUE(d.get_future().get().ok());
  size_t count = 0;
  ASSERT_TRUE(store_->ForEachSession([&](const SessionMeta&) { return ++count, true; }).ok());
  EXPECT_EQ(count, static_cast<size_t>(kSessions));
}

TEST_F(RocksDbStoreTest, SnapshotBoundsTheTail) {
  AppendRequest r = Req("s1", 0, 10);
  r.snapshot = Snapshot{8, {{"k", "v"}}};
  ASSERT_TRUE(AppendSync(std::move(r)).ok());
  auto loaded = store_->Load("s1");
  ASSERT_TRUE(loaded.ok());
  ASSERT_TRUE(loaded->snapshot.has_value());
  EXPECT_EQ(loaded->snapshot->seq, 8u);
  ASSERT_EQ(loaded->tail.size(), 2u);
  EXPECT_EQ(loaded->tail[0].seq, 9u);
}

TEST_F(RocksDbStoreTest, IdempotencyRecordsAreAtomicWithEventsAndErasedWithTheSession) {
  AppendRequest r = Req("s1", 0, 1);
  r.idempotency = AppendRequest::Idempotency{"s1", "k1", "response-1"};
  ASSERT_TRUE(AppendSync(std::move(r)).ok());
  auto got = store_->GetIdempotent("s1", "k1");
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, "response-1");
  // A refused append leaves no idempotency record behind.
  AppendRequest stale = Req("s1", 0, 1);
  stale.idempotency = AppendRequest::Idempotency{"s1", "k2", "response-2"};
  EXPECT_FALSE(AppendSync(std::move(stale)).ok());
  EXPECT_FALSE(store_->GetIdempotent("s1", "k2")->has_value());

  AppendRequest erase;
  erase.session_id = "s1";
  erase.erase = true;
  ASSERT_TRUE(AppendSync(std::move(erase)).ok());
  EXPECT_TRUE(absl::IsNotFound(store_->Load("s1").status()));
  EXPECT_FALSE(store_->GetIdempotent("s1", "k1")->has_value());
  EXPECT_TRUE(store_->ReadEvents("s1", 0, 100)->empty());
}

TEST_F(RocksDbStoreTest, SessionIdsThatArePrefixesDoNotMix) {
  ASSERT_TRUE(AppendSync(Req("ab", 0, 2)).ok());
  ASSERT_TRUE(AppendSync(Req("a", 0, 1)).ok());
  EXPECT_EQ(store_->ReadEvents("a", 0, 100)->size(), 1u);
  EXPECT_EQ(store_->Load("ab")->tail.size(), 2u);
}

TEST_F(RocksDbStoreTest, IntakeEntriesLeaveAtomicallyWithTheirEvents) {
  ASSERT_TRUE(AppendSync(Req("s1", 0, 1)).ok());
  EXPECT_EQ(*store_->LastIntakeSeq(), 0u);
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    AppendRequest accept;  // no session: intake entry and pending status only
    accept.intake_add = IntakeEntry{seq, "payload-" + std::to_string(seq)};
    accept.request_status =
        AppendRequest::RequestStatus{"s1", "r" + std::to_string(seq), "pending"};
    ASSERT_TRUE(AppendSync(std::move(accept)).ok());
  }
  EXPECT_EQ(*store_->SessionVersion("s1"), 1u);
  EXPECT_TRUE(absl::IsNotFound(store_->SessionVersion("nope").status()));
  // Applying r1 appends its events, deletes its entry and records the result
  // in one write; a refused append (stale version) changes none of them.
  AppendRequest stale = Req("s1", 0, 1);
  stale.intake_done = 2;
  stale.request_status = AppendRequest::RequestStatus{"s1", "r2", "applied"};
  EXPECT_TRUE(absl::IsAborted(AppendSync(std::move(stale))));
  AppendRequest apply = Req("s1", 1, 2);
  apply.intake_done = 1;
  apply.request_status = AppendRequest::RequestStatus{"s1", "r1", "applied"};
  ASSERT_TRUE(AppendSync(std::move(apply)).ok());
  Reopen();
  auto left = store_->ReadIntake(0, 10);
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 2u);
  EXPECT_EQ((*left)[0].seq, 2u);
  EXPECT_EQ((*left)[0].payload, "payload-2");
  EXPECT_EQ((*left)[1].seq, 3u);
  EXPECT_EQ(store_->ReadIntake(2, 10)->size(), 1u);
  EXPECT_EQ(*store_->LastIntakeSeq(), 3u);
  EXPECT_EQ(**store_->GetRequestStatus("s1", "r1"), "applied");
  EXPECT_EQ(**store_->GetRequestStatus("s1", "r2"), "pending");
  EXPECT_FALSE(store_->GetRequestStatus("s1", "r9")->has_value());
  // Erasing the session erases its request statuses.
  AppendRequest erase;
  erase.session_id = "s1";
  erase.erase = true;
  ASSERT_TRUE(AppendSync(std::move(erase)).ok());
  EXPECT_FALSE(store_->GetRequestStatus("s1", "r1")->has_value());
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
