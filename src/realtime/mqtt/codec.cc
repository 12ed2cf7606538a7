#include "realtime/mqtt/codec.h"

#include <algorithm>

#include "realtime/mqtt/topic_tree.h"
#include "realtime/mqtt/utf8.h"

namespace persona::realtime::mqtt {

namespace {

// Bytes a remaining-length value takes on the wire (1..4).
size_t RemainingLengthSize(size_t len) {
  if (len < 128) return 1;
  if (len < 16384) return 2;
  if (len < 2097152) return 3;
  return 4;
}

void AppendRemainingLength(size_t len, std::string* out) {
  do {
    uint8_t byte = len % 128;
    len /= 128;
    if (len > 0) byte |= 0x80;
    out->push_back(static_cast<char>(byte));
  } while (len > 0);
}

void AppendU16(uint16_t v, std::string* out) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v & 0xFF));
}

// Caller has checked s.size() <= kMaxMqttStringBytes.
void AppendString(std::string_view s, std::string* out) {
  AppendU16(static_cast<uint16_t>(s.size()), out);
  out->append(s.data(), s.size());
}

void AppendFixedHeader(uint8_t first_byte, size_t remaining, std::string* out) {
  out->reserve(out->size() + 1 + RemainingLengthSize(remaining) + remaining);
  out->push_back(static_cast<char>(first_byte));
  AppendRemainingLength(remaining, out);
}

bool FitsString(std::string_view s) { return s.size() <= kMaxMqttStringBytes; }

uint8_t TypeBits(PacketType t) { return static_cast<uint8_t>(static_cast<uint8_t>(t) << 4); }

// Bounds-checked big-endian reader over one packet body.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}

  bool U8(uint8_t* v) {
    if (pos_ + 1 > data_.size()) return false;
    *v = static_cast<uint8_t>(data_[pos_++]);
    return true;
  }
  bool U16(uint16_t* v) {
    if (data_.size() - pos_ < 2) return false;
    *v = static_cast<uint16_t>((static_cast<uint8_t>(data_[pos_]) << 8) |
                               static_cast<uint8_t>(data_[pos_ + 1]));
    pos_ += 2;
    return true;
  }
  // A 2-byte length followed by that many bytes; the view aliases the input.
  bool Bytes(std::string_view* v) {
    uint16_t len;
    if (!U16(&len)) return false;
    if (data_.size() - pos_ < len) return false;
    *v = data_.substr(pos_, len);
    pos_ += len;
    return true;
  }
  std::string_view Rest() {
    std::string_view r = data_.substr(pos_);
    pos_ = data_.size();
    return r;
  }
  size_t left() const { return data_.size() - pos_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

bool AllowedFor(Parser::Role role, PacketType t) {
  switch (t) {
    case PacketType::kPublish:
    case PacketType::kPuback:
    case PacketType::kPubrec:
    case PacketType::kPubrel:
    case PacketType::kPubcomp:
      return true;
    case PacketType::kConnect:
    case PacketType::kSubscribe:
    case PacketType::kUnsubscribe:
    case PacketType::kPingreq:
    case PacketType::kDisconnect:
      return role == Parser::Role::kServer;
    case PacketType::kConnack:
    case PacketType::kSuback:
    case PacketType::kUnsuback:
    case PacketType::kPingresp:
      return role == Parser::Role::kClient;
  }
  return false;
}

// Remaining length required by packets whose size is fixed by the spec, or -1.
int FixedRemainingLength(PacketType t) {
  switch (t) {
    case PacketType::kConnack:
    case PacketType::kPuback:
    case PacketType::kPubrec:
    case PacketType::kPubrel:
    case PacketType::kPubcomp:
    case PacketType::kUnsuback:
      return 2;
    case PacketType::kPingreq:
    case PacketType::kPingresp:
    case PacketType::kDisconnect:
      return 0;
    default:
      return -1;
  }
}

std::string Prefixed(PacketType t, std::string_view what) {
  std::string s = PacketTypeName(t);
  s += ": ";
  s.append(what.data(), what.size());
  return s;
}

}  // namespace

