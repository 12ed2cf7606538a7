#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "limits/concurrency_limiter.h"
#include "limits/rate_limiter.h"

namespace persona::limits {
namespace {

constexpr int64_t kMs = 1000000;

TEST(RateLimiterTest, BurstThenRate) {
  int64_t now = 0;
  RateLimiter rl({10, 5}, 1000, [&] { return now; });
  for (int i = 0; i < 5; ++i) EXPECT_EQ(rl.Take("a"), 0) << i;
  const double wait = rl.Take("a");
  EXPECT_GT(wait, 0.09);
  EXPECT_LE(wait, 0.1);
  EXPECT_EQ(rl.Take("b"), 0);  // another key has its own bucket
  now += 100 * kMs;            // one token back
  EXPECT_EQ(rl.Take("a"), 0);
  EXPECT_GT(rl.Take("a"), 0);
  now += 10000 * kMs;  // refills to the burst, not beyond
  for (int i = 0; i < 5; ++i) EXPECT_EQ(rl.Take("a"), 0);
  EXPECT_GT(rl.Take("a"), 0);
}

TEST(RateLimiterTest, OffWhenRateIsZero) {
  RateLimiter rl({0, 0});
  EXPECT_FALSE(rl.enabled());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(rl.Take("a"), 0);
  EXPECT_EQ(rl.size(), 0u);
}

TEST(RateLimiterTest, MemoryIsBoundedUnderAFloodOfKeys) {
  int64_t now = 0;
  RateLimiter rl({1, 1}, 160, [&] { return now; });
  for (int i = 0; i < 100000; ++i) rl.Take("addr-" + std::to_string(i));
  EXPECT_LE(rl.size(), 160u);
  // A key that is in debt and still tracked keeps its debt.
  RateLimiter small({1, 1}, 16 * 4, [&] { return now; });
  EXPECT_EQ(small.Take("victim"), 0);
  EXPECT_GT(small.Take("victim"), 0);
}

TEST(RateLimiterTest, AddressOnly) {
  EXPECT_EQ(AddressOnly("127.0.0.1:5555"), "127.0.0.1");
  EXPECT_EQ(AddressOnly("[::1]:80"), "::1");
  EXPECT_EQ(AddressOnly("::1:80"), "::1");
  EXPECT_EQ(AddressOnly("host"), "host");
}

TEST(RateLimiterTest, ConcurrentTakesNeverGrantMoreThanTheBucket) {
  int64_t now = 0;  // frozen: no refill during the race
  RateLimiter rl({1, 1000}, 1000, [&] { return now; });
  std::atomic<int> granted{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        if (rl.Take("k") == 0) granted.fetch_add(1);
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(granted.load(), 1000);
}

ConcurrencyOptions Opt() {
  ConcurrencyOptions o;
  o.initial_limit = 100;
  o.min_limit = 4;
  o.max_limit = 1000;
  o.target = std::chrono::milliseconds(10);
  o.interval = std::chrono::milliseconds(100);
  o.decrease = 0.5;
  return o;
}

TEST(ConcurrencyLimiterTest, ShedsBeyondTheLimit) {
  int64_t now = 0;
  ConcurrencyLimiter cl(Opt(), [&] { return now; });
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(cl.TryAcquire());
  EXPECT_FALSE(cl.TryAcquire());
  EXPECT_EQ(cl.inflight(), 100);
  cl.Release(now);
  EXPECT_TRUE(cl.TryAcquire());
}

TEST(ConcurrencyLimiterTest, StandingQueueCutsTheLimitOncePerRoundTrip) {
  int64_t now = 0;
  ConcurrencyLimiter cl(Opt(), [&] { return now; });
  std::vector<int64_t> admitted;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(cl.TryAcquire());
    admitted.push_back(now);
  }
  // Every request takes 50 ms (> target): at the end of the interval the limit halves.
  now += 50 * kMs;
  for (int i = 0; i < 50; ++i) cl.Release(admitted[i]);
  now += 60 * kMs;
  cl.Release(admitted[50]);
  EXPECT_EQ(cl.limit(), 50);
  // Requests admitted before the cut finish slowly too, but do not cut again.
  now += 110 * kMs;
  for (int i = 51; i < 100; ++i) cl.Release(admitted[i]);
  EXPECT_EQ(cl.limit(), 50);
  // New requests are fast: the limit grows again while demand reaches it.
  for (int round = 0; round < 5; ++round) {
    std::vector<int64_t> batch;
    while (cl.TryAcquire()) batch.push_back(now);
    now += 2 * kMs;
    for (auto t : batch) cl.Release(t);
    now += 100 * kMs;
    ASSERT_TRUE(cl.TryAcquire());
    cl.Release(now);
  }
  EXPECT_GT(cl.limit(), 50);
}

TEST(ConcurrencyLimiterTest, NeverBelowMinOrAboveMax) {
  int64_t now = 0;
  ConcurrencyOptions o = Opt();
  ConcurrencyLimiter cl(o, [&] { return now; });
  for (int round = 0; round < 50; ++round) {  // always slow
    ASSERT_TRUE(cl.TryAcquire());
    const int64_t t = now;
    now += 200 * kMs;
    cl.Release(t);
  }
  EXPECT_EQ(cl.limit(), o.min_limit);
  for (int round = 0; round < 500; ++round) {  // always fast and saturated
    std::vector<int64_t> batch;
    while (cl.TryAcquire()) batch.push_back(now);
    now += 101 * kMs;
    for (size_t i = 0; i < batch.size(); ++i) cl.Release(now - kMs);
  }
  EXPECT_EQ(cl.limit(), o.max_limit);
}

TEST(ConcurrencyLimiterTest, DisabledAdmitsEverything) {
  ConcurrencyOptions o = Opt();
  o.enabled = false;
  ConcurrencyLimiter cl(o);
  for (int i = 0; i < 10000; ++i) EXPECT_TRUE(cl.TryAcquire());
}

}  // namespace
}  // namespace persona::limits
