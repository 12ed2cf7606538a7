// AI providers: given the schema, the current profile, recent history and the
// user's message, produce a reply and proposed profile changes.
//
// Providers are asynchronous: Respond() returns at once and calls `done`
// exactly once, on any thread. The engine validates every proposed change
// against the schema before it becomes an event, so a provider can never
// write a field the schema lacks or an invalid value.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "model/schema.h"

namespace persona::ai {

struct HistoryItem {
  std::string role;  // "user" | "assistant"
  std::string text;
};

struct AiRequest {
  std::shared_ptr<const model::Schema> schema;
  json::object profile;              // current values, field → value
  std::string text;                  // the user's message
  std::string asked_field;           // the field the previous assistant turn asked for; "" if none
  std::vector<HistoryItem> history;  // bounded window, oldest first, excluding `text`
  std::string language_hint;         // language of earlier turns ("en", "ko"), "" if unknown
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
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  double cost_usd = 0;
};

class Provider {
 public:
  using Callback = std::function<void(StatusOr<AiReply>)>;
  virtual ~Provider() = default;

  virtual const std::string& name() const = 0;
  virtual void Respond(AiRequest req, Callback done) = 0;
};

}  // namespace persona::ai
