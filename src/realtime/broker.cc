#include "realtime/broker.h"

#include <boost/container/devector.hpp>

#include "absl/container/btree_map.h"
#include "absl/synchronization/mutex.h"
#include "core/clock.h"
#include "core/json.h"
#include "realtime/mqtt/codec.h"

namespace persona::realtime {

class Broker::Session {
 public:
  // The members are chosen and ordered for size: most sessions are idle
  // subscribers, and a session's bytes count towards each idle connection's
  // (absl::Mutex is 8 bytes against std::mutex's 40, a devector 32 against a
  // deque's 80, a btree_map 24 against a std::map's 48).
  absl::Mutex mu;
  uint64_t id = 0;
  int64_t offline_since_ms = 0;  // key in Broker::offline_ (guarded by Broker::mu_); 0 = online
  std::string client_id;
  std::shared_ptr<Link> link ABSL_GUARDED_BY(mu);
  // QoS 1 messages sent and not yet acknowledged, in send order. Both
  // allocate nothing until used (std::deque does).
  boost::container::devector<std::pair<uint16_t, Message>> inflight ABSL_GUARDED_BY(mu);
  // QoS 1 messages waiting for room in the in-flight window (or a connection).
  boost::container::devector<Message> queue ABSL_GUARDED_BY(mu);
  // Persistent sessions, per topic: the highest seq the client acknowledged
  // (Message::seq), and the seq up to which a restore replayed (live
  // messages at or below it are duplicates).
  struct Cursor {
    uint64_t acked = 0;
    uint64_t floor = 0;
  };
  absl::btree_map<std::string, Cursor> cursors ABSL_GUARDED_BY(mu);
  // The session's subscriptions (guarded by Broker::mu_), for Describe.
  absl::btree_map<std::string, uint8_t> filters;
  uint16_t next_packet_id ABSL_GUARDED_BY(mu) = 1;
  bool clean = true;
  bool paused ABSL_GUARDED_BY(mu) = false;  // being restored: deliveries only queue

  uint16_t NextPacketId() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    // Skip ids still in flight (a window of 64 never exhausts 65535).
    for (;;) {
      uint16_t id = next_packet_id++;
      if (next_packet_id == 0) next_packet_id = 1;
      bool used = false;
      for (const auto& [pid, m] : inflight) used = used || pid == id;
      if (!used) return id;
    }
  }
};

size_t Broker::ClientIdHash::operator()(const std::shared_ptr<Session>& s) const {
  return std::hash<std::string_view>{}(s->client_id);
}
size_t Broker::ClientIdHash::operator()(std::string_view client_id) const {
  return std::hash<std::string_view>{}(client_id);
}
bool Broker::ClientIdEq::operator()(const std::shared_ptr<Session>& a,
                                    const std::shared_ptr<Session>& b) const {
  return a->client_id == b->client_id;
}
bool Broker::ClientIdEq::operator()(const std::shared_ptr<Session>& a, std::string_view b) const {
  return a->client_id == b;
}
bool Broker::ClientIdEq::operator()(std::string_view a, const std::shared_ptr<Session>& b) const {
  return a == b->client_id;
}

size_t Broker::IdHash::operator()(const std::shared_ptr<Session>& s) const {
  return absl::Hash<uint64_t>{}(s->id);
}
bool Broker::IdEq::operator()(const std::shared_ptr<Session>& a, uint64_t b) const {
  return a->id == b;
}
bool Broker::IdEq::operator()(uint64_t a, const std::shared_ptr<Session>& b) const {
  return a == b->id;
}

namespace {

bool SendPublish(Link& link, const Message& m, uint8_t qos, uint16_t packet_id, bool dup) {
  std::string head;
  if (!mqtt::EncodePublishHeader(m.topic, m.payload ? m.payload->size() : 0, qos, m.retain, dup,
                                 packet_id, &head))
    return false;
  return link.Send(std::move(head), m.payload);
}

}  // namespace

