#include "core/json.h"

#include <cmath>

namespace persona {

namespace {

// Boost.JSON 1.81 reads numbers beyond a double's range (1e400) as infinity
// and would then write them as `Infinity`, which is not JSON: such a value,
// once stored, could never be read back. Refuse it at the door.
bool AllFinite(const json::value& v) {
  switch (v.kind()) {
    case json::kind::double_:
      return std::isfinite(v.get_double());
    case json::kind::array:
      for (const auto& e : v.get_array())
        if (!AllFinite(e)) return false;
      return true;
    case json::kind::object:
      for (const auto& kv : v.get_object())
        if (!AllFinite(kv.value())) return false;
      return true;
    default:
      return true;
  }
}

}  // namespace

StatusOr<json::value> ParseJson(std::string_view text) {
  json::parse_options opt;
  opt.max_depth = 64;
  json::error_code ec;
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec, {}, opt);
  if (ec) return absl::InvalidArgumentError("malformed JSON: " + ec.message());
  if (!AllFinite(v)) return absl::InvalidArgumentError("malformed JSON: a number is out of range");
  return v;
}

std::string ToJson(const json::value& v) { return json::serialize(v); }

const json::value* Find(const json::object& o, std::string_view key) {
  return o.if_contains(json::string_view(key.data(), key.size()));
}

std::optional<std::string_view> GetString(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  if (v == nullptr || !v->is_string()) return std::nullopt;
  const json::string& s = v->get_string();
  return std::string_view(s.data(), s.size());
}

std::optional<int64_t> GetInt(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  if (v == nullptr) return std::nullopt;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= static_cast<uint64_t>(INT64_MAX))
    return static_cast<int64_t>(v->get_uint64());
  return std::nullopt;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      const unsigned char cc = s[i + k];
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

}  // namespace persona