const char* PacketTypeName(PacketType type) {
  switch (type) {
    case PacketType::kConnect:
      return "CONNECT";
    case PacketType::kConnack:
      return "CONNACK";
    case PacketType::kPublish:
      return "PUBLISH";
    case PacketType::kPuback:
      return "PUBACK";
    case PacketType::kPubrec:
      return "PUBREC";
    case PacketType::kPubrel:
      return "PUBREL";
    case PacketType::kPubcomp:
      return "PUBCOMP";
    case PacketType::kSubscribe:
      return "SUBSCRIBE";
    case PacketType::kSuback:
      return "SUBACK";
    case PacketType::kUnsubscribe:
      return "UNSUBSCRIBE";
    case PacketType::kUnsuback:
      return "UNSUBACK";
    case PacketType::kPingreq:
      return "PINGREQ";
    case PacketType::kPingresp:
      return "PINGRESP";
    case PacketType::kDisconnect:
      return "DISCONNECT";
  }
  return "UNKNOWN";
}

PacketType TypeOf(const Packet& packet) {
  struct Visitor {
    PacketType operator()(const Connect&) const { return PacketType::kConnect; }
    PacketType operator()(const Connack&) const { return PacketType::kConnack; }
    PacketType operator()(const Publish&) const { return PacketType::kPublish; }
    PacketType operator()(const PacketIdOnly& p) const { return p.type; }
    PacketType operator()(const Subscribe&) const { return PacketType::kSubscribe; }
    PacketType operator()(const Suback&) const { return PacketType::kSuback; }
    PacketType operator()(const Unsubscribe&) const { return PacketType::kUnsubscribe; }
    PacketType operator()(const Pingreq&) const { return PacketType::kPingreq; }
    PacketType operator()(const Pingresp&) const { return PacketType::kPingresp; }
    PacketType operator()(const Disconnect&) const { return PacketType::kDisconnect; }
  };
  return std::visit(Visitor{}, packet);
}

// ---------------------------------------------------------------------------------------------
// Parser

Parser::Parser(size_t max_packet_bytes, Role role)
    : max_packet_bytes_(std::max<size_t>(max_packet_bytes, 2)), role_(role) {}

ParseResult Parser::Fail(std::string reason, std::optional<ConnackCode> code) {
  error_ = std::make_unique<ParseResult>();
  error_->ok = false;
  error_->reason = std::move(reason);
  error_->connack_code = code;
  body_ = std::string();  // Release the buffer; the connection is going away.
  header_len_ = 0;
  header_done_ = false;
  return *error_;
}

ParseResult Parser::CheckFirstByte(uint8_t byte) {
  const uint8_t type_bits = byte >> 4;
  const uint8_t flags = byte & 0x0F;
  if (type_bits == 0 || type_bits == 15) {
    return Fail("reserved control packet type " + std::to_string(type_bits));
  }
  const auto type = static_cast<PacketType>(type_bits);
  if (!AllowedFor(role_, type)) {
    return Fail(Prefixed(
        type, role_ == Role::kServer ? "not allowed from a client" : "not allowed from a server"));
  }
  const PacketType first = role_ == Role::kServer ? PacketType::kConnect : PacketType::kConnack;
  if (!seen_first_packet_ && type != first) {
    // [MQTT-3.1.0-1] / [MQTT-3.2.0-1]
    return Fail(Prefixed(type, std::string("first packet must be ") + PacketTypeName(first)));
  }
  if (seen_first_packet_ && type == first) {
    return Fail(Prefixed(type, "sent twice on one connection"));  // [MQTT-3.1.0-2]
  }
  switch (type) {
    case PacketType::kPublish: {
      const uint8_t qos = (flags >> 1) & 0x03;
      if (qos == 3) return Fail("PUBLISH: QoS 3 is invalid");  // [MQTT-3.3.1-4]
      if (qos == 0 && (flags & 0x08)) {
        return Fail("PUBLISH: DUP set with QoS 0");  // [MQTT-3.3.1-2]
      }
      break;
    }
    case PacketType::kPubrel:
    case PacketType::kSubscribe:
    case PacketType::kUnsubscribe:
      if (flags != 0x02) {
        return Fail(Prefixed(type, "fixed header flags must be 0010"));  // [MQTT-2.2.2-1]
      }
      break;
    default:
      if (flags != 0) return Fail(Prefixed(type, "fixed header flags must be 0000"));
      break;
  }
  return ParseResult{};
}

