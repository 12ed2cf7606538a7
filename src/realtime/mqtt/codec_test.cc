#include "realtime/mqtt/codec.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace persona::realtime::mqtt {
namespace {

constexpr size_t kMax = 1 << 20;

std::string Enc(const Packet& p) {
  std::string out;
  EXPECT_TRUE(EncodePacket(p, &out));
  return out;
}

Connect BasicConnect() {
  Connect c;
  c.client_id = "dev-1";
  c.keep_alive_s = 30;
  return c;
}

std::string ConnectBytes() { return Enc(BasicConnect()); }
std::string ConnackBytes() { return Enc(Connack{}); }

struct Parsed {
  ParseResult result;
  std::vector<Packet> packets;
};

Parsed Parse(std::string_view bytes, Parser::Role role = Parser::Role::kServer, size_t max = kMax) {
  Parser parser(max, role);
  Parsed p;
  p.result = parser.Feed(bytes, &p.packets);
  return p;
}

// Parses `body` as the packets following a valid CONNECT (server role) and returns the
// error reason ("" on success).
std::string ServerError(std::string_view body, std::optional<ConnackCode>* code = nullptr) {
  Parsed p = Parse(ConnectBytes() + std::string(body));
  if (code) *code = p.result.connack_code;
  return p.result.ok ? "" : p.result.reason;
}

std::string ClientError(std::string_view body) {
  Parsed p = Parse(ConnackBytes() + std::string(body), Parser::Role::kClient);
  return p.result.ok ? "" : p.result.reason;
}

// A packet with first byte `first` and the given body (any length).
std::string RawPacket(uint8_t first, std::string_view body) {
  std::string s;
  s.push_back(static_cast<char>(first));
  size_t len = body.size();
  do {
    uint8_t b = len % 128;
    len /= 128;
    if (len) b |= 0x80;
    s.push_back(static_cast<char>(b));
  } while (len);
  s.append(body);
  return s;
}

std::string Str(std::string_view s) {
  std::string out;
  out.push_back(static_cast<char>(s.size() >> 8));
  out.push_back(static_cast<char>(s.size() & 0xFF));
  out.append(s);
  return out;
}

std::string RawConnect(uint8_t flags, std::string_view payload, std::string_view name = "MQTT",
                       uint8_t level = 4) {
  std::string body = Str(name);
  body.push_back(static_cast<char>(level));
  body.push_back(static_cast<char>(flags));
  body += std::string("\x00\x1E", 2);  // keep alive 30
  body += payload;
  return RawPacket(0x10, body);
}

std::vector<Packet> ServerSamples() {
  Connect full;
  full.client_id = "client-\xC3\xA9";
  full.clean_session = false;
  full.keep_alive_s = 65535;
  full.will = Will{"session/x/status", std::string("gone\0!", 6), 2, true};
  full.username = "user";
  full.password = std::string("p\0ss\xFF", 5);
  Connect v31 = BasicConnect();
  v31.protocol_name = "MQIsdp";
  v31.protocol_level = 3;
  return {
      full,
      v31,
      Publish{"session/abc/events", "{}", 0, false, false, 0},
      Publish{"a", "", 1, true, false, 1},
      Publish{"a/b/c", std::string(300, 'x'), 2, false, true, 65535},
      PacketIdOnly{PacketType::kPuback, 7},
      PacketIdOnly{PacketType::kPubrec, 8},
      PacketIdOnly{PacketType::kPubrel, 9},
      PacketIdOnly{PacketType::kPubcomp, 10},
      Subscribe{11, {{"session/+/events", 1}, {"#", 0}, {"a/b", 2}}},
      Unsubscribe{12, {"session/+/events", "#"}},
      Pingreq{},
      Disconnect{},
  };
}

std::vector<Packet> ClientSamples() {
  return {
      Connack{true, ConnackCode::kAccepted},
      Publish{"session/abc/profile", "{\"v\":1}", 1, true, false, 3},
      PacketIdOnly{PacketType::kPuback, 1},
      PacketIdOnly{PacketType::kPubrec, 2},
      PacketIdOnly{PacketType::kPubrel, 3},
      PacketIdOnly{PacketType::kPubcomp, 4},
      PacketIdOnly{PacketType::kUnsuback, 5},
      Suback{6, {0, 1, 2, kSubackFailure}},
      Pingresp{},
  };
}

// Server samples contain two CONNECTs; a single stream may hold only one.
std::vector<Packet> ServerStreamSamples() {
  std::vector<Packet> s = ServerSamples();
  s.erase(s.begin() + 1);
  return s;
}

std::string Concat(const std::vector<Packet>& packets) {
  std::string s;
  for (const Packet& p : packets) s += Enc(p);
  return s;
}

// --- Round trips ---

TEST(CodecTest, RoundTripEachServerBoundPacket) {
  for (const Packet& sample : ServerSamples()) {
    std::string bytes = Enc(sample);
    if (TypeOf(sample) != PacketType::kConnect) bytes = ConnectBytes() + bytes;
    Parsed p = Parse(bytes);
    ASSERT_TRUE(p.result.ok) << p.result.reason;
    ASSERT_EQ(p.packets.size(), TypeOf(sample) == PacketType::kConnect ? 1u : 2u);
    EXPECT_EQ(p.packets.back(), sample) << PacketTypeName(TypeOf(sample));
  }
}

TEST(CodecTest, RoundTripEachClientBoundPacket) {
  for (const Packet& sample : ClientSamples()) {
    std::string bytes = Enc(sample);
    if (TypeOf(sample) != PacketType::kConnack) bytes = ConnackBytes() + bytes;
    Parsed p = Parse(bytes, Parser::Role::kClient);
    ASSERT_TRUE(p.result.ok) << p.result.reason;
    EXPECT_EQ(p.packets.back(), sample) << PacketTypeName(TypeOf(sample));
  }
  for (uint8_t code = 1; code <= 5; ++code) {
    Parsed p = Parse(Enc(Connack{false, static_cast<ConnackCode>(code)}), Parser::Role::kClient);
    ASSERT_TRUE(p.result.ok) << p.result.reason;
  }
}

TEST(CodecTest, KnownEncodings) {
  std::string s;
  EncodeConnack(Connack{true, ConnackCode::kAccepted}, &s);
  EXPECT_EQ(s, std::string("\x20\x02\x01\x00", 4));
  s.clear();
  EncodePingresp(&s);
  EncodePingreq(&s);
  EncodeDisconnect(&s);
  EXPECT_EQ(s, std::string("\xD0\x00\xC0\x00\xE0\x00", 6));
  s.clear();
  EXPECT_TRUE(EncodePacketId(PacketType::kPubrel, 0x1234, &s));
  EXPECT_EQ(s, std::string("\x62\x02\x12\x34", 4));
  EXPECT_FALSE(EncodePacketId(PacketType::kPublish, 1, &s));
  EXPECT_FALSE(EncodePacketId(PacketType::kSuback, 1, &s));
  s.clear();
  ASSERT_TRUE(EncodePublish(Publish{"a/b", "hi", 1, true, true, 10}, &s));
  EXPECT_EQ(s, std::string("\x3B\x09\x00\x03"
                           "a/b"
                           "\x00\x0A"
                           "hi",
                           11));
  s.clear();
  ASSERT_TRUE(EncodeSubscribe(Subscribe{1, {{"a", 1}}}, &s));
  EXPECT_EQ(s, std::string("\x82\x06\x00\x01\x00\x01"
                           "a"
                           "\x01",
                           8));
  s.clear();
  ASSERT_TRUE(EncodeConnect(BasicConnect(), &s));
  EXPECT_EQ(s, std::string("\x10\x11\x00\x04MQTT\x04\x02\x00\x1E\x00\x05"
                           "dev-1",
                           19));
}

TEST(CodecTest, PublishHeaderMatchesFullEncodingAndIdIsPatchable) {
  const std::string payload(1000, 'p');
  std::string header;
  ASSERT_TRUE(
      EncodePublishHeader("session/abc/events", payload.size(), 1, false, false, 0x0102, &header));
  std::string full;
  ASSERT_TRUE(
      EncodePublish(Publish{"session/abc/events", payload, 1, false, false, 0x0102}, &full));
  EXPECT_EQ(header + payload, full);
  // Patch the id in place (last two bytes of the header).
  header[header.size() - 2] = 0x7F;
  header[header.size() - 1] = 0x01;
  Parsed p = Parse(ConnectBytes() + header + payload);
  ASSERT_TRUE(p.result.ok) << p.result.reason;
  EXPECT_EQ(std::get<Publish>(p.packets[1]).packet_id, 0x7F01);
}

TEST(CodecTest, EncodersRefuseWhatCannotBeEncoded) {
  std::string s;
  EXPECT_FALSE(EncodePublish(Publish{"", "x", 0, false, false, 0}, &s));
  EXPECT_FALSE(EncodePublish(Publish{"a", "x", 3, false, false, 1}, &s));
  EXPECT_FALSE(EncodePublish(Publish{"a", "x", 1, false, false, 0}, &s));
  EXPECT_FALSE(EncodePublish(Publish{std::string(65536, 'a'), "x", 0, false, false, 0}, &s));
  EXPECT_FALSE(EncodePublishHeader("a", kMaxRemainingLength, 0, false, false, 0, &s));
  EXPECT_TRUE(EncodePublishHeader("a", kMaxRemainingLength - 3, 0, false, false, 0, &s));
  s.clear();
  EXPECT_FALSE(EncodeSuback(Suback{1, {}}, &s));
  EXPECT_FALSE(EncodeSuback(Suback{1, {3}}, &s));
  Connect c = BasicConnect();
  c.client_id = std::string(65536, 'c');
  EXPECT_FALSE(EncodeConnect(c, &s));
  EXPECT_FALSE(EncodeSubscribe(Subscribe{1, {{std::string(65536, 'f'), 0}}}, &s));
  EXPECT_TRUE(s.empty());
}

// --- Streaming ---

TEST(CodecTest, MultiplePacketsInOneFeed) {
  const std::vector<Packet> packets = ServerStreamSamples();
  Parsed p = Parse(Concat(packets));
  ASSERT_TRUE(p.result.ok) << p.result.reason;
  EXPECT_EQ(p.packets, packets);
}

TEST(CodecTest, ByteByByteFragmentation) {
  const std::vector<Packet> packets = ServerStreamSamples();
  const std::string bytes = Concat(packets);
  Parser parser(kMax);
  std::vector<Packet> out;
  for (char c : bytes) {
    ASSERT_TRUE(parser.Feed(&c, 1, &out).ok);
    ASSERT_LE(parser.buffered_bytes(), 400u);
  }
  EXPECT_EQ(parser.buffered_bytes(), 0u);
  EXPECT_EQ(out, packets);

  const std::vector<Packet> client_packets = ClientSamples();
  const std::string client_bytes = Concat(client_packets);
  Parser client(kMax, Parser::Role::kClient);
  out.clear();
  for (char c : client_bytes) ASSERT_TRUE(client.Feed(&c, 1, &out).ok);
  EXPECT_EQ(out, client_packets);
}

TEST(CodecTest, RandomChunking) {
  const std::vector<Packet> packets = ServerStreamSamples();
  const std::vector<Packet> tail(packets.begin() + 1, packets.end());  // All but CONNECT.
  std::vector<Packet> expected = packets;
  std::string bytes = Concat(packets);
  for (int rep = 0; rep < 4; ++rep) {
    bytes += Concat(tail);
    expected.insert(expected.end(), tail.begin(), tail.end());
  }
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    Parser parser(kMax);
    std::vector<Packet> out;
    size_t i = 0;
    while (i < bytes.size()) {
      const size_t n = std::min<size_t>(bytes.size() - i, 1 + rng() % 64);
      ASSERT_TRUE(parser.Feed(bytes.data() + i, n, &out).ok);
      i += n;
    }
    ASSERT_EQ(out, expected);
  }
}

