// A shipped gazetteer of world cities (about 330 major cities plus every
// Korean city, with Korean names) used by the builtin extractor.
//
// The profile stores a city's canonical English name ("Seoul" for 서울, "서울시"
// or "seoul"), so that profiles are comparable whatever language the user
// wrote in; replies in Korean show the Korean name again via City::ko.
// All functions are pure and thread-safe (the index is built once, lazily).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace persona::ai::builtin {

struct City {
  std::string_view en;  // canonical English name, e.g. "New York"
  std::string_view ko;  // Korean name, "" if none is shipped
};

// Looks up a whole name: English (case-insensitive, aliases such as "NYC")
// or Korean (with administrative suffixes 시, 특별시, 광역시, 도 stripped).
// nullptr if unknown.
const City* FindCity(std::string_view name);

struct CityMatch {
  const City* city = nullptr;
  size_t pos = 0;  // byte offset of the match in the searched text
  size_t len = 0;  // bytes matched
};

// The longest known city name that starts `text` (after leading spaces) and
// ends on a word boundary; multi-word names such as "Rio de Janeiro" match.
std::optional<CityMatch> MatchCityPrefix(std::string_view text);

// The first known city mentioned anywhere in `text` on word boundaries
// (English) or as a Hangul word prefix (Korean: "서울에" matches 서울).
std::optional<CityMatch> FindCityIn(std::string_view text);

}  // namespace persona::ai::builtin
