// The GeoNames cities Debian ships (libgeonames: every city of 15,000
// people or more, about 24,000; libgeonames-common: their names in other
// languages), for the builtin extractor's gazetteer (cities.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace persona::ai::builtin {

struct GeoCity {
  std::string en;  // GeoNames' name, e.g. "Kraków", "Suwon-si"
  std::string ko;  // its Korean name ("" if GeoNames has none), e.g. "수원시"
  uint32_t population = 0;
};

// Every city, read once (the first call takes tens of milliseconds); empty
// if the data cannot be read. Thread-safe.
const std::vector<GeoCity>& GeoNamesCities();

}  // namespace persona::ai::builtin
