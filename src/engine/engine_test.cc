// The engine with a real RocksDB store, the in-process bus and the built-in
// provider, for interleavings only a sync point can produce (issue 14's
// review). Everything else about the engine is tested through the real
// binary (tests/integration).
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "ai/builtin/builtin_provider.h"
#include "bus/local/local_bus.h"
#include "core/sync_point.h"
#include "store/rocksdb/rocksdb_event_store.h"

namespace persona::engine {
namespace {

// The I/O threads' stand-in: one worker running what the engine posts.
class Worker {
 public:
  Worker() : thread_([this] { Run(); }) {}
  ~Worker() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Executor executor() {
    return [this](std::function<void()> fn) {
      {
        std::lock_guard<std::mutex> l(mu_);
        queue_.push_back(std::move(fn));
      }
      cv_.notify_one();
    };
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      l.unlock();
      fn();
      l.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("persona-engine-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "schemas");
    store::RocksDbOptions o;
    o.path = (dir_ / "events").string();
    o.sync = false;
    auto s = store::RocksDbEventStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    auto schemas = model::LoadSchemas((dir_ / "schemas").string());
    ASSERT_TRUE(schemas.ok()) << schemas.status();
    schemas_ = *schemas;
  }
  void TearDown() override {
    sync_point::ClearAll();
    engine_.reset();
    store_->Close();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  // A new engine on the same store: nothing of the session is in memory.
  void StartEngine() {
    engine_.reset();
    engine_ = std::make_unique<Engine>(EngineOptions{}, store_.get(), &bus_, &provider_, schemas_,
                                       worker_.executor());
  }
  StatusOr<Reply> Wait(std::function<void(ReplyCallback)> op) {
    std::promise<StatusOr<Reply>> p;
    op([&p](StatusOr<Reply> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  StatusOr<Reply> Step(const std::string& sid, const std::string& text) {
    MessageRequest m;
    m.caller = auth::Caller::System();
    m.session_id = sid;
    m.text = text;
    return Wait([&](ReplyCallback done) { engine_->PostMessage(std::move(m), std::move(done)); });
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::RocksDbEventStore> store_;
  std::map<std::string, std::shared_ptr<const model::Schema>> schemas_;
  bus::LocalBus bus_;
  ai::BuiltinProvider provider_;
  Worker worker_;
  std::unique_ptr<Engine> engine_;
};

// A read that loads the session while a write commits must not put its
// older state over the newer one: before the fix, every later write to the
// session got a version conflict (409) until the state was evicted.
TEST_F(EngineTest, ASlowReadLoadCannotOverwriteAWriteCommittedMeanwhile) {
  StartEngine();
  CreateSessionRequest c;
  c.caller = auth::Caller::System();
  c.user_id = "u";
  auto created = Wait([&](ReplyCallback done) { engine_->CreateSession(c, std::move(done)); });
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string sid(created->body.at("session_id").as_string());
  StartEngine();  // the session is on disk only

  // The first load to reach the point (the read's) waits there until the
  // write has committed; later ones (the write's own load) pass.
  std::promise<void> read_loaded, write_done;
  std::shared_future<void> write_done_f = write_done.get_future().share();
  std::atomic<int> hits{0};
  sync_point::Set("Engine::EnsureLoaded:BeforeAssign", [&] {
    if (hits++ == 0) {
      read_loaded.set_value();
      write_done_f.wait();
    }
  });
  auto read = std::async(std::launch::async,
                         [&] { return engine_->GetProfileJson(auth::Caller::System(), sid); });
  read_loaded.get_future().wait();
  auto written = Step(sid, "My name is Alice");
  ASSERT_TRUE(written.ok()) << written.status();
  write_done.set_value();
  auto profile = read.get();
  ASSERT_TRUE(profile.ok()) << profile.status();
  sync_point::ClearAll();
  EXPECT_EQ(hits.load(), 2);  // both loads went through the point

  // The state in memory is the write's: the next write commits, and a read
  // sees both.
  auto next = Step(sid, "I live in Seoul");
  ASSERT_TRUE(next.ok()) << next.status();
  auto after = engine_->GetProfileJson(auth::Caller::System(), sid);
  ASSERT_TRUE(after.ok());
  EXPECT_NE(after->first.find("Alice"), std::string::npos) << after->first;
  EXPECT_NE(after->first.find("Seoul"), std::string::npos) << after->first;
}

}  // namespace
}  // namespace persona::engine
