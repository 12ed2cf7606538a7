// libFuzzer target: the MQTT 3.1.1 incremental parser (src/realtime/mqtt/codec.cc).
//
// Input layout:
//   byte 0        config: bit 0 = role (0 server, 1 client); bits 1-2 pick max_packet_bytes
//                 (64, 512, 4096, 1 MiB); bits 3-5 = number k (0..7) of slice-size bytes.
//   bytes 1..k    slice sizes (0 means "all that is left"); used in a cycle.
//   rest          the byte stream a peer sends.
//
// Checks:
//   * no memory error / UB (ASan + UBSan);
//   * slicing invariance: feeding the stream in the chosen slices yields exactly the same
//     packets and the same ParseResult as feeding it in one piece;
//   * the parser never buffers more than max_packet_bytes;
//   * after an error the parser stays dead and returns the same error;
//   * round trip: every packet the parser yields must encode (EncodePacket returns true) and
//     the encoding must parse again, with the same role, into an equal packet.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "realtime/mqtt/codec.h"

namespace mqtt = persona::realtime::mqtt;

namespace {

bool SameResult(const mqtt::ParseResult& a, const mqtt::ParseResult& b) {
  return a.ok == b.ok && a.reason == b.reason && a.connack_code == b.connack_code;
}

// The first packet the given role requires before anything else.
std::string Preamble(mqtt::Parser::Role role) {
  std::string out;
  if (role == mqtt::Parser::Role::kServer) {
    mqtt::Connect c;
    c.client_id = "fuzz";
    FUZZ_CHECK(mqtt::EncodeConnect(c, &out));
  } else {
    mqtt::EncodeConnack(mqtt::Connack{}, &out);
  }
  return out;
}

void RoundTrip(const mqtt::Packet& packet, mqtt::Parser::Role role) {
  std::string wire;
  FUZZ_CHECK(mqtt::EncodePacket(packet, &wire));
  const mqtt::PacketType type = mqtt::TypeOf(packet);
  const bool is_first =
      (role == mqtt::Parser::Role::kServer && type == mqtt::PacketType::kConnect) ||
      (role == mqtt::Parser::Role::kClient && type == mqtt::PacketType::kConnack);
  std::string stream = is_first ? std::string() : Preamble(role);
  const size_t skip = is_first ? 0 : 1;
  stream += wire;
  mqtt::Parser parser(mqtt::kMaxRemainingLength + 5, role);
  std::vector<mqtt::Packet> out;
  const mqtt::ParseResult r = parser.Feed(stream, &out);
  if (!r.ok) std::fprintf(stderr, "round trip parse failed: %s\n", r.reason.c_str());
  FUZZ_CHECK(r.ok);
  FUZZ_CHECK(out.size() == skip + 1);
  FUZZ_CHECK(out[skip] == packet);
  FUZZ_CHECK(parser.buffered_bytes() == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t config = data[0];
  const auto role = (config & 1) ? mqtt::Parser::Role::kClient : mqtt::Parser::Role::kServer;
  static constexpr size_t kLimits[] = {64, 512, 4096, 1 << 20};
  const size_t max_bytes = kLimits[(config >> 1) & 3];
  size_t k = (config >> 3) & 7;
  if (size < 1 + k) return 0;
  const uint8_t* sizes = data + 1;
  const char* stream = reinterpret_cast<const char*>(data + 1 + k);
  const size_t n = size - 1 - k;

  // Reference: everything in one Feed.
  mqtt::Parser whole(max_bytes, role);
  std::vector<mqtt::Packet> whole_out;
  const mqtt::ParseResult whole_r = whole.Feed(stream, n, &whole_out);
  FUZZ_CHECK(whole.buffered_bytes() <= max_bytes);
  FUZZ_CHECK(whole.failed() == !whole_r.ok);

  // Sliced.
  mqtt::Parser sliced(max_bytes, role);
  std::vector<mqtt::Packet> sliced_out;
  mqtt::ParseResult sliced_r;
  size_t pos = 0, idx = 0;
  while (pos < n) {
    size_t take = k == 0 ? n - pos : sizes[idx++ % k];
    if (take == 0 || take > n - pos) take = n - pos;
    sliced_r = sliced.Feed(stream + pos, take, &sliced_out);
    pos += take;
    FUZZ_CHECK(sliced.buffered_bytes() <= max_bytes);
    if (!sliced_r.ok) break;
  }
  FUZZ_CHECK(SameResult(whole_r, sliced_r));
  FUZZ_CHECK(whole_out == sliced_out);

  if (!sliced_r.ok) {
    // Dead parser: same error, nothing consumed or produced.
    std::vector<mqtt::Packet> more;
    const mqtt::ParseResult again = sliced.Feed("\x30\x00", 2, &more);
    FUZZ_CHECK(SameResult(again, sliced_r));
    FUZZ_CHECK(more.empty());
    FUZZ_CHECK(sliced.buffered_bytes() == 0);
  }

  for (const mqtt::Packet& p : whole_out) RoundTrip(p, role);
  return 0;
}
