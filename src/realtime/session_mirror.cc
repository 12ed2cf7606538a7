#include "realtime/session_mirror.h"

#include <chrono>
#include <vector>

#include "core/logging.h"

namespace persona::realtime {

SessionMirror::SessionMirror(Broker* broker, store::EventStore* store, int every_ms,
                             size_t max_dirty)
    : broker_(broker), store_(store), every_ms_(every_ms), max_dirty_(max_dirty) {
  auto& reg = metrics::Default();
  written_ = reg.GetCounter("persona_mqtt_session_writes_total",
                            "Persistent MQTT sessions written to the shared store");
  errors_ = reg.GetCounter("persona_mqtt_session_write_errors_total",
                           "Batches of persistent MQTT sessions the store refused");
  dropped_ = reg.GetCounter("persona_mqtt_session_changes_dropped_total",
                            "Session changes not queued for the store (too many pending)");
  thread_ = std::thread([this] { Loop(); });
}

SessionMirror::~SessionMirror() { Stop(); }

void SessionMirror::Changed(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  if (dirty_.size() >= max_dirty_ && !dirty_.count(key)) {
    dropped_->Inc();
    return;
  }
  dirty_.insert(key);
}

void SessionMirror::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  Flush();  // the last changes, as the node stops
}

void SessionMirror::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!cv_.wait_for(l, std::chrono::milliseconds(every_ms_), [&] { return stopping_; })) {
    l.unlock();
    Flush();
    l.lock();
  }
}

void SessionMirror::Flush() {
  std::unordered_set<std::string> keys;
  {
    std::lock_guard<std::mutex> l(mu_);
    keys.swap(dirty_);
  }
  if (keys.empty()) return;
  constexpr size_t kBatch = 500;
  std::vector<std::pair<std::string, std::optional<std::string>>> batch;
  auto write = [&] {
    if (batch.empty()) return;
    if (Status st = store_->SaveMqttSessions(batch); !st.ok()) {
      errors_->Inc();
      LogWarn("mqtt: cannot write persistent sessions to the store; retried at the next write",
              {{"error", std::string(st.message())}, {"sessions", batch.size()}});
      std::lock_guard<std::mutex> l(mu_);
      for (auto& [key, record] : batch)
        if (dirty_.size() < max_dirty_) dirty_.insert(std::move(key));
    } else {
      written_->Inc(batch.size());
    }
    batch.clear();
  };
  for (const auto& key : keys) {
    batch.emplace_back(key, broker_->Describe(key));
    if (batch.size() >= kBatch) write();
  }
  write();
}

}  // namespace persona::realtime
