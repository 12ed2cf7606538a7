#include "core/scheduler.h"

namespace persona {

Scheduler::Scheduler() : thread_([this] { Loop(); }) {}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

Scheduler::TaskId Scheduler::At(Clock::time_point when, std::function<void()> fn) {
  TaskId id;
  {
    std::lock_guard<std::mutex> l(mu_);
    id = next_id_++;
    tasks_.emplace(when, std::make_pair(id, std::move(fn)));
    index_.emplace(id, when);
  }
  cv_.notify_one();
  return id;
}

bool Scheduler::Cancel(TaskId id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = index_.find(id);
  if (it == index_.end()) return false;
  auto range = tasks_.equal_range(it->second);
  for (auto t = range.first; t != range.second; ++t) {
    if (t->second.first == id) {
      tasks_.erase(t);
      break;
    }
  }
  index_.erase(it);
  return true;
}

void Scheduler::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stopping_) {
    if (tasks_.empty()) {
      cv_.wait(l);
      continue;
    }
    auto first = tasks_.begin();
    // A copy: Cancel() may erase the task (and its key) while we wait.
    const Clock::time_point when = first->first;
    if (when > Clock::now()) {
      cv_.wait_until(l, when);
      continue;
    }
    auto fn = std::move(first->second.second);
    index_.erase(first->second.first);
    tasks_.erase(first);
    l.unlock();
    fn();
    l.lock();
  }
}

}  // namespace persona
