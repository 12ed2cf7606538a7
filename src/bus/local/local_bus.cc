#include "bus/local/local_bus.h"

namespace persona::bus {

class LocalBus::LocalSubscription final : public Subscription {
 public:
  LocalSubscription(LocalBus* bus, std::string topic, uint64_t id, bool all = false)
      : bus_(bus), topic_(std::move(topic)), id_(id), all_(all) {}
  ~LocalSubscription() override {
    if (all_) {
      bus_->UnsubscribeAll(id_);
    } else {
      bus_->Unsubscribe(topic_, id_);
    }
  }

 private:
  LocalBus* bus_;
  std::string topic_;
  uint64_t id_;
  bool all_;
};

std::unique_ptr<Subscription> LocalBus::SubscribeAll(
    TopicHandler handler, std::function<bool(const std::string&)> wants) {
  const uint64_t id = next_id_.fetch_add(1);
  std::lock_guard<std::mutex> l(firehose_mu_);
  firehoses_.push_back(
      {id, std::make_shared<TopicHandler>(std::move(handler)),
       std::make_shared<std::function<bool(const std::string&)>>(std::move(wants))});
  return std::make_unique<LocalSubscription>(this, "", id, true);
}

void LocalBus::UnsubscribeAll(uint64_t id) {
  std::lock_guard<std::mutex> l(firehose_mu_);
  for (size_t i = 0; i < firehoses_.size(); ++i) {
    if (firehoses_[i].id == id) {
      firehoses_.erase(firehoses_.begin() + i);
      return;
    }
  }
}

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

void LocalBus::Publish(const std::string& topic, Payload payload, uint64_t seq) {
  // Copy the handler lists under the locks and call outside them.
  std::vector<std::shared_ptr<Handler>> handlers;
  {
    Shard& s = ShardFor(topic);
    std::lock_guard<std::mutex> l(s.mu);
    auto it = s.topics.find(topic);
    if (it != s.topics.end()) {
      handlers.reserve(it->second.size());
      for (const auto& e : it->second) handlers.push_back(e.handler);
    }
  }
  std::vector<Firehose> firehoses;
  {
    std::lock_guard<std::mutex> l(firehose_mu_);
    firehoses = firehoses_;
  }
  for (const auto& h : handlers) (*h)(payload);
  for (const auto& f : firehoses)
    if ((*f.wants)(topic)) (*f.handler)(topic, payload, seq);
}

size_t LocalBus::SubscriberCount(const std::string& topic) const {
  size_t n = 0;
  {
    const Shard& s = ShardFor(topic);
    std::lock_guard<std::mutex> l(s.mu);
    auto it = s.topics.find(topic);
    if (it != s.topics.end()) n = it->second.size();
  }
  std::vector<std::shared_ptr<std::function<bool(const std::string&)>>> wants;
  {
    std::lock_guard<std::mutex> l(firehose_mu_);
    for (const auto& f : firehoses_) wants.push_back(f.wants);
  }
  for (const auto& w : wants) n += (*w)(topic) ? 1 : 0;
  return n;
}

}  // namespace persona::bus
