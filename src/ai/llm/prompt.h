// Prompting a chat model and reading its answer.
//
// The system prompt gives the model the schema (every field with its type,
// limits and allowed values), the current profile, the field the previous
// turn asked for and a JSON contract:
//
//   {"reply": "<what to say>", "changes": [{"field": "<name>", "value": <v or null>}],
//    "asks": "<field the reply asks for, or empty>"}
//
// The model's output is untrusted. ParseModelOutput accepts only that shape:
// changes to fields the schema lacks are dropped here, values are checked by
// the engine against the schema as for any write, and nothing in the output
// can name another session, the user id or server-owned data (the contract
// has no place for them, and extra members are ignored). Output that is not
// the JSON object is repaired once (code fences, prose around the object,
// trailing commas); if that fails the caller falls back to the built-in
// extraction.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ai/builtin/builtin_provider.h"
#include "ai/provider.h"

namespace persona::ai::llm {

constexpr size_t kMaxReplyBytes = 4000;

std::string SystemPrompt(const AiRequest& req);

// role ("system" | "user" | "assistant") and text, oldest first: the system
// prompt, the bounded history window, then the user's message.
std::vector<std::pair<std::string, std::string>> ChatMessages(const AiRequest& req);

struct ModelOutput {
  std::string reply;
  std::vector<ProposedChange> changes;  // only fields the schema declares
  std::string asks;                     // a schema field, or ""
  bool repaired = false;                // the JSON had to be repaired first
};

// InvalidArgument if `text` is not (and cannot be repaired into) the
// contract's object with a non-empty string "reply".
StatusOr<ModelOutput> ParseModelOutput(std::string_view text, const model::Schema& schema);

// What every model provider is configured with.
struct ModelOptions {
  std::string name;   // the provider's name in config
  std::string model;  // the model id sent to it
  int max_tokens = 512;
  double temperature = 0.2;
  double price_in_per_mtok = 0;
  double price_out_per_mtok = 0;
};

// What a model call produced, as the AiReply the engine takes: parsed (or
// repaired) per the contract, or, failing that, the built-in rules' changes
// with the model's prose (or the rules' text) as the reply. Cost is tokens ×
// prices per million; missing token counts are estimated as bytes / 4.
struct CallInfo {
  const ModelOptions* options = nullptr;  // provider, model and prices
  int64_t tokens_in = 0, tokens_out = 0, request_bytes = 0;
};
StatusOr<AiReply> ReplyFromModel(const AiRequest& req, const std::string& content,
                                 const CallInfo& info, const BuiltinProvider& rules);

// The most a call for `req` can cost: every prompt byte counted as an input
// token (a token is at least one byte) plus `max_tokens` output tokens.
double MaxCallCostUsd(const AiRequest& req, const ModelOptions& options);

// Pulls the "reply" string out of the model's JSON while it is still being
// streamed, so clients see the reply's words as they arrive. Feed() returns
// the newly decoded part of the reply (possibly empty).
class ReplyStreamer {
 public:
  std::string Feed(std::string_view chunk);

 private:
  enum class State { kSeekKey, kSeekColon, kSeekQuote, kInString, kEscape, kUnicode, kDone };
  std::string window_;  // the string being read while seeking the key
  State state_ = State::kSeekKey;
  int depth_ = 0;  // object/array nesting while seeking the key
  bool in_key_string_ = false, key_escape_ = false;
  std::string unicode_;        // hex digits of a \uXXXX escape
  unsigned pending_high_ = 0;  // a high surrogate waiting for its pair
};

}  // namespace persona::ai::llm
