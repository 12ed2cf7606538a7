// libFuzzer target: model::EventFromJsonString (src/model/event.cc over src/core/json.cc).
//
// The input is the JSON text as is (no prefix). Events arrive as JSON from the store, the
// intake log and clients that resume, so the decoder must refuse anything malformed cleanly.
//
// Checks:
//   * no memory error / UB (ASan + UBSan);
//   * if the input decodes to an Event e1, then s1 = EventToJsonString(e1) must decode to an
//     event e2 with the same members (seq, id, type, at_ms, hlc, origin, data), and
//     s2 = EventToJsonString(e2) must equal s1 (the encoding is a fixed point).
//
// Known findings (see fuzz/README.md and fuzz/crashes/event_json_fuzz/), skipped unless
// FUZZ_STRICT is set so that fuzzing can go on past them:
//   * an "at" before 1970-01-01 with non-zero milliseconds, or one whose fields normalise past
//     year 9999, does not survive EventToJsonString -> EventFromJsonString;
//   * a number that overflows a double (1e400) parses as infinity and is serialised as
//     `Infinity`, which is not JSON, so the event cannot be read back;
//   * Boost.JSON 1.81 parses some decimals imprecisely (3.5E50 -> 3.4999999999999996E50), so a
//     double may change by an ulp on every serialise/parse round trip.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "model/event.h"

namespace model = persona::model;

namespace {

// A double that is not finite, or that does not survive serialise -> parse unchanged.
bool HasUnstableDouble(const persona::json::value& v) {
  if (v.is_double()) {
    const double d = v.get_double();
    if (!std::isfinite(d)) return true;
    auto back = persona::ParseJson(persona::ToJson(v));
    return !back.ok() || !back->is_double() || back->get_double() != d;
  }
  if (v.is_array()) {
    for (const auto& x : v.get_array())
      if (HasUnstableDouble(x)) return true;
  }
  if (v.is_object()) {
    for (const auto& kv : v.get_object())
      if (HasUnstableDouble(kv.value())) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto e1 = model::EventFromJsonString(text);
  if (!e1.ok()) return 0;

  // 0 .. 9999-12-31T23:59:59.999Z: the instants FormatRfc3339Millis can render faithfully.
  static const bool strict = std::getenv("FUZZ_STRICT") != nullptr;
  if (!strict && (e1->at_ms < 0 || e1->at_ms > 253402300799999)) return 0;
  if (!strict && HasUnstableDouble(persona::json::value(e1->data))) return 0;

  const std::string s1 = model::EventToJsonString(*e1);
  auto e2 = model::EventFromJsonString(s1);
  if (!e2.ok()) {
    std::fprintf(stderr, "re-parse failed: %s\n  s1=%s\n", e2.status().ToString().c_str(),
                 s1.c_str());
  }
  FUZZ_CHECK(e2.ok());
  if (e2->at_ms != e1->at_ms) {
    std::fprintf(stderr, "at_ms changed: %lld -> %lld\n  s1=%s\n",
                 static_cast<long long>(e1->at_ms), static_cast<long long>(e2->at_ms), s1.c_str());
  }
  FUZZ_CHECK(e2->seq == e1->seq);
  FUZZ_CHECK(e2->id == e1->id);
  FUZZ_CHECK(e2->type == e1->type);
  FUZZ_CHECK(e2->at_ms == e1->at_ms);
  FUZZ_CHECK(e2->hlc == e1->hlc);
  FUZZ_CHECK(e2->origin == e1->origin);
  FUZZ_CHECK(e2->data == e1->data);

  const std::string s2 = model::EventToJsonString(*e2);
  if (s2 != s1) std::fprintf(stderr, "unstable:\n  s1=%s\n  s2=%s\n", s1.c_str(), s2.c_str());
  FUZZ_CHECK(s2 == s1);
  return 0;
}