Broker::Broker(BrokerOptions options) : options_(options) {
  auto& r = metrics::Default();
  delivered_ = r.GetCounter("persona_mqtt_messages_out_total", "MQTT PUBLISH packets sent");
  dropped_qos0_ = r.GetCounter("persona_mqtt_dropped_total", "MQTT messages not delivered",
                               "reason=\"qos0_backlog\"");
  dropped_offline_ = r.GetCounter("persona_mqtt_dropped_total", "MQTT messages not delivered",
                                  "reason=\"queue_full\"");
  coalesced_ = r.GetCounter("persona_mqtt_coalesced_total",
                            "Queued snapshots replaced by a newer one on the same topic");
  kicked_slow_ = r.GetCounter("persona_mqtt_slow_consumer_disconnects_total",
                              "Clients disconnected because their queue was full");
  sessions_gauge_ =
      r.GetGauge("persona_mqtt_sessions", "MQTT client sessions (online and offline)");
  queued_gauge_ =
      r.GetGauge("persona_mqtt_queued_messages", "QoS 1 messages waiting in session queues");
}

Broker::~Broker() = default;

void Broker::Mirror(const Session& s) {
  if (s.clean) return;
  if (MirrorSink* m = mirror_.load()) m->Changed(s.client_id);
}

void Broker::Discard(const std::shared_ptr<Session>& s) {
  Mirror(*s);  // its record goes too
  for (const auto& [filter, qos] : s->filters) tree_.Remove(filter, s->id);
  s->filters.clear();
  by_id_.erase(s);
  auto it = sessions_.find(std::string_view(s->client_id));
  if (it != sessions_.end() && *it == s) sessions_.erase(it);
  if (s->offline_since_ms != 0) offline_.erase({s->offline_since_ms, s->id});
  s->offline_since_ms = 0;
  absl::MutexLock sl(&s->mu);
  queued_gauge_->Add(-static_cast<int64_t>(s->queue.size()));
  s->queue.clear();
  s->inflight.clear();
}

bool Broker::Reap(bool need_room) {
  const int64_t cutoff = NowMillis() - options_.session_expiry_ms;
  while (!offline_.empty() && (offline_.begin()->first < cutoff ||
                               (need_room && sessions_.size() >= options_.max_sessions))) {
    auto it = by_id_.find(offline_.begin()->second);
    if (it == by_id_.end()) {
      offline_.erase(offline_.begin());
      continue;
    }
    Discard(std::shared_ptr<Session>(*it));
  }
  sessions_gauge_->Set(static_cast<int64_t>(sessions_.size()));
  return !need_room || sessions_.size() < options_.max_sessions;
}

std::optional<Broker::Attached> Broker::Connect(const std::string& client_id, bool clean_session,
                                                std::shared_ptr<Link> link) {
  std::shared_ptr<Session> s;
  std::shared_ptr<Link> old_link;
  bool present = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    Reap(false);
    auto it = sessions_.find(std::string_view(client_id));
    if (it != sessions_.end()) {
      s = *it;
      {
        absl::MutexLock sl(&s->mu);
        old_link = std::move(s->link);
      }
      if (s->offline_since_ms != 0) {
        offline_.erase({s->offline_since_ms, s->id});
        s->offline_since_ms = 0;
      }
      if (clean_session || s->clean) {
        Discard(s);  // start afresh: the old subscriptions and queue go
        s.reset();
      } else {
        present = true;
      }
    }
    if (!s) {
      if (!Reap(true)) return std::nullopt;
      s = std::make_shared<Session>();
      s->client_id = client_id;
      s->id = next_id_++;
      sessions_.insert(s);
      by_id_.insert(s);
    }
    s->clean = clean_session;
    absl::MutexLock sl(&s->mu);
    s->link = std::move(link);
    sessions_gauge_->Set(static_cast<int64_t>(sessions_.size()));
  }
  if (old_link) old_link->Kick("session taken over by a new connection");
  return Attached{s, present};
}

