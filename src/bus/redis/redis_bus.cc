#include "bus/redis/redis_bus.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>

#include "cache/redis_cache.h"  // ParseRedisUrl, RedisCommand
#include "core/ids.h"
#include "core/logging.h"

namespace persona::bus {
namespace {

constexpr char kChannelPrefix[] = "persona:";
constexpr char kPattern[] = "persona:session/*";
constexpr size_t kMaxPipeline = 512;

enum class Kind { kEvents, kProfile, kOther };

Kind KindOf(const std::string& topic) {
  if (!topic.starts_with("session/")) return Kind::kOther;
  if (topic.ends_with("/events")) return Kind::kEvents;
  if (topic.ends_with("/profile")) return Kind::kProfile;
  return Kind::kOther;
}

// "session/{id}/events" → "{id}".
std::string SessionOf(const std::string& topic) {
  const size_t start = sizeof("session/") - 1;
  const size_t end = topic.rfind('/');
  return end > start ? topic.substr(start, end - start) : std::string();
}

timeval ToTimeval(int ms) {
  timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = static_cast<suseconds_t>(ms % 1000) * 1000;
  return tv;
}

// The bus's threads never take SIGPIPE from a closed Redis socket (hiredis
// writes with write(2)); the write fails with EPIPE instead.
void BlockSigpipe() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

redisReply* Command(redisContext* c, std::initializer_list<std::string_view> args) {
  return cache::RedisCommand(c, args);
}

}  // namespace

RedisBus::RedisBus(const RedisBusOptions& options) : options_(options), node_id_(NewId()) {
  auto& reg = metrics::Default();
  up_ = reg.GetGauge("persona_bus_up", "1 while the Redis bus is reachable (0: store polling)");
  published_ = reg.GetCounter("persona_bus_published_total", "Messages sent to other nodes");
  received_ = reg.GetCounter("persona_bus_received_total", "Messages received from other nodes");
  dropped_ = reg.GetCounter("persona_bus_dropped_total",
                            "Messages not sent to other nodes (queue full or Redis down); "
                            "their subscribers catch up from the store");
  gap_fills_ =
      reg.GetCounter("persona_bus_gap_fills_total", "Gaps in a topic's seq filled from the store");
  filled_events_ = reg.GetCounter("persona_bus_filled_events_total",
                                  "Events delivered from the store instead of the bus");
  polls_ =
      reg.GetCounter("persona_bus_polls_total", "Comparisons of watched sessions with the store");
}

StatusOr<std::unique_ptr<RedisBus>> RedisBus::Create(const RedisBusOptions& options) {
  auto ep = cache::ParseRedisUrl(options.url);
  if (!ep.ok()) return absl::InvalidArgumentError("bus.url: " + std::string(ep.status().message()));
  std::unique_ptr<RedisBus> bus(new RedisBus(options));
  bus->endpoint_host_ = ep->host;
  bus->endpoint_port_ = ep->port;
  bus->endpoint_user_ = ep->user;
  bus->endpoint_password_ = ep->password;
  bus->endpoint_db_ = ep->db;
  bus->endpoint_redacted_ = ep->redacted;
  bus->up_->Set(0);
  bus->publisher_ = std::thread([b = bus.get()] { b->PublisherLoop(); });
  bus->subscriber_ = std::thread([b = bus.get()] { b->SubscriberLoop(); });
  bus->poller_ = std::thread([b = bus.get()] { b->PollLoop(); });
  bus->filler_ = std::thread([b = bus.get()] { b->FillLoop(); });
  return bus;
}

RedisBus::~RedisBus() { Stop(); }

void RedisBus::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return;
    stopping_ = true;
    if (subscriber_fd_ >= 0) ::shutdown(subscriber_fd_, SHUT_RDWR);  // wakes the blocked read
  }
  cv_.notify_all();
  if (publisher_.joinable()) publisher_.join();
  if (subscriber_.joinable()) subscriber_.join();
  if (poller_.joinable()) poller_.join();
  {
    std::lock_guard<std::mutex> l(fill_mu_);
    fill_stopping_ = true;
  }
  fill_cv_.notify_all();
  if (filler_.joinable()) filler_.join();
}

std::unique_ptr<Subscription> RedisBus::Subscribe(const std::string& topic, Handler handler) {
  return local_.Subscribe(topic, std::move(handler));
}

std::unique_ptr<Subscription> RedisBus::SubscribeAll(
    TopicHandler handler, std::function<bool(const std::string&)> wants) {
  return local_.SubscribeAll(std::move(handler), std::move(wants));
}

