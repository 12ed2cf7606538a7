#include "ai/bedrock/event_stream.h"

#include <array>
#include <string>

namespace persona::ai::bedrock {
namespace {

constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

uint64_t ReadBE(const char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

void AppendBE(std::string* out, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

Status Malformed(const std::string& what) { return absl::DataLossError("event stream: " + what); }

// Parses the header block of one message (its bounds already checked against the message).
Status ParseHeaders(std::string_view block, std::map<std::string, std::string>* out) {
  size_t i = 0;
  auto need = [&](size_t n) { return block.size() - i >= n; };
  while (i < block.size()) {
    const size_t name_len = static_cast<unsigned char>(block[i++]);
    if (name_len == 0) return Malformed("empty header name");
    if (!need(name_len + 1)) return Malformed("header name past the header block");
    std::string name(block.substr(i, name_len));
    i += name_len;
    const int type = static_cast<unsigned char>(block[i++]);
    std::string value;
    switch (type) {
      case 0:
        value = "true";
        break;
      case 1:
        value = "false";
        break;
      case 2:
      case 3:
      case 4:
      case 5:
      case 8: {
        const int width = type == 2 ? 1 : type == 3 ? 2 : type == 4 ? 4 : 8;
        if (!need(width)) return Malformed("header value past the header block");
        const uint64_t raw = ReadBE(block.data() + i, width);
        int64_t v;
        if (width == 8) {
          v = static_cast<int64_t>(raw);
        } else {  // sign-extend
          const uint64_t sign = uint64_t{1} << (8 * width - 1);
          v = static_cast<int64_t>(raw ^ sign) - static_cast<int64_t>(sign);
        }
        value = std::to_string(v);
        i += width;
        break;
      }
      case 6:
      case 7: {
        if (!need(2)) return Malformed("header length past the header block");
        const size_t len = ReadBE(block.data() + i, 2);
        i += 2;
        if (!need(len)) return Malformed("header value past the header block");
        value.assign(block.substr(i, len));
        i += len;
        break;
      }
      case 9: {
        if (!need(16)) return Malformed("header value past the header block");
        static constexpr char kHex[] = "0123456789abcdef";
        for (int k = 0; k < 16; ++k) {
          if (k == 4 || k == 6 || k == 8 || k == 10) value.push_back('-');
          const unsigned char c = block[i + k];
          value.push_back(kHex[c >> 4]);
          value.push_back(kHex[c & 0xf]);
        }
        i += 16;
        break;
      }
      default:
        return Malformed("unknown header type " + std::to_string(type));
    }
    (*out)[std::move(name)] = std::move(value);
  }
  return absl::OkStatus();
}

}  // namespace

uint32_t Crc32(std::string_view data, uint32_t crc) {
  crc = ~crc;
  for (char ch : data) crc = kCrcTable[(crc ^ static_cast<unsigned char>(ch)) & 0xff] ^ (crc >> 8);
  return ~crc;
}

Status EventStreamDecoder::Feed(std::string_view bytes, std::vector<EventMessage>* out) {
  if (!error_.ok()) return error_;
  buffer_.append(bytes.data(), bytes.size());
  while (true) {
    const std::string_view rest = std::string_view(buffer_).substr(offset_);
    if (rest.size() < 12) break;
    const uint32_t prelude_crc = static_cast<uint32_t>(ReadBE(rest.data() + 8, 4));
    if (Crc32(rest.substr(0, 8)) != prelude_crc) {
      error_ = Malformed("prelude CRC mismatch");
      break;
    }
    const uint32_t total = static_cast<uint32_t>(ReadBE(rest.data(), 4));
    const uint32_t headers_len = static_cast<uint32_t>(ReadBE(rest.data() + 4, 4));
    if (total < kMinMessageBytes || total > kMaxMessageBytes) {
      error_ = Malformed("message length " + std::to_string(total) + " out of range");
      break;
    }
    if (headers_len > total - kMinMessageBytes || headers_len > kMaxHeaderBytes) {
      error_ = Malformed("headers length " + std::to_string(headers_len) + " out of range");
      break;
    }
    if (rest.size() < total) break;
    const std::string_view message = rest.substr(0, total);
    if (Crc32(message.substr(0, total - 4)) != ReadBE(message.data() + total - 4, 4)) {
      error_ = Malformed("message CRC mismatch");
      break;
    }
    EventMessage m;
    Status s = ParseHeaders(message.substr(12, headers_len), &m.headers);
    if (!s.ok()) {
      error_ = s;
      break;
    }
    m.payload.assign(message.substr(12 + headers_len, total - 16 - headers_len));
    out->push_back(std::move(m));
    offset_ += total;
  }
  // Drop consumed bytes once they are most of the buffer (amortised O(1) per byte).
  if (offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  } else if (offset_ > 4096 && offset_ * 2 > buffer_.size()) {
    buffer_.erase(0, offset_);
    offset_ = 0;
  }
  if (!error_.ok()) {
    buffer_.clear();
    buffer_.shrink_to_fit();
    offset_ = 0;
  }
  return error_;
}

std::string FrameEventMessage(std::string_view encoded_headers, std::string_view payload) {
  const uint64_t total = 16 + encoded_headers.size() + payload.size();
  std::string out;
  out.reserve(total);
  AppendBE(&out, total, 4);
  AppendBE(&out, encoded_headers.size(), 4);
  AppendBE(&out, Crc32(out), 4);
  out.append(encoded_headers);
  out.append(payload);
  AppendBE(&out, Crc32(out), 4);
  return out;
}

std::string EncodeEventMessage(const std::vector<std::pair<std::string, std::string>>& headers,
                               std::string_view payload) {
  std::string block;
  for (const auto& [name, value] : headers) {
    const std::string_view n = std::string_view(name).substr(0, 255);
    const std::string_view v = std::string_view(value).substr(0, 65535);
    block.push_back(static_cast<char>(n.size()));
    block.append(n);
    block.push_back(7);
    AppendBE(&block, v.size(), 2);
    block.append(v);
  }
  return FrameEventMessage(block, payload);
}

}  // namespace persona::ai::bedrock
