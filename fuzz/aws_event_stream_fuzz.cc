// libFuzzer target: the AWS event-stream decoder used for Bedrock ConverseStream
// (src/ai/bedrock/event_stream.cc).
//
// Input layout:
//   byte 0        config: bit 0 = mode; bits 1-3 = number k (0..7) of slice-size bytes.
//                 mode 0 (raw): the rest is the byte stream as the socket delivers it.
//                 mode 1 (framed): the rest is a list of records
//                   [u16 BE headers length][u16 BE payload length][headers][payload]
//                 each framed with FrameEventMessage (valid lengths and CRCs), so the fuzzer
//                 reaches the header parser instead of stopping at the CRC checks; a final
//                 partial record is appended raw (a truncated or garbage tail).
//   bytes 1..k    slice sizes (0 = all that is left), used in a cycle.
//
// Checks:
//   * no memory error / UB (ASan + UBSan);
//   * slicing invariance: the sliced feed yields the same messages and status as one Feed;
//   * after an error the decoder stays failed (same status, no messages, nothing buffered);
//   * buffered() never exceeds the bytes fed;
//   * round trip: every decoded message re-encoded with EncodeEventMessage (headers as
//     strings) decodes again to an equal message, when it fits the framing limits.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ai/bedrock/event_stream.h"
#include "fuzz_check.h"

namespace bedrock = persona::ai::bedrock;

namespace {

bool Equal(const bedrock::EventMessage& a, const bedrock::EventMessage& b) {
  return a.headers == b.headers && a.payload == b.payload;
}

bool EqualAll(const std::vector<bedrock::EventMessage>& a,
              const std::vector<bedrock::EventMessage>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!Equal(a[i], b[i])) return false;
  return true;
}

uint16_t U16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

std::string BuildFramed(const uint8_t* p, size_t n) {
  std::string out;
  size_t i = 0;
  while (n - i >= 4) {
    const size_t hl = U16(p + i), pl = U16(p + i + 2);
    if (n - i - 4 < hl + pl) break;
    const std::string_view headers(reinterpret_cast<const char*>(p + i + 4), hl);
    const std::string_view payload(reinterpret_cast<const char*>(p + i + 4 + hl), pl);
    out += bedrock::FrameEventMessage(headers, payload);
    i += 4 + hl + pl;
  }
  out.append(reinterpret_cast<const char*>(p + i), n - i);
  return out;
}

void RoundTrip(const bedrock::EventMessage& m) {
  std::vector<std::pair<std::string, std::string>> headers(m.headers.begin(), m.headers.end());
  size_t block = 0;
  for (const auto& [name, value] : headers) {
    FUZZ_CHECK(!name.empty() && name.size() <= 255);  // decoder guarantees
    if (value.size() > 65535) return;                 // cannot be framed as a string
    block += 1 + name.size() + 1 + 2 + value.size();
  }
  // Numbers, booleans and uuids grow when re-encoded as strings: skip what no longer fits.
  if (block > bedrock::EventStreamDecoder::kMaxHeaderBytes) return;
  if (16 + block + m.payload.size() > bedrock::EventStreamDecoder::kMaxMessageBytes) return;
  const std::string wire = bedrock::EncodeEventMessage(headers, m.payload);
  FUZZ_CHECK(wire.size() == 16 + block + m.payload.size());
  bedrock::EventStreamDecoder d;
  std::vector<bedrock::EventMessage> out;
  const persona::Status s = d.Feed(wire, &out);
  if (!s.ok()) std::fprintf(stderr, "round trip failed: %s\n", s.ToString().c_str());
  FUZZ_CHECK(s.ok());
  FUZZ_CHECK(out.size() == 1);
  FUZZ_CHECK(Equal(out[0], m));
  FUZZ_CHECK(d.buffered() == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t config = data[0];
  const size_t k = (config >> 1) & 7;
  if (size < 1 + k) return 0;
  const uint8_t* sizes = data + 1;
  const uint8_t* rest = data + 1 + k;
  const size_t rest_n = size - 1 - k;
  const std::string stream = (config & 1)
                                 ? BuildFramed(rest, rest_n)
                                 : std::string(reinterpret_cast<const char*>(rest), rest_n);
  const size_t n = stream.size();

  bedrock::EventStreamDecoder whole;
  std::vector<bedrock::EventMessage> whole_out;
  const persona::Status whole_s = whole.Feed(stream, &whole_out);
  FUZZ_CHECK(whole.buffered() <= n);
  if (!whole_s.ok()) FUZZ_CHECK(whole.buffered() == 0);

  bedrock::EventStreamDecoder sliced;
  std::vector<bedrock::EventMessage> sliced_out;
  persona::Status sliced_s;
  size_t pos = 0, idx = 0;
  while (pos < n) {
    size_t take = k == 0 ? n - pos : sizes[idx++ % k];
    if (take == 0 || take > n - pos) take = n - pos;
    sliced_s = sliced.Feed(std::string_view(stream).substr(pos, take), &sliced_out);
    pos += take;
    FUZZ_CHECK(sliced.buffered() <= pos);
    if (!sliced_s.ok()) break;
  }
  FUZZ_CHECK(sliced_s == whole_s);
  FUZZ_CHECK(EqualAll(sliced_out, whole_out));
  FUZZ_CHECK(sliced.buffered() == whole.buffered());

  if (!sliced_s.ok()) {
    std::vector<bedrock::EventMessage> more;
    const persona::Status again = sliced.Feed(bedrock::EncodeEventMessage({}, "x"), &more);
    FUZZ_CHECK(again == sliced_s);
    FUZZ_CHECK(more.empty());
    FUZZ_CHECK(sliced.buffered() == 0);
  }

  for (const auto& m : whole_out) RoundTrip(m);
  return 0;
}