ParseResult Parser::Feed(const char* data, size_t n, std::vector<Packet>* out) {
  if (error_) return *error_;
  size_t i = 0;
  while (i < n) {
    if (!header_done_) {
      const auto byte = static_cast<uint8_t>(data[i++]);
      if (header_len_ == 0) {
        ParseResult r = CheckFirstByte(byte);
        if (!r.ok) return r;
        first_byte_ = byte;
        header_len_ = 1;
        remaining_ = 0;
        multiplier_ = 1;
        continue;
      }
      ++header_len_;  // 2..5: this is length byte number header_len_ - 1.
      remaining_ += static_cast<size_t>(byte & 0x7F) * multiplier_;
      if (byte & 0x80) {
        if (header_len_ - 1 == 4) {
          return Fail("remaining length longer than 4 bytes");  // §2.2.3
        }
        multiplier_ *= 128;
        continue;
      }
      header_done_ = true;
      const auto type = static_cast<PacketType>(first_byte_ >> 4);
      if (remaining_ > max_packet_bytes_ || header_len_ + remaining_ > max_packet_bytes_) {
        return Fail(Prefixed(type, "packet of " + std::to_string(header_len_ + remaining_) +
                                       " bytes exceeds the limit of " +
                                       std::to_string(max_packet_bytes_)));
      }
      const int fixed = FixedRemainingLength(type);
      if (fixed >= 0 && remaining_ != static_cast<size_t>(fixed)) {
        return Fail(Prefixed(type, "remaining length must be " + std::to_string(fixed)));
      }
      if (remaining_ == 0) {
        ParseResult r = DecodeBody(std::string_view(), out);
        if (!r.ok) return r;
      }
      continue;
    }
    // Body.
    const size_t avail = n - i;
    if (body_.empty() && avail >= remaining_) {
      // Whole body present in this read: decode in place without copying.
      const size_t len = remaining_;  // DecodeBody resets the header state.
      ParseResult r = DecodeBody(std::string_view(data + i, len), out);
      i += len;
      if (!r.ok) return r;
      continue;
    }
    const size_t take = std::min(remaining_ - body_.size(), avail);
    body_.append(data + i, take);
    i += take;
    if (body_.size() == remaining_) {
      ParseResult r = DecodeBody(body_, out);
      if (!r.ok) return r;
    }
  }
  return ParseResult{};
}

