// BedrockProvider: AWS Bedrock's Converse and ConverseStream APIs.
//
// POST https://bedrock-runtime.{region}.amazonaws.com/model/{model}/converse
// (or converse-stream when AiRequest::on_token is set; or `endpoint_url`
// for VPC endpoints and tests), signed with SigV4 (ai/bedrock/sigv4.h)
// using the access key, secret and optional session token. Streams arrive in
// AWS's binary event-stream framing (ai/bedrock/event_stream.h); text deltas
// are passed on as tokens. The same prompt and the same output contract as
// the OpenAI provider (prompt.h); errors map to the chain's statuses
// (throttling → ResourceExhausted with Retry-After, 5xx and model errors →
// Unavailable, signature problems → Unauthenticated).
#pragma once

#include <memory>
#include <string>

#include "ai/bedrock/sigv4.h"
#include "ai/builtin/builtin_provider.h"
#include "ai/llm/prompt.h"
#include "ai/provider.h"
#include "net/http_client.h"

namespace persona::ai::llm {

// `model` is a model id or an inference profile ARN.
struct BedrockOptions : ModelOptions {
  std::string region;        // e.g. us-east-1
  std::string endpoint_url;  // overrides the regional endpoint when set
  bedrock::Credentials credentials;
};

class BedrockProvider final : public Provider {
 public:
  BedrockProvider(BedrockOptions options, net::HttpClient* client,
                  std::shared_ptr<BuiltinProvider> rules);

  const std::string& name() const override { return options_.name; }
  std::shared_ptr<Call> Respond(AiRequest req, Callback done) override;
  double MaxCostUsd(const AiRequest& req) const override;

 private:
  struct Stream;
  BedrockOptions options_;
  net::HttpClient* client_;
  std::shared_ptr<BuiltinProvider> rules_;
};

}  // namespace persona::ai::llm
