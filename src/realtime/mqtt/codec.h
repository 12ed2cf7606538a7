// MQTT 3.1.1 wire codec: packet structs, an incremental validating parser, and encoders.
//
// Parsing: a Parser is owned by one connection and fed the bytes read from it, in whatever
// fragments they arrive (one byte at a time, several packets at once). It validates every
// rule the OASIS MQTT 3.1.1 spec places on the receiver of each packet (fixed-header flags,
// lengths, QoS, packet ids, UTF-8, topic names/filters, CONNECT flags, first-packet rules) and
// stops at the first violation; the connection must then be closed (after a CONNACK when
// ParseResult::connack_code says so). It never buffers more than `max_packet_bytes`, and
// refuses a packet whose announced size exceeds that as soon as its length field is read.
//
// Encoding: Encode* functions append one packet to a std::string. Those that take variable
// data return false (leaving *out unchanged) when a field exceeds the wire limits (a string
// over 65535 bytes, a remaining length over 268435455); the others cannot fail.
//
// Thread safety: the free functions are thread-safe; a Parser is not (one per connection).

#ifndef PERSONA_REALTIME_MQTT_CODEC_H_
#define PERSONA_REALTIME_MQTT_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace persona::realtime::mqtt {

enum class PacketType : uint8_t {
  kConnect = 1,
  kConnack = 2,
  kPublish = 3,
  kPuback = 4,
  kPubrec = 5,
  kPubrel = 6,
  kPubcomp = 7,
  kSubscribe = 8,
  kSuback = 9,
  kUnsubscribe = 10,
  kUnsuback = 11,
  kPingreq = 12,
  kPingresp = 13,
  kDisconnect = 14,
};

// "CONNECT", "PUBLISH", ... ; "UNKNOWN" for other values.
const char* PacketTypeName(PacketType type);

// CONNACK return codes (§3.2.2.3).
enum class ConnackCode : uint8_t {
  kAccepted = 0,
  kUnacceptableProtocolVersion = 1,
  kIdentifierRejected = 2,
  kServerUnavailable = 3,
  kBadUsernameOrPassword = 4,
  kNotAuthorized = 5,
};

// SUBACK return code for a refused subscription (§3.9.3); 0..2 are granted QoS.
inline constexpr uint8_t kSubackFailure = 0x80;

// Largest value the remaining-length field can encode (4 bytes of 7 bits).
inline constexpr size_t kMaxRemainingLength = 268435455;
// Largest client identifier the parser accepts (the spec only guarantees 23; §3.1.3.1).
inline constexpr size_t kMaxClientIdBytes = 256;

struct Will {
  std::string topic;
  std::string payload;  // Binary.
  uint8_t qos = 0;
  bool retain = false;

  bool operator==(const Will&) const = default;
};

struct Connect {
  std::string protocol_name = "MQTT";  // "MQTT" (3.1.1) or "MQIsdp" (3.1).
  uint8_t protocol_level = 4;          // 4 for "MQTT", 3 for "MQIsdp".
  bool clean_session = true;
  uint16_t keep_alive_s = 0;
  std::string client_id;  // May be empty only with clean_session (3.1.1).
  std::optional<Will> will;
  std::optional<std::string> username;
  std::optional<std::string> password;  // Binary; requires username.

  bool operator==(const Connect&) const = default;
};

struct Connack {
  bool session_present = false;
  ConnackCode return_code = ConnackCode::kAccepted;

  bool operator==(const Connack&) const = default;
};

struct Publish {
  std::string topic;
  std::string payload;  // Binary.
  uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  uint16_t packet_id = 0;  // Present on the wire only when qos > 0; then non-zero.

  bool operator==(const Publish&) const = default;
};

// PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK.
struct PacketIdOnly {
  PacketType type = PacketType::kPuback;
  uint16_t packet_id = 0;

  bool operator==(const PacketIdOnly&) const = default;
};

struct Subscribe {
  uint16_t packet_id = 0;
  std::vector<std::pair<std::string, uint8_t>> filters;  // (topic filter, requested QoS).

  bool operator==(const Subscribe&) const = default;
};

struct Suback {
  uint16_t packet_id = 0;
  std::vector<uint8_t> codes;  // Granted QoS 0..2, or kSubackFailure; one per filter.

  bool operator==(const Suback&) const = default;
};

struct Unsubscribe {
  uint16_t packet_id = 0;
  std::vector<std::string> filters;

  bool operator==(const Unsubscribe&) const = default;
};

struct Pingreq {
  bool operator==(const Pingreq&) const = default;
};
struct Pingresp {
  bool operator==(const Pingresp&) const = default;
};
struct Disconnect {
  bool operator==(const Disconnect&) const = default;
};

using Packet = std::variant<Connect, Connack, Publish, PacketIdOnly, Subscribe, Suback, Unsubscribe,
                            Pingreq, Pingresp, Disconnect>;

// The control packet type of `packet` (for PacketIdOnly, its `type`).
PacketType TypeOf(const Packet& packet);