ParseResult Parser::DecodeBody(std::string_view body, std::vector<Packet>* out) {
  const auto type = static_cast<PacketType>(first_byte_ >> 4);
  const uint8_t flags = first_byte_ & 0x0F;
  Reader r(body);
  std::optional<Packet> packet;
  auto malformed = [&](std::string_view what) { return Fail(Prefixed(type, what)); };

  switch (type) {
    case PacketType::kConnect: {
      Connect c;
      std::string_view name;
      if (!r.Bytes(&name) || !r.U8(&c.protocol_level)) {
        return malformed("truncated protocol name or level");
      }
      if (name == "MQTT") {
        if (c.protocol_level != 4) {
          return Fail("CONNECT: unsupported protocol level " + std::to_string(c.protocol_level) +
                          " for \"MQTT\"",
                      ConnackCode::kUnacceptableProtocolVersion);
        }
      } else if (name == "MQIsdp") {
        if (c.protocol_level != 3) {
          return Fail("CONNECT: unsupported protocol level " + std::to_string(c.protocol_level) +
                          " for \"MQIsdp\"",
                      ConnackCode::kUnacceptableProtocolVersion);
        }
      } else {
        return malformed("unknown protocol name");  // [MQTT-3.1.2-1]: close, no CONNACK.
      }
      c.protocol_name = std::string(name);
      uint8_t cf;
      if (!r.U8(&cf) || !r.U16(&c.keep_alive_s)) return malformed("truncated variable header");
      if (cf & 0x01) return malformed("reserved connect flag is set");  // [MQTT-3.1.2-3]
      c.clean_session = cf & 0x02;
      const bool will_flag = cf & 0x04;
      const uint8_t will_qos = (cf >> 3) & 0x03;
      const bool will_retain = cf & 0x20;
      const bool password_flag = cf & 0x40;
      const bool username_flag = cf & 0x80;
      if (!will_flag && (will_qos != 0 || will_retain)) {
        return malformed("will QoS/retain set without the will flag");  // [MQTT-3.1.2-13,15]
      }
      if (will_qos == 3) return malformed("will QoS 3 is invalid");  // [MQTT-3.1.2-14]
      if (password_flag && !username_flag) {
        return malformed("password flag set without user name flag");  // [MQTT-3.1.2-22]
      }
      std::string_view client_id;
      if (!r.Bytes(&client_id)) return malformed("truncated client identifier");
      if (!ValidMqttUtf8(client_id)) return malformed("client identifier is not valid UTF-8");
      c.client_id = std::string(client_id);
      if (will_flag) {
        std::string_view topic, payload;
        if (!r.Bytes(&topic) || !r.Bytes(&payload)) return malformed("truncated will");
        if (!ValidTopicName(topic)) return malformed("invalid will topic");
        c.will = Will{std::string(topic), std::string(payload), will_qos, will_retain};
      }
      if (username_flag) {
        std::string_view user;
        if (!r.Bytes(&user)) return malformed("truncated user name");
        if (!ValidMqttUtf8(user)) return malformed("user name is not valid UTF-8");
        c.username = std::string(user);
      }
      if (password_flag) {
        std::string_view password;
        if (!r.Bytes(&password)) return malformed("truncated password");
        c.password = std::string(password);
      }
      if (r.left() != 0) return malformed("trailing bytes after payload");
      // Identifier checks come last so that a malformed packet is closed without a CONNACK.
      if (c.client_id.empty() && c.protocol_level == 3) {
        return Fail("CONNECT: empty client identifier (MQTT 3.1)",
                    ConnackCode::kIdentifierRejected);
      }
      if (c.client_id.empty() && !c.clean_session) {
        return Fail("CONNECT: empty client identifier requires clean session",  // MQTT-3.1.3-8
                    ConnackCode::kIdentifierRejected);
      }
      if (c.client_id.size() > kMaxClientIdBytes) {
        return Fail("CONNECT: client identifier longer than " + std::to_string(kMaxClientIdBytes) +
                        " bytes",
                    ConnackCode::kIdentifierRejected);
      }
      seen_first_packet_ = true;
      packet = std::move(c);
      break;
    }
    case PacketType::kConnack: {
      uint8_t ack_flags, code;
      if (!r.U8(&ack_flags) || !r.U8(&code)) return malformed("truncated");
      if (ack_flags & 0xFE) return malformed("reserved acknowledge flags set");
      if (code > 5) return malformed("unknown return code " + std::to_string(code));
      if (code != 0 && (ack_flags & 0x01)) {
        return malformed("session present with a non-zero return code");  // [MQTT-3.2.2-4]
      }
      seen_first_packet_ = true;
      packet = Connack{(ack_flags & 0x01) != 0, static_cast<ConnackCode>(code)};
      break;
    }
    case PacketType::kPublish: {
      Publish p;
      p.qos = (flags >> 1) & 0x03;
      p.dup = flags & 0x08;
      p.retain = flags & 0x01;
      std::string_view topic;
      if (!r.Bytes(&topic)) return malformed("truncated topic name");
      if (!ValidTopicName(topic)) {
        return malformed("invalid topic name");  // [MQTT-3.3.2-2], [MQTT-1.5.3-1]
      }
      if (p.qos > 0) {
        if (!r.U16(&p.packet_id)) return malformed("truncated packet identifier");
        if (p.packet_id == 0) return malformed("packet identifier 0");  // [MQTT-2.3.1-1]
      }
      p.topic = std::string(topic);
      const std::string_view payload = r.Rest();
      p.payload = std::string(payload);
      packet = std::move(p);
      break;
    }
    case PacketType::kPuback:
    case PacketType::kPubrec:
    case PacketType::kPubrel:
    case PacketType::kPubcomp:
    case PacketType::kUnsuback: {
      PacketIdOnly p{type, 0};
      if (!r.U16(&p.packet_id) || r.left() != 0) return malformed("remaining length must be 2");
      if (p.packet_id == 0) return malformed("packet identifier 0");
      packet = p;
      break;
    }
    case PacketType::kSubscribe: {
      Subscribe s;
      if (!r.U16(&s.packet_id)) return malformed("truncated packet identifier");
      if (s.packet_id == 0) return malformed("packet identifier 0");
      while (r.left() > 0) {
        std::string_view filter;
        uint8_t qos;
        if (!r.Bytes(&filter) || !r.U8(&qos)) return malformed("truncated topic filter");
        if (!ValidTopicFilter(filter)) return malformed("invalid topic filter");
        if (qos & 0xFC) {
          return malformed("requested QoS byte " + std::to_string(qos) +
                           " is invalid");  // [MQTT-3.8.3-4]
        }
        if (qos > 2) return malformed("requested QoS 3 is invalid");
        s.filters.emplace_back(std::string(filter), qos);
      }
      if (s.filters.empty()) return malformed("no topic filters");  // [MQTT-3.8.3-3]
      packet = std::move(s);
      break;
    }
    case PacketType::kSuback: {
      Suback s;
      if (!r.U16(&s.packet_id)) return malformed("truncated packet identifier");
      if (s.packet_id == 0) return malformed("packet identifier 0");
      const std::string_view codes = r.Rest();
      for (char ch : codes) {
        const auto code = static_cast<uint8_t>(ch);
        if (code > 2 && code != kSubackFailure) {
          return malformed("invalid return code " + std::to_string(code));  // [MQTT-3.9.3-2]
        }
        s.codes.push_back(code);
      }
      if (s.codes.empty()) return malformed("no return codes");
      packet = std::move(s);
      break;
    }
    case PacketType::kUnsubscribe: {
      Unsubscribe u;
      if (!r.U16(&u.packet_id)) return malformed("truncated packet identifier");
      if (u.packet_id == 0) return malformed("packet identifier 0");
      while (r.left() > 0) {
        std::string_view filter;
        if (!r.Bytes(&filter)) return malformed("truncated topic filter");
        if (!ValidTopicFilter(filter)) return malformed("invalid topic filter");
        u.filters.emplace_back(filter);
      }
      if (u.filters.empty()) return malformed("no topic filters");  // [MQTT-3.10.3-2]
      packet = std::move(u);
      break;
    }
    case PacketType::kPingreq:
      packet = Pingreq{};
      break;
    case PacketType::kPingresp:
      packet = Pingresp{};
      break;
    case PacketType::kDisconnect:
      packet = Disconnect{};
      break;
  }
  if (!packet) return malformed("unknown packet type");  // Unreachable: checked on byte 1.
  out->push_back(std::move(*packet));
  // Ready for the next fixed header. Drop a large buffer so an idle connection does not pin
  // up to max_packet_bytes_ of memory after one big packet.
  header_len_ = 0;
  header_done_ = false;
  remaining_ = 0;
  if (body_.capacity() > 4096) {
    body_ = std::string();
  } else {
    body_.clear();
  }
  return ParseResult{};
}

