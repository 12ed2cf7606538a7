#include "tracing/tracer.h"

#include <chrono>
#include <cmath>
#include <future>
#include <random>

#include "core/json.h"
#include "core/logging.h"
#include "net/http_client.h"

namespace persona::tracing {
namespace {

std::atomic<Tracer*> g_tracer{nullptr};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case is not allowed by W3C Trace Context
}

template <size_t N>
bool ParseHex(std::string_view s, std::array<uint8_t, N>* out) {
  if (s.size() != 2 * N) return false;
  bool nonzero = false;
  for (size_t i = 0; i < N; ++i) {
    const int hi = HexValue(s[2 * i]), lo = HexValue(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<uint8_t>(hi * 16 + lo);
    nonzero = nonzero || (*out)[i] != 0;
  }
  return nonzero;
}

template <size_t N>
void Random(std::array<uint8_t, N>* out) {
  thread_local std::mt19937_64 rng(std::random_device{}() ^ static_cast<uint64_t>(NowUnixNs()));
  for (size_t i = 0; i < N; i += 8) {
    const uint64_t r = rng() | 1;  // never all zero
    for (size_t j = 0; j < 8 && i + j < N; ++j) (*out)[i + j] = static_cast<uint8_t>(r >> (8 * j));
  }
}

constexpr char kHexDigits[] = "0123456789abcdef";

void AppendHex(std::string* out, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    out->push_back(kHexDigits[p[i] >> 4]);
    out->push_back(kHexDigits[p[i] & 15]);
  }
}

// A JSON string literal, escaped by Boost.JSON's serializer (no DOM).
void AppendJsonString(std::string* out, std::string_view s) {
  json::serializer sr;
  sr.reset(json::string_view(s.data(), s.size()));
  char buf[256];
  while (!sr.done()) {
    const json::string_view part = sr.read(buf, sizeof(buf));
    out->append(part.data(), part.size());
  }
}

void AppendAttribute(std::string* out, std::string_view key, const AttrValue& v) {
  out->append("{\"key\":");
  AppendJsonString(out, key);
  out->append(",\"value\":{");
  switch (v.type) {
    case AttrValue::Type::kString:
      out->append("\"stringValue\":");
      AppendJsonString(out, v.s);
      break;
    case AttrValue::Type::kInt:  // OTLP JSON: int64 as a string
      out->append("\"intValue\":\"").append(std::to_string(v.i)).push_back('"');
      break;
    case AttrValue::Type::kDouble:
      if (std::isfinite(v.d)) {
        out->append("\"doubleValue\":").append(json::serialize(json::value(v.d)));
      } else {  // JSON has no NaN or infinity; OTLP JSON spells them as strings
        out->append("\"doubleValue\":\"")
            .append(std::isnan(v.d) ? "NaN"
                    : v.d > 0       ? "Infinity"
                                    : "-Infinity")
            .push_back('"');
      }
      break;
    case AttrValue::Type::kBool:
      out->append("\"boolValue\":").append(v.b ? "true" : "false");
      break;
  }
  out->append("}}");
}

}  // namespace

bool SpanContext::valid() const {
  for (uint8_t b : trace_id)
    if (b != 0) return true;
  return false;
}

std::string Hex(const uint8_t* p, size_t n) {
  std::string out;
  out.reserve(2 * n);
  AppendHex(&out, p, n);
  return out;
}

std::optional<SpanContext> ParseTraceparent(std::string_view h) {
  // version "-" trace-id "-" parent-id "-" flags
  if (h.size() != 55 || h[2] != '-' || h[35] != '-' || h[52] != '-') return std::nullopt;
  if (h.substr(0, 2) != "00") return std::nullopt;
  SpanContext ctx;
  if (!ParseHex(h.substr(3, 32), &ctx.trace_id) || !ParseHex(h.substr(36, 16), &ctx.span_id))
    return std::nullopt;
  std::array<uint8_t, 1> flags{};
  if (HexValue(h[53]) < 0 || HexValue(h[54]) < 0) return std::nullopt;
  flags[0] = static_cast<uint8_t>(HexValue(h[53]) * 16 + HexValue(h[54]));
  ctx.sampled = (flags[0] & 1) != 0;
  return ctx;
}

std::string FormatTraceparent(const SpanContext& ctx) {
  std::string out;
  out.reserve(55);
  out.append("00-");
  AppendHex(&out, ctx.trace_id.data(), 16);
  out.push_back('-');
  AppendHex(&out, ctx.span_id.data(), 8);
  out.append(ctx.sampled ? "-01" : "-00");
  return out;
}

SpanContext ChildOf(const SpanContext& parent) {
  SpanContext c;
  if (parent.valid()) {
    c.trace_id = parent.trace_id;
    c.sampled = parent.sampled;
  } else {
    Random(&c.trace_id);
  }
  Random(&c.span_id);
  return c;
}

uint64_t NowUnixNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

Span ChildSpan(const SpanContext& parent, std::string name, uint64_t start_unix_ns) {
  Span span;
  span.ctx = ChildOf(parent);
  span.parent_span_id = parent.span_id;
  span.name = std::move(name);
  span.start_unix_ns = start_unix_ns;
  span.end_unix_ns = NowUnixNs();
  return span;
}

