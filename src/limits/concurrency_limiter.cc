#include "limits/concurrency_limiter.h"

#include <algorithm>
#include <cmath>

namespace persona::limits {

ConcurrencyLimiter::ConcurrencyLimiter(ConcurrencyOptions options, Clock clock)
    : options_(options), clock_(std::move(clock)), limit_(options.initial_limit) {
  interval_start_ = NowNs();
}

int64_t ConcurrencyLimiter::NowNs() const {
  if (clock_) return clock_();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool ConcurrencyLimiter::TryAcquire() {
  if (!options_.enabled) return true;
  const int64_t n = inflight_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n <= limit_.load(std::memory_order_relaxed)) {
    if (n == limit_.load(std::memory_order_relaxed))
      saturated_.store(true, std::memory_order_relaxed);
    return true;
  }
  inflight_.fetch_sub(1, std::memory_order_relaxed);
  saturated_.store(true, std::memory_order_relaxed);
  MaybeAdjust(NowNs());  // an interval with no completions must still end
  return false;
}

void ConcurrencyLimiter::Release(int64_t admitted_ns) {
  if (!options_.enabled) return;
  inflight_.fetch_sub(1, std::memory_order_relaxed);
  completions_.fetch_add(1, std::memory_order_relaxed);
  const int64_t now = NowNs();
  if (admitted_ns >= last_cut_ns_.load(std::memory_order_relaxed)) {
    const int64_t ns = now - admitted_ns;
    int64_t cur = min_latency_ns_.load(std::memory_order_relaxed);
    while (ns < cur && !min_latency_ns_.compare_exchange_weak(cur, ns, std::memory_order_relaxed)) {
    }
  }
  MaybeAdjust(now);
}

void ConcurrencyLimiter::MaybeAdjust(int64_t now) {
  if (now - interval_start_.load(std::memory_order_relaxed) < options_.interval.count()) return;
  std::unique_lock<std::mutex> l(adjust_mu_, std::try_to_lock);
  if (!l.owns_lock()) return;  // another thread is adjusting
  if (now - interval_start_.load(std::memory_order_relaxed) < options_.interval.count()) return;
  const int64_t fastest = min_latency_ns_.exchange(INT64_MAX, std::memory_order_relaxed);
  const bool saturated = saturated_.exchange(false, std::memory_order_relaxed);
  const int64_t elapsed = now - interval_start_.load(std::memory_order_relaxed);
  interval_start_.store(now, std::memory_order_relaxed);
  rates_[rate_next_++ % std::size(rates_)] =
      static_cast<double>(completions_.exchange(0, std::memory_order_relaxed)) * 1e9 /
      static_cast<double>(elapsed);
  const double best_rate = *std::max_element(std::begin(rates_), std::end(rates_));
  const auto little = static_cast<int64_t>(
      std::ceil(best_rate * static_cast<double>(options_.target.count()) * 1e-9));
  last_fastest_ns_.store(fastest == INT64_MAX ? 0 : fastest, std::memory_order_relaxed);
  const int64_t limit = limit_.load(std::memory_order_relaxed);
  int64_t next = limit;
  if (fastest == INT64_MAX) {
    // Nothing admitted since the last cut completed: no evidence either way.
  } else if (fastest > options_.target.count()) {
    next = std::max(
        little, static_cast<int64_t>(std::floor(static_cast<double>(limit) * options_.decrease)));
    if (next < limit) last_cut_ns_.store(now, std::memory_order_relaxed);
    next = std::min(next, limit);
  } else if (saturated) {
    next =
        limit + std::max<int64_t>(1, static_cast<int64_t>(std::sqrt(static_cast<double>(limit))));
  }
  limit_.store(std::clamp(next, options_.min_limit, options_.max_limit), std::memory_order_relaxed);
}

}  // namespace persona::limits
