// The profile: a projection of a session's events.
//
// Profile holds field values and per-field metadata. Apply() folds one event
// in; replaying a session's events from the start yields the same profile,
// byte for byte, as the live one. Concurrent writes to one field merge
// last-writer-wins by HLC (ties broken by event id). Not thread-safe.
#pragma once

#include <map>
#include <string>

#include "core/clock.h"
#include "core/json.h"
#include "model/event.h"
#include "model/schema.h"

namespace persona::model {

struct FieldMeta {
  int64_t updated_at_ms = 0;
  std::string source;  // user | ai | device
  Hlc hlc = 0;
  std::string event_id;
};

class Profile {
 public:
  // Folds `e` in. Events other than field_set / field_cleared are ignored.
  void Apply(const Event& e);

  // True if `e` would change the field if applied now (LWW: newer HLC wins).
  bool Wins(std::string_view field, Hlc hlc, std::string_view event_id) const;

  const json::object& values() const { return values_; }
  const std::map<std::string, FieldMeta, std::less<>>& meta() const { return meta_; }
  const json::value* Get(std::string_view field) const;

  // {"name": "Alice", ...} with keys in schema order when a schema is given
  // (unknown fields last, sorted), else sorted by name.
  json::object ValuesJson(const Schema* schema) const;
  // {"name": {"updated_at", "source", "hlc"}, ...}
  json::object MetaJson() const;

  // Full state for snapshots, and back.
  json::object ToSnapshot() const;
  static StatusOr<Profile> FromSnapshot(const json::object& o);

 private:
  json::object values_;
  std::map<std::string, FieldMeta, std::less<>> meta_;
};

}  // namespace persona::model
