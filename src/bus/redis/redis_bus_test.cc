// The Redis bus's ordering and gap filling, with Redis unreachable (every
// publish is still delivered to this node's subscribers) and a Backfill that
// stands in for the store. Across real nodes and a real Redis:
// tests/integration/test_cluster.py.
#include "bus/redis/redis_bus.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

namespace persona::bus {
namespace {

using namespace std::chrono_literals;

Payload P(uint64_t seq) { return std::make_shared<const std::string>(std::to_string(seq)); }

// The store: events 1 … version of one session. EventsAfter can be made to
// wait until released, or to fail.
class FakeStore final : public Backfill {
 public:
  StatusOr<std::vector<std::pair<uint64_t, Payload>>> EventsAfter(const std::string& session_id,
                                                                  uint64_t after,
                                                                  uint64_t upto) override {
    std::unique_lock<std::mutex> l(mu);
    ++reads;
    cv.notify_all();
    cv.wait(l, [&] { return !hold; });
    if (fail) return absl::UnavailableError("store down");
    std::vector<std::pair<uint64_t, Payload>> out;
    for (uint64_t s = after + 1; s <= (upto ? upto : version); ++s) out.emplace_back(s, P(s));
    return out;
  }
  StatusOr<std::pair<uint64_t, Payload>> Profile(const std::string&) override {
    return absl::NotFoundError("no profile");
  }
  StatusOr<std::unordered_map<std::string, uint64_t>> Versions(
      const std::vector<std::string>& ids) override {
    std::lock_guard<std::mutex> l(mu);
    batches.push_back(ids.size());
    std::unordered_map<std::string, uint64_t> out;
    for (const auto& id : ids) out.emplace(id, version);
    return out;
  }
  void WaitForReads(int n) {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(cv.wait_for(l, 5s, [&] { return reads >= n; }));
  }
  void Release() {
    std::lock_guard<std::mutex> l(mu);
    hold = false;
    cv.notify_all();
  }

  std::mutex mu;
  std::condition_variable cv;
  bool hold = false, fail = false;
  int reads = 0;
  uint64_t version = 0;
  std::vector<size_t> batches;
};

class Seen {
 public:
  Bus::Handler handler() {
    return [this](const Payload& p) {
      std::lock_guard<std::mutex> l(mu_);
      seqs_.push_back(std::stoull(*p));
      cv_.notify_all();
    };
  }
  std::vector<uint64_t> WaitFor(size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, 5s, [&] { return seqs_.size() >= n; });
    return seqs_;
  }
  std::vector<uint64_t> Now() {
    std::lock_guard<std::mutex> l(mu_);
    return seqs_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint64_t> seqs_;
};

std::unique_ptr<RedisBus> Unreachable(int poll_ms = 60000) {
  RedisBusOptions o;
  o.url = "redis://127.0.0.1:1";  // nothing listens: the bus runs down
  o.timeout_ms = 50;
  o.poll_ms = o.down_poll_ms = poll_ms;
  auto bus = RedisBus::Create(o);
  EXPECT_TRUE(bus.ok()) << bus.status();
  return std::move(*bus);
}

TEST(RedisBusTest, AGapIsFilledOffThePublishingThreadAndLaterMessagesWaitInOrder) {
  auto bus = Unreachable();
  FakeStore store;
  bus->SetBackfill(&store);
  Seen seen;
  auto sub = bus->Subscribe("session/s/events", seen.handler());
  bus->Publish("session/s/events", P(1), 1);
  EXPECT_EQ(seen.Now(), (std::vector<uint64_t>{1}));
  // Seq 2 was written by another node and is still on its way: the publish
  // of 3 returns at once although the store read is held up.
  store.hold = true;
  auto published = std::async(std::launch::async, [&] {
    bus->Publish("session/s/events", P(3), 3);
    bus->Publish("session/s/events", P(5), 5);  // after another gap
    bus->Publish("session/s/events", P(4), 4);  // out of order
  });
  ASSERT_EQ(published.wait_for(2s), std::future_status::ready);
  store.WaitForReads(1);
  EXPECT_EQ(seen.Now(), (std::vector<uint64_t>{1}));  // nothing ahead of the gap
  // Seq 2 arriving from Redis meanwhile is held too, and not delivered twice.
  bus->Publish("session/s/events", P(2), 2);
  store.Release();
  EXPECT_EQ(seen.WaitFor(5), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  // Done filling: the next message goes straight through.
  bus->Publish("session/s/events", P(6), 6);
  EXPECT_EQ(seen.WaitFor(6), (std::vector<uint64_t>{1, 2, 3, 4, 5, 6}));
  bus->Stop();
}

TEST(RedisBusTest, AStoreThatCannotFillAGapDoesNotHoldTheTopicForever) {
  auto bus = Unreachable();
  FakeStore store;
  store.fail = true;
  bus->SetBackfill(&store);
  Seen seen;
  auto sub = bus->Subscribe("session/s/events", seen.handler());
  bus->Publish("session/s/events", P(1), 1);
  bus->Publish("session/s/events", P(4), 4);
  bus->Publish("session/s/events", P(5), 5);
  EXPECT_EQ(seen.WaitFor(3), (std::vector<uint64_t>{1, 4, 5}));
  bus->Stop();
}

TEST(RedisBusTest, ThePollerAsksTheStoreForEveryWatchedSessionInBatches) {
  auto bus = Unreachable(/*poll_ms=*/50);
  FakeStore store;
  bus->SetBackfill(&store);
  constexpr size_t kTopics = RedisBus::kPollBatch + 20;
  std::vector<std::unique_ptr<Seen>> seen;
  std::vector<std::unique_ptr<Subscription>> subs;
  for (size_t i = 0; i < kTopics; ++i) {
    seen.push_back(std::make_unique<Seen>());
    const std::string topic = "session/s" + std::to_string(i) + "/events";
    subs.push_back(bus->Subscribe(topic, seen.back()->handler()));
    bus->Publish(topic, P(1), 1);
  }
  {
    std::lock_guard<std::mutex> l(store.mu);
    store.version = 3;  // every session moved on; the bus heard nothing
  }
  for (auto& s : seen) EXPECT_EQ(s->WaitFor(3), (std::vector<uint64_t>{1, 2, 3}));
  std::lock_guard<std::mutex> l(store.mu);
  // One query per kPollBatch sessions, not one per session.
  ASSERT_FALSE(store.batches.empty());
  EXPECT_EQ(*std::max_element(store.batches.begin(), store.batches.end()), RedisBus::kPollBatch);
  bus->Stop();
}

}  // namespace
}  // namespace persona::bus
