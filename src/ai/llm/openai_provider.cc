#include "ai/llm/openai_provider.h"

#include <strings.h>

#include <cctype>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "ai/llm/prompt.h"

namespace persona::ai::llm {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

int64_t RetryAfterHeaderMs(const std::string& v) {
  if (v.empty()) return 0;
  char* end = nullptr;
  const double s = std::strtod(v.c_str(), &end);
  if (end == v.c_str() || s < 0) return 0;  // HTTP dates are not honoured: back off normally
  return static_cast<int64_t>(std::min(s, 3600.0) * 1000);
}

namespace {

std::string Snippet(std::string s) {
  if (s.size() > 200) s.resize(200);
  return s;
}

}  // namespace

Status StatusForHttp(int status, const std::string& body, const std::string& retry_after,
                     const std::string& provider) {
  const std::string what = absl::StrCat(provider, " answered ", status, ": ", Snippet(body));
  if (status == 429)
    return WithRetryAfter(absl::ResourceExhaustedError(what), RetryAfterHeaderMs(retry_after));
  if (status >= 500)
    return WithRetryAfter(absl::UnavailableError(what), RetryAfterHeaderMs(retry_after));
  if (status == 408) return absl::DeadlineExceededError(what);
  if (status == 401 || status == 403) return absl::PermissionDeniedError(what);
  return absl::InvalidArgumentError(what);
}

// The state of one streamed call: server-sent events in, reply tokens out.
struct OpenAiProvider::Stream {
  int status = 0;
  std::string retry_after;
  std::string error_body;  // a non-200 body, kept (bounded) for the message
  std::string line;        // a partial SSE line
  std::string content;     // the model's whole output so far
  ReplyStreamer reply;
  int64_t tokens_in = 0, tokens_out = 0;

  void OnData(std::string_view chunk, const std::function<void(std::string_view)>& on_token) {
    if (status != 200) {
      if (error_body.size() < 4096) error_body.append(chunk.substr(0, 4096 - error_body.size()));
      return;
    }
    for (char c : chunk) {
      if (c != '\n') {
        if (line.size() < (1 << 20)) line += c;
        continue;
      }
      if (!line.empty() && line.back() == '\r') line.pop_back();
      OnLine(line, on_token);
      line.clear();
    }
  }

