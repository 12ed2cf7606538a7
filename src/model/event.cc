#include "model/event.h"

#include <cstdio>
#include <ctime>

namespace persona::model {
namespace {

// Parses the "YYYY-MM-DDTHH:MM:SS.mmmZ" form that FormatRfc3339Millis writes.
bool ParseRfc3339Millis(std::string_view s, int64_t* out) {
  int y, mo, d, h, mi, sec, ms = 0;
  const std::string str(s);
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &y, &mo, &d, &h, &mi, &sec, &ms) < 6)
    return false;
  struct tm tm = {};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  *out = static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
  return true;
}

}  // namespace

json::object EventToJson(const Event& e) {
  json::object o;
  o.reserve(7);
  o["seq"] = e.seq;
  o["id"] = e.id;
  o["type"] = e.type;
  o["at"] = FormatRfc3339Millis(e.at_ms);
  o["hlc"] = HlcToString(e.hlc);
  o["origin"] = e.origin;
  o["data"] = e.data;
  return o;
}

std::string EventToJsonString(const Event& e) { return json::serialize(EventToJson(e)); }

StatusOr<Event> EventFromJson(const json::value& v) {
  if (!v.is_object()) return absl::InvalidArgumentError("event: expected an object");
  const json::object& o = v.get_object();
  Event e;
  auto seq = GetInt(o, "seq");
  auto id = GetString(o, "id");
  auto type = GetString(o, "type");
  auto at = GetString(o, "at");
  auto hlc = GetString(o, "hlc");
  if (!seq || *seq <= 0)
    return absl::InvalidArgumentError("event: 'seq' must be a positive integer");
  if (!id || id->empty()) return absl::InvalidArgumentError("event: 'id' is required");
  if (!type || type->empty()) return absl::InvalidArgumentError("event: 'type' is required");
  if (!at || !ParseRfc3339Millis(*at, &e.at_ms))
    return absl::InvalidArgumentError("event: 'at' must be RFC 3339");
  if (!hlc || !ParseHlc(*hlc, &e.hlc)) return absl::InvalidArgumentError("event: 'hlc' is invalid");
  e.seq = static_cast<uint64_t>(*seq);
  e.id = std::string(*id);
  e.type = std::string(*type);
  e.origin = std::string(GetString(o, "origin").value_or(""));
  if (const json::value* d = Find(o, "data")) {
    if (!d->is_object()) return absl::InvalidArgumentError("event: 'data' must be an object");
    e.data = d->get_object();
  }
  return e;
}

StatusOr<Event> EventFromJsonString(std::string_view s) {
  auto v = ParseJson(s);
  if (!v.ok()) return v.status();
  return EventFromJson(*v);
}

}  // namespace persona::model
