#include "ai/builtin/geonames.h"

#include <geonames.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <unordered_map>

namespace persona::ai::builtin {
namespace {

// The Korean names: libgeonames-common's gettext catalogue for "ko", keyed
// by GeoNames id. Read directly rather than through dgettext, which would
// need a generated ko_KR locale and the process's locale switched to it. The
// .mo layout is GNU gettext's (magic, count, two tables of length+offset).
std::unordered_map<std::string, std::string> KoreanNames() {
  std::unordered_map<std::string, std::string> out;
  std::ifstream in("/usr/share/locale/ko/LC_MESSAGES/geonames.mo", std::ios::binary);
  const std::string mo((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto u32 = [&mo](size_t at, bool swap) -> uint32_t {
    if (at + 4 > mo.size()) return 0;
    uint32_t v;
    std::memcpy(&v, mo.data() + at, 4);
    return swap ? __builtin_bswap32(v) : v;
  };
  if (mo.size() < 28) return out;
  const uint32_t magic = u32(0, false);
  if (magic != 0x950412de && magic != 0xde120495) return out;
  const bool swap = magic == 0xde120495;
  const uint32_t n = u32(8, swap), originals = u32(12, swap), translations = u32(16, swap);
  auto entry = [&](uint32_t table, uint32_t i) -> std::string {
    const uint32_t len = u32(table + i * 8, swap), off = u32(table + i * 8 + 4, swap);
    if (static_cast<uint64_t>(off) + len > mo.size()) return {};
    return mo.substr(off, len);
  };
  out.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    std::string id = entry(originals, i);
    if (!id.empty()) out.emplace(std::move(id), entry(translations, i));
  }
  return out;
}

}  // namespace

const std::vector<GeoCity>& GeoNamesCities() {
  static const std::vector<GeoCity>* cities = [] {
    auto* out = new std::vector<GeoCity>;
    const auto ko = KoreanNames();
    const int n = geonames_get_n_cities();
    out->reserve(n > 0 ? static_cast<size_t>(n) : 0);
    for (int i = 0; i < n; ++i) {
      GeonamesCity* city = geonames_get_city(i);
      if (city == nullptr) continue;
      GeoCity c;
      c.en = geonames_city_get_name(city);
      c.population = geonames_city_get_population(city);
      // The record is (id, name, …): the id keys the Korean catalogue.
      GVariant* id = g_variant_get_child_value(city, 0);
      if (auto it = ko.find(g_variant_get_string(id, nullptr)); it != ko.end()) c.ko = it->second;
      g_variant_unref(id);
      geonames_city_free(city);
      out->push_back(std::move(c));
    }
    return out;
  }();
  return *cities;
}

}  // namespace persona::ai::builtin
