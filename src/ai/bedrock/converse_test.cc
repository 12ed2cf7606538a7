#include "ai/bedrock/converse.h"

#include <gtest/gtest.h>

#include "core/json.h"

namespace persona::ai::bedrock {
namespace {

json::object Parsed(const std::string& body) {
  StatusOr<json::value> v = ParseJson(body);
  EXPECT_TRUE(v.ok()) << body;
  return v.ok() && v->is_object() ? v->get_object() : json::object();
}

TEST(BedrockConverse, BuildsTheDocumentedShape) {
  const std::string body =
      BuildConverseBody("You are persona.", {{"user", "Hi, I'm Alice"}}, 512, 0.5);
  EXPECT_EQ(body, R"({"system":[{"text":"You are persona."}],)"
                  R"("messages":[{"role":"user","content":[{"text":"Hi, I'm Alice"}]}],)"
                  R"("inferenceConfig":{"maxTokens":512,"temperature":5E-1}})");
  const json::object o = Parsed(body);
  EXPECT_DOUBLE_EQ(o.at("inferenceConfig").at("temperature").as_double(), 0.5);
}

TEST(BedrockConverse, RepairsTheHistoryToWhatBedrockAccepts) {
  const std::string body = BuildConverseBody(
      "",
      {{"assistant", "Hi! What's your name?"},  // before the first user turn: dropped
       {"user", "Alice"},
       {"user", "I live in Seoul"},  // merged into the previous user turn
       {"system", "ignored"},        // not a Converse role
       {"assistant", "   "},         // blank: Bedrock rejects blank text
       {"assistant", "Nice to meet you"},
       {"assistant", "How old are you?"},
       {"user", "34"}},
      0, -1);
  EXPECT_EQ(body,
            R"({"messages":[)"
            R"({"role":"user","content":[{"text":"Alice\n\nI live in Seoul"}]},)"
            R"({"role":"assistant","content":[{"text":"Nice to meet you\n\nHow old are you?"}]},)"
            R"({"role":"user","content":[{"text":"34"}]}]})");
  EXPECT_EQ(BuildConverseBody("", {{"assistant", "only me"}}, 0, -1), R"({"messages":[]})");
}

TEST(BedrockConverse, EscapesText) {
  const std::string text = "quote \" backslash \\ newline \n tab \t 한국어 \x01";
  const json::object o = Parsed(BuildConverseBody(text, {{"user", text}}, 1, 0));
  EXPECT_EQ(o.at("system").at(0).at("text").as_string(), text);
  EXPECT_EQ(o.at("messages").at(0).at("content").at(0).at("text").as_string(), text);
  EXPECT_EQ(o.at("inferenceConfig").at("maxTokens").as_int64(), 1);
}

// The response shape of the Bedrock API reference (Converse, "Response Syntax") and the Nova
// user guide's "Response structure highlights": a reasoning block, a text block, usage, metrics.
constexpr char kResponse[] = R"({
  "ResponseMetadata": {"RequestId": "7d7c3a1e-5d1e-4a3e-9a56-1b6b6c7d2f10", "HTTPStatusCode": 200},
  "output": {
    "message": {
      "role": "assistant",
      "content": [
        {"reasoningContent": {"reasoningText": {"text": "[REDACTED]"}}},
        {"text": "Hello Alice! "},
        {"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {}}},
        {"text": "Seoul is lovely."}
      ]
    }
  },
  "stopReason": "end_turn",
  "usage": {"inputTokens": 30, "outputTokens": 628, "totalTokens": 658},
  "metrics": {"latencyMs": 1275}
})";

TEST(BedrockConverse, ParsesAResponse) {
  StatusOr<ConverseResult> r = ParseConverseResponse(kResponse);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text, "Hello Alice! Seoul is lovely.");
  EXPECT_EQ(r->stop_reason, "end_turn");
  EXPECT_EQ(r->input_tokens, 30);
  EXPECT_EQ(r->output_tokens, 628);
  EXPECT_EQ(r->latency_ms, 1275);

