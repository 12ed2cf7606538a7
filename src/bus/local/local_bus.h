// The in-process bus: a sharded map of topic → handlers.
#pragma once

#include <array>
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "bus/bus.h"

namespace persona::bus {

class LocalBus final : public Bus {
 public:
  std::unique_ptr<Subscription> Subscribe(const std::string& topic, Handler handler) override;
  std::unique_ptr<Subscription> SubscribeAll(
      TopicHandler handler, std::function<bool(const std::string&)> wants) override;
  void Publish(const std::string& topic, Payload payload, uint64_t seq) override;
  size_t SubscriberCount(const std::string& topic) const override;

 private:
  class LocalSubscription;
  struct Entry {
    uint64_t id;
    std::shared_ptr<Handler> handler;
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, std::vector<Entry>> topics ABSL_GUARDED_BY(mu);
  };
  Shard& ShardFor(const std::string& topic);
  const Shard& ShardFor(const std::string& topic) const;
  void Unsubscribe(const std::string& topic, uint64_t id);
  void UnsubscribeAll(uint64_t id);

  struct Firehose {
    uint64_t id;
    std::shared_ptr<TopicHandler> handler;
    std::shared_ptr<std::function<bool(const std::string&)>> wants;
  };
  mutable std::mutex firehose_mu_;
  std::vector<Firehose> firehoses_ ABSL_GUARDED_BY(firehose_mu_);

  static constexpr size_t kShards = 16;
  std::array<Shard, kShards> shards_;
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace persona::bus
