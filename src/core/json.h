// Small helpers over Boost.JSON used across modules.
#pragma once

#include <boost/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace persona {

namespace json = boost::json;

// Parses `text` as one JSON value. Rejects invalid UTF-8, trailing garbage and
// nesting deeper than 64 levels with InvalidArgument naming the problem.
StatusOr<json::value> ParseJson(std::string_view text);

// Serialises with keys in insertion order (deterministic for a given object).
std::string ToJson(const json::value& v);

// Typed lookups; nullptr / nullopt when absent or of another type.
const json::value* Find(const json::object& o, std::string_view key);
std::optional<std::string_view> GetString(const json::object& o, std::string_view key);
std::optional<int64_t> GetInt(const json::object& o, std::string_view key);

// True if `s` is valid UTF-8 (no overlongs, no surrogates).
bool IsValidUtf8(std::string_view s);

}  // namespace persona
