#include "core/clock.h"

#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace persona {

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string FormatRfc3339Millis(int64_t unix_ms) {
  const time_t secs = static_cast<time_t>(unix_ms / 1000);
  const int ms = static_cast<int>(unix_ms % 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

std::string HlcToString(Hlc h) { return std::to_string(h); }

bool ParseHlc(std::string_view s, Hlc* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

// The clock counts in "ticks": a stamp without its node bits. A wall
// millisecond is 1024 ticks; more than 1024 stamps in one millisecond borrow
// from the next one, as an HLC's logical counter does.
Hlc HybridClock::Now() {
  const uint64_t wall = MakeHlc(now_ms_(), 0) >> kHlcNodeBits;
  uint64_t prev = last_.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t next = wall > prev ? wall : prev + 1;
    if (last_.compare_exchange_weak(prev, next, std::memory_order_relaxed))
      return (next << kHlcNodeBits) | node();
  }
}

void HybridClock::Observe(Hlc remote) {
  const uint64_t ticks = remote >> kHlcNodeBits;
  uint64_t prev = last_.load(std::memory_order_relaxed);
  while (ticks > prev && !last_.compare_exchange_weak(prev, ticks, std::memory_order_relaxed)) {
  }
}

}  // namespace persona