// ---------------------------------------------------------------------------------------------
// Encoders

void EncodeConnack(const Connack& connack, std::string* out) {
  AppendFixedHeader(TypeBits(PacketType::kConnack), 2, out);
  out->push_back(connack.session_present ? 1 : 0);
  out->push_back(static_cast<char>(connack.return_code));
}

bool EncodePublishHeader(std::string_view topic, size_t payload_size, uint8_t qos, bool retain,
                         bool dup, uint16_t packet_id, std::string* out) {
  if (topic.empty() || !FitsString(topic) || qos > 2 || (qos > 0 && packet_id == 0)) {
    return false;
  }
  const size_t variable = 2 + topic.size() + (qos > 0 ? 2 : 0);
  if (payload_size > kMaxRemainingLength - variable) return false;
  const size_t remaining = variable + payload_size;
  const uint8_t first = TypeBits(PacketType::kPublish) | (dup ? 0x08 : 0) |
                        static_cast<uint8_t>(qos << 1) | (retain ? 0x01 : 0);
  out->reserve(out->size() + 1 + RemainingLengthSize(remaining) + variable);
  out->push_back(static_cast<char>(first));
  AppendRemainingLength(remaining, out);
  AppendString(topic, out);
  if (qos > 0) AppendU16(packet_id, out);
  return true;
}

bool EncodePublish(const Publish& publish, std::string* out) {
  if (!EncodePublishHeader(publish.topic, publish.payload.size(), publish.qos, publish.retain,
                           publish.dup, publish.packet_id, out)) {
    return false;
  }
  out->reserve(out->size() + publish.payload.size());
  out->append(publish.payload);
  return true;
}

bool EncodePacketId(PacketType type, uint16_t packet_id, std::string* out) {
  uint8_t first;
  switch (type) {
    case PacketType::kPuback:
    case PacketType::kPubrec:
    case PacketType::kPubcomp:
    case PacketType::kUnsuback:
      first = TypeBits(type);
      break;
    case PacketType::kPubrel:
      first = TypeBits(type) | 0x02;
      break;
    default:
      return false;
  }
  out->push_back(static_cast<char>(first));
  out->push_back(2);
  AppendU16(packet_id, out);
  return true;
}

bool EncodeSuback(const Suback& suback, std::string* out) {
  const size_t remaining = 2 + suback.codes.size();
  if (suback.codes.empty() || remaining > kMaxRemainingLength) return false;
  for (uint8_t code : suback.codes) {
    if (code > 2 && code != kSubackFailure) return false;
  }
  AppendFixedHeader(TypeBits(PacketType::kSuback), remaining, out);
  AppendU16(suback.packet_id, out);
  for (uint8_t code : suback.codes) out->push_back(static_cast<char>(code));
  return true;
}