TEST(CodecTest, EmptyFeedIsHarmless) {
  Parser parser(kMax);
  std::vector<Packet> out;
  EXPECT_TRUE(parser.Feed("", 0, &out).ok);
  EXPECT_TRUE(out.empty());
}

// --- Remaining length ---

TEST(CodecTest, RemainingLengthBoundaries) {
  struct Case {
    size_t remaining;
    size_t length_bytes;
  };
  const Case cases[] = {{127, 1}, {128, 2}, {16383, 2}, {16384, 3}, {2097151, 3}, {2097152, 4}};
  for (const Case& c : cases) {
    // PUBLISH QoS 0 with topic "t": remaining = 2 + 1 + payload.
    const std::string payload(c.remaining - 3, 'z');
    std::string bytes;
    ASSERT_TRUE(EncodePublish(Publish{"t", payload, 0, false, false, 0}, &bytes));
    ASSERT_EQ(bytes.size(), 1 + c.length_bytes + c.remaining) << c.remaining;
    Parser parser(1 + c.length_bytes + c.remaining);  // Exactly at the limit.
    std::vector<Packet> out;
    const std::string connect = ConnectBytes();
    ASSERT_TRUE(parser.Feed(connect, &out).ok);
    // Split inside the length field and inside the body.
    ASSERT_TRUE(parser.Feed(bytes.substr(0, 2), &out).ok);
    ParseResult r = parser.Feed(bytes.substr(2), &out);
    ASSERT_TRUE(r.ok) << r.reason;
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(std::get<Publish>(out[1]).payload.size(), payload.size());
  }
}

