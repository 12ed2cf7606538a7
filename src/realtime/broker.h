// Broker: MQTT 3.1.1 broker state shared by every connection — client
// sessions, subscriptions, retained messages, and delivery with QoS 0/1.
//
// A Session is keyed by client id and outlives its connection when the
// client asked for a persistent session (clean session off): its
// subscriptions stay and QoS 1 messages queue while it is offline, bounded by
// `max_queued_messages`, and are delivered in order on reconnect (first the
// unacknowledged in-flight ones again, with DUP set).
//
// Delivery never blocks a publisher: each session has a bounded queue and an
// in-flight window; a connection whose socket cannot keep up stops getting
// QoS 0 messages (counted), and when its QoS 1 queue is full, queued
// snapshots of the same topic are coalesced (the newer replaces the older);
// if it is still full, an online client is disconnected (it resumes from its
// persistent session) and an offline session loses its oldest message
// (counted). Offline sessions expire after `session_expiry_ms`, and the
// longest-offline one is discarded when `max_sessions` is reached. All methods are thread-safe; no
// connection I/O happens under a lock (Link::Send only queues).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "core/status.h"
#include "metrics/metrics.h"
#include "realtime/mqtt/topic_tree.h"

namespace persona::realtime {

struct Message {
  std::string topic;
  std::shared_ptr<const std::string> payload;
  uint8_t qos = 0;
  bool retain = false;    // the RETAIN flag on the wire
  bool snapshot = false;  // a state snapshot: a newer one on the topic supersedes it
  // persona's events topics: the event's seq. A persistent session
  // remembers the highest one its client acknowledged per topic (its cursor),
  // so that it can be resumed elsewhere from the event log.
  uint64_t seq = 0;
};

// Where persistent sessions are mirrored so that they can follow a device to
// another node (a shared store; see SessionMirror in session_mirror.h).
class MirrorSink {
 public:
  virtual ~MirrorSink() = default;
  // The persistent session under `key` changed (subscriptions, cursors) or
  // ended. Called with broker locks held: must only note the key.
  virtual void Changed(const std::string& key) = 0;
};

// What the broker needs of a live connection.
class Link {
 public:
  virtual ~Link() = default;
  // Queues bytes for the socket (never blocks). False if the link is closed.
  virtual bool Send(std::string head, std::shared_ptr<const std::string> payload) = 0;
  virtual size_t queued_bytes() const = 0;
  // Closes the connection (taken over by a new one, or too slow).
  virtual void Kick(const char* reason) = 0;
  // Closes the connection cleanly as the server hands over to another
  // process: what is queued is sent first, and the will is not published.
  virtual void Leave() { Kick("server upgrade"); }
};

struct BrokerOptions {
  size_t max_queued_messages = 1000;     // per session, QoS 1, online or offline
  size_t max_inflight = 64;              // unacknowledged QoS 1 messages per session
  size_t max_link_bytes = 4 << 20;       // socket backlog above which QoS 0 is dropped
  size_t max_retained = 100000;          // retained topics
  size_t max_sessions = 100000;          // client sessions; the longest-offline one makes room
  int64_t session_expiry_ms = 86400000;  // offline persistent sessions are discarded after this
};

class Broker {
 public:
  class Session;

  // Computes retained messages that are not stored (persona's profile
  // snapshots): the message for an exact topic, if any.
  using VirtualRetained = std::function<std::optional<Message>(const std::string& topic)>;

  explicit Broker(BrokerOptions options);
  ~Broker();

  void SetVirtualRetained(VirtualRetained fn) { virtual_retained_ = std::move(fn); }
  // Set before the first connection; null again before the sink goes.
  void SetMirror(MirrorSink* mirror) { mirror_.store(mirror); }

  // A persistent session as a record another node can restore:
  // {"subs": [[filter, qos], …], "cursors": {topic: seq, …}}; nullopt if
  // there is no persistent session under `key` (none, clean, or discarded).
  std::optional<std::string> Describe(const std::string& key) const;
  // Restores what a record describes into the (new) session `s`: its
  // subscriptions, and for each cursor the messages `replay(topic, after)`
  // returns (the events the device has not acknowledged, oldest first),
  // queued ahead of anything live on that topic; live messages the replay
  // already covered are dropped. Call before the CONNACK; Resume sends it
  // all. InvalidArgument for a record that does not parse.
  // True for a persistent session (clean session off).
  bool Persistent(const std::shared_ptr<Session>& s) const;
  // Starts a persistent session's cursor on `topic` at `seq` (the topic's
  // last seq as it subscribes), unless it has one.
  void InitCursor(const std::shared_ptr<Session>& s, const std::string& topic, uint64_t seq);
  // Only filters `allow` grants are restored (grants can change between).
  using Replay = std::function<std::vector<Message>(const std::string& topic, uint64_t after)>;
  Status Restore(const std::shared_ptr<Session>& s, const std::string& record,
                 const std::function<bool(const std::string& filter)>& allow, const Replay& replay);