void EncodePingresp(std::string* out) {
  out->push_back(static_cast<char>(TypeBits(PacketType::kPingresp)));
  out->push_back(0);
}

bool EncodeConnect(const Connect& c, std::string* out) {
  if (!FitsString(c.protocol_name) || !FitsString(c.client_id)) return false;
  size_t remaining = 2 + c.protocol_name.size() + 1 + 1 + 2 + 2 + c.client_id.size();
  uint8_t flags = c.clean_session ? 0x02 : 0;
  if (c.will) {
    if (!FitsString(c.will->topic) || !FitsString(c.will->payload) || c.will->qos > 3) {
      return false;
    }
    remaining += 4 + c.will->topic.size() + c.will->payload.size();
    flags |= 0x04 | static_cast<uint8_t>(c.will->qos << 3) | (c.will->retain ? 0x20 : 0);
  }
  if (c.username) {
    if (!FitsString(*c.username)) return false;
    remaining += 2 + c.username->size();
    flags |= 0x80;
  }
  if (c.password) {
    if (!FitsString(*c.password)) return false;
    remaining += 2 + c.password->size();
    flags |= 0x40;
  }
  AppendFixedHeader(TypeBits(PacketType::kConnect), remaining, out);
  AppendString(c.protocol_name, out);
  out->push_back(static_cast<char>(c.protocol_level));
  out->push_back(static_cast<char>(flags));
  AppendU16(c.keep_alive_s, out);
  AppendString(c.client_id, out);
  if (c.will) {
    AppendString(c.will->topic, out);
    AppendString(c.will->payload, out);
  }
  if (c.username) AppendString(*c.username, out);
  if (c.password) AppendString(*c.password, out);
  return true;
}

bool EncodeSubscribe(const Subscribe& s, std::string* out) {
  size_t remaining = 2;
  for (const auto& [filter, qos] : s.filters) {
    if (!FitsString(filter)) return false;
    remaining += 2 + filter.size() + 1;
    if (remaining > kMaxRemainingLength) return false;
  }
  AppendFixedHeader(TypeBits(PacketType::kSubscribe) | 0x02, remaining, out);
  AppendU16(s.packet_id, out);
  for (const auto& [filter, qos] : s.filters) {
    AppendString(filter, out);
    out->push_back(static_cast<char>(qos));
  }
  return true;
}

bool EncodeUnsubscribe(const Unsubscribe& u, std::string* out) {
  size_t remaining = 2;
  for (const std::string& filter : u.filters) {
    if (!FitsString(filter)) return false;
    remaining += 2 + filter.size();
    if (remaining > kMaxRemainingLength) return false;
  }
  AppendFixedHeader(TypeBits(PacketType::kUnsubscribe) | 0x02, remaining, out);
  AppendU16(u.packet_id, out);
  for (const std::string& filter : u.filters) AppendString(filter, out);
  return true;
}

void EncodePingreq(std::string* out) {
  out->push_back(static_cast<char>(TypeBits(PacketType::kPingreq)));
  out->push_back(0);
}

void EncodeDisconnect(std::string* out) {
  out->push_back(static_cast<char>(TypeBits(PacketType::kDisconnect)));
  out->push_back(0);
}

bool EncodePacket(const Packet& packet, std::string* out) {
  struct Visitor {
    std::string* out;
    bool operator()(const Connect& p) const { return EncodeConnect(p, out); }
    bool operator()(const Connack& p) const {
      EncodeConnack(p, out);
      return true;
    }
    bool operator()(const Publish& p) const { return EncodePublish(p, out); }
    bool operator()(const PacketIdOnly& p) const {
      return EncodePacketId(p.type, p.packet_id, out);
    }
    bool operator()(const Subscribe& p) const { return EncodeSubscribe(p, out); }
    bool operator()(const Suback& p) const { return EncodeSuback(p, out); }
    bool operator()(const Unsubscribe& p) const { return EncodeUnsubscribe(p, out); }
    bool operator()(const Pingreq&) const {
      EncodePingreq(out);
      return true;
    }
    bool operator()(const Pingresp&) const {
      EncodePingresp(out);
      return true;
    }
    bool operator()(const Disconnect&) const {
      EncodeDisconnect(out);
      return true;
    }
  };
  return std::visit(Visitor{out}, packet);
}

}  // namespace persona::realtime::mqtt
