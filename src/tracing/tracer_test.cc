#include "tracing/tracer.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/json.h"

namespace persona::tracing {
namespace {

TEST(TraceparentTest, ParsesW3cVersion00AndRefusesTheRest) {
  auto ctx = ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  ASSERT_TRUE(ctx);
  EXPECT_EQ(Hex(ctx->trace_id.data(), 16), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(Hex(ctx->span_id.data(), 8), "00f067aa0ba902b7");
  EXPECT_TRUE(ctx->sampled);
  EXPECT_EQ(FormatTraceparent(*ctx), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_FALSE(
      ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")->sampled);
  for (const char* bad : {"", "garbage", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                          "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                          "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                          "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01"})
    EXPECT_FALSE(ParseTraceparent(bad)) << bad;
}

TEST(TraceparentTest, ChildrenKeepTheTraceAndGetTheirOwnSpan) {
  auto parent = *ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  SpanContext a = ChildOf(parent), b = ChildOf(parent);
  EXPECT_EQ(a.trace_id, parent.trace_id);
  EXPECT_NE(a.span_id, parent.span_id);
  EXPECT_NE(a.span_id, b.span_id);
  SpanContext root = ChildOf(SpanContext{});
  EXPECT_TRUE(root.valid());
  EXPECT_NE(root.trace_id, ChildOf(SpanContext{}).trace_id);
}

TEST(TracerTest, EncodesOtlpJsonAndNeverBlocksWhenTheCollectorIsDown) {
  // Port 9 on loopback: nothing listens; exports fail and spans are dropped.
  Tracer t({.endpoint = "http://127.0.0.1:9/v1/traces", .max_queue = 8, .flush_ms = 50});
  Span s;
  s.ctx = ChildOf(SpanContext{});
  s.name = "test";
  s.kind = 2;
  s.start_unix_ns = 1;
  s.end_unix_ns = 2;
  s.attributes = {{"http.route", "/x"}, {"n", 3}};
  const std::string body = t.Encode({s});
  auto parsed = ParseJson(body);
  ASSERT_TRUE(parsed.ok());
  const auto& span = parsed->at("resourceSpans").at(0).at("scopeSpans").at(0).at("spans").at(0);
  EXPECT_EQ(span.at("name"), "test");
  EXPECT_EQ(span.at("traceId").as_string().size(), 32u);
  EXPECT_EQ(span.at("startTimeUnixNano"), "1");
  EXPECT_EQ(span.at("attributes").at(1).at("value").at("intValue"), "3");
  EXPECT_EQ(parsed->at("resourceSpans").at(0).at("resource").at("attributes").at(0).at("key"),
            "service.name");
  for (int i = 0; i < 1000; ++i) t.Record(s);  // bounded: returns at once
}

TEST(TracerTest, EncodesEveryKindOfValueAndEscapesStrings) {
  Tracer t({.endpoint = "http://127.0.0.1:9/v1/traces", .service_name = "svc \"q\""});
  Span a, b;
  a.ctx = ChildOf(SpanContext{});
  b.ctx = ChildOf(a.ctx);
  b.parent_span_id = a.ctx.span_id;
  const std::string odd = std::string("q\" b\\ n\n r\r t\t \x01\x1f end 서울 🙂");
  a.name = odd;
  a.error = true;
  a.attributes = {{"s", odd},  {"i", int64_t{-9007199254740993}},
                  {"d", 0.25}, {"nan", std::nan("")},
                  {"t", true}, {"f", false},
                  {"u", 7u}};
  b.name = "child";
  const std::string body = t.Encode({a, b});
  auto parsed = ParseJson(body);
  ASSERT_TRUE(parsed.ok()) << body;
  const auto& rs = parsed->at("resourceSpans").at(0);
  EXPECT_EQ(rs.at("resource").at("attributes").at(0).at("value").at("stringValue"), "svc \"q\"");
  const auto& spans = rs.at("scopeSpans").at(0).at("spans");
  ASSERT_EQ(spans.as_array().size(), 2u);
  const auto& sa = spans.at(0);
  EXPECT_EQ(sa.at("name").as_string(), odd);
  EXPECT_FALSE(sa.as_object().contains("parentSpanId"));
  EXPECT_EQ(sa.at("status").at("code"), 2);
  const auto& attrs = sa.at("attributes");
  EXPECT_EQ(attrs.at(0).at("value").at("stringValue").as_string(), odd);
  EXPECT_EQ(attrs.at(1).at("value").at("intValue"), "-9007199254740993");  // exact, as a string
  EXPECT_EQ(attrs.at(2).at("value").at("doubleValue").to_number<double>(), 0.25);
  EXPECT_EQ(attrs.at(3).at("value").at("doubleValue"), "NaN");
  EXPECT_EQ(attrs.at(4).at("value").at("boolValue"), true);
  EXPECT_EQ(attrs.at(5).at("value").at("boolValue"), false);
  EXPECT_EQ(attrs.at(6).at("value").at("intValue"), "7");
  const auto& sb = spans.at(1);
  EXPECT_EQ(sb.at("parentSpanId").as_string(), Hex(a.ctx.span_id.data(), 8));
  EXPECT_EQ(sb.at("traceId"), sa.at("traceId"));
  EXPECT_EQ(sb.at("status").at("code"), 1);
  EXPECT_EQ(sb.at("attributes").as_array().size(), 0u);
  EXPECT_EQ(t.Encode({}), R"({"resourceSpans":[{"resource":{"attributes":[{"key":"service.name",)"
                          R"("value":{"stringValue":"svc \"q\""}}]},"scopeSpans":[{"scope":)"
                          R"({"name":"persona"},"spans":[]}]}]})");
}

}  // namespace
}  // namespace persona::tracing
