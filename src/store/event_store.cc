#include "store/event_store.h"

namespace persona::store {

json::object SessionMetaToJson(const SessionMeta& m) {
  json::object o;
  o["session_id"] = m.session_id;
  o["user_id"] = m.user_id;
  o["schema"] = m.schema;
  o["created_at_ms"] = m.created_at_ms;
  o["metadata"] = m.metadata;
  o["version"] = m.version;
  o["message_count"] = m.message_count;
  return o;
}

StatusOr<SessionMeta> SessionMetaFromJson(const json::value& v) {
  if (!v.is_object()) return absl::DataLossError("session meta: expected an object");
  const json::object& o = v.get_object();
  SessionMeta m;
  m.session_id = std::string(GetString(o, "session_id").value_or(""));
  m.user_id = std::string(GetString(o, "user_id").value_or(""));
  m.schema = std::string(GetString(o, "schema").value_or("default"));
  m.created_at_ms = GetInt(o, "created_at_ms").value_or(0);
  if (const json::value* md = Find(o, "metadata"); md && md->is_object())
    m.metadata = md->get_object();
  m.version = static_cast<uint64_t>(GetInt(o, "version").value_or(0));
  m.message_count = static_cast<uint64_t>(GetInt(o, "message_count").value_or(0));
  if (m.session_id.empty()) return absl::DataLossError("session meta: missing session_id");
  return m;
}

}  // namespace persona::store
