// The builtin AI provider: offline and deterministic. It extracts profile
// values from the user's message with rules (see extract.h), then replies in
// the user's language: it acknowledges what it learned or explains a value
// the schema rejected, and asks the schema's question for the next missing
// field (plain schema order), or closes when nothing is missing.
//
// Respond() does all its work on the calling thread and calls `done` before
// returning. The provider holds no mutable state and is thread-safe.
#pragma once

#include <string>

#include "ai/provider.h"
#include "model/schema.h"

namespace persona::ai {

class BuiltinProvider final : public Provider {
 public:
  static constexpr const char* kModel = "builtin-rules-1";

  explicit BuiltinProvider(std::string name = "offline");

  const std::string& name() const override { return name_; }

  // Calls done(Reply(req)) synchronously. InvalidArgument if req.schema is null.
  std::shared_ptr<Call> Respond(AiRequest req, Callback done) override;

  // The reply for `req` (what Respond passes to `done`).
  StatusOr<AiReply> Reply(const AiRequest& req) const;

  // The question for the schema's first field in `lang` (falling back to
  // "en", then to a generic question): the session's greeting.
  static std::string FirstQuestion(const model::Schema& schema, const std::string& lang);

  // The question that asks for `field` in `lang`, with the same fallbacks.
  static std::string Question(const model::FieldSpec& field, const std::string& lang);

 private:
  std::string name_;
};

}  // namespace persona::ai
