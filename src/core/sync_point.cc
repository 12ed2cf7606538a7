#include "core/sync_point.h"

#include <map>
#include <mutex>

namespace persona::sync_point {

std::atomic<bool> g_enabled{false};

namespace {
std::mutex& Mu() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, std::function<void()>, std::less<>>& Callbacks() {
  static auto* callbacks = new std::map<std::string, std::function<void()>, std::less<>>;
  return *callbacks;
}
}  // namespace

void Set(const std::string& name, std::function<void()> fn) {
  std::lock_guard<std::mutex> l(Mu());
  Callbacks()[name] = std::move(fn);
  g_enabled.store(true);
}

void ClearAll() {
  std::lock_guard<std::mutex> l(Mu());
  Callbacks().clear();
  g_enabled.store(false);
}

void Process(std::string_view name) {
  std::function<void()> fn;
  {
    std::lock_guard<std::mutex> l(Mu());
    auto it = Callbacks().find(name);
    if (it == Callbacks().end()) return;
    fn = it->second;
  }
  fn();  // outside the lock: it may block until another thread reaches a point
}

}  // namespace persona::sync_point