  void OnLine(std::string_view l, const std::function<void(std::string_view)>& on_token) {
    if (!l.starts_with("data:")) return;
    l.remove_prefix(5);
    while (!l.empty() && l.front() == ' ') l.remove_prefix(1);
    if (l == "[DONE]") return;
    auto v = ParseJson(l);
    if (!v.ok() || !v->is_object()) return;
    const json::object& o = v->get_object();
    if (const json::value* u = Find(o, "usage"); u && u->is_object()) {
      tokens_in = GetInt(u->get_object(), "prompt_tokens").value_or(tokens_in);
      tokens_out = GetInt(u->get_object(), "completion_tokens").value_or(tokens_out);
    }
    const json::value* ch = Find(o, "choices");
    if (ch == nullptr || !ch->is_array() || ch->get_array().empty()) return;
    const json::value& c0 = ch->get_array()[0];
    if (!c0.is_object()) return;
    const json::value* d = Find(c0.get_object(), "delta");
    if (d == nullptr || !d->is_object()) return;
    auto piece = GetString(d->get_object(), "content");
    if (!piece || piece->empty()) return;
    content.append(piece->data(), piece->size());
    const std::string text = reply.Feed(*piece);
    if (!text.empty() && on_token) on_token(text);
  }
};

OpenAiProvider::OpenAiProvider(OpenAiOptions options, net::HttpClient* client,
                               std::shared_ptr<BuiltinProvider> rules)
    : options_(std::move(options)), client_(client), rules_(std::move(rules)) {
  while (!options_.base_url.empty() && options_.base_url.back() == '/')
    options_.base_url.pop_back();
}

std::string OpenAiProvider::RequestBody(const AiRequest& req, bool stream) const {
  json::object body;
  body["model"] = options_.model;
  json::array msgs;
  for (auto& [role, text] : ChatMessages(req)) {
    json::object m;
    m["role"] = role;
    m["content"] = text;
    msgs.push_back(std::move(m));
  }
  body["messages"] = std::move(msgs);
  body["temperature"] = options_.temperature;
  body["max_tokens"] = options_.max_tokens;
  json::object fmt;
  fmt["type"] = "json_object";
  body["response_format"] = std::move(fmt);
  if (stream) {
    body["stream"] = true;
    json::object so;
    so["include_usage"] = true;
    body["stream_options"] = std::move(so);
  }
  return json::serialize(body);
}

double OpenAiProvider::MaxCostUsd(const AiRequest& req) const {
  return MaxCallCostUsd(req, options_);
}

StatusOr<AiReply> OpenAiProvider::Finish(const AiRequest& req, const std::string& content,
                                         int64_t tokens_in, int64_t tokens_out,
                                         int64_t request_bytes) const {
  CallInfo info;
  info.options = &options_;
  info.tokens_in = tokens_in;
  info.tokens_out = tokens_out;
  info.request_bytes = request_bytes;
  return ReplyFromModel(req, content, info, *rules_);
}

std::shared_ptr<Call> OpenAiProvider::Respond(AiRequest req, Callback done) {
  const bool stream = static_cast<bool>(req.on_token);
  net::ClientRequest http;
  http.method = "POST";
  http.url = options_.base_url + "/chat/completions";
  http.body = RequestBody(req, stream);
  http.headers.emplace_back("Content-Type", "application/json");
  http.headers.emplace_back("Accept", stream ? "text/event-stream" : "application/json");
  if (!req.traceparent.empty()) http.headers.emplace_back("traceparent", req.traceparent);
  if (!options_.api_key.empty())
    http.headers.emplace_back("Authorization", "Bearer " + options_.api_key);
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(req.deadline - Clock::now());
  http.timeout_ms = static_cast<int>(std::clamp<int64_t>(left.count(), 1, 600000));
  const int64_t request_bytes = static_cast<int64_t>(http.body.size());
  auto shared_req = std::make_shared<AiRequest>(std::move(req));

  if (!stream) {
    auto c =
        client_->Send(std::move(http), [this, shared_req, request_bytes,
                                        done = std::move(done)](StatusOr<net::ClientResponse> res) {
          if (!res.ok()) return done(res.status());
          if (res->status != 200)
            return done(
                StatusForHttp(res->status, res->body, res->Header("Retry-After"), options_.name));
          auto v = ParseJson(res->body);
          if (!v.ok() || !v->is_object())
            return done(absl::UnavailableError(options_.name + " sent a body that is not JSON"));
          const json::object& o = v->get_object();
          std::string content;
          if (const json::value* ch = Find(o, "choices");
              ch && ch->is_array() && !ch->get_array().empty() && ch->get_array()[0].is_object()) {
            if (const json::value* m = Find(ch->get_array()[0].get_object(), "message");
                m && m->is_object()) {
              content = std::string(GetString(m->get_object(), "content").value_or(""));
            }
          }
          int64_t in = 0, out = 0;
          if (const json::value* u = Find(o, "usage"); u && u->is_object()) {
            in = GetInt(u->get_object(), "prompt_tokens").value_or(0);
            out = GetInt(u->get_object(), "completion_tokens").value_or(0);
          }
          done(Finish(*shared_req, content, in, out, request_bytes));
        });
    return std::make_shared<HttpCall>(std::move(c));
  }

  auto st = std::make_shared<Stream>();
  auto c = client_->Send(
      std::move(http),
      [this, shared_req, st, request_bytes,
       done = std::move(done)](StatusOr<net::ClientResponse> res) {
        if (!res.ok()) return done(res.status());
        if (res->status != 200)
          return done(StatusForHttp(res->status, st->error_body, st->retry_after, options_.name));
        if (!st->line.empty()) st->OnLine(st->line, {});  // a last line without newline
        done(Finish(*shared_req, st->content, st->tokens_in, st->tokens_out, request_bytes));
      },
      [st](int status, const net::HeaderList& headers) {
        st->status = status;
        for (const auto& [k, v] : headers) {
          if (k.size() == 11 && strncasecmp(k.c_str(), "retry-after", 11) == 0) st->retry_after = v;
        }
      },
      [st, shared_req](std::string_view chunk) { st->OnData(chunk, shared_req->on_token); });
  return std::make_shared<HttpCall>(std::move(c));
}

}  // namespace persona::ai::llm
