#include "ai/bedrock/converse.h"

#include <cctype>
#include <optional>

#include "ai/bedrock/sigv4.h"
#include "core/json.h"

namespace persona::ai::bedrock {
namespace {

bool IsBlank(std::string_view s) {
  for (char c : s) {
    if (!std::isspace(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string Str(std::string_view s) { return std::string(s); }

const json::object* FindObject(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  return v != nullptr && v->is_object() ? &v->get_object() : nullptr;
}

// A non-negative integer field; nullopt when absent, DataLoss when of another type.
StatusOr<std::optional<int64_t>> Count(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  if (v == nullptr) return std::optional<int64_t>();
  std::optional<int64_t> n = GetInt(o, key);
  if (!n || *n < 0) {
    return absl::DataLossError("Bedrock response: \"" + Str(key) +
                               "\" is not a non-negative integer");
  }
  return n;
}

Status ReadUsage(const json::object& root, int64_t* in, int64_t* out, int64_t* latency) {
  if (const json::object* usage = FindObject(root, "usage")) {
    auto i = Count(*usage, "inputTokens");
    if (!i.ok()) return i.status();
    auto o = Count(*usage, "outputTokens");
    if (!o.ok()) return o.status();
    *in = i->value_or(0);
    *out = o->value_or(0);
  } else if (Find(root, "usage") != nullptr) {
    return absl::DataLossError("Bedrock response: \"usage\" is not an object");
  }
  if (const json::object* metrics = FindObject(root, "metrics")) {
    auto l = Count(*metrics, "latencyMs");
    if (l.ok() && l->has_value()) *latency = **l;
  }
  return absl::OkStatus();
}

StatusOr<json::object> ParseObject(std::string_view body, std::string_view what) {
  StatusOr<json::value> v = ParseJson(body);
  if (!v.ok()) {
    return absl::DataLossError(Str(what) + " is not JSON: " + std::string(v.status().message()));
  }
  if (!v->is_object()) return absl::DataLossError(Str(what) + " is not a JSON object");
  return std::move(v->get_object());
}

// The message of an error body, leniently ({"message"}, {"Message"}, or the raw text).
std::string ErrorMessage(std::string_view body) {
  StatusOr<json::value> v = ParseJson(body);
  if (v.ok() && v->is_object()) {
    for (const char* key : {"message", "Message"}) {
      if (auto m = GetString(v->get_object(), key)) return Str(*m);
    }
  }
  return Str(body.substr(0, 512));
}

Status FromType(std::string_view type, int http_status, std::string_view message) {
  const std::string name = Str(type.substr(0, type.find(':')));
  const std::string t = Lower(name);
  std::string text = "Bedrock " + (name.empty() ? "HTTP " + std::to_string(http_status) : name);
  if (!message.empty()) text += ": " + Str(message);
  if (t == "throttlingexception" || t == "toomanyrequestsexception" ||
      t == "servicequotaexceededexception") {
    return absl::ResourceExhaustedError(text);
  }
  if (t == "serviceunavailableexception" || t == "internalserverexception" ||
      t == "modelstreamerrorexception" || t == "modelnotreadyexception" ||
      t == "modelerrorexception") {
    return absl::UnavailableError(text);
  }
  if (t == "modeltimeoutexception") return absl::DeadlineExceededError(text);
  if (t == "validationexception") return absl::InvalidArgumentError(text);
  if (t == "accessdeniedexception") return absl::PermissionDeniedError(text);
  if (t == "unrecognizedclientexception" || t == "invalidsignatureexception" ||
      t == "incompletesignatureexception" || t == "missingauthenticationtokenexception" ||
      t == "expiredtokenexception") {
    return absl::UnauthenticatedError(text);
  }
  if (t == "resourcenotfoundexception") return absl::NotFoundError(text);
  if (http_status == 429) return absl::ResourceExhaustedError(text);
  if (http_status >= 500 && http_status <= 599) return absl::UnavailableError(text);
  if (http_status == 400) return absl::InvalidArgumentError(text);
  if (http_status == 401 || http_status == 403) return absl::PermissionDeniedError(text);
  if (http_status == 404) return absl::NotFoundError(text);
  if (http_status == 408) return absl::DeadlineExceededError(text);
  return absl::InternalError(text);
}

bool ValidRegion(const std::string& region) {
  if (region.empty() || region.size() > 64) return false;
  for (char c : region) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

}  // namespace

std::string BuildConverseBody(const std::string& system_prompt,
                              const std::vector<std::pair<std::string, std::string>>& messages,
                              int max_tokens, double temperature) {
  // Repair the history into what Bedrock accepts (see the header).
  std::vector<std::pair<std::string, std::string>> turns;
  for (const auto& [role, text] : messages) {
    if ((role != "user" && role != "assistant") || IsBlank(text)) continue;
    if (turns.empty() && role != "user") continue;
    if (!turns.empty() && turns.back().first == role) {
      turns.back().second += "\n\n" + text;
    } else {
      turns.emplace_back(role, text);
    }
  }

  json::object root;
  if (!IsBlank(system_prompt)) {
    json::array system;
    system.push_back(json::object{{"text", system_prompt}});
    root["system"] = std::move(system);
  }
  json::array msgs;
  for (auto& [role, text] : turns) {
    json::array content;
    content.push_back(json::object{{"text", text}});
    msgs.push_back(json::object{{"role", role}, {"content", std::move(content)}});
  }
  root["messages"] = std::move(msgs);
  json::object config;
  if (max_tokens > 0) config["maxTokens"] = max_tokens;
  if (temperature >= 0) config["temperature"] = temperature;
  if (!config.empty()) root["inferenceConfig"] = std::move(config);
  return ToJson(root);
}

StatusOr<ConverseResult> ParseConverseResponse(std::string_view body) {
  StatusOr<json::object> root = ParseObject(body, "Bedrock response");
  if (!root.ok()) return root.status();
  const json::object* output = FindObject(*root, "output");
  const json::object* message = output ? FindObject(*output, "message") : nullptr;
  const json::value* content = message ? Find(*message, "content") : nullptr;
  if (content == nullptr || !content->is_array()) {
    return absl::DataLossError("Bedrock response: no output.message.content array");
  }
  ConverseResult r;
  for (const json::value& block : content->get_array()) {
    if (!block.is_object())
      return absl::DataLossError("Bedrock response: a content block is not an object");
    const json::value* text = Find(block.get_object(), "text");
    if (text == nullptr) continue;  // toolUse, reasoningContent, image, …
    if (!text->is_string())
      return absl::DataLossError("Bedrock response: \"text\" is not a string");
    r.text.append(text->get_string().data(), text->get_string().size());
  }
  if (auto stop = GetString(*root, "stopReason")) r.stop_reason = Str(*stop);
  Status s = ReadUsage(*root, &r.input_tokens, &r.output_tokens, &r.latency_ms);
  if (!s.ok()) return s;
  return r;
}

StatusOr<StreamEvent> ParseStreamEvent(const EventMessage& m) {
  auto header = [&m](const char* name) -> std::string {
    auto it = m.headers.find(name);
    return it == m.headers.end() ? std::string() : it->second;
  };
  const std::string message_type = header(":message-type");
  if (message_type == "exception") {
    const std::string type = header(":exception-type");
    return FromType(type.empty() ? "UnknownException" : type, 0, ErrorMessage(m.payload));
  }
  if (message_type == "error") {
    const std::string code = header(":error-code");
    return FromType(code.empty() ? "UnknownError" : code, 0, header(":error-message"));
  }
  if (!message_type.empty() && message_type != "event") {
    return absl::DataLossError("Bedrock stream: unknown :message-type \"" + message_type + "\"");
  }

  StreamEvent e;
  e.event_type = header(":event-type");
  if (e.event_type.empty()) return absl::DataLossError("Bedrock stream: event without :event-type");
  using Type = StreamEvent::Type;
  if (e.event_type == "messageStart") {
    e.type = Type::kMessageStart;
  } else if (e.event_type == "contentBlockStart") {
    e.type = Type::kContentBlockStart;
  } else if (e.event_type == "contentBlockDelta") {
    e.type = Type::kContentBlockDelta;
  } else if (e.event_type == "contentBlockStop") {
    e.type = Type::kContentBlockStop;
  } else if (e.event_type == "messageStop") {
    e.type = Type::kMessageStop;
  } else if (e.event_type == "metadata") {
    e.type = Type::kMetadata;
  } else {
    return e;  // kOther: not parsed
  }

  StatusOr<json::object> payload = ParseObject(m.payload, "Bedrock " + e.event_type + " event");
  if (!payload.ok()) return payload.status();
  switch (e.type) {
    case Type::kContentBlockDelta: {
      const json::object* delta = FindObject(*payload, "delta");
      if (delta == nullptr) return absl::DataLossError("Bedrock contentBlockDelta without delta");
      const json::value* text = Find(*delta, "text");
      if (text != nullptr) {
        if (!text->is_string()) return absl::DataLossError("Bedrock delta.text is not a string");
        e.text.assign(text->get_string().data(), text->get_string().size());
      }
      break;
    }
    case Type::kMessageStop:
      if (auto stop = GetString(*payload, "stopReason")) e.stop_reason = Str(*stop);
      break;
    case Type::kMetadata: {
      Status s = ReadUsage(*payload, &e.input_tokens, &e.output_tokens, &e.latency_ms);
      if (!s.ok()) return s;
      break;
    }
    default:
      break;
  }
  return e;
}

Status ConverseErrorStatus(int http_status, std::string_view error_type, std::string_view body) {
  return FromType(error_type, http_status, ErrorMessage(body));
}

StatusOr<ConverseEndpoint> ResolveConverseEndpoint(const std::string& region,
                                                   const std::string& endpoint_override,
                                                   const std::string& model_id, bool stream) {
  if (model_id.empty()) return absl::InvalidArgumentError("bedrock: empty model id");
  ConverseEndpoint e;
  std::string base_path;
  if (endpoint_override.empty()) {
    if (!ValidRegion(region)) {
      return absl::InvalidArgumentError("bedrock: invalid region \"" + region + "\"");
    }
    e.tls = true;
    e.host = "bedrock-runtime." + region + ".amazonaws.com";
    e.port = "443";
    e.host_header = e.host;
  } else {
    std::string_view rest = endpoint_override;
    if (rest.substr(0, 8) == "https://") {
      e.tls = true;
      rest.remove_prefix(8);
    } else if (rest.substr(0, 7) == "http://") {
      e.tls = false;
      rest.remove_prefix(7);
    } else {
      return absl::InvalidArgumentError(
          "bedrock: endpoint_url must start with http:// or "
          "https://: \"" +
          endpoint_override + "\"");
    }
    const size_t slash = rest.find('/');
    const std::string_view authority = rest.substr(0, slash);
    if (slash != std::string_view::npos) base_path = Str(rest.substr(slash));
    while (!base_path.empty() && base_path.back() == '/') base_path.pop_back();
    if (authority.empty() || authority.find_first_of("?#@ \t") != std::string_view::npos ||
        base_path.find_first_of("?# \t") != std::string::npos) {
      return absl::InvalidArgumentError("bedrock: invalid endpoint_url \"" + endpoint_override +
                                        "\"");
    }
    e.host_header = Str(authority);
    const size_t colon = authority.rfind(':');
    const bool bracketed = !authority.empty() && authority.back() == ']';  // [::1]
    if (colon != std::string_view::npos && !bracketed) {
      e.host = Str(authority.substr(0, colon));
      e.port = Str(authority.substr(colon + 1));
      if (e.port.empty() || e.port.size() > 5 ||
          e.port.find_first_not_of("0123456789") != std::string::npos || e.host.empty()) {
        return absl::InvalidArgumentError("bedrock: invalid port in endpoint_url \"" +
                                          endpoint_override + "\"");
      }
    } else {
      e.host = Str(authority);
      e.port = e.tls ? "443" : "80";
    }
  }
  e.path = base_path + "/model/" + EncodePathSegment(model_id) +
           (stream ? "/converse-stream" : "/converse");
  e.url = (e.tls ? "https://" : "http://") + e.host_header + e.path;
  return e;
}

std::string ConverseUrl(const std::string& region, const std::string& endpoint_override,
                        const std::string& model_id, bool stream) {
  StatusOr<ConverseEndpoint> e =
      ResolveConverseEndpoint(region, endpoint_override, model_id, stream);
  return e.ok() ? e->url : std::string();
}

}  // namespace persona::ai::bedrock
