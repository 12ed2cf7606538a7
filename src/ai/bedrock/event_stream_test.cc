#include "ai/bedrock/event_stream.h"

#include <gtest/gtest.h>

#include <random>

namespace persona::ai::bedrock {
namespace {

std::string Bytes(std::initializer_list<int> v) {
  std::string s;
  for (int b : v) s.push_back(static_cast<char>(b));
  return s;
}

// The AWS SDK's event stream test vectors: github.com/aws/aws-sdk-js-v3,
// packages/eventstream-marshaller/src/TestVectors.fixture.ts (commit 238be60b).
TEST(EventStream, AwsSdkPositiveVectors) {
  struct Case {
    const char* name;
    std::string encoded;
    std::map<std::string, std::string> headers;
    std::string payload;
  };
  const std::string foo_bar = "{'foo':'bar'}";
  const Case cases[] = {
      {"empty_message",
       Bytes({0, 0, 0, 16, 0, 0, 0, 0, 5, 194, 72, 235, 125, 152, 200, 255}),
       {},
       ""},
      {"int32_header",
       Bytes({0,   0,   0,   43, 0,   0,   0,   14, 52,  139, 236, 123, 8,  101, 118,
              101, 110, 116, 45, 105, 100, 4,   0,  0,   160, 12,  123, 39, 102, 111,
              111, 39,  58,  39, 98,  97,  114, 39, 125, 211, 137, 2,   133}),
       {{"event-id", "40972"}},
       foo_bar},
      {"payload_no_headers",
       Bytes({0,   0,   0,  29, 0,  0,  0,  0,   253, 82,  140, 90,  123, 39, 102,
              111, 111, 39, 58, 39, 98, 97, 114, 39,  125, 195, 101, 57,  54}),
       {},
       foo_bar},
      {"payload_one_str_header",
       Bytes({0,   0,   0,   61,  0,   0,   0,   32,  7,   253, 131, 150, 12,  99,  111, 110,
              116, 101, 110, 116, 45,  116, 121, 112, 101, 7,   0,   16,  97,  112, 112, 108,
              105, 99,  97,  116, 105, 111, 110, 47,  106, 115, 111, 110, 123, 39,  102, 111,
              111, 39,  58,  39,  98,  97,  114, 39,  125, 141, 156, 8,   177}),
       {{"content-type", "application/json"}},
       foo_bar},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EventStreamDecoder d;
    std::vector<EventMessage> out;
    ASSERT_TRUE(d.Feed(c.encoded, &out).ok());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].headers, c.headers);
    EXPECT_EQ(out[0].payload, c.payload);
    EXPECT_EQ(d.buffered(), 0u);
  }
  // Our encoder produces the same bytes for the string-header vectors.
  EXPECT_EQ(EncodeEventMessage({}, ""), cases[0].encoded);
  EXPECT_EQ(EncodeEventMessage({}, foo_bar), cases[2].encoded);
  EXPECT_EQ(EncodeEventMessage({{"content-type", "application/json"}}, foo_bar), cases[3].encoded);
}

TEST(EventStream, AwsSdkNegativeVectors) {
  const std::string cases[] = {
      // corrupted_headers
      Bytes({0,   0,   0,   61,  0,   0,   0,   32,  7,   253, 131, 150, 12,  99,  111, 110,
             116, 101, 110, 116, 43,  116, 121, 112, 101, 7,   0,   16,  97,  112, 112, 108,
             105, 99,  97,  116, 105, 111, 110, 47,  106, 115, 111, 110, 123, 39,  102, 111,
             111, 39,  58,  39,  98,  97,  114, 39,  125, 141, 156, 8,   177}),
      // corrupted_header_len
      Bytes({0,   0,   0,   61,  0,   0,   1,   32,  7,   253, 131, 150, 12,  99,  111, 110,
             116, 101, 110, 116, 45,  116, 121, 112, 101, 7,   0,   16,  97,  112, 112, 108,
             105, 99,  97,  116, 105, 111, 110, 47,  106, 115, 111, 110, 123, 39,  102, 111,
             111, 39,  58,  39,  98,  97,  114, 39,  125, 141, 156, 8,   177}),
      // corrupted_length
      Bytes({1,   0,   0,  29, 0,  0,  0,  0,   253, 82,  140, 90,  123, 39, 102,
             111, 111, 39, 58, 39, 98, 97, 114, 39,  125, 195, 101, 57,  54}),
      // corrupted_payload
      Bytes({0,   0,   0,  29, 0,  0,  0,  0,   253, 82,  140, 90,  123, 39, 102,
             111, 111, 39, 58, 39, 98, 97, 114, 39,  141, 195, 101, 57,  54}),
  };
  for (const std::string& c : cases) {
    EventStreamDecoder d;
    std::vector<EventMessage> out;
    Status s = d.Feed(c, &out);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_TRUE(out.empty());
  }
}

TEST(EventStream, Crc32IsZlibs) {
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(Crc32(""), 0u);
  EXPECT_EQ(Crc32("6789", Crc32("12345")), 0xCBF43926u);
}

