#include "ai/llm/bedrock_provider.h"

#include <strings.h>

#include <chrono>

#include "ai/bedrock/converse.h"
#include "ai/bedrock/event_stream.h"
#include "ai/llm/openai_provider.h"
#include "ai/llm/prompt.h"
#include "core/clock.h"

namespace persona::ai::llm {
namespace {

using Clock = std::chrono::steady_clock;

// System prompt apart, the conversation as Converse wants it.
std::vector<std::pair<std::string, std::string>> Turns(const AiRequest& req) {
  auto all = ChatMessages(req);
  return std::vector<std::pair<std::string, std::string>>(all.begin() + 1, all.end());
}

Status WithRetry(Status st, const std::string& retry_after) {
  if (absl::IsResourceExhausted(st) || absl::IsUnavailable(st))
    return WithRetryAfter(std::move(st), RetryAfterHeaderMs(retry_after));
  return st;
}

}  // namespace

struct BedrockProvider::Stream {
  int status = 0;
  std::string retry_after, error_type, error_body;
  bedrock::EventStreamDecoder decoder;
  std::string content;
  ReplyStreamer reply;
  int64_t tokens_in = 0, tokens_out = 0;
  Status failed;  // an exception event or a framing error

  void OnData(std::string_view chunk, const std::function<void(std::string_view)>& on_token) {
    if (status != 200) {
      if (error_body.size() < 4096) error_body.append(chunk.substr(0, 4096 - error_body.size()));
      return;
    }
    if (!failed.ok()) return;
    std::vector<bedrock::EventMessage> msgs;
    if (Status st = decoder.Feed(chunk, &msgs); !st.ok()) failed = st;
    for (const auto& m : msgs) {
      auto ev = bedrock::ParseStreamEvent(m);
      if (!ev.ok()) {
        if (failed.ok()) failed = ev.status();
        return;
      }
      if (ev->type == bedrock::StreamEvent::Type::kContentBlockDelta && !ev->text.empty()) {
        content += ev->text;
        const std::string text = reply.Feed(ev->text);
        if (!text.empty() && on_token) on_token(text);
      } else if (ev->type == bedrock::StreamEvent::Type::kMetadata) {
        tokens_in = ev->input_tokens;
        tokens_out = ev->output_tokens;
      }
    }
  }
};

BedrockProvider::BedrockProvider(BedrockOptions options, net::HttpClient* client,
                                 std::shared_ptr<BuiltinProvider> rules)
    : options_(std::move(options)), client_(client), rules_(std::move(rules)) {}

double BedrockProvider::MaxCostUsd(const AiRequest& req) const {
  return MaxCallCostUsd(req, options_);
}

std::shared_ptr<Call> BedrockProvider::Respond(AiRequest req, Callback done) {
  const bool stream = static_cast<bool>(req.on_token);
  auto ep = bedrock::ResolveConverseEndpoint(options_.region, options_.endpoint_url, options_.model,
                                             stream);
  if (!ep.ok()) {
    done(ep.status());
    return nullptr;
  }
  const std::string body = bedrock::BuildConverseBody(SystemPrompt(req), Turns(req),
                                                      options_.max_tokens, options_.temperature);
  bedrock::SigningRequest sr;
  sr.method = "POST";
  sr.host = ep->host_header;
  sr.path = ep->path;
  sr.headers = {{"content-type", "application/json"}};
  sr.payload = body;
  sr.region = options_.region.empty() ? "us-east-1" : options_.region;
  sr.service = "bedrock";
  sr.amz_date = bedrock::AmzDate(NowMillis() / 1000);

  net::ClientRequest http;
  http.method = "POST";
  http.url = ep->url;
  http.body = body;
  http.headers.emplace_back("Host", ep->host_header);
  http.headers.emplace_back("Content-Type", "application/json");
  http.headers.emplace_back("Accept",
                            stream ? "application/vnd.amazon.eventstream" : "application/json");
  for (auto& h : bedrock::SignV4(sr, options_.credentials)) http.headers.push_back(std::move(h));
  if (!req.traceparent.empty()) http.headers.emplace_back("traceparent", req.traceparent);
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(req.deadline - Clock::now());
  http.timeout_ms = static_cast<int>(std::clamp<int64_t>(left.count(), 1, 600000));
  CallInfo info;
  info.options = &options_;
  info.request_bytes = static_cast<int64_t>(body.size());
  auto shared_req = std::make_shared<AiRequest>(std::move(req));

  if (!stream) {
    auto c = client_->Send(std::move(http), [this, shared_req, info, done = std::move(done)](
                                                StatusOr<net::ClientResponse> res) mutable {
      if (!res.ok()) return done(res.status());
      if (res->status != 200) {
        return done(WithRetry(
            bedrock::ConverseErrorStatus(res->status, res->Header("x-amzn-ErrorType"), res->body),
            res->Header("Retry-After")));
      }
      auto parsed = bedrock::ParseConverseResponse(res->body);
      if (!parsed.ok()) return done(absl::UnavailableError(std::string(parsed.status().message())));
      info.tokens_in = parsed->input_tokens;
      info.tokens_out = parsed->output_tokens;
      done(ReplyFromModel(*shared_req, parsed->text, info, *rules_));
    });
    return std::make_shared<HttpCall>(std::move(c));
  }

  auto st = std::make_shared<Stream>();
  auto c = client_->Send(
      std::move(http),
      [this, shared_req, st, info,
       done = std::move(done)](StatusOr<net::ClientResponse> res) mutable {
        if (!res.ok()) return done(res.status());
        if (res->status != 200) {
          return done(
              WithRetry(bedrock::ConverseErrorStatus(res->status, st->error_type, st->error_body),
                        st->retry_after));
        }
        if (!st->failed.ok()) return done(WithRetry(st->failed, st->retry_after));
        info.tokens_in = st->tokens_in;
        info.tokens_out = st->tokens_out;
        done(ReplyFromModel(*shared_req, st->content, info, *rules_));
      },
      [st](int status, const net::HeaderList& headers) {
        st->status = status;
        for (const auto& [k, v] : headers) {
          if (strcasecmp(k.c_str(), "retry-after") == 0) st->retry_after = v;
          if (strcasecmp(k.c_str(), "x-amzn-errortype") == 0) st->error_type = v;
        }
      },
      [st, shared_req](std::string_view chunk) { st->OnData(chunk, shared_req->on_token); });
  return std::make_shared<HttpCall>(std::move(c));
}

}  // namespace persona::ai::llm