void Broker::Resume(const std::shared_ptr<Session>& s) {
  absl::MutexLock l(&s->mu);
  if (!s->link) return;
  // Unacknowledged messages go again first, with DUP, in their order.
  for (const auto& [pid, m] : s->inflight) SendPublish(*s->link, m, 1, pid, true);
  while (!s->queue.empty() && s->inflight.size() < options_.max_inflight) {
    Message m = std::move(s->queue.front());
    s->queue.pop_front();
    queued_gauge_->Add(-1);
    const uint16_t pid = s->NextPacketId();
    SendPublish(*s->link, m, 1, pid, false);
    delivered_->Inc();
    s->inflight.emplace_back(pid, std::move(m));
  }
}

void Broker::Disconnect(const std::shared_ptr<Session>& s, const Link* link) {
  bool discard = false;
  {
    absl::MutexLock l(&s->mu);
    if (s->link && s->link.get() != link) return;  // taken over by a new connection
    s->link.reset();
    discard = s->clean;
  }
  std::lock_guard<std::mutex> l(mu_);
  auto it = sessions_.find(std::string_view(s->client_id));
  if (it == sessions_.end() || *it != s) return;  // already discarded
  if (discard) {
    Discard(s);
  } else if (s->offline_since_ms == 0) {
    // Keep the session for the client's return, until it expires.
    s->offline_since_ms = std::max<int64_t>(NowMillis(), 1);
    while (offline_.count({s->offline_since_ms, s->id})) ++s->offline_since_ms;
    offline_.insert({s->offline_since_ms, s->id});
  }
  Reap(false);
}

uint8_t Broker::Subscribe(const std::shared_ptr<Session>& s, const std::string& filter,
                          uint8_t qos) {
  const uint8_t granted = qos > 1 ? 1 : qos;
  std::lock_guard<std::mutex> l(mu_);
  if (!tree_.Add(filter, s->id, granted)) return mqtt::kSubackFailure;
  s->filters[filter] = granted;
  Mirror(*s);
  return granted;
}

void Broker::DeliverRetained(const std::shared_ptr<Session>& s, const std::string& filter,
                             uint8_t granted) {
  std::vector<Message> matches;
  {
    std::lock_guard<std::mutex> l(mu_);
    const bool exact = filter.find_first_of("+#") == std::string::npos;
    if (exact) {
      auto it = retained_.find(filter);
      if (it != retained_.end()) matches.push_back(it->second);
    } else {
      for (const auto& [topic, m] : retained_)
        if (mqtt::TopicMatches(filter, topic)) matches.push_back(m);
    }
  }
  if (matches.empty() && virtual_retained_ && filter.find_first_of("+#") == std::string::npos) {
    if (auto m = virtual_retained_(filter)) matches.push_back(std::move(*m));
  }
  for (auto& m : matches) {
    m.retain = true;  // sent because of a new subscription [MQTT-3.3.1-8]
    const uint8_t qos = std::min(m.qos, granted);
    Deliver(s, std::move(m), qos);
  }
}

void Broker::Unsubscribe(const std::shared_ptr<Session>& s, const std::string& filter) {
  std::lock_guard<std::mutex> l(mu_);
  tree_.Remove(filter, s->id);
  s->filters.erase(filter);
  Mirror(*s);
}

bool Broker::HasSubscribers(const std::string& topic) const {
  thread_local std::vector<std::pair<uint64_t, uint8_t>> matches;
  std::lock_guard<std::mutex> l(mu_);
  tree_.Match(topic, &matches);
  return !matches.empty();
}

size_t Broker::Publish(const Message& m) {
  thread_local std::vector<std::pair<uint64_t, uint8_t>> matches;
  std::vector<std::pair<std::shared_ptr<Session>, uint8_t>> targets;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (m.retain) {
      if (!m.payload || m.payload->empty()) {
        retained_.erase(m.topic);
      } else if (retained_.size() < options_.max_retained || retained_.count(m.topic)) {
        Message stored = m;
        stored.retain = false;
        retained_[m.topic] = std::move(stored);
      }
    }
    tree_.Match(m.topic, &matches);
    targets.reserve(matches.size());
    for (const auto& [id, qos] : matches) {
      auto it = by_id_.find(id);
      if (it != by_id_.end()) targets.emplace_back(*it, qos);
    }
  }
  Message out = m;
  out.retain = false;  // forwarded to established subscriptions [MQTT-3.3.1-9]
  for (auto& [s, sub_qos] : targets) Deliver(s, out, std::min(out.qos, sub_qos));
  return targets.size();
}