  r = ParseConverseResponse(
      R"({"output":{"message":{"role":"assistant","content":[]}},"stopReason":"max_tokens"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text, "");
  EXPECT_EQ(r->stop_reason, "max_tokens");
  EXPECT_EQ(r->input_tokens, 0);
  EXPECT_EQ(r->latency_ms, -1);
}

TEST(BedrockConverse, MalformedResponsesAreDataLoss) {
  const char* bad[] = {
      "",
      "not json",
      "[1,2]",
      "{}",
      R"({"output":{}})",
      R"({"output":{"message":{"content":"text"}}})",
      R"({"output":{"message":{"content":[1]}}})",
      R"({"output":{"message":{"content":[{"text":7}]}}})",
      R"({"output":{"message":{"content":[]}},"usage":{"inputTokens":"many"}})",
      R"({"output":{"message":{"content":[]}},"usage":{"outputTokens":-1}})",
      R"({"output":{"message":{"content":[]}},"usage":[]})",
      "{\"output\":{\"message\":{\"content\":[{\"text\":\"\xff\"}]}}}",  // invalid UTF-8
      R"({"output":{"message":{"content":[{"text":"a"}]}}} trailing)",
  };
  for (const char* body : bad) {
    StatusOr<ConverseResult> r = ParseConverseResponse(body);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << body;
  }
  std::string deep(10000, '[');
  EXPECT_EQ(ParseConverseResponse(deep).status().code(), absl::StatusCode::kDataLoss);
}

EventMessage Event(const std::string& type, const std::string& payload) {
  return {
      {{":event-type", type}, {":content-type", "application/json"}, {":message-type", "event"}},
      payload};
}

TEST(BedrockConverse, ParsesAStream) {
  // A ConverseStream as Bedrock sends it (each payload carries the "p" padding field).
  const std::string stream =
      EncodeEventMessage({{":event-type", "messageStart"},
                          {":content-type", "application/json"},
                          {":message-type", "event"}},
                         R"({"p":"abcdefghijklmnopqrs","role":"assistant"})") +
      EncodeEventMessage(
          {{":event-type", "contentBlockDelta"},
           {":content-type", "application/json"},
           {":message-type", "event"}},
          R"({"contentBlockIndex":0,"delta":{"text":"Hello"},"p":"abcdefghijklmnopqrstuvwxy"})") +
      EncodeEventMessage({{":event-type", "contentBlockDelta"},
                          {":content-type", "application/json"},
                          {":message-type", "event"}},
                         R"({"contentBlockIndex":0,"delta":{"text":" Alice!"},"p":"abc"})") +
      EncodeEventMessage({{":event-type", "contentBlockStop"},
                          {":content-type", "application/json"},
                          {":message-type", "event"}},
                         R"({"contentBlockIndex":0,"p":"abcdefghijk"})") +
      EncodeEventMessage({{":event-type", "messageStop"},
                          {":content-type", "application/json"},
                          {":message-type", "event"}},
                         R"({"p":"abcdefghijklmnopqrstu","stopReason":"end_turn"})") +
      EncodeEventMessage({{":event-type", "metadata"},
                          {":content-type", "application/json"},
                          {":message-type", "event"}},
                         R"({"metrics":{"latencyMs":403},"p":"abcdefghijklm",)"
                         R"("usage":{"inputTokens":25,"outputTokens":9,"totalTokens":34}})");
  EventStreamDecoder decoder;
  std::vector<EventMessage> messages;
  ASSERT_TRUE(decoder.Feed(stream, &messages).ok());
  ASSERT_EQ(messages.size(), 6u);

  std::string text, stop;
  int64_t in = 0, out = 0, latency = 0;
  std::vector<StreamEvent::Type> types;
  for (const EventMessage& m : messages) {
    StatusOr<StreamEvent> e = ParseStreamEvent(m);
    ASSERT_TRUE(e.ok()) << e.status();
    types.push_back(e->type);
    text += e->text;
    if (e->type == StreamEvent::Type::kMessageStop) stop = e->stop_reason;
    if (e->type == StreamEvent::Type::kMetadata) {
      in = e->input_tokens;
      out = e->output_tokens;
      latency = e->latency_ms;
    }
  }
  using T = StreamEvent::Type;
  EXPECT_EQ(types, (std::vector<T>{T::kMessageStart, T::kContentBlockDelta, T::kContentBlockDelta,
                                   T::kContentBlockStop, T::kMessageStop, T::kMetadata}));
  EXPECT_EQ(text, "Hello Alice!");
  EXPECT_EQ(stop, "end_turn");
  EXPECT_EQ(in, 25);
  EXPECT_EQ(out, 9);
  EXPECT_EQ(latency, 403);
}

TEST(BedrockConverse, StreamEdgeCases) {
  // Unknown events are skipped, not errors; their payload is not even parsed.
  StatusOr<StreamEvent> e = ParseStreamEvent(Event("somethingNew", "not json"));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->type, StreamEvent::Type::kOther);
  EXPECT_EQ(e->event_type, "somethingNew");
  // A tool-use delta has no text.
  e = ParseStreamEvent(Event("contentBlockDelta",
                             R"({"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"a\""}}})"));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->text, "");
  e = ParseStreamEvent(Event("contentBlockStart", R"({"start":{"toolUse":{}}})"));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->type, StreamEvent::Type::kContentBlockStart);
  // Without :message-type an event is still an event.
  e = ParseStreamEvent({{{":event-type", "messageStop"}}, R"({"stopReason":"max_tokens"})"});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->stop_reason, "max_tokens");

  const EventMessage bad[] = {
      Event("contentBlockDelta", "not json"),
      Event("contentBlockDelta", R"({"contentBlockIndex":0})"),
      Event("contentBlockDelta", R"({"delta":{"text":5}})"),
      Event("metadata", R"({"usage":{"inputTokens":"x"}})"),
      Event("messageStart", "[]"),
      {{{":message-type", "event"}}, "{}"},  // no :event-type
      {{{":message-type", "surprise"}, {":event-type", "messageStart"}}, "{}"},
  };
  for (const EventMessage& m : bad) {
    EXPECT_EQ(ParseStreamEvent(m).status().code(), absl::StatusCode::kDataLoss) << m.payload;
  }
}

