// ConcurrencyLimiter: admission control for work that queues (chat steps,
// profile edits, session creation): an adaptive bound on how many may be in
// flight, so that under overload persona answers the excess 503 at once
// instead of queueing work it cannot finish in time.
//
// The signal is CoDel's (Nichols & Jacobson, "Controlling Queue Delay"): if
// even the fastest request completed in an interval took longer than
// `target`, a queue is standing and the limit may be too high. Every
// interval the controller either cuts the limit on a standing queue, or
// raises it (+√limit, at least 1) when demand reached the limit while the
// queue stayed short. A cut goes to ×`decrease`, but never below what
// Little's law says the recent throughput needs to wait no longer than
// `target` (the best completions per second over the last 10 s ×
// target): when the delay comes from elsewhere (the CPU busy with requests
// that are refused, a slow disk), fewer admissions would only lose
// throughput without making anything faster, and the limit must not
// collapse. After a cut, requests admitted before it are not counted (they
// queued under the old limit), as TCP waits a round trip after a loss
// before it cuts again.
//
// Gradient and Vegas limiters (Netflix's concurrency-limits, Envoy's
// adaptive concurrency filter) estimate a no-load latency instead; the
// minimum over an interval needs no estimate and no probing that pins the
// limit low. Written here because no Debian package offers one.
//
// The limit stays within [min_limit, max_limit]. Thread-safe; TryAcquire and
// Release are a few atomic operations, and one caller per interval takes a
// short lock to adjust the limit.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>

namespace persona::limits {

struct ConcurrencyOptions {
  bool enabled = true;
  int64_t initial_limit = 256;
  int64_t min_limit = 8;
  int64_t max_limit = 4096;
  std::chrono::nanoseconds target = std::chrono::milliseconds(10);
  std::chrono::nanoseconds interval = std::chrono::milliseconds(100);
  double decrease = 0.8;
};

class ConcurrencyLimiter {
 public:
  using Clock = std::function<int64_t()>;  // monotonic nanoseconds; injectable for tests

  explicit ConcurrencyLimiter(ConcurrencyOptions options, Clock clock = nullptr);

  // True if the request may start (then Release must follow, once, with
  // the NowNs() taken when it was admitted).
  bool TryAcquire();
  // A request admitted at `admitted_ns` (NowNs()) has finished. Time it
  // spent on remote work (a model call) is not queueing: pass
  // admitted_ns + that time, so only the rest is judged against `target`.
  void Release(int64_t admitted_ns);

  int64_t limit() const { return limit_.load(std::memory_order_relaxed); }
  int64_t inflight() const { return inflight_.load(std::memory_order_relaxed); }
  bool enabled() const { return options_.enabled; }
  int64_t NowNs() const;
  // The fastest completion of the last finished interval (ns; 0 if none).
  int64_t last_fastest_ns() const { return last_fastest_ns_.load(std::memory_order_relaxed); }

 private:
  void MaybeAdjust(int64_t now);

  const ConcurrencyOptions options_;
  Clock clock_;  // null: steady_clock, called directly on the hot path
  // Written by every admission and completion: each on its own cache line,
  // so the two I/O threads do not take turns with the whole object.
  alignas(64) std::atomic<int64_t> inflight_{0};
  alignas(64) std::atomic<int64_t> completions_{0};  // in the current interval
  alignas(64) std::atomic<int64_t> min_latency_ns_{INT64_MAX};
  alignas(64) std::atomic<int64_t> limit_;
  // The current interval: its start and whether demand hit the limit.
  std::atomic<int64_t> interval_start_;
  std::atomic<bool> saturated_{false};
  std::atomic<int64_t> last_cut_ns_{0};
  std::atomic<int64_t> last_fastest_ns_{0};
  // Completions per second of the last 100 intervals (guarded by adjust_mu_).
  double rates_[100] = {};
  size_t rate_next_ = 0;
  std::mutex adjust_mu_;
};

}  // namespace persona::limits
