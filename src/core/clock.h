// Wall-clock access and the hybrid logical clock (HLC).
//
// An HLC stamp packs milliseconds since the Unix epoch in the high 48 bits and
// a logical counter in the low 16 bits, so stamps compare as plain integers and
// stay close to wall time. HybridClock is thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace persona {

// Milliseconds since the Unix epoch.
int64_t NowMillis();

// "2026-11-27T08:40:54.123Z".
std::string FormatRfc3339Millis(int64_t unix_ms);

using Hlc = uint64_t;

inline int64_t HlcMillis(Hlc h) { return static_cast<int64_t>(h >> 16); }
inline uint32_t HlcLogical(Hlc h) { return static_cast<uint32_t>(h & 0xffff); }
inline Hlc MakeHlc(int64_t ms, uint32_t logical) {
  return (static_cast<uint64_t>(ms) << 16) | (logical & 0xffff);
}

// Stamps travel as decimal strings: JavaScript numbers cannot hold 64 bits.
std::string HlcToString(Hlc h);
bool ParseHlc(std::string_view s, Hlc* out);

class HybridClock {
 public:
  // `now_ms` is injectable for tests; nullptr means NowMillis.
  explicit HybridClock(int64_t (*now_ms)() = nullptr) : now_ms_(now_ms ? now_ms : &NowMillis) {}

  // A stamp greater than every stamp this clock issued or observed.
  Hlc Now();
  // Merges a stamp received from elsewhere (another node or device).
  void Observe(Hlc remote);

 private:
  int64_t (*now_ms_)();
  std::atomic<Hlc> last_{0};
};

}  // namespace persona
