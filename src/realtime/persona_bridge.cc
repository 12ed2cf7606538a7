#include "realtime/persona_bridge.h"

#include "core/ids.h"
#include "core/json.h"

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
  o["status"] = absl::IsNotFound(st) ? 404 : absl::IsFailedPrecondition(st) ? 412 : 422;
  o["detail"] = std::string(st.message());
  o["command"] = json::string_view(command.data(), command.size());  // "profile/set" | "messages"
  if (!request_id.is_null()) o["request_id"] = request_id;  // echoed so a client can match it
  return json::serialize(o);
}

}  // namespace

PersonaBridge::PersonaBridge(engine::Engine* engine, Broker* broker)
    : engine_(engine), broker_(broker) {
  broker_->SetVirtualRetained([this](const std::string& topic) -> std::optional<Message> {
    std::string_view id, rest;
    if (!SplitSessionTopic(topic, &id, &rest) || rest != "profile") return std::nullopt;
    auto p = engine_->GetProfileJson(std::string(id));
    if (!p.ok()) return std::nullopt;
    Message m;
    m.topic = topic;
    m.payload = std::make_shared<const std::string>(std::move(p->first));
    m.qos = 1;
    m.snapshot = true;
    return m;
  });
  firehose_ = engine_->bus()->SubscribeAll(
      [this](const std::string& topic, const bus::Payload& payload) {
        Message m;
        m.topic = topic;
        m.payload = payload;
        m.qos = 1;
        m.snapshot = topic.ends_with("/profile");
        broker_->Publish(m);
      },
      [this](const std::string& topic) {
        return topic.starts_with(kPrefix) && broker_->HasSubscribers(topic);
      });
}

PersonaBridge::~PersonaBridge() { firehose_.reset(); }

bool PersonaBridge::MaySubscribe(const std::string& client_id, const std::string& filter) {
  return true;  // authentication is not built yet (SPEC §5: tokens grant sessions)
}

void PersonaBridge::PublishError(const std::string& session_id, std::string_view command,
                                 const json::value& request_id, const Status& st) {
  Message m;
  m.topic = std::string(kPrefix) + session_id + "/errors";
  m.payload = std::make_shared<const std::string>(ProblemJson(st, command, request_id));
  m.qos = 0;
  broker_->Publish(m);
}

PublishFilter::Verdict PersonaBridge::OnClientPublish(const std::string& client_id,
                                                      const std::string& topic,
                                                      const std::string& payload) {
  std::string_view id_view, rest;
  if (!topic.starts_with(kPrefix)) return Verdict::kForward;
  if (!SplitSessionTopic(topic, &id_view, &rest)) return Verdict::kRefused;
  const std::string id(id_view);
  if (rest == "events" || rest == "profile" || rest == "errors") return Verdict::kRefused;
  if (rest != "profile/set" && rest != "messages") return Verdict::kForward;

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
