// Wall-clock access and the hybrid logical clock (HLC).
//
// An HLC stamp packs milliseconds since the Unix epoch in the high 48 bits and
// 16 low bits that HybridClock fills with a logical counter (10 bits) and the
// issuing node's number (6 bits, 0 … 63). Stamps compare as plain integers,
// stay close to wall time, and two nodes never issue the same stamp: the
// node number breaks ties between stamps of the same millisecond and count.
// HybridClock is thread-safe.
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
inline constexpr uint32_t kHlcNodeBits = 6;
inline constexpr uint32_t kHlcMaxNodes = 1u << kHlcNodeBits;
inline uint32_t HlcNode(Hlc h) { return static_cast<uint32_t>(h & (kHlcMaxNodes - 1)); }
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

  // This node's number among the nodes sharing a store (< kHlcMaxNodes), put
  // in every stamp it issues from now on.
  void SetNode(uint32_t node) { node_.store(node & (kHlcMaxNodes - 1), std::memory_order_relaxed); }
  uint32_t node() const { return node_.load(std::memory_order_relaxed); }

  // A stamp greater than every stamp this clock issued or observed.
  Hlc Now();
  // Merges a stamp received from elsewhere (another node or device).
  void Observe(Hlc remote);

 private:
  int64_t (*now_ms_)();
  std::atomic<uint32_t> node_{0};
  // The last stamp issued or observed without its node bits (ms and count).
  std::atomic<uint64_t> last_{0};
};

}  // namespace persona