std::string ThreeMessages() {
  return EncodeEventMessage({{":event-type", "messageStart"},
                             {":content-type", "application/json"},
                             {":message-type", "event"}},
                            R"({"role":"assistant"})") +
         EncodeEventMessage({{":event-type", "contentBlockDelta"}},
                            R"({"contentBlockIndex":0,"delta":{"text":"Hello"}})") +
         EncodeEventMessage({}, std::string(1000, 'x'));
}

void ExpectThree(const std::vector<EventMessage>& out) {
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].headers.at(":event-type"), "messageStart");
  EXPECT_EQ(out[0].headers.at(":message-type"), "event");
  EXPECT_EQ(out[0].payload, R"({"role":"assistant"})");
  EXPECT_EQ(out[1].headers.size(), 1u);
  EXPECT_EQ(out[1].payload, R"({"contentBlockIndex":0,"delta":{"text":"Hello"}})");
  EXPECT_TRUE(out[2].headers.empty());
  EXPECT_EQ(out[2].payload, std::string(1000, 'x'));
}

TEST(EventStream, RoundTripInOneFeed) {
  EventStreamDecoder d;
  std::vector<EventMessage> out;
  ASSERT_TRUE(d.Feed(ThreeMessages(), &out).ok());
  ExpectThree(out);
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(EventStream, SplitAtEveryByteBoundary) {
  const std::string stream = ThreeMessages();
  for (size_t k = 0; k <= stream.size(); ++k) {
    EventStreamDecoder d;
    std::vector<EventMessage> out;
    ASSERT_TRUE(d.Feed(std::string_view(stream).substr(0, k), &out).ok()) << k;
    ASSERT_TRUE(d.Feed(std::string_view(stream).substr(k), &out).ok()) << k;
    ExpectThree(out);
    ASSERT_EQ(d.buffered(), 0u);
  }
  // And one byte at a time.
  EventStreamDecoder d;
  std::vector<EventMessage> out;
  for (char c : stream) ASSERT_TRUE(d.Feed(std::string_view(&c, 1), &out).ok());
  ExpectThree(out);
}

TEST(EventStream, AllHeaderTypes) {
  std::string h;
  auto name = [&h](std::string_view n, int type) {
    h.push_back(static_cast<char>(n.size()));
    h.append(n);
    h.push_back(static_cast<char>(type));
  };
  name("t", 0);
  name("f", 1);
  name("byte", 2);
  h += Bytes({0xff});
  name("short", 3);
  h += Bytes({0xff, 0xfe});
  name("int", 4);
  h += Bytes({0, 0, 0xa0, 0x0c});
  name("long", 5);
  h += Bytes({0x80, 0, 0, 0, 0, 0, 0, 0});
  name("bytes", 6);
  h += Bytes({0, 3, 0, 1, 0xff});
  name("string", 7);
  h += Bytes({0, 2}) + "hi";
  name("time", 8);
  h += Bytes({0, 0, 0x01, 0x8c, 0xc2, 0x51, 0xf4, 0x00});
  name("uuid", 9);
  h += Bytes({0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17,
              0x40, 0x00});
  EventStreamDecoder d;
  std::vector<EventMessage> out;
  ASSERT_TRUE(d.Feed(FrameEventMessage(h, "p"), &out).ok());
  ASSERT_EQ(out.size(), 1u);
  const std::map<std::string, std::string> want = {
      {"t", "true"},
      {"f", "false"},
      {"byte", "-1"},
      {"short", "-2"},
      {"int", "40972"},
      {"long", "-9223372036854775808"},
      {"bytes", std::string("\0\1\xff", 3)},
      {"string", "hi"},
      {"time", "1704067200000"},
      {"uuid", "123e4567-e89b-12d3-a456-426614174000"},
  };
  EXPECT_EQ(out[0].headers, want);
  EXPECT_EQ(out[0].payload, "p");
}

TEST(EventStream, MalformedHeadersAreDataLoss) {
  const std::string bad[] = {
      Bytes({0, 7, 0, 0}),            // empty name
      Bytes({5, 'a', 'b'}),           // name past the block
      Bytes({1, 'a'}),                // no type
      Bytes({1, 'a', 10}),            // unknown type
      Bytes({1, 'a', 4, 0, 0}),       // int cut short
      Bytes({1, 'a', 7, 0, 5, 'x'}),  // string past the block
      Bytes({1, 'a', 9, 1, 2, 3}),    // uuid cut short
  };
  for (const std::string& h : bad) {
    EventStreamDecoder d;
    std::vector<EventMessage> out;
    EXPECT_EQ(d.Feed(FrameEventMessage(h, "payload"), &out).code(), absl::StatusCode::kDataLoss);
    EXPECT_TRUE(out.empty());
  }
}

TEST(EventStream, EveryCorruptedByteIsDetected) {
  const std::string good = EncodeEventMessage({{":event-type", "messageStop"}}, "{}");
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit : {0x01, 0x80}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ bit);
      EventStreamDecoder d;
      std::vector<EventMessage> out;
      // A corrupted length can make the decoder wait for more bytes; the prelude CRC catches
      // that at once, so every flip fails in this one Feed.
      Status s = d.Feed(bad, &out);
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << i;
      EXPECT_TRUE(out.empty()) << i;
    }
  }
}

