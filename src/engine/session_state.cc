#include "engine/session_state.h"

namespace persona::engine {

void SessionState::Apply(const model::Event& e, size_t history_window) {
  if (e.type == model::kFieldSet || e.type == model::kFieldCleared) {
    profile.Apply(e);
    return;
  }
  const bool user = e.type == model::kMessageUser;
  if (!user && e.type != model::kMessageAssistant) return;
  if (!user) asked_field = std::string(GetString(e.data, "asks").value_or(""));
  if (auto lang = GetString(e.data, "lang"); lang && user) language = std::string(*lang);
  if (history_window == 0) return;
  history.push_back(
      {user ? "user" : "assistant", std::string(GetString(e.data, "text").value_or(""))});
  while (history.size() > history_window) history.pop_front();
}

json::object SessionState::ToSnapshot() const {
  json::object o;
  o["profile"] = profile.ToSnapshot();
  o["asked"] = asked_field;
  o["lang"] = language;
  json::array h;
  for (const auto& item : history) {
    json::object j;
    j["role"] = item.role;
    j["text"] = item.text;
    h.push_back(std::move(j));
  }
  o["history"] = std::move(h);
  return o;
}

Status SessionState::RestoreSnapshot(const json::object& snap) {
  const json::value* p = Find(snap, "profile");
  if (p == nullptr || !p->is_object()) return absl::DataLossError("snapshot: missing profile");
  auto profile_or = model::Profile::FromSnapshot(p->get_object());
  if (!profile_or.ok()) return profile_or.status();
  profile = std::move(*profile_or);
  asked_field = std::string(GetString(snap, "asked").value_or(""));
  language = std::string(GetString(snap, "lang").value_or(""));
  history.clear();
  if (const json::value* h = Find(snap, "history"); h && h->is_array()) {
    for (const auto& item : h->get_array()) {
      if (!item.is_object()) continue;
      history.push_back({std::string(GetString(item.get_object(), "role").value_or("")),
                         std::string(GetString(item.get_object(), "text").value_or(""))});
    }
  }
  return absl::OkStatus();
}

StatusOr<SessionState> Project(const store::LoadedSession& loaded,
                               std::shared_ptr<const model::Schema> schema, size_t history_window) {
  SessionState s;
  s.meta = loaded.meta;
  s.schema = std::move(schema);
  if (loaded.snapshot) {
    if (auto st = s.RestoreSnapshot(loaded.snapshot->state); !st.ok()) return st;
  }
  for (const auto& e : loaded.tail) s.Apply(e, history_window);
  return s;
}

}  // namespace persona::engine
