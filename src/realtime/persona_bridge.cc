#include "realtime/persona_bridge.h"

#include "core/ids.h"
#include "core/json.h"
#include "core/logging.h"
#include "limits/rate_limiter.h"

namespace persona::realtime {
namespace {

constexpr std::string_view kPrefix = "session/";

// Splits "session/{id}/{rest}"; false for other topics.
bool SplitSessionTopic(std::string_view topic, std::string_view* id, std::string_view* rest) {
  if (!topic.starts_with(kPrefix)) return false;
  topic.remove_prefix(kPrefix.size());
  const size_t slash = topic.find('/');
  if (slash == std::string_view::npos) return false;
  *id = topic.substr(0, slash);
  *rest = topic.substr(slash + 1);
  return IsValidId(*id);
}

std::string ProblemJson(const Status& st, std::string_view command, const json::value& request_id) {
  json::object o;
  o["type"] = "/problems/mqtt-command";
  o["title"] = "Command refused";
  o["status"] = HttpStatusCode(st);
  if (const int retry = RetryAfterOf(st); retry > 0) o["retry_after"] = retry;
  o["detail"] = std::string(st.message());
  o["command"] = json::string_view(command.data(), command.size());  // "profile/set" | "messages"
  if (!request_id.is_null()) o["request_id"] = request_id;  // echoed so a client can match it
  return json::serialize(o);
}

}  // namespace

PersonaBridge::PersonaBridge(engine::Engine* engine, Broker* broker, BridgeOptions options)
    : engine_(engine),
      broker_(broker),
      options_(options),
      rate_limited_(metrics::Default().GetCounter(
          "persona_mqtt_rate_limited_total",
          "Client PUBLISHes dropped by limits.mqtt_publish_per_user/_per_address")),
      refused_subscriptions_(
          metrics::Default().GetCounter("persona_mqtt_refused_subscriptions_total",
                                        "SUBSCRIBE filters refused (0x80) by authorization")),
      restored_sessions_(metrics::Default().GetCounter(
          "persona_mqtt_sessions_restored_total",
          "Persistent MQTT sessions restored from the shared store (left by another node)")),
      replayed_events_(metrics::Default().GetCounter(
          "persona_mqtt_replayed_events_total",
          "Events a restored session's device had not acknowledged, replayed from the log")) {
  if (options_.auth == nullptr) options_.auth = &off_;
  broker_->SetVirtualRetained([this](const std::string& topic) -> std::optional<Message> {
    std::string_view id, rest;
    if (!SplitSessionTopic(topic, &id, &rest) || rest != "profile") return std::nullopt;
    // Only called for a subscription MaySubscribe granted.
    auto p = engine_->GetProfileJson(auth::Caller::System(), std::string(id));
    if (!p.ok()) return std::nullopt;
    Message m;
    m.topic = topic;
    m.payload = std::make_shared<const std::string>(std::move(p->first));
    m.qos = 1;
    m.snapshot = true;
    return m;
  });
  firehose_ = engine_->bus()->SubscribeAll(
      [this](const std::string& topic, const bus::Payload& payload, uint64_t seq) {
        Message m;
        m.topic = topic;
        m.payload = payload;
        m.qos = 1;
        m.snapshot = topic.ends_with("/profile");
        if (topic.ends_with("/events")) m.seq = seq;
        broker_->Publish(m);
      },
      [this](const std::string& topic) {
        return topic.starts_with(kPrefix) && broker_->HasSubscribers(topic);
      });
}

PersonaBridge::~PersonaBridge() { firehose_.reset(); }

StatusOr<auth::Caller> PersonaBridge::Authenticate(const std::optional<std::string>& password,
                                                   const std::string& transport_credential) {
  return options_.auth->FromToken(password ? *password : transport_credential);
}

bool PersonaBridge::MaySubscribe(const MqttClient& client, const std::string& filter) {
  const size_t slash = filter.find('/');
  const std::string_view first = std::string_view(filter).substr(0, slash);
  bool ok;
  if (first == "session") {
    if (client.caller.unrestricted()) return true;
    // session/{id}[/…]: the session level must be a literal id the caller
    // may touch; '+' or '#' there could match another user's session.
    if (slash == std::string::npos) return false;
    std::string_view rest = std::string_view(filter).substr(slash + 1);
    const std::string id(rest.substr(0, rest.find('/')));
    ok = IsValidId(id) && engine_->CheckAccess(client.caller, id).ok();
  } else if (first == "+" || first == "#") {
    ok = client.caller.unrestricted();  // matches session/… topics too
  } else {
    ok = options_.open_topics;
  }
  if (!ok) refused_subscriptions_->Inc();
  return ok;
}

void PersonaBridge::OnSubscribe(const MqttClient& client,
                                const std::shared_ptr<Broker::Session>& session,
                                const std::string& filter) {
  // A persistent session's cursor starts where the log is as it subscribes,
  // so that a restore elsewhere replays even what it never received here.
  if (options_.sessions == nullptr) return;
  std::string_view id, rest;
  if (!SplitSessionTopic(filter, &id, &rest) || rest != "events" || !broker_->Persistent(session))
    return;
  auto version = engine_->Version(client.caller, std::string(id));
  if (version.ok()) broker_->InitCursor(session, filter, *version);
}

bool PersonaBridge::RestoreSession(const MqttClient& client, const std::string& session_key,
                                   const std::shared_ptr<Broker::Session>& session) {
  if (options_.sessions == nullptr) return false;
  // One primary-key read, on the connection's thread: only for a CONNECT
  // that asks for a session this node does not have.
  auto record = options_.sessions->TakeMqttSession(session_key);
  if (!record.ok()) {
    LogWarn("mqtt: cannot read persistent sessions from the store",
            {{"error", std::string(record.status().message())}});
    return false;
  }
  if (!*record) return false;
  constexpr size_t kMaxReplay = 1000;  // the broker's queue holds no more
  Status st = broker_->Restore(
      session, **record, [&](const std::string& filter) { return MaySubscribe(client, filter); },
      [&](const std::string& topic, uint64_t after) {
        std::vector<Message> out;
        std::string_view id, rest;
        if (!SplitSessionTopic(topic, &id, &rest) || rest != "events") return out;
        auto events = engine_->ListEvents(client.caller, std::string(id), after, kMaxReplay);
        if (!events.ok()) return out;
        for (const auto& e : *events) {
          Message m;
          m.topic = topic;
          m.payload = std::make_shared<const std::string>(model::EventToJsonString(e));
          m.qos = 1;
          m.seq = e.seq;
          out.push_back(std::move(m));
        }
        replayed_events_->Inc(out.size());
        return out;
      });
  if (!st.ok()) return false;
  restored_sessions_->Inc();
  return true;
}

double PersonaBridge::RateLimited(const MqttClient& client) {
  double wait = 0;
  if (options_.publish_per_user && client.caller.authenticated())
    wait = options_.publish_per_user->Take(client.caller.user_id());
  if (wait == 0 && options_.publish_per_address)
    wait = options_.publish_per_address->Take(limits::AddressOnly(client.remote));
  return wait;
}

void PersonaBridge::PublishError(const std::string& session_id, std::string_view command,
                                 const json::value& request_id, const Status& st) {
  Message m;
  m.topic = std::string(kPrefix) + session_id + "/errors";
  m.payload = std::make_shared<const std::string>(ProblemJson(st, command, request_id));
  m.qos = 0;
  broker_->Publish(m);
}

MqttPolicy::Verdict PersonaBridge::OnClientPublish(const MqttClient& client,
                                                   const std::string& topic,
                                                   const std::string& payload) {
  std::string_view id_view, rest;
  const double wait = RateLimited(client);
  if (!topic.starts_with(kPrefix)) {
    if (wait > 0) {
      rate_limited_->Inc();
      return Verdict::kRefused;
    }
    return options_.open_topics ? Verdict::kForward : Verdict::kRefused;
  }
  if (!SplitSessionTopic(topic, &id_view, &rest)) return Verdict::kRefused;
  const std::string id(id_view);
  // Another user's session: dropped, and nothing is said on its topics.
  if (!client.caller.unrestricted() && !engine_->CheckAccess(client.caller, id).ok())
    return Verdict::kRefused;
  if (rest == "events" || rest == "profile" || rest == "errors") return Verdict::kRefused;
  const bool is_command = rest == "profile/set" || rest == "messages";
  if (wait > 0) {
    rate_limited_->Inc();
    if (is_command)
      PublishError(id, std::string(rest), nullptr,
                   WithRetryAfter(absl::ResourceExhaustedError("too many messages"), wait));
    return Verdict::kRefused;
  }
  if (!is_command) return Verdict::kForward;

  const std::string command(rest);
  auto parsed = ParseJson(payload);
  if (!parsed.ok() || !parsed->is_object()) {
    PublishError(id, command, nullptr, absl::InvalidArgumentError("payload must be a JSON object"));
    return Verdict::kConsumed;
  }
  const json::object& body = parsed->get_object();
  // A client-chosen id (string or number) echoed in the problem, if any.
  json::value request_id = nullptr;
  if (const json::value* r = Find(body, "request_id"); r && (r->is_string() || r->is_number()))
    request_id = *r;
  auto on_done = [this, id, command, request_id](StatusOr<engine::Reply> r) {
    if (!r.ok()) PublishError(id, command, request_id, r.status());
  };
  if (rest == "messages") {
    auto text = GetString(body, "text");
    if (!text || text->find_first_not_of(" \t\r\n") == std::string_view::npos ||
        text->size() > (16 << 10)) {
      PublishError(id, command, request_id,
                   absl::InvalidArgumentError("'text' must be a non-blank string"));
      return Verdict::kConsumed;
    }
    engine::MessageRequest req;
    if (const json::value* p = Find(body, "priority")) {
      if (!p->is_string() || !ai::ParsePriority(p->get_string(), &req.priority)) {
        PublishError(
            id, command, request_id,
            absl::InvalidArgumentError("'priority' must be \"low\", \"normal\" or \"high\""));
        return Verdict::kConsumed;
      }
    }
    req.caller = client.caller;
    req.session_id = id;
    req.text = std::string(*text);
    req.origin = "device";
    engine_->PostMessage(std::move(req), on_done);
    return Verdict::kConsumed;
  }
  const json::value* fields = Find(body, "fields");
  if (fields == nullptr || !fields->is_object()) {
    PublishError(id, command, request_id, absl::InvalidArgumentError("'fields' must be an object"));
    return Verdict::kConsumed;
  }
  engine::PatchRequest req;
  req.caller = client.caller;
  req.session_id = id;
  req.fields = fields->get_object();
  req.source = "device";
  if (auto v = GetInt(body, "base_version"); v && *v >= 0) req.if_match = static_cast<uint64_t>(*v);
  if (auto h = GetString(body, "base_hlc")) {
    Hlc hlc;
    if (ParseHlc(*h, &hlc)) req.base_hlc = hlc;
  }
  engine_->PatchProfile(std::move(req), on_done);
  return Verdict::kConsumed;
}

}  // namespace persona::realtime