void Broker::Deliver(const std::shared_ptr<Session>& s, Message m, uint8_t qos) {
  std::shared_ptr<Link> kick;
  {
    absl::MutexLock l(&s->mu);
    if (m.seq != 0 && !s->cursors.empty()) {
      auto f = s->cursors.find(m.topic);
      if (f != s->cursors.end() && m.seq <= f->second.floor) return;  // a restore replayed it
    }
    if (qos == 0) {
      if (!s->link || s->paused) return;  // QoS 0 is not kept for offline sessions
      if (s->link->queued_bytes() > options_.max_link_bytes) {
        dropped_qos0_->Inc();
        return;
      }
      if (SendPublish(*s->link, m, 0, 0, false)) delivered_->Inc();
      return;
    }
    if (s->link && !s->paused && s->queue.empty() && s->inflight.size() < options_.max_inflight) {
      const uint16_t pid = s->NextPacketId();
      if (SendPublish(*s->link, m, 1, pid, false)) delivered_->Inc();
      s->inflight.emplace_back(pid, std::move(m));
      return;
    }
    if (s->queue.size() >= options_.max_queued_messages) {
      // Coalesce: a newer snapshot of the same topic replaces a queued one.
      bool coalesced = false;
      if (m.snapshot) {
        for (auto it = s->queue.begin(); it != s->queue.end(); ++it) {
          if (it->snapshot && it->topic == m.topic) {
            s->queue.erase(it);
            queued_gauge_->Add(-1);
            coalesced_->Inc();
            coalesced = true;
            break;
          }
        }
      }
      if (!coalesced) {
        if (s->link && !s->paused) {
          // Online and still full: the client cannot keep up. Disconnect it
          // rather than lose messages; it resumes from its session.
          kicked_slow_->Inc();
          kick = std::move(s->link);  // later messages queue as for an offline session
        } else {
          s->queue.pop_front();
          queued_gauge_->Add(-1);
          dropped_offline_->Inc();
        }
      }
    }
    if (!kick || !s->clean) {
      s->queue.push_back(std::move(m));
      queued_gauge_->Add(1);
    }
  }
  if (kick) kick->Kick("slow consumer: session queue full");
}

void Broker::Acked(const std::shared_ptr<Session>& s, uint16_t packet_id) {
  absl::MutexLock l(&s->mu);
  for (auto it = s->inflight.begin(); it != s->inflight.end(); ++it) {
    if (it->first == packet_id) {
      if (it->second.seq != 0 && !s->clean) {
        uint64_t& cursor = s->cursors[it->second.topic].acked;
        if (it->second.seq > cursor) {
          cursor = it->second.seq;
          Mirror(*s);
        }
      }
      s->inflight.erase(it);
      break;
    }
  }
  if (!s->link) return;
  while (!s->queue.empty() && s->inflight.size() < options_.max_inflight) {
    Message m = std::move(s->queue.front());
    s->queue.pop_front();
    queued_gauge_->Add(-1);
    const uint16_t pid = s->NextPacketId();
    if (SendPublish(*s->link, m, 1, pid, false)) delivered_->Inc();
    s->inflight.emplace_back(pid, std::move(m));
  }
}

bool Broker::Persistent(const std::shared_ptr<Session>& s) const {
  std::lock_guard<std::mutex> l(mu_);
  return !s->clean;
}

void Broker::InitCursor(const std::shared_ptr<Session>& s, const std::string& topic, uint64_t seq) {
  std::lock_guard<std::mutex> l(mu_);  // s->clean
  if (s->clean) return;
  absl::MutexLock sl(&s->mu);
  if (s->cursors.try_emplace(topic, Session::Cursor{seq, 0}).second) Mirror(*s);
}

