// Publish/subscribe between the engine and everything that watches sessions
// (SSE streams now, MQTT and other nodes later).
//
// Topics are exact strings ("session/{id}/events"). Publish() calls every
// handler subscribed to the topic on the publishing thread, outside any bus
// lock, in the order publishes were made by that thread. Handlers must not
// block: they hand the payload to their own bounded queue. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace persona::bus {

using Payload = std::shared_ptr<const std::string>;

class Subscription {
 public:
  virtual ~Subscription() = default;  // unsubscribes
};

class Bus {
 public:
  using Handler = std::function<void(const Payload&)>;
  virtual ~Bus() = default;

  // The handler stays subscribed until the returned object is destroyed. It
  // may still be running on another thread while the destructor returns, so
  // it must only touch state it owns (or holds weakly).
  virtual std::unique_ptr<Subscription> Subscribe(const std::string& topic, Handler handler) = 0;

  // Subscribes to every topic for which `wants(topic)` is true (a bridge to
  // another protocol, e.g. MQTT). `wants` is also what SubscriberCount asks,
  // so it must be cheap and thread-safe.
  // `seq`: the event's seq or the snapshot's version (0 for plain topics).
  using TopicHandler = std::function<void(const std::string& topic, const Payload&, uint64_t seq)>;
  virtual std::unique_ptr<Subscription> SubscribeAll(
      TopicHandler handler, std::function<bool(const std::string&)> wants) = 0;
  // `seq` orders the topic's messages: the event's seq on an events topic,
  // the profile's version on a profile topic, 0 for unordered topics.
  virtual void Publish(const std::string& topic, Payload payload, uint64_t seq) = 0;
  // Number of handlers on `topic` (cheap: lets publishers skip building payloads).
  virtual size_t SubscriberCount(const std::string& topic) const = 0;
  // True if publishes also reach other nodes (whose subscribers this node
  // cannot count): publishers must not skip a topic with no local subscriber.
  virtual bool Distributed() const { return false; }
};

}  // namespace persona::bus