size_t RedisBus::SubscriberCount(const std::string& topic) const {
  return local_.SubscriberCount(topic);
}

void RedisBus::Publish(const std::string& topic, Payload payload, uint64_t seq) {
  // Plain broker topics stay on this node; while Redis is down nothing is
  // built for it (other nodes poll the store).
  if (topic.starts_with("session/") && !up_flag_.load()) {
    dropped_->Inc();
  } else if (topic.starts_with("session/")) {
    std::string message = node_id_;
    message += '\n';
    message += std::to_string(seq);
    message += '\n';
    message += *payload;
    bool queued = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!stopping_ && queue_.size() < options_.max_queue) {
        queue_.push_back(Outgoing{kChannelPrefix + topic, std::move(message)});
        queued = true;
      }
    }
    if (queued) {
      cv_.notify_one();
    } else {
      dropped_->Inc();
    }
  }
  Deliver(topic, seq, payload);
}

std::shared_ptr<RedisBus::TopicState> RedisBus::StateFor(const std::string& topic, bool create) {
  std::lock_guard<std::mutex> l(topics_mu_);
  auto it = topics_.find(topic);
  if (it != topics_.end()) return it->second;
  if (!create || topics_.size() >= options_.max_topics) return nullptr;
  auto st = std::make_shared<TopicState>();
  topics_.emplace(topic, st);
  return st;
}

void RedisBus::Deliver(const std::string& topic, uint64_t seq, const Payload& payload) {
  const Kind kind = KindOf(topic);
  if (kind == Kind::kOther || seq == 0) {
    local_.Publish(topic, payload, seq);
    return;
  }
  // Only topics someone here watches are tracked (and delivered).
  if (local_.SubscriberCount(topic) == 0) {
    std::lock_guard<std::mutex> l(topics_mu_);
    topics_.erase(topic);
    return;
  }
  auto state = StateFor(topic, true);
  if (!state) {  // too many topics tracked: deliver without ordering
    local_.Publish(topic, payload, seq);
    return;
  }
  std::lock_guard<std::mutex> l(state->mu);
  if (state->filling) {  // the filler delivers this topic until it is done
    if (seq > state->last && state->held.size() < kMaxHeldPerTopic)
      state->held.emplace(seq, payload);
    return;
  }
  if (state->known && seq <= state->last) return;  // delivered already (or older)
  if (kind == Kind::kEvents && state->known && seq > state->last + 1 && backfill_.load()) {
    // A gap: what the bus lost, or what another node wrote just before this
    // node's own event and is still on its way. The filler reads it from the
    // store and delivers it first; this message waits.
    state->filling = true;
    state->held.emplace(seq, payload);
    {
      std::lock_guard<std::mutex> f(fill_mu_);
      fills_.emplace_back(topic, state);
    }
    fill_cv_.notify_one();
    return;
  }
  local_.Publish(topic, payload, seq);
  state->last = seq;
  state->known = true;
}

void RedisBus::FillLoop() {
  for (;;) {
    std::pair<std::string, std::shared_ptr<TopicState>> job;
    {
      std::unique_lock<std::mutex> l(fill_mu_);
      fill_cv_.wait(l, [&] { return fill_stopping_ || !fills_.empty(); });
      if (fill_stopping_) return;
      job = std::move(fills_.front());
      fills_.pop_front();
    }
    FillTopic(job.first, job.second.get());
  }
}

void RedisBus::FillTopic(const std::string& topic, TopicState* state) {
  Backfill* fill = backfill_.load();
  std::unique_lock<std::mutex> l(state->mu);
  for (;;) {
    // Deliver what follows on from the last delivered.
    while (!state->held.empty()) {
      auto it = state->held.begin();
      if (it->first <= state->last) {
        state->held.erase(it);
      } else if (it->first == state->last + 1) {
        local_.Publish(topic, it->second, it->first);
        state->last = it->first;
        state->held.erase(it);
      } else {
        break;
      }
    }
    if (state->held.empty() || fill == nullptr) {
      state->filling = false;
      return;
    }
    const uint64_t after = state->last, upto = state->held.begin()->first - 1;
    l.unlock();  // the store read runs without holding up the topic's arrivals
    auto missing = fill->EventsAfter(SessionOf(topic), after, upto);
    l.lock();
    if (missing.ok()) {
      gap_fills_->Inc();
      for (auto& [s, p] : *missing) {
        if (s <= state->last) continue;
        local_.Publish(topic, p, s);
        state->last = s;
        filled_events_->Inc();
      }
    }
    if (!missing.ok() || state->last < upto) {
      // The store could not say (or no longer has them: the session was
      // erased): deliver what is held rather than hold it forever.
      if (!missing.ok())
        LogWarn("bus: cannot fill a gap from the store",
                {{"topic", topic}, {"error", std::string(missing.status().message())}});
      state->last = state->held.begin()->first - 1;
    }
  }
}