TEST(BedrockConverse, StreamExceptionsBecomeStatuses) {
  struct Case {
    const char* type;
    absl::StatusCode code;
  } cases[] = {
      {"throttlingException", absl::StatusCode::kResourceExhausted},
      {"serviceUnavailableException", absl::StatusCode::kUnavailable},
      {"internalServerException", absl::StatusCode::kUnavailable},
      {"modelStreamErrorException", absl::StatusCode::kUnavailable},
      {"validationException", absl::StatusCode::kInvalidArgument},
      {"modelTimeoutException", absl::StatusCode::kDeadlineExceeded},
      {"accessDeniedException", absl::StatusCode::kPermissionDenied},
      {"somethingElseException", absl::StatusCode::kInternal},
  };
  for (const Case& c : cases) {
    EventMessage m{{{":message-type", "exception"},
                    {":exception-type", c.type},
                    {":content-type", "application/json"}},
                   R"({"message":"Too many tokens, please wait before trying again."})"};
    Status s = ParseStreamEvent(m).status();
    EXPECT_EQ(s.code(), c.code) << c.type;
    EXPECT_EQ(s.message(), std::string("Bedrock ") + c.type +
                               ": Too many tokens, please wait before trying again.");
  }
  // A protocol-level error message.
  Status s = ParseStreamEvent({{{":message-type", "error"},
                                {":error-code", "InternalServerException"},
                                {":error-message", "boom"}},
                               ""})
                 .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "Bedrock InternalServerException: boom");
}