TEST(CodecTest, FifthLengthByteIsAnError) {
  Parsed p = Parse(ConnectBytes() + std::string("\x30\xFF\xFF\xFF\xFF\x01", 6));
  EXPECT_FALSE(p.result.ok);
  EXPECT_NE(p.result.reason.find("longer than 4 bytes"), std::string::npos) << p.result.reason;
  EXPECT_FALSE(p.result.connack_code.has_value());
}

TEST(CodecTest, MaximumRemainingLengthIsRefusedBeforeBuffering) {
  Parser parser(1024);
  std::vector<Packet> out;
  ASSERT_TRUE(parser.Feed(ConnectBytes(), &out).ok);
  // 268435455 announced; refused as soon as the length is known, nothing buffered.
  ParseResult r = parser.Feed(std::string("\x30\xFF\xFF\xFF\x7F", 5), &out);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.reason.find("exceeds the limit"), std::string::npos) << r.reason;
  EXPECT_EQ(parser.buffered_bytes(), 0u);
}

TEST(CodecTest, OversizePacket) {
  std::string ok_packet, big_packet;
  ASSERT_TRUE(EncodePublish(Publish{"t", std::string(95, 'x'), 0, false, false, 0}, &ok_packet));
  ASSERT_EQ(ok_packet.size(), 100u);
  ASSERT_TRUE(EncodePublish(Publish{"t", std::string(96, 'x'), 0, false, false, 0}, &big_packet));
  EXPECT_TRUE(Parse(ConnectBytes() + ok_packet, Parser::Role::kServer, 100).result.ok);
  Parsed p = Parse(ConnectBytes() + big_packet, Parser::Role::kServer, 100);
  EXPECT_FALSE(p.result.ok);
  EXPECT_NE(p.result.reason.find("exceeds"), std::string::npos);
}

