#include "model/profile.h"

#include <algorithm>
#include <vector>

namespace persona::model {

bool Profile::Wins(std::string_view field, Hlc hlc, std::string_view event_id) const {
  auto it = meta_.find(field);
  if (it == meta_.end()) return true;
  if (hlc != it->second.hlc) return hlc > it->second.hlc;
  return event_id >= it->second.event_id;
}

void Profile::Apply(const Event& e) {
  const bool set = e.type == kFieldSet;
  if (!set && e.type != kFieldCleared) return;
  auto field = GetString(e.data, "field");
  if (!field || !Wins(*field, e.hlc, e.id)) return;
  const json::string_view key(field->data(), field->size());
  if (set) {
    const json::value* v = Find(e.data, "value");
    values_[key] = v ? *v : json::value(nullptr);
  } else {
    values_.erase(key);
  }
  FieldMeta& m = meta_[std::string(*field)];
  m.updated_at_ms = e.at_ms;
  m.source = std::string(GetString(e.data, "source").value_or(e.origin));
  m.hlc = e.hlc;
  m.event_id = e.id;
}

const json::value* Profile::Get(std::string_view field) const { return Find(values_, field); }

json::object Profile::ValuesJson(const Schema* schema) const {
  json::object out;
  out.reserve(values_.size());
  std::vector<std::string_view> rest;
  if (schema != nullptr) {
    for (const auto& f : schema->fields())
      if (const json::value* v = Get(f.name)) out[f.name] = *v;
  }
  for (const auto& kv : values_) {
    const std::string_view k(kv.key().data(), kv.key().size());
    if (schema == nullptr || schema->Find(k) == nullptr) rest.push_back(k);
  }
  std::sort(rest.begin(), rest.end());
  for (auto k : rest) out[k] = *Get(k);
  return out;
}

json::object Profile::MetaJson() const {
  json::object out;
  for (const auto& [field, m] : meta_) {
    if (Get(field) == nullptr) continue;  // cleared fields carry no metadata in views
    json::object j;
    j["updated_at"] = FormatRfc3339Millis(m.updated_at_ms);
    j["source"] = m.source;
    j["hlc"] = HlcToString(m.hlc);
    out[field] = std::move(j);
  }
  return out;
}

json::object Profile::ToSnapshot() const {
  json::object meta;
  for (const auto& [field, m] : meta_) {
    json::object j;
    j["at"] = m.updated_at_ms;
    j["source"] = m.source;
    j["hlc"] = HlcToString(m.hlc);
    j["event_id"] = m.event_id;
    meta[field] = std::move(j);
  }
  json::object o;
  o["values"] = values_;
  o["meta"] = std::move(meta);
  return o;
}

StatusOr<Profile> Profile::FromSnapshot(const json::object& o) {
  Profile p;
  const json::value* values = Find(o, "values");
  const json::value* meta = Find(o, "meta");
  if (values == nullptr || !values->is_object() || meta == nullptr || !meta->is_object())
    return absl::DataLossError("snapshot: missing values or meta");
  p.values_ = values->get_object();
  for (const auto& kv : meta->get_object()) {
    if (!kv.value().is_object()) return absl::DataLossError("snapshot: bad meta");
    const json::object& j = kv.value().get_object();
    FieldMeta m;
    m.updated_at_ms = GetInt(j, "at").value_or(0);
    m.source = std::string(GetString(j, "source").value_or(""));
    ParseHlc(GetString(j, "hlc").value_or("0"), &m.hlc);
    m.event_id = std::string(GetString(j, "event_id").value_or(""));
    p.meta_[std::string(kv.key())] = std::move(m);
  }
  return p;
}

}  // namespace persona::model