// Outcome of Parser::Feed.
struct [[nodiscard]] ParseResult {
  bool ok = true;
  // Why the stream was rejected (empty when ok), e.g. "PUBLISH: QoS 3 is invalid".
  std::string reason;
  // Set only for CONNECT errors where the spec asks the server to answer with a CONNACK
  // before closing: kUnacceptableProtocolVersion (known protocol name, unsupported level) or
  // kIdentifierRejected (empty client id without clean session, or an id over
  // kMaxClientIdBytes, or an empty id from a 3.1 client). The server sends
  // Connack{false, *connack_code} and then closes. Otherwise it just closes.
  std::optional<ConnackCode> connack_code;
};

class Parser {
 public:
  // kServer accepts what a client sends (CONNECT first and only once, PUBLISH, PUBACK,
  // PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT); kClient accepts
  // what a server sends (CONNACK first and only once, PUBLISH, PUBACK, PUBREC, PUBREL,
  // PUBCOMP, SUBACK, UNSUBACK, PINGRESP). Anything else is an error.
  enum class Role { kServer, kClient };

  // `max_packet_bytes` bounds a whole packet (fixed header + remaining length); it is also the
  // most this parser will ever buffer. Values above kMaxRemainingLength + 5 act as that.
  explicit Parser(size_t max_packet_bytes, Role role = Role::kServer);

  // Consumes all `n` bytes. Each complete, valid packet is appended to *out in stream order.
  // On the first violation returns !ok; packets appended before it were valid and preceded
  // it on the wire. After an error the parser is dead: every later Feed returns the same
  // error without consuming anything.
  ParseResult Feed(const char* data, size_t n, std::vector<Packet>* out);
  ParseResult Feed(std::string_view bytes, std::vector<Packet>* out) {
    return Feed(bytes.data(), bytes.size(), out);
  }

  // Bytes of a partial packet currently held (0 between packets).
  size_t buffered_bytes() const { return header_len_ + body_.size(); }
  bool failed() const { return error_ != nullptr; }
  Role role() const { return role_; }

 private:
  ParseResult Fail(std::string reason, std::optional<ConnackCode> code = std::nullopt);
  // Validates the first fixed-header byte as soon as it arrives.
  ParseResult CheckFirstByte(uint8_t byte);
  // Decodes a complete packet body; on success appends to *out.
  ParseResult DecodeBody(std::string_view body, std::vector<Packet>* out);

  // Sized for the idle connections that are most of a broker's (each holds a
  // parser): the error is held by pointer, the header state packed.
  const size_t max_packet_bytes_;
  std::unique_ptr<ParseResult> error_;  // set once the stream was rejected
  const Role role_;
  bool seen_first_packet_ = false;  // CONNECT (server) / CONNACK (client) received.

  // Fixed header in progress.
  uint8_t first_byte_ = 0;
  bool header_done_ = false;
  uint32_t multiplier_ = 1;
  uint32_t header_len_ = 0;  // Bytes of fixed header consumed so far (0 = between packets).
  size_t remaining_ = 0;     // Decoded remaining length (valid once header is complete).
  // Body bytes of a packet that straddles Feed calls. Grows only as bytes arrive, and never
  // beyond the packet's remaining length (<= max_packet_bytes_).
  std::string body_;
};

// --- Encoders (server -> client) ---

void EncodeConnack(const Connack& connack, std::string* out);
// Whole PUBLISH. Returns false if the topic is empty or > 65535 bytes, qos > 2, qos > 0 with
// packet_id 0, or the packet is too large to encode.
[[nodiscard]] bool EncodePublish(const Publish& publish, std::string* out);
// Appends a PUBLISH fixed + variable header for a payload of `payload_size` bytes that the
// caller sends right after it (e.g. one shared payload buffer fanned out to many clients).
// When qos > 0 the packet id is the LAST TWO BYTES (big-endian) of what was appended, so a
// caller may build the header once and patch the id per client; dup, qos and retain live in
// the first byte. Same failure conditions as EncodePublish.
[[nodiscard]] bool EncodePublishHeader(std::string_view topic, size_t payload_size, uint8_t qos,
                                       bool retain, bool dup, uint16_t packet_id, std::string* out);
// PUBACK, PUBREC, PUBREL (flags 0b0010 are set automatically), PUBCOMP, UNSUBACK. `type` must
// be one of those; returns false otherwise.
bool EncodePacketId(PacketType type, uint16_t packet_id, std::string* out);
// Returns false if `codes` is empty or holds a value other than 0, 1, 2 or kSubackFailure.
[[nodiscard]] bool EncodeSuback(const Suback& suback, std::string* out);
void EncodePingresp(std::string* out);

// --- Encoders (client -> server; tests and load generators) ---
// These check wire limits only (string and packet sizes), not protocol rules, so that tests
// can build packets a server must reject (QoS 3, bad filters, password without user name).

[[nodiscard]] bool EncodeConnect(const Connect& connect, std::string* out);
[[nodiscard]] bool EncodeSubscribe(const Subscribe& subscribe, std::string* out);
[[nodiscard]] bool EncodeUnsubscribe(const Unsubscribe& unsubscribe, std::string* out);
void EncodePingreq(std::string* out);
void EncodeDisconnect(std::string* out);

// Encodes any packet (dispatching to the functions above).
[[nodiscard]] bool EncodePacket(const Packet& packet, std::string* out);

}  // namespace persona::realtime::mqtt

#endif  // PERSONA_REALTIME_MQTT_CODEC_H_
