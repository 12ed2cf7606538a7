// RedisBus: the bus between persona nodes, on Redis Pub/Sub (SPEC §11).
//
// Every publish is delivered to this node's subscribers at once (an
// in-process LocalBus) and sent to Redis on channel "persona:" + topic as
// "{node}\n{seq}\n{payload}"; one connection per node PSUBSCRIBEs to
// "persona:session/*" and delivers what other nodes sent to this node's
// subscribers.
//
// Why Pub/Sub and not Streams: the store is the source of truth and every
// event carries its gapless `seq`, so the bus only has to be fast, not
// reliable. Pub/Sub fans a message out to every node in one hop with nothing
// to trim or acknowledge; Streams would keep a second copy of the log in
// Redis's memory and cost a consumer group's bookkeeping per node.
//
// What Redis loses, the store fills in. Per topic with subscribers here the
// bus remembers the last `seq` it delivered (events) or version (profile
// snapshots):
//   - an event with seq <= last was delivered already (it came through the
//     store first) and is dropped;
//   - an event with seq > last + 1 shows a gap: the missing events are read
//     from the store (Backfill) and delivered first, in order. The read is
//     done by the bus's filler thread, never on the thread that published
//     (an I/O thread) or on the Redis reader: the topic's later messages
//     wait, in seq order, until the fill is delivered (at most
//     kMaxHeldPerTopic; the store has the rest);
//   - a profile snapshot older than the last one delivered is dropped.
// A message dropped at the end of a burst shows no gap until the next one,
// so a poller also compares each watched session with the store (one query
// for up to kPollBatch sessions): every `poll_ms` while Redis is reachable, every `down_poll_ms`
// while it is not (Redis down: delivery degrades to store polling; the gauge persona_bus_up says
// so, and each transition is logged once).
//
// Bounds: the outgoing queue holds `max_queue` messages (beyond that they are
// dropped and counted: subscribers elsewhere catch up from the store); the
// per-topic state is kept only for topics with subscribers on this node, at
// most `max_topics`.
//
// Plain broker topics (outside session/…) are not carried: they stay on the
// node where they were published.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "bus/bus.h"
#include "bus/local/local_bus.h"
#include "core/status.h"
#include "metrics/metrics.h"

struct redisContext;

namespace persona::bus {

// Where the bus reads what Redis lost: the store, through the engine.
class Backfill {
 public:
  virtual ~Backfill() = default;
  // The events of `session_id` with after < seq <= upto (upto 0: to the
  // end), in seq order, as published on its events topic.
  virtual StatusOr<std::vector<std::pair<uint64_t, Payload>>> EventsAfter(
      const std::string& session_id, uint64_t after, uint64_t upto) = 0;
  // The session's current profile snapshot (as published on its profile
  // topic) and version.
  virtual StatusOr<std::pair<uint64_t, Payload>> Profile(const std::string& session_id) = 0;
  // The current versions of several sessions at once (sessions that are gone
  // are left out).
  virtual StatusOr<std::unordered_map<std::string, uint64_t>> Versions(
      const std::vector<std::string>& session_ids) = 0;
};

struct RedisBusOptions {
  std::string url;  // redis://[[user]:password@]host[:port][/db]
  int timeout_ms = 1000;
  int retry_ms = 500;          // reconnect attempts while Redis is down
  int poll_ms = 2000;          // store comparison while Redis is up
  int down_poll_ms = 250;      // … and while it is down
  size_t max_queue = 65536;    // outgoing messages waiting for Redis
  size_t max_topics = 100000;  // topics whose last seq is remembered
};

class RedisBus final : public Bus {
 public:
  // InvalidArgument for a malformed URL. An unreachable Redis is not an
  // error: the bus starts down (polling) and connects when it can.
  static StatusOr<std::unique_ptr<RedisBus>> Create(const RedisBusOptions& options);
  ~RedisBus() override;

  // Set before the first publish; must outlive the bus (or Stop() first).
  void SetBackfill(Backfill* backfill) { backfill_.store(backfill); }
  void Stop();

  std::unique_ptr<Subscription> Subscribe(const std::string& topic, Handler handler) override;
  std::unique_ptr<Subscription> SubscribeAll(
      TopicHandler handler, std::function<bool(const std::string&)> wants) override;
  void Publish(const std::string& topic, Payload payload, uint64_t seq) override;
  size_t SubscriberCount(const std::string& topic) const override;
  bool Distributed() const override { return true; }

  bool up() const { return up_flag_.load(); }
  static constexpr size_t kMaxHeldPerTopic = 4096;
  static constexpr size_t kPollBatch = 500;
  const std::string& node_id() const { return node_id_; }

 private:
  explicit RedisBus(const RedisBusOptions& options);
  struct TopicState;
  struct Outgoing {
    std::string channel;
    std::string message;
  };
  // Delivers one message to this node's subscribers, in order per topic,
  // filling a gap from the store first.
  void Deliver(const std::string& topic, uint64_t seq, const Payload& payload);
  void PublisherLoop();
  void SubscriberLoop();
  void PollLoop();
  void PollOnce();
  // Delivers from the store what one watched topic is behind by.
  void PollTopic(const std::string& topic, const std::string& sid, TopicState* state);
  void FillLoop();
  // The filler's part for one topic: fills each gap before what is held and
  // delivers it all, until nothing is held.
  void FillTopic(const std::string& topic, TopicState* state);
  redisContext* Connect(std::string* error);
  void MarkUp();
  void MarkDown(const std::string& why);

  const RedisBusOptions options_;
  std::string endpoint_host_;
  int endpoint_port_ = 6379;
  std::string endpoint_user_, endpoint_password_, endpoint_redacted_;
  int endpoint_db_ = 0;
  const std::string node_id_;
  LocalBus local_;
  std::atomic<Backfill*> backfill_{nullptr};

  // Per topic: the last seq (events) or version (profile) delivered here.
  struct TopicState {
    std::mutex mu;  // held while delivering: one topic's messages in order
    uint64_t last = 0;
    bool known = false;
    // While a gap is being filled, the filler delivers this topic: messages
    // that arrive meanwhile wait here, by seq.
    bool filling = false;
    std::map<uint64_t, Payload> held;
  };
  std::shared_ptr<TopicState> StateFor(const std::string& topic, bool create);
  std::mutex topics_mu_;
  std::unordered_map<std::string, std::shared_ptr<TopicState>> topics_ ABSL_GUARDED_BY(topics_mu_);

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Outgoing> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int subscriber_fd_ ABSL_GUARDED_BY(mu_) = -1;  // shut down by Stop() to wake the reader
  std::atomic<bool> up_flag_{false};
  std::atomic<bool> logged_down_{false};
  std::thread publisher_, subscriber_, poller_, filler_;
  std::mutex fill_mu_;
  std::condition_variable fill_cv_;
  // Topics with a gap to fill; each at most once (TopicState::filling).
  std::deque<std::pair<std::string, std::shared_ptr<TopicState>>> fills_ ABSL_GUARDED_BY(fill_mu_);
  bool fill_stopping_ ABSL_GUARDED_BY(fill_mu_) = false;

  metrics::Gauge* up_;
  metrics::Counter* published_;
  metrics::Counter* received_;
  metrics::Counter* dropped_;
  metrics::Counter* gap_fills_;
  metrics::Counter* filled_events_;
  metrics::Counter* polls_;
};

}  // namespace persona::bus