Tracer::Tracer(TracerOptions options)
    : options_(std::move(options)), http_(std::make_unique<net::HttpClient>()) {
  auto& reg = metrics::Default();
  exported_ =
      reg.GetCounter("persona_tracing_spans_total", "Spans by outcome", "outcome=\"exported\"");
  dropped_ =
      reg.GetCounter("persona_tracing_spans_total", "Spans by outcome", "outcome=\"dropped\"");
  failed_ = reg.GetCounter("persona_tracing_spans_total", "Spans by outcome",
                           "outcome=\"export_failed\"");
  thread_ = std::thread([this] { Run(); });
}

Tracer::~Tracer() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

SpanContext Tracer::NewRoot() const {
  SpanContext c = ChildOf(SpanContext{});
  if (options_.sample_ratio < 1) {
    thread_local std::mt19937_64 rng(std::random_device{}());
    c.sampled = std::uniform_real_distribution<double>(0, 1)(rng) < options_.sample_ratio;
  }
  return c;
}

void Tracer::Record(Span span) {
  if (!span.ctx.sampled) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (queue_.size() >= options_.max_queue) {
      dropped_->Inc();
      return;
    }
    queue_.push_back(std::move(span));
    if (queue_.size() < options_.max_batch) return;
  }
  cv_.notify_one();
}

void Tracer::Run() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait_for(l, std::chrono::milliseconds(options_.flush_ms),
                 [this] { return stop_ || queue_.size() >= options_.max_batch; });
    const bool stopping = stop_;
    while (!queue_.empty()) {
      std::vector<Span> batch;
      while (!queue_.empty() && batch.size() < options_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      l.unlock();
      if (Export(batch)) {
        exported_->Inc(batch.size());
      } else {
        failed_->Inc(batch.size());
      }
      l.lock();
      if (!stopping) break;  // one batch per wake-up while serving
    }
    if (stopping) return;
  }
}

bool Tracer::Export(const std::vector<Span>& batch) {
  net::ClientRequest req;
  req.method = "POST";
  req.url = options_.endpoint;
  req.headers = {{"Content-Type", "application/json"}};
  Encode(batch, &body_);
  req.body = body_;  // a copy: body_ keeps its capacity for the next batch
  req.timeout_ms = options_.timeout_ms;
  std::promise<StatusOr<net::ClientResponse>> done;
  auto f = done.get_future();
  http_->Send(std::move(req),
              [&done](StatusOr<net::ClientResponse> r) { done.set_value(std::move(r)); });
  auto r = f.get();
  const bool ok = r.ok() && r->status >= 200 && r->status < 300;
  if (!ok) {
    static std::atomic<int64_t> last_log{0};
    const int64_t now = static_cast<int64_t>(NowUnixNs() / 1000000000);
    int64_t prev = last_log.load();
    if (now - prev >= 60 && last_log.compare_exchange_strong(prev, now))
      LogWarn("tracing: the collector did not take a batch of spans; they are dropped",
              {{"endpoint", options_.endpoint},
               {"error",
                r.ok() ? "HTTP " + std::to_string(r->status) : std::string(r.status().message())}});
  }
  return ok;
}

void Tracer::Encode(const std::vector<Span>& spans, std::string* out) const {
  out->clear();
  out->reserve(256 + 400 * spans.size());
  out->append("{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
  AppendAttribute(out, "service.name", AttrValue(options_.service_name));
  out->append("]},\"scopeSpans\":[{\"scope\":{\"name\":\"persona\"},\"spans\":[");
  bool first = true;
  for (const Span& s : spans) {
    if (!first) out->push_back(',');
    first = false;
    out->append("{\"traceId\":\"");
    AppendHex(out, s.ctx.trace_id.data(), 16);
    out->append("\",\"spanId\":\"");
    AppendHex(out, s.ctx.span_id.data(), 8);
    out->push_back('"');
    bool has_parent = false;
    for (uint8_t b : s.parent_span_id) has_parent = has_parent || b != 0;
    if (has_parent) {
      out->append(",\"parentSpanId\":\"");
      AppendHex(out, s.parent_span_id.data(), 8);
      out->push_back('"');
    }
    out->append(",\"name\":");
    AppendJsonString(out, s.name);
    out->append(",\"kind\":").append(std::to_string(s.kind));
    out->append(",\"startTimeUnixNano\":\"").append(std::to_string(s.start_unix_ns));
    out->append("\",\"endTimeUnixNano\":\"").append(std::to_string(s.end_unix_ns));
    out->append("\",\"attributes\":[");
    for (size_t i = 0; i < s.attributes.size(); ++i) {
      if (i > 0) out->push_back(',');
      AppendAttribute(out, s.attributes[i].key, s.attributes[i].value);
    }
    // STATUS_CODE_ERROR : STATUS_CODE_OK
    out->append(s.error ? "],\"status\":{\"code\":2}}" : "],\"status\":{\"code\":1}}");
  }
  out->append("]}]}]}");
}

Tracer* Global() { return g_tracer.load(std::memory_order_acquire); }
void SetGlobal(Tracer* tracer) { g_tracer.store(tracer, std::memory_order_release); }

}  // namespace persona::tracing
