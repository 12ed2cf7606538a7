#include "limits/rate_limiter.h"

#include <algorithm>

namespace persona::limits {

RateLimiter::RateLimiter(RateLimit limit, size_t max_keys, Clock clock)
    : limit_(limit),
      max_per_shard_(std::max<size_t>(1, max_keys / kShards)),
      clock_(std::move(clock)) {
  if (limit_.burst < 1) limit_.burst = 1;
  if (!clock_) {
    clock_ = [] {
      return std::chrono::duration_cast<std::chrono::nanoseconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
          .count();
    };
  }
}

double RateLimiter::Take(std::string_view key) {
  if (!enabled()) return 0;
  const int64_t now = clock_();
  Shard& shard = shards_[std::hash<std::string_view>()(key) % kShards];
  std::lock_guard<std::mutex> l(shard.mu);
  auto it = shard.buckets.find(std::string(key));
  if (it == shard.buckets.end()) {
    if (shard.buckets.size() >= max_per_shard_) {
      for (auto b = shard.buckets.begin(); b != shard.buckets.end();) {
        const double refilled = b->second.tokens + limit_.rate * 1e-9 * (now - b->second.at_ns);
        b = refilled >= limit_.burst ? shard.buckets.erase(b) : std::next(b);
      }
      if (shard.buckets.size() >= max_per_shard_) shard.buckets.erase(shard.buckets.begin());
    }
    it = shard.buckets.emplace(std::string(key), Bucket{limit_.burst, now}).first;
  }
  Bucket& b = it->second;
  b.tokens = std::min(limit_.burst, b.tokens + limit_.rate * 1e-9 * (now - b.at_ns));
  b.at_ns = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return 0;
  }
  return (1 - b.tokens) / limit_.rate;
}

size_t RateLimiter::size() const {
  size_t n = 0;
  for (const auto& s : shards_) {
    std::lock_guard<std::mutex> l(s.mu);
    n += s.buckets.size();
  }
  return n;
}

std::string_view AddressOnly(std::string_view remote) {
  if (!remote.empty() && remote.front() == '[') {
    const size_t end = remote.find(']');
    return end == std::string_view::npos ? remote : remote.substr(1, end - 1);
  }
  const size_t colon = remote.rfind(':');
  if (colon == std::string_view::npos) return remote;
  // More than one colon without brackets: an IPv6 address with a port.
  return remote.substr(0, colon);
}

}  // namespace persona::limits
