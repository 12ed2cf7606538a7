// The AWS event stream framing (application/vnd.amazon.eventstream), used by ConverseStream.
//
// A stream is a sequence of messages, each self-delimiting and checksummed:
//   total length u32 BE | headers length u32 BE | prelude CRC u32 BE   (the 12-byte prelude)
//   headers (headers length bytes) | payload | message CRC u32 BE
// CRC-32 is the IEEE/zlib one; the prelude CRC covers the first 8 bytes, the message CRC
// everything before it. A header is: name length u8, name, type u8, value, where the types are
//   0 true, 1 false (no value), 2 byte, 3 short, 4 int, 5 long (big-endian signed),
//   6 byte array and 7 string (u16 BE length + bytes), 8 timestamp (i64 ms), 9 uuid (16 bytes).
//
// EventStreamDecoder is incremental: Feed() takes bytes as they arrive from the socket, in
// pieces of any size, and returns the complete messages. It is bounded and never trusts a
// length it has not checked: the prelude CRC is verified before the lengths are believed, a
// message must be 16 bytes..16 MiB with headers of at most 128 KiB, and a CRC mismatch or a
// malformed header is DataLoss. After an error the framing is lost, so the decoder stays
// failed and returns the same error from every later Feed().
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace persona::ai::bedrock {

struct EventMessage {
  // String and byte-array values as their bytes; the others stringified: "true"/"false",
  // integers and timestamps (ms since the epoch) in decimal, uuids as 8-4-4-4-12 lower-case hex.
  // A repeated name keeps its last value.
  std::map<std::string, std::string> headers;
  std::string payload;
};

class EventStreamDecoder {
 public:
  static constexpr uint32_t kMaxMessageBytes = 16u << 20;
  static constexpr uint32_t kMaxHeaderBytes = 128u << 10;
  static constexpr uint32_t kMinMessageBytes = 16;  // prelude + message CRC

  // Appends every message completed by `bytes` to *out (also on error: the ones before it).
  Status Feed(std::string_view bytes, std::vector<EventMessage>* out);

  // Bytes held of a message not yet complete (0 between messages).
  size_t buffered() const { return buffer_.size() - offset_; }

 private:
  std::string buffer_;
  size_t offset_ = 0;  // start of the first undecoded byte in buffer_
  Status error_;
};

// CRC-32 (IEEE 802.3, as zlib's crc32), continuing from `crc`.
uint32_t Crc32(std::string_view data, uint32_t crc = 0);

// One message with string headers (type 7), in order. Names longer than 255 bytes and values
// longer than 65535 bytes cannot be framed and are truncated.
std::string EncodeEventMessage(const std::vector<std::pair<std::string, std::string>>& headers,
                               std::string_view payload);

// One message around already encoded header bytes (any types), for tests of the decoder.
std::string FrameEventMessage(std::string_view encoded_headers, std::string_view payload);

}  // namespace persona::ai::bedrock
