#include "store/event_store.h"

#include <algorithm>

namespace persona::store {

json::object UsageToJson(const Usage& u) {
  json::object o;
  o["calls"] = u.calls;
  o["tokens_in"] = u.tokens_in;
  o["tokens_out"] = u.tokens_out;
  o["cost_usd"] = u.cost_usd;
  json::object cheap, primary;
  cheap["calls"] = u.cheap_calls;
  cheap["tokens_in"] = u.cheap_tokens_in;
  cheap["tokens_out"] = u.cheap_tokens_out;
  cheap["cost_usd"] = u.cheap_cost_usd;
  primary["calls"] = u.calls - std::min(u.calls, u.cheap_calls);
  primary["tokens_in"] = u.tokens_in - std::min(u.tokens_in, u.cheap_tokens_in);
  primary["tokens_out"] = u.tokens_out - std::min(u.tokens_out, u.cheap_tokens_out);
  primary["cost_usd"] = std::max(0.0, u.cost_usd - u.cheap_cost_usd);
  json::object tiers;
  tiers["primary"] = std::move(primary);
  tiers["cheap"] = std::move(cheap);
  o["by_tier"] = std::move(tiers);
  json::object avoided;
  avoided["gate"] = u.avoided_gate;
  avoided["cache"] = u.avoided_cache;
  o["calls_avoided"] = std::move(avoided);
  return o;
}

Usage UsageFromJson(const json::value& v) {
  Usage u;
  if (!v.is_object()) return u;
  const json::object& o = v.get_object();
  auto num = [](const json::object& o, const char* k) {
    const json::value* c = Find(o, k);
    return c && c->is_number() ? c->to_number<double>() : 0.0;
  };
  auto count = [](const json::object& o, const char* k) {
    return static_cast<uint64_t>(GetInt(o, k).value_or(0));
  };
  u.calls = count(o, "calls");
  u.tokens_in = count(o, "tokens_in");
  u.tokens_out = count(o, "tokens_out");
  u.cost_usd = num(o, "cost_usd");
  if (const json::value* t = Find(o, "by_tier"); t && t->is_object()) {
    if (const json::value* c = Find(t->get_object(), "cheap"); c && c->is_object()) {
      const json::object& co = c->get_object();
      u.cheap_calls = count(co, "calls");
      u.cheap_tokens_in = count(co, "tokens_in");
      u.cheap_tokens_out = count(co, "tokens_out");
      u.cheap_cost_usd = num(co, "cost_usd");
    }
  }
  if (const json::value* a = Find(o, "calls_avoided"); a && a->is_object()) {
    u.avoided_gate = count(a->get_object(), "gate");
    u.avoided_cache = count(a->get_object(), "cache");
  }
  return u;
}

json::object SessionMetaToJson(const SessionMeta& m) {
  json::object o;
  o["session_id"] = m.session_id;
  o["user_id"] = m.user_id;
  o["schema"] = m.schema;
  o["created_at_ms"] = m.created_at_ms;
  o["metadata"] = m.metadata;
  o["version"] = m.version;
  o["message_count"] = m.message_count;
  if (!m.usage.empty()) o["usage"] = UsageToJson(m.usage);
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
  if (const json::value* u = Find(o, "usage")) m.usage = UsageFromJson(*u);
  if (m.session_id.empty()) return absl::DataLossError("session meta: missing session_id");
  return m;
}

std::string SnapshotToJson(const Snapshot& s) {
  json::object o;
  o["seq"] = s.seq;
  o["state"] = s.state;
  return json::serialize(o);
}

StatusOr<Snapshot> SnapshotFromJson(std::string_view text) {
  auto v = ParseJson(text);
  if (!v.ok() || !v->is_object()) return absl::DataLossError("snapshot is corrupt");
  Snapshot sn;
  sn.seq = static_cast<uint64_t>(GetInt(v->get_object(), "seq").value_or(0));
  const json::value* st = Find(v->get_object(), "state");
  if (st == nullptr || !st->is_object()) return absl::DataLossError("snapshot is corrupt");
  sn.state = st->get_object();
  return sn;
}

namespace {
constexpr char kIntakeTakenUrl[] = "persona.dev/intake-taken";
}  // namespace

Status IntakeTakenError() {
  Status st = absl::NotFoundError("the request was taken over by another process's applier");
  st.SetPayload(kIntakeTakenUrl, absl::Cord("1"));
  return st;
}

bool IsIntakeTaken(const Status& st) { return st.GetPayload(kIntakeTakenUrl).has_value(); }

}  // namespace persona::store