TEST(CodecTest, ErrorIsSticky) {
  Parser parser(kMax);
  std::vector<Packet> out;
  ParseResult r = parser.Feed(std::string("\x00\x00", 2), &out);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(parser.failed());
  ParseResult again = parser.Feed(ConnectBytes(), &out);
  EXPECT_FALSE(again.ok);
  EXPECT_EQ(again.reason, r.reason);
  EXPECT_TRUE(out.empty());
}

TEST(CodecTest, PacketsBeforeAnErrorAreDelivered) {
  Parsed p = Parse(ConnectBytes() + Enc(Pingreq{}) + std::string("\xF0\x00", 2));
  EXPECT_FALSE(p.result.ok);
  ASSERT_EQ(p.packets.size(), 2u);
  EXPECT_EQ(TypeOf(p.packets[1]), PacketType::kPingreq);
}

// --- Validation: fixed header ---

TEST(CodecValidationTest, ReservedAndWrongDirectionTypes) {
  EXPECT_NE(ServerError(std::string("\x00\x00", 2)).find("reserved control packet type 0"),
            std::string::npos);
  EXPECT_NE(ServerError(std::string("\xF0\x00", 2)).find("reserved control packet type 15"),
            std::string::npos);
  EXPECT_NE(ClientError(std::string("\x00\x00", 2)).find("reserved"), std::string::npos);
  for (const char* bytes :
       {"\x20\x02\x00\x00", "\x90\x03\x00\x01\x00", "\xB0\x02\x00\x01", "\xD0\x00"}) {
    EXPECT_NE(ServerError(std::string(bytes, bytes[1] + 2)).find("not allowed from a client"),
              std::string::npos)
        << static_cast<int>(bytes[0]);
  }
  EXPECT_NE(ClientError(ConnectBytes()).find("not allowed from a server"), std::string::npos);
  EXPECT_NE(ClientError(Enc(Subscribe{1, {{"a", 0}}})).find("not allowed"), std::string::npos);
  EXPECT_NE(ClientError(Enc(Unsubscribe{1, {"a"}})).find("not allowed"), std::string::npos);
  EXPECT_NE(ClientError(Enc(Pingreq{})).find("not allowed"), std::string::npos);
  EXPECT_NE(ClientError(Enc(Disconnect{})).find("not allowed"), std::string::npos);
}

TEST(CodecValidationTest, FirstPacketRules) {
  Parsed p = Parse(Enc(Pingreq{}));
  EXPECT_FALSE(p.result.ok);
  EXPECT_NE(p.result.reason.find("first packet must be CONNECT"), std::string::npos);
  EXPECT_NE(ServerError(ConnectBytes()).find("sent twice"), std::string::npos);
  p = Parse(Enc(Pingresp{}), Parser::Role::kClient);
  EXPECT_NE(p.result.reason.find("first packet must be CONNACK"), std::string::npos);
  EXPECT_NE(ClientError(ConnackBytes()).find("sent twice"), std::string::npos);
}