redisContext* RedisBus::Connect(std::string* error) {
  const timeval tv = ToTimeval(options_.timeout_ms);
  redisContext* c = redisConnectWithTimeout(endpoint_host_.c_str(), endpoint_port_, tv);
  if (c == nullptr) {
    *error = "cannot allocate a hiredis context";
    return nullptr;
  }
  if (c->err != 0) {
    *error = "connect: " + std::string(c->errstr);
    redisFree(c);
    return nullptr;
  }
  redisSetTimeout(c, tv);
  redisEnableKeepAlive(c);
  auto expect_ok = [&](redisReply* r, std::string_view what) {
    if (r == nullptr) {
      *error = std::string(what) + ": " + c->errstr;
      return false;
    }
    const bool ok = r->type == REDIS_REPLY_STATUS;
    if (!ok) *error = std::string(what) + ": " + (r->str ? std::string(r->str, r->len) : "?");
    freeReplyObject(r);
    return ok;
  };
  bool ok = true;
  if (!endpoint_password_.empty()) {
    ok = endpoint_user_.empty()
             ? expect_ok(Command(c, {"AUTH", endpoint_password_}), "AUTH")
             : expect_ok(Command(c, {"AUTH", endpoint_user_, endpoint_password_}), "AUTH");
  }
  if (ok && endpoint_password_.empty()) ok = expect_ok(Command(c, {"PING"}), "PING");
  // Pub/Sub channels are not per database: SELECT changes nothing for the bus.
  if (!ok) {
    redisFree(c);
    return nullptr;
  }
  return c;
}

void RedisBus::MarkUp() {
  if (!up_flag_.exchange(true)) {
    up_->Set(1);
    if (logged_down_.exchange(false))
      LogInfo("redis bus reachable again", {{"url", endpoint_redacted_}});
  }
}

void RedisBus::MarkDown(const std::string& why) {
  if (up_flag_.exchange(false)) up_->Set(0);
  if (!logged_down_.exchange(true))
    LogWarn("redis bus unavailable; subscribers catch up by polling the store",
            {{"url", endpoint_redacted_}, {"error", why}});
}

void RedisBus::PublisherLoop() {
  BlockSigpipe();
  redisContext* c = nullptr;
  for (;;) {
    std::vector<Outgoing> batch;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) break;
      while (!queue_.empty() && batch.size() < kMaxPipeline) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (c == nullptr) {
      std::string error;
      c = Connect(&error);
      if (c == nullptr) {
        dropped_->Inc(batch.size());
        MarkDown("publish: " + error);
        continue;  // the subscriber's reconnects decide when the bus is up
      }
    }
    bool ok = true;
    for (const auto& m : batch) {
      const char* argv[3] = {"PUBLISH", m.channel.data(), m.message.data()};
      const size_t lens[3] = {7, m.channel.size(), m.message.size()};
      if (redisAppendCommandArgv(c, 3, argv, lens) != REDIS_OK) ok = false;
    }
    size_t sent = 0;
    for (size_t i = 0; ok && i < batch.size(); ++i) {
      void* r = nullptr;
      if (redisGetReply(c, &r) != REDIS_OK) {
        ok = false;
        break;
      }
      freeReplyObject(r);
      ++sent;
    }
    published_->Inc(sent);
    if (!ok) {
      dropped_->Inc(batch.size() - sent);
      MarkDown("publish: " + std::string(c->errstr));
      redisFree(c);
      c = nullptr;
    }
  }
  if (c != nullptr) redisFree(c);
}

