// RateLimiter: token buckets keyed by a string (a user id, a client address).
//
// Each key has a bucket of `burst` tokens refilled at `rate` per second; a
// request takes one token. Memory is bounded: at most `max_keys` buckets
// are kept; when full, buckets that have refilled completely (and so carry
// no information) are dropped first, then arbitrary ones, which at worst
// forgives a client some of its debt. A rate of 0 turns the limiter off.
// Thread-safe (16 shards).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/base/thread_annotations.h"

namespace persona::limits {

struct RateLimit {
  double rate = 0;   // tokens per second; 0 = no limit
  double burst = 0;  // bucket size (at least 1 when rate > 0)
};

class RateLimiter {
 public:
  using Clock = std::function<int64_t()>;  // nanoseconds, monotonic; injectable for tests

  explicit RateLimiter(RateLimit limit, size_t max_keys = 100000, Clock clock = nullptr);

  bool enabled() const { return limit_.rate > 0; }
  // Takes a token for `key`: 0 if allowed, otherwise the seconds until one
  // would be available (> 0).
  double Take(std::string_view key);
  size_t size() const;

 private:
  struct Bucket {
    double tokens;
    int64_t at_ns;
  };
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Bucket> buckets ABSL_GUARDED_BY(mu);
  };

  RateLimit limit_;
  size_t max_per_shard_;
  Clock clock_;
  std::array<Shard, kShards> shards_;
};

// "1.2.3.4:5678" → "1.2.3.4"; "[::1]:80" or "::1:80" forms → the address.
std::string_view AddressOnly(std::string_view remote);

}  // namespace persona::limits