TEST(CodecValidationTest, FixedHeaderFlags) {
  // SUBSCRIBE / UNSUBSCRIBE / PUBREL require 0010.
  EXPECT_NE(ServerError(RawPacket(0x80, std::string("\x00\x01\x00\x01"
                                                    "a\x00",
                                                    6)))
                .find("flags must be 0010"),
            std::string::npos);
  EXPECT_NE(ServerError(RawPacket(0xA3, std::string("\x00\x01\x00\x01"
                                                    "a",
                                                    5)))
                .find("flags must be 0010"),
            std::string::npos);
  EXPECT_NE(ServerError(RawPacket(0x60, std::string("\x00\x01", 2))).find("0010"),
            std::string::npos);
  // Others require 0000.
  EXPECT_NE(ServerError(RawPacket(0x41, std::string("\x00\x01", 2))).find("flags must be 0000"),
            std::string::npos);
  EXPECT_NE(ServerError(RawPacket(0xC2, "")).find("0000"), std::string::npos);
  EXPECT_NE(ServerError(RawPacket(0xE1, "")).find("0000"), std::string::npos);
  EXPECT_NE(ClientError(RawPacket(0x92, std::string("\x00\x01\x00", 3))).find("0000"),
            std::string::npos);
  Parsed p = Parse(RawPacket(0x11, ConnectBytes().substr(2)));
  EXPECT_NE(p.result.reason.find("0000"), std::string::npos);
}

TEST(CodecValidationTest, PublishFlagsAndFields) {
  EXPECT_NE(ServerError(RawPacket(0x36, std::string("\x00\x01"
                                                    "a\x00\x01",
                                                    5)))
                .find("QoS 3 is invalid"),
            std::string::npos);
  EXPECT_NE(ServerError(RawPacket(0x38, std::string("\x00\x01"
                                                    "a",
                                                    3)))
                .find("DUP set with QoS 0"),
            std::string::npos);
  EXPECT_NE(ServerError(RawPacket(0x32, std::string("\x00\x01"
                                                    "a\x00\x00",
                                                    5)))
                .find("packet identifier 0"),
            std::string::npos);
  EXPECT_NE(ServerError(RawPacket(0x34, std::string("\x00\x01"
                                                    "a",
                                                    3)))
                .find("truncated"),
            std::string::npos);
  EXPECT_NE(ServerError(RawPacket(0x30, std::string("\x00\x05"
                                                    "a",
                                                    3)))
                .find("truncated"),
            std::string::npos);
  for (const std::string& topic : {std::string("a/+"), std::string("#"), std::string(""),
                                   std::string("a\0b", 3), std::string("\xED\xA0\x80")}) {
    EXPECT_NE(ServerError(RawPacket(0x30, Str(topic) + "payload")).find("invalid topic name"),
              std::string::npos)
        << topic;
  }
  // Retain and DUP with QoS 1 are fine; empty payload is fine.
  EXPECT_EQ(ServerError(RawPacket(0x3B, std::string("\x00\x01"
                                                    "a\x00\x01",
                                                    5))),
            "");
  // Client role applies the same PUBLISH checks.
  EXPECT_NE(ClientError(RawPacket(0x36, std::string("\x00\x01"
                                                    "a\x00\x01",
                                                    5)))
                .find("QoS 3"),
            std::string::npos);
}

TEST(CodecValidationTest, PacketIdOnlyPackets) {
  for (uint8_t first : {0x40, 0x50, 0x62, 0x70}) {
    EXPECT_NE(ServerError(RawPacket(first, std::string("\x00\x00", 2))).find("packet identifier 0"),
              std::string::npos);
    EXPECT_NE(ServerError(RawPacket(first, std::string("\x00\x01\x00", 3)))
                  .find("remaining length must be 2"),
              std::string::npos);
    EXPECT_NE(ServerError(RawPacket(first, std::string("\x01", 1))).find("must be 2"),
              std::string::npos);
  }
  EXPECT_NE(ClientError(RawPacket(0xB0, std::string("\x00\x00", 2))).find("packet identifier 0"),
            std::string::npos);
}

TEST(CodecValidationTest, EmptyPacketsMustBeEmpty) {
  EXPECT_NE(ServerError(RawPacket(0xC0, "x")).find("remaining length must be 0"),
            std::string::npos);
  EXPECT_NE(ServerError(RawPacket(0xE0, "x")).find("must be 0"), std::string::npos);
  EXPECT_NE(ClientError(RawPacket(0xD0, "x")).find("must be 0"), std::string::npos);
}

