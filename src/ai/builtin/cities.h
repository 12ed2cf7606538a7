// The builtin extractor's gazetteer: a curated list (about 330 major cities
// plus every Korean city, with Korean names and common aliases) and every
// GeoNames city Debian ships (geonames.h: about 24,000 of 15,000 people or
// more, with the Korean names GeoNames has). Curated names win a clash.
//
// GeoNames names include many everyday words and given names ("Surprise",
// "Normal", "Victoria", "Austin"), so a city known only from GeoNames is
// matched only where a place is expected: right after a location cue
// (MatchCityPrefix), or further into the clause when written with a capital
// (FindCityIn); a Korean GeoNames name only if it has two syllables or more
// and the city 100,000 people. Checks that ask "could this word be a city
// rather than a name or a job?" use FindCuratedCity.
//
// The profile stores a city's canonical English name ("Seoul" for 서울, "서울시"
// or "seoul"), so that profiles are comparable whatever language the user
// wrote in; replies in Korean show the Korean name again via City::ko.
// All functions are pure and thread-safe (the index is built once, lazily).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace persona::ai::builtin {

struct City {
  std::string_view en;      // canonical English name, e.g. "New York"
  std::string_view ko;      // Korean name, "" if none is shipped
  bool curated = true;      // false: known only from GeoNames
  uint32_t population = 0;  // GeoNames' (0 for curated entries)
};

// Looks up a whole name: English (case-insensitive, aliases such as "NYC")
// or Korean (with administrative suffixes 시, 특별시, 광역시, 도 stripped).
// nullptr if unknown.
const City* FindCity(std::string_view name);
// The same, curated entries only.
const City* FindCuratedCity(std::string_view name);

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