TEST(EventStream, ErrorsAreStickyAndMessagesBeforeThemKept) {
  const std::string good = EncodeEventMessage({{"a", "b"}}, "1");
  std::string bad = good;
  bad.back() = static_cast<char>(bad.back() ^ 1);
  EventStreamDecoder d;
  std::vector<EventMessage> out;
  EXPECT_EQ(d.Feed(good + bad, &out).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(d.Feed(good, &out).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(d.buffered(), 0u);
}

std::string Prelude(uint32_t total, uint32_t headers_len) {
  std::string p;
  for (uint32_t v : {total, headers_len}) {
    for (int i = 3; i >= 0; --i) p.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  const uint32_t crc = Crc32(p);
  for (int i = 3; i >= 0; --i) p.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  return p;
}

TEST(EventStream, LengthsAreBoundedBeforeWaiting) {
  struct Case {
    uint32_t total, headers_len;
  } cases[] = {
      {15, 0},
      {0, 0},
      {EventStreamDecoder::kMaxMessageBytes + 1, 0},
      {0xffffffffu, 0},
      {100, 85},                     // headers longer than the message allows
      {1u << 20, (128u << 10) + 1},  // headers over 128 KiB
  };
  for (const Case& c : cases) {
    EventStreamDecoder d;
    std::vector<EventMessage> out;
    EXPECT_EQ(d.Feed(Prelude(c.total, c.headers_len), &out).code(), absl::StatusCode::kDataLoss)
        << c.total << " " << c.headers_len;
  }
  // The largest allowed message is waited for, not rejected.
  EventStreamDecoder d;
  std::vector<EventMessage> out;
  EXPECT_TRUE(d.Feed(Prelude(EventStreamDecoder::kMaxMessageBytes, 0), &out).ok());
  EXPECT_EQ(d.buffered(), 12u);
}

TEST(EventStream, TruncatedMessageWaits) {
  const std::string good = EncodeEventMessage({{"a", "b"}}, "payload");
  EventStreamDecoder d;
  std::vector<EventMessage> out;
  ASSERT_TRUE(d.Feed(std::string_view(good).substr(0, good.size() - 1), &out).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(d.buffered(), good.size() - 1);
  ASSERT_TRUE(d.Feed(std::string_view(good).substr(good.size() - 1), &out).ok());
  EXPECT_EQ(out.size(), 1u);
}

TEST(EventStream, EncoderTruncatesWhatCannotBeFramed) {
  EventStreamDecoder d;
  std::vector<EventMessage> out;
  ASSERT_TRUE(
      d.Feed(EncodeEventMessage({{std::string(300, 'n'), std::string(70000, 'v')}}, ""), &out)
          .ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].headers.begin()->first.size(), 255u);
  EXPECT_EQ(out[0].headers.begin()->second.size(), 65535u);
}

TEST(EventStream, RandomBytesNeverCrash) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> byte(0, 255);
  const std::string good = ThreeMessages();
  int decoded = 0;
  for (int iter = 0; iter < 5000; ++iter) {
    std::string input;
    switch (iter % 4) {
      case 0: {  // pure noise
        input.resize(rng() % 300);
        for (char& c : input) c = static_cast<char>(byte(rng));
        break;
      }
      case 1: {  // a valid stream with a few bytes mutated
        input = good;
        for (int k = 0; k < 1 + static_cast<int>(rng() % 4); ++k) {
          input[rng() % input.size()] = static_cast<char>(byte(rng));
        }
        break;
      }
      case 2: {  // checksums right, header block random: exercises the header parser
        std::string h(rng() % 64, '\0');
        for (char& c : h) c = static_cast<char>(byte(rng));
        input = FrameEventMessage(h, "x");
        break;
      }
      case 3: {  // a valid prelude with random lengths, then noise
        input = Prelude(static_cast<uint32_t>(rng() % 400), static_cast<uint32_t>(rng() % 400));
        input.resize(input.size() + rng() % 400);
        for (size_t k = 12; k < input.size(); ++k) input[k] = static_cast<char>(byte(rng));
        break;
      }
    }
    EventStreamDecoder d;
    std::vector<EventMessage> out;
    size_t pos = 0;
    Status s;
    while (pos < input.size() && s.ok()) {
      const size_t n = 1 + rng() % 50;
      s = d.Feed(std::string_view(input).substr(pos, n), &out);
      pos += n;
    }
    if (!s.ok()) {
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
    }
    decoded += static_cast<int>(out.size());
    EXPECT_LE(d.buffered(), input.size());
  }
  EXPECT_GT(decoded, 0);  // the header-parser cases do produce messages
}

}  // namespace
}  // namespace persona::ai::bedrock
