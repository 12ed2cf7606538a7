// Tracing (SPEC §13, issue 13): W3C Trace Context in and out, spans exported
// as OTLP/HTTP JSON.
//
// A request's `traceparent` header (version 00) is its parent; a malformed
// one is ignored (counted in persona_tracing_bad_traceparent_total) and the
// request starts a new trace. persona records a span for the HTTP route, the
// AI call (whose traceparent goes to the model API), the store commit and the
// publish to subscribers.
//
// The Tracer queues finished spans (at most `max_queue`; past it they are
// dropped and counted, so a collector that is down or slow never slows a
// step) and a background thread POSTs them in batches of up to `max_batch`,
// at least once a second, to `endpoint` (e.g. http://collector:4318/v1/traces,
// as Jaeger's and the OpenTelemetry Collector's OTLP/HTTP receivers take
// them). A batch the collector refuses or cannot take in time is dropped and
// counted. Written here rather than with opentelemetry-cpp, which Debian 12
// does not package.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "metrics/metrics.h"

namespace persona::net {
class HttpClient;
}

namespace persona::tracing {

struct SpanContext {
  std::array<uint8_t, 16> trace_id{};
  std::array<uint8_t, 8> span_id{};
  bool sampled = true;
  bool valid() const;
};

// "00-<32 hex>-<16 hex>-<2 hex>"; nullopt unless well-formed (version 00,
// lower-case hex, not all-zero ids).
std::optional<SpanContext> ParseTraceparent(std::string_view header);
std::string FormatTraceparent(const SpanContext& ctx);
// A child of `parent` (a new trace when `parent` is invalid).
SpanContext ChildOf(const SpanContext& parent);
std::string Hex(const uint8_t* p, size_t n);

// An attribute's value: OTLP's stringValue, intValue, doubleValue or
// boolValue. Plain members rather than a json::value: a span is built on
// the step's thread, and this costs one allocation (a long string) or none.
struct AttrValue {
  enum class Type : uint8_t { kString, kInt, kDouble, kBool };
  AttrValue(std::string v) : type(Type::kString), s(std::move(v)) {}
  AttrValue(std::string_view v) : type(Type::kString), s(v) {}
  AttrValue(const char* v) : type(Type::kString), s(v) {}
  template <typename T,
            typename = std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>>
  AttrValue(T v) : type(Type::kInt), i(static_cast<int64_t>(v)) {}
  AttrValue(double v) : type(Type::kDouble), d(v) {}
  AttrValue(bool v) : type(Type::kBool), b(v) {}

  Type type;
  bool b = false;
  int64_t i = 0;
  double d = 0;
  std::string s;
};

struct Attribute {
  std::string_view key;  // a string literal: not copied
  AttrValue value;
};

struct Span {
  SpanContext ctx;
  std::array<uint8_t, 8> parent_span_id{};  // all zero: a root span
  std::string name;
  int kind = 1;  // OTLP SpanKind: 1 internal, 2 server, 3 client
  uint64_t start_unix_ns = 0;
  uint64_t end_unix_ns = 0;
  std::vector<Attribute> attributes;
  bool error = false;
};

uint64_t NowUnixNs();

// A finished span, child of `parent`, from `start_unix_ns` until now.
Span ChildSpan(const SpanContext& parent, std::string name, uint64_t start_unix_ns);

struct TracerOptions {
  std::string endpoint;  // full URL of the OTLP/HTTP traces endpoint
  std::string service_name = "persona";
  size_t max_queue = 4096;
  size_t max_batch = 512;
  int flush_ms = 1000;
  int timeout_ms = 2000;      // per export
  double sample_ratio = 1.0;  // of new traces (a parent's flag decides for its trace)
};

class Tracer {
 public:
  explicit Tracer(TracerOptions options);
  ~Tracer();  // exports what is queued (within timeout_ms), then stops

  // Never blocks: a full queue drops the span. Unsampled spans are ignored.
  void Record(Span span);
  // A new trace's context, sampled with probability sample_ratio.
  SpanContext NewRoot() const;
  // OTLP/HTTP JSON for `spans` (an ExportTraceServiceRequest), into *out.
  // Written by hand, not through json::value: the exporter encodes every
  // span a step records, and a DOM per span is several allocations per
  // field (the cost against Boost.JSON is not measured separately).
  void Encode(const std::vector<Span>& spans, std::string* out) const;
  std::string Encode(const std::vector<Span>& spans) const {
    std::string out;
    Encode(spans, &out);
    return out;
  }

 private:
  void Run();
  bool Export(const std::vector<Span>& batch);

  std::string body_;  // the exporter thread's encoding buffer, reused

  const TracerOptions options_;
  std::unique_ptr<net::HttpClient> http_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Span> queue_;
  bool stop_ = false;
  std::thread thread_;
  metrics::Counter* exported_;
  metrics::Counter* dropped_;
  metrics::Counter* failed_;
};

// The process's tracer, or null when tracing is off (the default). Set once
// at start, before requests are served.
Tracer* Global();
void SetGlobal(Tracer* tracer);

}  // namespace persona::tracing