std::optional<std::string> Broker::Describe(const std::string& key) const {
  std::shared_ptr<Session> s;
  json::array subs;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = sessions_.find(std::string_view(key));
    if (it == sessions_.end() || (*it)->clean) return std::nullopt;
    s = *it;
    for (const auto& [filter, qos] : s->filters)
      subs.push_back(json::array{json::value(filter), qos});
  }
  json::object cursors;
  {
    absl::MutexLock l(&s->mu);
    for (const auto& [topic, c] : s->cursors) cursors[topic] = c.acked;
  }
  json::object o;
  o["subs"] = std::move(subs);
  o["cursors"] = std::move(cursors);
  return json::serialize(o);
}

Status Broker::Restore(const std::shared_ptr<Session>& s, const std::string& record,
                       const std::function<bool(const std::string& filter)>& allow,
                       const Replay& replay) {
  auto parsed = ParseJson(record);
  if (!parsed.ok() || !parsed->is_object()) return absl::InvalidArgumentError("session record");
  const json::object& o = parsed->get_object();
  std::vector<std::pair<std::string, uint64_t>> cursors;
  if (const auto* c = o.if_contains("cursors"); c && c->is_object()) {
    for (const auto& [topic, seq] : c->get_object()) {
      if (seq.is_int64() && seq.as_int64() >= 0)
        cursors.emplace_back(std::string(topic), static_cast<uint64_t>(seq.as_int64()));
    }
  }
  {
    absl::MutexLock l(&s->mu);
    s->paused = true;
    for (const auto& [topic, seq] : cursors) s->cursors[topic].acked = seq;
  }
  if (const auto* subs = o.if_contains("subs"); subs && subs->is_array()) {
    for (const auto& sub : subs->get_array()) {
      if (!sub.is_array() || sub.get_array().size() != 2 || !sub.get_array()[0].is_string() ||
          !sub.get_array()[1].is_int64())
        continue;
      const std::string filter(sub.get_array()[0].get_string());
      if (allow(filter)) Subscribe(s, filter, static_cast<uint8_t>(sub.get_array()[1].as_int64()));
    }
  }
  for (const auto& [topic, after] : cursors) {
    if (!allow(topic)) continue;
    std::vector<Message> missed = replay(topic, after);  // no lock held: it reads the store
    absl::MutexLock l(&s->mu);
    uint64_t& floor = s->cursors[topic].floor;
    floor = std::max(floor, missed.empty() ? after : missed.back().seq);
    // Live messages that arrived since the subscription: the ones the replay
    // covers go, the newer ones follow it.
    boost::container::devector<Message> merged;
    bool placed = false;
    int64_t removed = 0;
    for (auto& m : s->queue) {
      if (m.topic == topic && m.seq != 0 && m.seq <= floor) {
        ++removed;
        continue;
      }
      if (!placed && m.topic == topic) {
        for (auto& r : missed) merged.push_back(std::move(r));
        placed = true;
      }
      merged.push_back(std::move(m));
    }
    if (!placed)
      for (auto& r : missed) merged.push_back(std::move(r));
    queued_gauge_->Add(static_cast<int64_t>(merged.size()) - static_cast<int64_t>(s->queue.size()));
    s->queue = std::move(merged);
    while (s->queue.size() > options_.max_queued_messages) {  // the oldest go, as offline
      s->queue.pop_front();
      queued_gauge_->Add(-1);
      dropped_offline_->Inc();
    }
  }
  absl::MutexLock l(&s->mu);
  s->paused = false;
  return absl::OkStatus();
}

size_t Broker::DisconnectAll() {
  std::vector<std::shared_ptr<Link>> links;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& session : sessions_) {
      absl::MutexLock sl(&session->mu);
      if (session->link) links.push_back(session->link);
    }
  }
  for (const auto& link : links) link->Leave();
  return links.size();
}

size_t Broker::session_count() const {
  std::lock_guard<std::mutex> l(mu_);
  return sessions_.size();
}

}  // namespace persona::realtime
