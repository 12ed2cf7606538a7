#include "model/event.h"

#include <ctime>

namespace persona::model {
namespace {

// Parses the "YYYY-MM-DDTHH:MM:SS[.mmm]Z" form that FormatRfc3339Millis
// writes, for years 1970-9999 only (what FormatRfc3339Millis can write back
// unchanged): fields out of range are refused, not normalised.
bool ParseRfc3339Millis(std::string_view s, int64_t* out) {
  auto digits = [&](size_t pos, size_t n, int* v) {
    if (pos + n > s.size()) return false;
    *v = 0;
    for (size_t i = pos; i < pos + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      *v = *v * 10 + (s[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, sec, ms = 0;
  if (s.size() < 20 || !digits(0, 4, &y) || s[4] != '-' || !digits(5, 2, &mo) || s[7] != '-' ||
      !digits(8, 2, &d) || s[10] != 'T' || !digits(11, 2, &h) || s[13] != ':' ||
      !digits(14, 2, &mi) || s[16] != ':' || !digits(17, 2, &sec))
    return false;
  size_t pos = 19;
  if (s[pos] == '.') {
    if (!digits(pos + 1, 3, &ms)) return false;
    pos += 4;
  }
  if (pos + 1 != s.size() || s[pos] != 'Z') return false;
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > kDays[mo - 1] || h > 23 || mi > 59 || sec > 59)
    return false;
  struct tm tm = {};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  const time_t t = timegm(&tm);
  if (t < 0) return false;
  struct tm back;
  gmtime_r(&t, &back);
  if (back.tm_mday != d || back.tm_mon != mo - 1) return false;  // e.g. Feb 30
  *out = static_cast<int64_t>(t) * 1000 + ms;
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