TEST(BedrockConverse, HttpErrorsBecomeStatuses) {
  const std::string body = R"({"message":"Too many requests, please wait before trying again."})";
  Status s = ConverseErrorStatus(
      429, "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/", body);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(),
            "Bedrock ThrottlingException: Too many requests, please wait before trying again.");
  EXPECT_EQ(ConverseErrorStatus(403, "InvalidSignatureException", R"({"message":"x"})").code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ConverseErrorStatus(403, "AccessDeniedException", "{}").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ConverseErrorStatus(400, "ValidationException", "{}").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ConverseErrorStatus(404, "ResourceNotFoundException", "{}").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ConverseErrorStatus(424, "ModelErrorException", "{}").code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ConverseErrorStatus(408, "ModelTimeoutException", "{}").code(),
            absl::StatusCode::kDeadlineExceeded);
  // Without a type header: the HTTP status decides; a non-JSON body becomes the message.
  s = ConverseErrorStatus(503, "", "<html>Service Unavailable</html>");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "Bedrock HTTP 503: <html>Service Unavailable</html>");
  EXPECT_EQ(ConverseErrorStatus(429, "", "").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ConverseErrorStatus(418, "", "").code(), absl::StatusCode::kInternal);
  EXPECT_EQ(ConverseErrorStatus(400, "", R"({"Message":"bad"})").message(),
            "Bedrock HTTP 400: bad");
}

TEST(BedrockConverse, Endpoints) {
  const std::string model = "anthropic.claude-3-haiku-20240307-v1:0";
  EXPECT_EQ(ConverseUrl("us-east-1", "", model, false),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
            "anthropic.claude-3-haiku-20240307-v1%3A0/converse");
  EXPECT_EQ(ConverseUrl("eu-west-3", "", model, true),
            "https://bedrock-runtime.eu-west-3.amazonaws.com/model/"
            "anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream");
  EXPECT_EQ(ConverseUrl("us-east-1", "http://127.0.0.1:8123", model, false),
            "http://127.0.0.1:8123/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse");
  EXPECT_EQ(ConverseUrl("us-east-1", "https://vpce-1.example.com/base/", "m", true),
            "https://vpce-1.example.com/base/model/m/converse-stream");
  EXPECT_EQ(
      ConverseUrl("us-east-1", "", "arn:aws:bedrock:us-east-1:1:inference-profile/us.m", false),
      "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
      "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.m/converse");

  StatusOr<ConverseEndpoint> e = ResolveConverseEndpoint("us-east-1", "", model, false);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->tls);
  EXPECT_EQ(e->host, "bedrock-runtime.us-east-1.amazonaws.com");
  EXPECT_EQ(e->port, "443");
  EXPECT_EQ(e->host_header, "bedrock-runtime.us-east-1.amazonaws.com");
  EXPECT_EQ(e->path, "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse");

  e = ResolveConverseEndpoint("", "http://127.0.0.1:8123", "m", false);
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->tls);
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, "8123");
  EXPECT_EQ(e->host_header, "127.0.0.1:8123");
  e = ResolveConverseEndpoint("", "http://localhost", "m", false);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->port, "80");
  EXPECT_EQ(e->host_header, "localhost");

  for (const char* region : {"", "us-east-1.evil.com/x", "US-EAST-1", "a b"}) {
    EXPECT_EQ(ConverseUrl(region, "", model, false), "") << region;
  }
  for (const char* base : {"127.0.0.1:8123", "ftp://x", "http://", "http://h:port", "http://user@h",
                           "http://h:99999999", "http://h/a?b"}) {
    EXPECT_FALSE(ResolveConverseEndpoint("us-east-1", base, model, false).ok()) << base;
  }
  EXPECT_FALSE(ResolveConverseEndpoint("us-east-1", "", "", false).ok());
}

}  // namespace
}  // namespace persona::ai::bedrock
