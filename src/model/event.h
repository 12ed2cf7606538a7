// Events: the immutable, ordered record of everything that happens in a
// session. The profile is a projection of them (model/profile.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/clock.h"
#include "core/json.h"
#include "core/status.h"

namespace persona::model {

// Event types (SPEC §2).
inline constexpr std::string_view kSessionCreated = "session.created";
inline constexpr std::string_view kMessageUser = "message.user";
inline constexpr std::string_view kMessageAssistant = "message.assistant";
inline constexpr std::string_view kFieldSet = "profile.field_set";
inline constexpr std::string_view kFieldCleared = "profile.field_cleared";
inline constexpr std::string_view kSessionDeleted = "session.deleted";

struct Event {
  uint64_t seq = 0;  // 1, 2, 3 … per session, gapless
  std::string id;    // unique within the session; client ids make appends idempotent
  std::string type;
  int64_t at_ms = 0;  // wall time, rendered as RFC 3339 UTC
  Hlc hlc = 0;
  std::string origin;  // who caused it: "user", "ai", "device", "system"
  json::object data;
};

json::object EventToJson(const Event& e);
std::string EventToJsonString(const Event& e);
// InvalidArgument when a required member is missing or of the wrong type.
StatusOr<Event> EventFromJson(const json::value& v);
StatusOr<Event> EventFromJsonString(std::string_view s);

}  // namespace persona::model
