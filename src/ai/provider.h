// AI providers: given the schema, the current profile, recent history and the
// user's message, produce a reply and proposed profile changes.
//
// Providers are asynchronous: Respond() returns at once and calls `done`
// exactly once, on any thread. A call can be cancelled through the handle
// Respond() returns (done then gets Cancelled, unless it already ran), and
// never runs past AiRequest::deadline. The engine validates every proposed
// change against the schema before it becomes an event, so a provider can
// never write a field the schema lacks or an invalid value.
#pragma once

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/cord.h"
#include "core/json.h"
#include "core/status.h"
#include "model/schema.h"

namespace persona::ai {

struct HistoryItem {
  std::string role;  // "user" | "assistant"
  std::string text;
};

// A message's priority (SPEC §12, the cost router): low tries the response
// cache, then cheap-tier models; normal the cache, the intent gate, then the
// whole chain; high goes straight to the primary tier.
enum class Priority { kLow, kNormal, kHigh };
// "low" | "normal" | "high"; false for anything else.
inline bool ParsePriority(std::string_view s, Priority* out) {
  if (s == "low")
    *out = Priority::kLow;
  else if (s == "normal")
    *out = Priority::kNormal;
  else if (s == "high")
    *out = Priority::kHigh;
  else
    return false;
  return true;
}

// A provider's tier (`tier` in its configuration).
enum class Tier { kPrimary, kCheap };
inline const char* TierName(Tier t) { return t == Tier::kCheap ? "cheap" : "primary"; }

struct AiRequest {
  std::shared_ptr<const model::Schema> schema;
  json::object profile;              // current values, field → value
  std::string text;                  // the user's message
  std::string asked_field;           // the field the previous assistant turn asked for; "" if none
  std::vector<HistoryItem> history;  // bounded window, oldest first, excluding `text`
  std::string language_hint;         // language of earlier turns ("en", "ko"), "" if unknown
  std::string session_id;            // for usage accounting and logs
  std::string user_id;               // for usage accounting and budgets
  Priority priority = Priority::kNormal;
  // Per-user switches from feature flags (SPEC §13; SwitchingProvider sets
  // them): the intent gate and the response cache may be off for this user,
  // and `prefer_provider` names a provider the chain tries first (a model
  // canary).
  bool use_gate = true;
  bool use_cache = true;
  std::string prefer_provider;
  // The intent gate model's top label for `text` and its confidence, when a
  // layer above already classified it (the semantic cache); "" if not.
  std::string top_intent;
  double top_intent_confidence = 0;
  // W3C traceparent for the model call (tracing on), "" otherwise.
  std::string traceparent;
  // The whole step's AI budget: no provider call outlives it.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  // Streaming: called with each piece of the reply text as the model produces
  // it (on any thread, in order). Providers that do not stream never call it.
  std::function<void(std::string_view)> on_token;
};

struct ProposedChange {
  std::string field;
  json::value value;  // null means "clear the field"
};

struct AiReply {
  std::string text;                     // what the assistant says
  std::vector<ProposedChange> changes;  // proposed profile changes
  std::string asks;                     // the field the reply asks for next; "" if none
  std::string language;                 // language of the reply ("en", "ko")
  std::string provider;                 // provider name from config, e.g. "offline"
  std::string model;                    // model id, e.g. "builtin-rules-1"
  std::string source = "builtin";       // "llm" | "builtin" | "gate" | "cache"
  Tier tier = Tier::kPrimary;           // of the model that answered (source "llm")
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  double cost_usd = 0;
  int64_t latency_ms = 0;  // of the provider call that answered
  // Why an earlier provider in the chain did not answer (e.g. "primary:
  // timeout"), and whether the model's output had to be repaired or its
  // extraction replaced by the built-in rules. Empty when neither happened.
  std::vector<std::string> fallbacks;
  std::string repair;  // "" | "repaired" | "builtin_extraction"
  // With the intent gate on (SPEC §12): the message's intent and its
  // confidence; "" when the gate is off.
  std::string intent;
  double intent_confidence = 0;
  // A response-cache hit (source "cache"): "exact" | "semantic", and the
  // similarity of the cached question (1 for exact).
  std::string cache_match;
  double cache_similarity = 0;
};

// A call in flight.
class Call {
 public:
  virtual ~Call() = default;
  virtual void Cancel() = 0;  // idempotent, from any thread
};

// A provider's answer to "how long should I wait": a 429 or 503 with
// Retry-After becomes a ResourceExhausted or Unavailable status carrying it.
inline constexpr char kRetryAfterPayload[] = "persona.retry_after_ms";
inline Status WithRetryAfter(Status st, int64_t ms) {
  st.SetPayload(kRetryAfterPayload, absl::Cord(std::to_string(ms)));
  return st;
}
inline int64_t RetryAfterMs(const Status& st) {
  auto p = st.GetPayload(kRetryAfterPayload);
  if (!p) return 0;
  return std::atoll(std::string(*p).c_str());
}

class Provider {
 public:
  using Callback = std::function<void(StatusOr<AiReply>)>;
  virtual ~Provider() = default;

  virtual const std::string& name() const = 0;
  // Returns a handle to cancel the call, or null when it already finished.
  virtual std::shared_ptr<Call> Respond(AiRequest req, Callback done) = 0;
  // The most this call could cost in USD (for budget reservations); 0 for
  // free providers.
  virtual double MaxCostUsd(const AiRequest& req) const { return 0; }
};

}  // namespace persona::ai
