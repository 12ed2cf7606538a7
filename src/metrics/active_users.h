// ActiveUsers: persona's "concurrent users" KPI (SPEC §7, issue 13).
//
// A user is concurrent while they are active: an HTTP request or an MQTT
// command on one of their sessions (anything that reaches the engine for a
// session of theirs, from a client of theirs), or a session of theirs
// created, within the last `window_ms` (60 s). Count() is the number of such
// users now; the gauges persona_concurrent_users (now) and
// persona_concurrent_users_peak (the highest since start; Prometheus'
// max_over_time gives a peak over any window) are refreshed once a second by
// a thread of its own. Bounded: at most `max_users` entries; past it the
// oldest are dropped first. Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "metrics/metrics.h"

namespace persona::metrics {

class ActiveUsers {
 public:
  struct Options {
    int64_t window_ms = 60000;
    size_t max_users = 1000000;
    int64_t (*now_ms)() = nullptr;  // tests; nullptr: the steady clock
  };
  explicit ActiveUsers(Options options);
  ~ActiveUsers();

  void Touch(const std::string& user_id);
  // Users active within the window now (and drops the others).
  size_t Count();
  // Count() into the gauges.
  void Refresh();

 private:
  int64_t Now() const;
  const Options options_;
  std::mutex mu_;
  std::unordered_map<std::string, int64_t> last_ms_ ABSL_GUARDED_BY(mu_);
  Gauge* now_;
  Gauge* peak_;
  std::condition_variable cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread refresher_;
};

}  // namespace persona::metrics
