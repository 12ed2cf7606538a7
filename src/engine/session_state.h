// SessionState: everything the engine keeps in memory about one session, and
// the projection that rebuilds it from a snapshot plus events.
#pragma once

#include <deque>
#include <memory>
#include <string>

#include "ai/provider.h"
#include "model/profile.h"
#include "model/schema.h"
#include "store/event_store.h"

namespace persona::engine {

struct SessionState {
  store::SessionMeta meta;
  std::shared_ptr<const model::Schema> schema;
  model::Profile profile;
  std::string asked_field;              // what the last assistant message asked for
  std::string language;                 // language of the last user message
  std::deque<ai::HistoryItem> history;  // the last `history_window` messages

  // Folds one event in (profile, history, asked field, language).
  void Apply(const model::Event& e, size_t history_window);

  // {"profile": {...}, "asked", "lang", "history"} for snapshots, and back.
  json::object ToSnapshot() const;
  Status RestoreSnapshot(const json::object& snap);
};

// Rebuilds a session from its stored form. `schema` is looked up by the
// caller from meta.schema. DataLoss if the snapshot is unreadable.
StatusOr<SessionState> Project(const store::LoadedSession& loaded,
                               std::shared_ptr<const model::Schema> schema, size_t history_window);

}  // namespace persona::engine