void RedisBus::SubscriberLoop() {
  BlockSigpipe();
  for (;;) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) return;
    }
    std::string error;
    redisContext* c = Connect(&error);
    redisReply* r = c ? Command(c, {"PSUBSCRIBE", kPattern}) : nullptr;
    if (r == nullptr) {
      MarkDown(c ? "PSUBSCRIBE: " + std::string(c->errstr) : error);
      if (c) redisFree(c);
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait_for(l, std::chrono::milliseconds(options_.retry_ms), [&] { return stopping_; });
      continue;
    }
    freeReplyObject(r);
    // Messages wait for this node as long as it likes: no read timeout (a
    // dead server is noticed by TCP keep-alive or by Stop's shutdown()).
    timeval none{0, 0};
    redisSetTimeout(c, none);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) {
        redisFree(c);
        return;
      }
      subscriber_fd_ = c->fd;
    }
    MarkUp();
    // Whatever was published while this node was not subscribed is found
    // by comparing with the store now.
    PollOnce();
    for (;;) {
      void* reply = nullptr;
      if (redisGetReply(c, &reply) != REDIS_OK) break;
      auto* m = static_cast<redisReply*>(reply);
      // ["pmessage", pattern, channel, message]
      if (m->type == REDIS_REPLY_ARRAY && m->elements == 4 &&
          std::string_view(m->element[0]->str, m->element[0]->len) == "pmessage") {
        const std::string channel(m->element[2]->str, m->element[2]->len);
        const std::string_view msg(m->element[3]->str, m->element[3]->len);
        const size_t a = msg.find('\n');
        const size_t b = a == std::string_view::npos ? a : msg.find('\n', a + 1);
        if (b != std::string_view::npos && msg.substr(0, a) != node_id_ &&
            channel.starts_with(kChannelPrefix)) {
          received_->Inc();
          const uint64_t seq =
              std::strtoull(std::string(msg.substr(a + 1, b - a - 1)).c_str(), nullptr, 10);
          Deliver(channel.substr(sizeof(kChannelPrefix) - 1), seq,
                  std::make_shared<const std::string>(msg.substr(b + 1)));
        }
      }
      freeReplyObject(reply);
    }
    bool stopping;
    {
      std::lock_guard<std::mutex> l(mu_);
      subscriber_fd_ = -1;
      stopping = stopping_;
    }
    if (!stopping) MarkDown("subscription: " + std::string(c->errstr));
    redisFree(c);
  }
}

void RedisBus::PollLoop() {
  for (;;) {
    const int every = up_flag_.load() ? options_.poll_ms : options_.down_poll_ms;
    {
      std::unique_lock<std::mutex> l(mu_);
      if (cv_.wait_for(l, std::chrono::milliseconds(every), [&] { return stopping_; })) return;
    }
    PollOnce();
  }
}

void RedisBus::PollOnce() {
  Backfill* fill = backfill_.load();
  if (fill == nullptr) return;
  std::vector<std::pair<std::string, std::shared_ptr<TopicState>>> watched;
  {
    std::lock_guard<std::mutex> l(topics_mu_);
    for (auto it = topics_.begin(); it != topics_.end();) {
      if (local_.SubscriberCount(it->first) == 0) {
        it = topics_.erase(it);
      } else {
        watched.emplace_back(it->first, it->second);
        ++it;
      }
    }
  }
  polls_->Inc();
  for (size_t begin = 0; begin < watched.size(); begin += kPollBatch) {
    const size_t end = std::min(watched.size(), begin + kPollBatch);
    std::vector<std::string> sids;
    for (size_t i = begin; i < end; ++i) sids.push_back(SessionOf(watched[i].first));
    auto versions = fill->Versions(sids);
    if (!versions.ok()) continue;
    for (size_t i = begin; i < end; ++i) {
      const auto& [topic, state] = watched[i];
      auto v = versions->find(sids[i - begin]);
      if (v == versions->end()) continue;
      {
        std::lock_guard<std::mutex> l(state->mu);
        if (!state->known || state->filling || v->second <= state->last) continue;
      }
      PollTopic(topic, sids[i - begin], state.get());
    }
  }
}

void RedisBus::PollTopic(const std::string& topic, const std::string& sid, TopicState* state) {
  Backfill* fill = backfill_.load();
  uint64_t last;
  {
    std::lock_guard<std::mutex> l(state->mu);
    last = state->last;
  }
  if (KindOf(topic) == Kind::kProfile) {
    auto prof = fill->Profile(sid);
    if (!prof.ok()) return;
    std::lock_guard<std::mutex> l(state->mu);
    if (!state->filling && prof->first > state->last) {
      local_.Publish(topic, prof->second, prof->first);
      state->last = prof->first;
    }
    return;
  }
  auto missing = fill->EventsAfter(sid, last, 0);
  if (!missing.ok()) return;
  std::lock_guard<std::mutex> l(state->mu);
  if (state->filling) return;  // the filler has it
  for (auto& [s, p] : *missing) {
    if (s <= state->last) continue;
    local_.Publish(topic, p, s);
    state->last = s;
    filled_events_->Inc();
  }
}

}  // namespace persona::bus
