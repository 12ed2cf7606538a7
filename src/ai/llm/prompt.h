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

// Pulls the "reply" string out of the model's JSON while it is still being
// streamed, so clients see the reply's words as they arrive. Feed() returns
// the newly decoded part of the reply (possibly empty).
class ReplyStreamer {
 public:
  std::string Feed(std::string_view chunk);

 private:
  enum class State { kSeekKey, kSeekColon, kSeekQuote, kInString, kEscape, kUnicode, kDone };
  std::string window_;  // unmatched tail while seeking the key
  State state_ = State::kSeekKey;
  std::string unicode_;        // hex digits of a \uXXXX escape
  unsigned pending_high_ = 0;  // a high surrogate waiting for its pair
};

}  // namespace persona::ai::llm
