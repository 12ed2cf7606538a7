// Named points where a test can run code (as RocksDB's
// test_util/sync_point.h): the code under test marks a point with
// PERSONA_SYNC_POINT("Class::Method:Where"); a test sets a callback for that
// name to hold a thread there, or to let another run first, and so produces
// an interleaving deterministically. While no callback is set (always, in
// production) a point costs one relaxed atomic load.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <string_view>

namespace persona::sync_point {

extern std::atomic<bool> g_enabled;

// `fn` runs (on the thread that reaches the point) every time `name` is
// reached, until ClearAll().
void Set(const std::string& name, std::function<void()> fn);
void ClearAll();
void Process(std::string_view name);

}  // namespace persona::sync_point

#define PERSONA_SYNC_POINT(name)                                          \
  do {                                                                    \
    if (::persona::sync_point::g_enabled.load(std::memory_order_relaxed)) \
      ::persona::sync_point::Process(name);                               \
  } while (0)