  struct Attached {
    std::shared_ptr<Session> session;
    bool session_present = false;
  };
  // Attaches `link` to the session of `client_id`, taking it over from any
  // previous connection (which is kicked). ResourceExhausted-like failure
  // (nullopt) when max_sessions is reached.
  std::optional<Attached> Connect(const std::string& client_id, bool clean_session,
                                  std::shared_ptr<Link> link);
  // Sends what the session has pending (in-flight again with DUP, then queued).
  void Resume(const std::shared_ptr<Session>& s);
  // The link went away; a clean session is discarded.
  void Disconnect(const std::shared_ptr<Session>& s, const Link* link);

  // Subscribes and returns the granted QoS (0 or 1; QoS 2 is granted as 1,
  // as the spec allows). The caller sends SUBACK, then calls DeliverRetained
  // so the retained messages follow it on the wire.
  uint8_t Subscribe(const std::shared_ptr<Session>& s, const std::string& filter, uint8_t qos);
  void DeliverRetained(const std::shared_ptr<Session>& s, const std::string& filter,
                       uint8_t granted);
  void Unsubscribe(const std::shared_ptr<Session>& s, const std::string& filter);

  // Fans `m` out to every matching subscription. A retained message (m.retain)
  // is stored first (an empty payload clears it). Returns the number of
  // sessions it was delivered or queued to.
  size_t Publish(const Message& m);
  // True if any subscription matches `topic`.
  bool HasSubscribers(const std::string& topic) const;

  // The client acknowledged `packet_id`.
  void Acked(const std::shared_ptr<Session>& s, uint16_t packet_id);

  size_t session_count() const;
  // Closes every connection with Link::Leave (a zero-downtime upgrade);
  // persistent sessions go offline as on any disconnect. Returns how many.
  size_t DisconnectAll();

 private:
  void Deliver(const std::shared_ptr<Session>& s, Message m, uint8_t qos);
  // Discards a session: subscriptions, queue and all.
  void Discard(const std::shared_ptr<Session>& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Discards offline sessions past their expiry, and (if `need_room`) the
  // longest-offline one when the session table is full. False if full and
  // nothing could be discarded.
  bool Reap(bool need_room) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Notes a persistent session's change for the mirror.
  void Mirror(const Session& s);

  BrokerOptions options_;
  VirtualRetained virtual_retained_;
  std::atomic<MirrorSink*> mirror_{nullptr};
  mutable std::mutex mu_;
  mqtt::TopicTree tree_ ABSL_GUARDED_BY(mu_);
  // Sessions by client id, keyed by each session's own copy of it: open
  // addressing and no second copy of the id (each counts towards an idle
  // connection's memory).
  struct ClientIdHash {
    using is_transparent = void;
    size_t operator()(const std::shared_ptr<Session>& s) const;
    size_t operator()(std::string_view client_id) const;
  };
  struct ClientIdEq {
    using is_transparent = void;
    bool operator()(const std::shared_ptr<Session>& a, const std::shared_ptr<Session>& b) const;
    bool operator()(const std::shared_ptr<Session>& a, std::string_view b) const;
    bool operator()(std::string_view a, const std::shared_ptr<Session>& b) const;
  };
  absl::flat_hash_set<std::shared_ptr<Session>, ClientIdHash, ClientIdEq> sessions_
      ABSL_GUARDED_BY(mu_);
  // And by id (the topic tree's subscriber id), the same way.
  struct IdHash {
    using is_transparent = void;
    size_t operator()(const std::shared_ptr<Session>& s) const;
    size_t operator()(uint64_t id) const { return absl::Hash<uint64_t>{}(id); }
  };
  struct IdEq {
    using is_transparent = void;
    bool operator()(const std::shared_ptr<Session>& a, const std::shared_ptr<Session>& b) const {
      return a == b;
    }
    bool operator()(const std::shared_ptr<Session>& a, uint64_t b) const;
    bool operator()(uint64_t a, const std::shared_ptr<Session>& b) const;
  };
  absl::flat_hash_set<std::shared_ptr<Session>, IdHash, IdEq> by_id_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Message> retained_ ABSL_GUARDED_BY(mu_);
  // Offline persistent sessions by the time they went offline.
  std::set<std::pair<int64_t, uint64_t>> offline_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;

  metrics::Counter* delivered_;
  metrics::Counter* dropped_qos0_;
  metrics::Counter* dropped_offline_;
  metrics::Counter* coalesced_;
  metrics::Counter* kicked_slow_;
  metrics::Gauge* sessions_gauge_;
  metrics::Gauge* queued_gauge_;
};

}  // namespace persona::realtime
