// OpenAiProvider: any server that speaks OpenAI's chat completions API
// (OpenAI, vLLM, llama.cpp's server, Ollama's /v1).
//
// POST {base_url}/chat/completions with the system prompt (prompt.h), the
// history window and the user's message, response_format json_object, and
// max_tokens. With AiRequest::on_token set the call streams (`stream: true`,
// server-sent events) and the reply's words are handed on as they arrive.
// Answers map to statuses the chain understands: 429 → ResourceExhausted and
// 5xx → Unavailable (both with Retry-After), 401/403 → PermissionDenied,
// other 4xx → InvalidArgument, no answer in time → DeadlineExceeded. Output
// that is not the JSON contract is repaired once, or the built-in rules
// extract the changes while the model's prose stays the reply: a malformed
// answer never fails the step. Cost is tokens × the configured prices
// (usage from the server; estimated as bytes / 4 when it sends none).
#pragma once

#include <memory>
#include <string>

#include "ai/builtin/builtin_provider.h"
#include "ai/llm/prompt.h"
#include "ai/provider.h"
#include "net/http_client.h"

namespace persona::ai::llm {

struct OpenAiOptions : ModelOptions {
  std::string base_url;  // e.g. https://api.openai.com/v1, http://127.0.0.1:11434/v1
  std::string api_key;   // sent as "Authorization: Bearer …" when non-empty
};

class OpenAiProvider final : public Provider {
 public:
  OpenAiProvider(OpenAiOptions options, net::HttpClient* client,
                 std::shared_ptr<BuiltinProvider> rules);

  const std::string& name() const override { return options_.name; }
  std::shared_ptr<Call> Respond(AiRequest req, Callback done) override;
  double MaxCostUsd(const AiRequest& req) const override;

  // The request body for `req` (exposed for tests).
  std::string RequestBody(const AiRequest& req, bool stream) const;

 private:
  struct Stream;
  StatusOr<AiReply> Finish(const AiRequest& req, const std::string& content, int64_t tokens_in,
                           int64_t tokens_out, int64_t request_bytes) const;

  OpenAiOptions options_;
  net::HttpClient* client_;
  std::shared_ptr<BuiltinProvider> rules_;
};

// Maps a non-200 answer to a status.
Status StatusForHttp(int status, const std::string& body, const std::string& retry_after,
                     const std::string& provider);
// A Retry-After header in milliseconds (seconds form only; 0 if absent or a date).
int64_t RetryAfterHeaderMs(const std::string& value);

// An outbound HTTP call as a provider call (Cancel() cancels the request).
class HttpCall final : public Call {
 public:
  explicit HttpCall(std::shared_ptr<net::HttpClient::Call> c) : c_(std::move(c)) {}
  void Cancel() override {
    if (c_) c_->Cancel();
  }

 private:
  std::shared_ptr<net::HttpClient::Call> c_;
};

}  // namespace persona::ai::llm
