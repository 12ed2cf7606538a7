// Scheduler: runs tasks after a delay on one background thread.
//
// Used for retry backoff and deadlines of outbound calls. Tasks should be
// short (they run one at a time); a cancelled task never runs. The queue is
// bounded by what callers schedule (one or two timers per call in flight).
// Thread-safe; the destructor drops tasks that have not run.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "absl/base/thread_annotations.h"

namespace persona {

class Scheduler {
 public:
  using Clock = std::chrono::steady_clock;
  using TaskId = uint64_t;

  Scheduler();
  ~Scheduler();

  TaskId At(Clock::time_point when, std::function<void()> fn);
  TaskId After(std::chrono::milliseconds delay, std::function<void()> fn) {
    return At(Clock::now() + delay, std::move(fn));
  }
  // True if the task had not started (it never will).
  bool Cancel(TaskId id);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, std::pair<TaskId, std::function<void()>>> tasks_
      ABSL_GUARDED_BY(mu_);
  std::map<TaskId, Clock::time_point> index_ ABSL_GUARDED_BY(mu_);
  TaskId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace persona