TEST(CodecValidationTest, Subscribe) {
  auto sub = [](std::string_view payload) {
    return RawPacket(0x82, std::string("\x00\x05", 2) + std::string(payload));
  };
  EXPECT_EQ(ServerError(sub(Str("a/+/b") + std::string(1, '\x02'))), "");
  EXPECT_NE(ServerError(sub("")).find("no topic filters"), std::string::npos);
  EXPECT_NE(ServerError(RawPacket(0x82, std::string("\x00\x00", 2) + Str("a") + '\0'))
                .find("packet identifier 0"),
            std::string::npos);
  EXPECT_NE(ServerError(sub(Str("a") + '\x03')).find("QoS 3 is invalid"), std::string::npos);
  EXPECT_NE(ServerError(sub(Str("a") + '\x04')).find("requested QoS byte 4"), std::string::npos);
  EXPECT_NE(ServerError(sub(Str("a") + '\x81')).find("is invalid"), std::string::npos);
  EXPECT_NE(ServerError(sub(Str("a"))).find("truncated"), std::string::npos);  // No QoS byte.
  EXPECT_NE(ServerError(RawPacket(0x82, std::string("\x00", 1))).find("truncated"),
            std::string::npos);
  for (const std::string& f : {std::string("a/#/b"), std::string("a+"), std::string("##"),
                               std::string(""), std::string("a\0", 2), std::string("\xC0\x80")}) {
    EXPECT_NE(ServerError(sub(Str(f) + '\x01')).find("invalid topic filter"), std::string::npos)
        << f;
  }
  // The valid first filter does not excuse an invalid second one.
  EXPECT_NE(ServerError(sub(Str("a") + '\x00' + Str("b/#/c") + '\x00')).find("invalid"),
            std::string::npos);
}

TEST(CodecValidationTest, Unsubscribe) {
  auto unsub = [](std::string_view payload) {
    return RawPacket(0xA2, std::string("\x00\x05", 2) + std::string(payload));
  };
  EXPECT_EQ(ServerError(unsub(Str("a/#"))), "");
  EXPECT_NE(ServerError(unsub("")).find("no topic filters"), std::string::npos);
  EXPECT_NE(ServerError(unsub(Str("a/#/b"))).find("invalid topic filter"), std::string::npos);
  EXPECT_NE(ServerError(unsub(std::string("\x00\x09", 2) + "a")).find("truncated"),
            std::string::npos);
  EXPECT_NE(ServerError(RawPacket(0xA2, std::string("\x00\x00", 2) + Str("a")))
                .find("packet identifier 0"),
            std::string::npos);
}

TEST(CodecValidationTest, ConnackAndSubackFromServer) {
  auto client_first = [](std::string bytes) {
    Parsed p = Parse(bytes, Parser::Role::kClient);
    return p.result.ok ? std::string() : p.result.reason;
  };
  EXPECT_NE(client_first(std::string("\x20\x02\x02\x00", 4)).find("reserved acknowledge"),
            std::string::npos);
  EXPECT_NE(client_first(std::string("\x20\x02\x00\x06", 4)).find("unknown return code"),
            std::string::npos);
  EXPECT_NE(client_first(std::string("\x20\x02\x01\x05", 4)).find("session present"),
            std::string::npos);
  EXPECT_NE(client_first(std::string("\x20\x03\x00\x00\x00", 5)).find("must be 2"),
            std::string::npos);
  EXPECT_NE(ClientError(std::string("\x90\x02\x00\x01", 4)).find("no return codes"),
            std::string::npos);
  EXPECT_NE(ClientError(std::string("\x90\x03\x00\x01\x03", 5)).find("invalid return code"),
            std::string::npos);
  EXPECT_NE(ClientError(std::string("\x90\x03\x00\x00\x00", 5)).find("packet identifier 0"),
            std::string::npos);
}

// --- Validation: CONNECT ---

std::string ConnectError(const std::string& bytes, std::optional<ConnackCode>* code) {
  Parsed p = Parse(bytes);
  *code = p.result.connack_code;
  return p.result.ok ? "" : p.result.reason;
}

