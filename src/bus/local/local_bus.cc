#include "bus/local/local_bus.h"

namespace persona::bus {

class LocalBus::LocalSubscription final : public Subscription {
 public:
  LocalSubscription(LocalBus* bus, std::string topic, uint64_t id)
      : bus_(bus), topic_(std::move(topic)), id_(id) {}
  ~LocalSubscription() override { bus_->Unsubscribe(topic_, id_); }

 private:
  LocalBus* bus_;
  std::string topic_;
  uint64_t id_;
};

LocalBus::Shard& LocalBus::ShardFor(const std::string& topic) {
  return shards_[std::hash<std::string>()(topic) % kShards];
}
const LocalBus::Shard& LocalBus::ShardFor(const std::string& topic) const {
  return shards_[std::hash<std::string>()(topic) % kShards];
}

std::unique_ptr<Subscription> LocalBus::Subscribe(const std::string& topic, Handler handler) {
  const uint64_t id = next_id_.fetch_add(1);
  Shard& s = ShardFor(topic);
  {
    std::lock_guard<std::mutex> l(s.mu);
    s.topics[topic].push_back({id, std::make_shared<Handler>(std::move(handler))});
  }
  return std::make_unique<LocalSubscription>(this, topic, id);
}

void LocalBus::Unsubscribe(const std::string& topic, uint64_t id) {
  Shard& s = ShardFor(topic);
  std::lock_guard<std::mutex> l(s.mu);
  auto it = s.topics.find(topic);
  if (it == s.topics.end()) return;
  auto& v = it->second;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i].id == id) {
      v.erase(v.begin() + i);
      break;
    }
  }
  if (v.empty()) s.topics.erase(it);
}

void LocalBus::Publish(const std::string& topic, Payload payload) {
  // Copy the handler list under the lock and call outside it.
  std::vector<std::shared_ptr<Handler>> handlers;
  {
    Shard& s = ShardFor(topic);
    std::lock_guard<std::mutex> l(s.mu);
    auto it = s.topics.find(topic);
    if (it == s.topics.end()) return;
    handlers.reserve(it->second.size());
    for (const auto& e : it->second) handlers.push_back(e.handler);
  }
  for (const auto& h : handlers) (*h)(payload);
}

size_t LocalBus::SubscriberCount(const std::string& topic) const {
  const Shard& s = ShardFor(topic);
  std::lock_guard<std::mutex> l(s.mu);
  auto it = s.topics.find(topic);
  return it == s.topics.end() ? 0 : it->second.size();
}

}  // namespace persona::bus
