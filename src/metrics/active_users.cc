#include "metrics/active_users.h"

#include <algorithm>
#include <chrono>
#include <vector>

namespace persona::metrics {

ActiveUsers::ActiveUsers(Options options) : options_(options) {
  auto& reg = Default();
  now_ = reg.GetGauge("persona_concurrent_users",
                      "Users with an HTTP request or MQTT command on one of their sessions in "
                      "the last 60 s");
  peak_ =
      reg.GetGauge("persona_concurrent_users_peak", "Peak of persona_concurrent_users since start");
  refresher_ = std::thread([this] {
    std::unique_lock<std::mutex> l(mu_);
    while (!stop_) {
      cv_.wait_for(l, std::chrono::seconds(1));
      if (stop_) break;
      l.unlock();
      Refresh();
      l.lock();
    }
  });
}

ActiveUsers::~ActiveUsers() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  refresher_.join();
}

int64_t ActiveUsers::Now() const {
  if (options_.now_ms) return options_.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void ActiveUsers::Touch(const std::string& user_id) {
  if (user_id.empty()) return;
  const int64_t now = Now();
  std::lock_guard<std::mutex> l(mu_);
  auto [it, added] = last_ms_.try_emplace(user_id, now);
  if (!added) {
    it->second = now;
    return;
  }
  if (last_ms_.size() <= options_.max_users) return;
  // Over the bound: drop the oldest tenth (a sweep per new user would be
  // quadratic).
  std::vector<int64_t> times;
  times.reserve(last_ms_.size());
  for (const auto& [u, t] : last_ms_) times.push_back(t);
  auto nth = times.begin() + static_cast<std::ptrdiff_t>(times.size() / 10);
  std::nth_element(times.begin(), nth, times.end());
  const int64_t cutoff = *nth;
  for (auto i = last_ms_.begin(); i != last_ms_.end();) {
    if (i->second <= cutoff && i->first != user_id) {
      i = last_ms_.erase(i);
    } else {
      ++i;
    }
  }
}

size_t ActiveUsers::Count() {
  const int64_t cutoff = Now() - options_.window_ms;
  std::lock_guard<std::mutex> l(mu_);
  for (auto i = last_ms_.begin(); i != last_ms_.end();) {
    if (i->second < cutoff) {
      i = last_ms_.erase(i);
    } else {
      ++i;
    }
  }
  return last_ms_.size();
}

void ActiveUsers::Refresh() {
  const auto n = static_cast<int64_t>(Count());
  now_->Set(n);
  peak_->SetMax(n);
}

}  // namespace persona::metrics