TEST(ConnectValidationTest, ProtocolNameAndLevel) {
  std::optional<ConnackCode> code;
  EXPECT_EQ(ConnectError(RawConnect(0x02, Str("c")), &code), "");
  EXPECT_EQ(ConnectError(RawConnect(0x02, Str("c"), "MQIsdp", 3), &code), "");

  EXPECT_NE(ConnectError(RawConnect(0x02, Str("c"), "MQTT", 5), &code).find("protocol level 5"),
            std::string::npos);
  EXPECT_EQ(code, ConnackCode::kUnacceptableProtocolVersion);
  EXPECT_NE(ConnectError(RawConnect(0x02, Str("c"), "MQTT", 3), &code).find("level"),
            std::string::npos);
  EXPECT_EQ(code, ConnackCode::kUnacceptableProtocolVersion);
  EXPECT_NE(ConnectError(RawConnect(0x02, Str("c"), "MQIsdp", 4), &code).find("level"),
            std::string::npos);
  EXPECT_EQ(code, ConnackCode::kUnacceptableProtocolVersion);
  // An MQTT 5 CONNECT (with properties after keep-alive) still gets CONNACK 0x01.
  EXPECT_FALSE(
      ConnectError(RawConnect(0x02, std::string("\x00", 1) + Str("c"), "MQTT", 5), &code).empty());
  EXPECT_EQ(code, ConnackCode::kUnacceptableProtocolVersion);

  EXPECT_NE(
      ConnectError(RawConnect(0x02, Str("c"), "MQTX", 4), &code).find("unknown protocol name"),
      std::string::npos);
  EXPECT_FALSE(code.has_value());  // Close without CONNACK [MQTT-3.1.2-1].
  EXPECT_NE(ConnectError(RawPacket(0x10, std::string("\x00\x04MQ", 4)), &code).find("truncated"),
            std::string::npos);
  EXPECT_FALSE(code.has_value());
}

TEST(ConnectValidationTest, Flags) {
  std::optional<ConnackCode> code;
  const std::string will = Str("w/t") + Str("bye");
  EXPECT_NE(ConnectError(RawConnect(0x03, Str("c")), &code).find("reserved connect flag"),
            std::string::npos);
  EXPECT_FALSE(code.has_value());
  // Will QoS / retain without will flag.
  EXPECT_NE(ConnectError(RawConnect(0x0A, Str("c")), &code).find("without the will flag"),
            std::string::npos);
  EXPECT_NE(ConnectError(RawConnect(0x22, Str("c")), &code).find("without the will flag"),
            std::string::npos);
  EXPECT_NE(ConnectError(RawConnect(0x1E, Str("c") + will), &code).find("will QoS 3"),
            std::string::npos);
  EXPECT_EQ(ConnectError(RawConnect(0x36, Str("c") + will), &code), "");  // QoS 2 + retain.
  EXPECT_NE(ConnectError(RawConnect(0x42, Str("c") + Str("pw")), &code)
                .find("password flag set without user name"),
            std::string::npos);
  EXPECT_FALSE(code.has_value());
  EXPECT_EQ(ConnectError(RawConnect(0x82, Str("c") + Str("u")), &code), "");
  EXPECT_EQ(ConnectError(RawConnect(0xC2, Str("c") + Str("u") + Str("\xFF\x00")), &code), "");
}

TEST(ConnectValidationTest, PayloadFields) {
  std::optional<ConnackCode> code;
  EXPECT_NE(ConnectError(RawConnect(0x06, Str("c") + Str("a/#") + Str("x")), &code)
                .find("invalid will topic"),
            std::string::npos);
  EXPECT_NE(ConnectError(RawConnect(0x06, Str("c") + Str("w")), &code).find("truncated will"),
            std::string::npos);
  EXPECT_NE(ConnectError(RawConnect(0x82, Str("c") + Str("\xED\xA0\x80")), &code)
                .find("user name is not valid UTF-8"),
            std::string::npos);
  EXPECT_NE(ConnectError(RawConnect(0x82, Str("c")), &code).find("truncated user name"),
            std::string::npos);
  EXPECT_NE(ConnectError(RawConnect(0xC2, Str("c") + Str("u")), &code).find("truncated password"),
            std::string::npos);
  EXPECT_NE(ConnectError(RawConnect(0x02, Str("c") + "zz"), &code).find("trailing bytes"),
            std::string::npos);
  EXPECT_NE(ConnectError(RawConnect(0x02, Str(std::string("a\0", 2))), &code)
                .find("client identifier is not valid UTF-8"),
            std::string::npos);
  EXPECT_FALSE(code.has_value());
  EXPECT_NE(ConnectError(RawConnect(0x02, ""), &code).find("truncated client identifier"),
            std::string::npos);
}

TEST(ConnectValidationTest, ClientIdentifier) {
  std::optional<ConnackCode> code;
  // Empty id with clean session is accepted (the broker assigns one) [MQTT-3.1.3-6].
  EXPECT_EQ(ConnectError(RawConnect(0x02, Str("")), &code), "");
  // Empty id without clean session: CONNACK 0x02 then close [MQTT-3.1.3-8].
  EXPECT_NE(ConnectError(RawConnect(0x00, Str("")), &code).find("requires clean session"),
            std::string::npos);
  EXPECT_EQ(code, ConnackCode::kIdentifierRejected);
  // ... but a malformed packet is closed without CONNACK even when the id is also bad.
  EXPECT_NE(ConnectError(RawConnect(0x00, Str("") + "x"), &code).find("trailing"),
            std::string::npos);
  EXPECT_FALSE(code.has_value());
  // 3.1 clients must send a non-empty id.
  EXPECT_FALSE(ConnectError(RawConnect(0x02, Str(""), "MQIsdp", 3), &code).empty());
  EXPECT_EQ(code, ConnackCode::kIdentifierRejected);
  // Longer than 23 bytes is accepted, up to 256.
  EXPECT_EQ(ConnectError(RawConnect(0x02, Str(std::string(256, 'i'))), &code), "");
  EXPECT_NE(ConnectError(RawConnect(0x02, Str(std::string(257, 'i'))), &code).find("longer than"),
            std::string::npos);
  EXPECT_EQ(code, ConnackCode::kIdentifierRejected);
}

// --- Robustness ---

// Deterministic fuzz loop: random bytes and mutations of valid streams, in random chunks, in
// both roles. Must not crash (run under ASan/UBSan), must respect the buffer bound, and any
// stream that parses must re-encode to packets that parse identically.
TEST(CodecRobustnessTest, RandomAndMutatedInputs) {
  std::mt19937_64 rng(0xC0FFEE);
  // Small seeds keep 200k iterations fast under sanitizers; drop the 300-byte payload sample.
  std::vector<Packet> server_packets = ServerStreamSamples();
  std::erase_if(server_packets, [](const Packet& p) {
    return TypeOf(p) == PacketType::kPublish && std::get<Publish>(p).payload.size() > 100;
  });
  const std::string server_seed = Concat(server_packets);
  const std::string client_seed = Concat(ClientSamples());
  constexpr size_t kLimit = 512;
  size_t parsed_ok = 0;
  for (int iter = 0; iter < 200000; ++iter) {
    const bool server = iter % 2 == 0;
    std::string input;
    const unsigned mode = rng() % 4;
    if (mode == 0) {
      input.resize(rng() % 64);
      for (char& c : input) c = static_cast<char>(rng());
      // Usually start with a plausible first byte so deeper code paths are reached.
      if (!input.empty() && rng() % 2) input[0] = server ? 0x10 : 0x20;
    } else {
      input = server ? server_seed : client_seed;
      const int mutations = 1 + static_cast<int>(rng() % 4);
      for (int m = 0; m < mutations && !input.empty(); ++m) {
        const size_t pos = rng() % input.size();
        switch (rng() % 4) {
          case 0:
            input[pos] = static_cast<char>(rng());
            break;
          case 1:
            input[pos] = static_cast<char>(input[pos] ^ (1 << (rng() % 8)));
            break;
          case 2:
            input.erase(pos, 1 + rng() % 8);
            break;
          default:
            input.insert(pos, 1, static_cast<char>(rng()));
            break;
        }
      }
      if (mode == 3) input.resize(rng() % (input.size() + 1));  // Truncate.
    }
    Parser parser(kLimit, server ? Parser::Role::kServer : Parser::Role::kClient);
    std::vector<Packet> out;
    bool ok = true;
    size_t i = 0;
    while (i < input.size()) {
      const size_t n = std::min<size_t>(input.size() - i, 1 + rng() % 96);
      ParseResult r = parser.Feed(input.data() + i, n, &out);
      ASSERT_LE(parser.buffered_bytes(), kLimit);
      i += n;
      if (!r.ok) {
        ASSERT_FALSE(r.reason.empty());
        ok = false;
        break;
      }
    }
    if (!ok || out.empty()) continue;
    ++parsed_ok;
    std::string reencoded;
    for (const Packet& p : out) ASSERT_TRUE(EncodePacket(p, &reencoded));
    Parsed again = Parse(reencoded, server ? Parser::Role::kServer : Parser::Role::kClient);
    ASSERT_TRUE(again.result.ok) << again.result.reason;
    ASSERT_EQ(again.packets, out);
  }
  EXPECT_GT(parsed_ok, 1000u);  // The loop really exercises the success path too.
}

}  // namespace
}  // namespace persona::realtime::mqtt
