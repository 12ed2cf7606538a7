// libFuzzer target: reading a chat model's (untrusted) output (src/ai/llm/prompt.cc):
// ParseModelOutput against the built-in default schema (with its one repair pass), the
// schema's Validate on every proposed value (what the engine does next with them), and
// ReplyStreamer::Feed, which pulls the "reply" string out of the JSON while it streams.
//
// The input is the model's text as is (no prefix). The streamer is fed in slices whose sizes
// are derived from the bytes: the slice starting at offset i has 1 + (data[i] * 13 + i) % 23
// bytes.
//
// Hard checks (abort):
//   * no memory error / UB (ASan + UBSan);
//   * ParseModelOutput: a non-empty reply of at most kMaxReplyBytes (4000) bytes that is valid
//     UTF-8; every change names a field of the schema and there are at most 2 per field;
//     `asks` is empty or a schema field; Validate on each non-null value does not crash;
//   * ReplyStreamer: the sliced feed returns exactly what one Feed of the whole text returns
//     (chunk boundaries must not matter), and never more bytes in all than it was given.
// Soft checks (reported once per kind on stderr as "SOFT-FINDING", fatal with FUZZ_STRICT=1):
//   * streamer-utf8: the streamed text is not valid UTF-8 although the input was;
//   * streamer-mismatch: the input is a strict-JSON object ParseModelOutput accepted without
//     repair and whose reply was not truncated, yet the streamed text differs from the reply.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "ai/llm/prompt.h"
#include "core/json.h"
#include "fuzz_check.h"
#include "model/schema.h"

namespace llm = persona::ai::llm;
namespace model = persona::model;

namespace {

const model::Schema& DefaultSchema() {
  static const std::shared_ptr<const model::Schema> schema = [] {
    auto s = model::Schema::FromYaml(model::BuiltinDefaultSchemaYaml());
    FUZZ_CHECK(s.ok());
    return *s;
  }();
  return *schema;
}

std::string Escaped(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

void Soft(const char* kind, std::string_view input, std::string_view detail) {
  static bool strict = std::getenv("FUZZ_STRICT") != nullptr;
  static int reported_utf8 = 0, reported_mismatch = 0;
  int& count = std::string_view(kind) == "streamer-utf8" ? reported_utf8 : reported_mismatch;
  if (count++ == 0 || strict) {
    std::fprintf(stderr, "SOFT-FINDING %s: input=\"%s\" detail=\"%s\"\n", kind,
                 Escaped(input.substr(0, 300)).c_str(), Escaped(detail.substr(0, 300)).c_str());
  }
  if (strict) std::abort();
}

std::string Stream(std::string_view text, bool sliced) {
  llm::ReplyStreamer streamer;
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t take =
        sliced ? 1 + (static_cast<unsigned char>(text[pos]) * 13 + pos) % 23 : text.size() - pos;
    if (take > text.size() - pos) take = text.size() - pos;
    out += streamer.Feed(text.substr(pos, take));
    pos += take;
    FUZZ_CHECK(out.size() <= pos);  // \uXXXX (6 bytes) decodes to at most 3
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const model::Schema& schema = DefaultSchema();
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  auto out = llm::ParseModelOutput(text, schema);
  if (out.ok()) {
    FUZZ_CHECK(!out->reply.empty() || text.size() == 0);
    FUZZ_CHECK(out->reply.size() <= llm::kMaxReplyBytes);
    FUZZ_CHECK(persona::IsValidUtf8(out->reply));
    FUZZ_CHECK(out->changes.size() <= schema.fields().size() * 2);
    for (const auto& change : out->changes) {
      FUZZ_CHECK(schema.Find(change.field) != nullptr);
      if (!change.value.is_null()) (void)schema.Validate(change.field, change.value);
    }
    FUZZ_CHECK(out->asks.empty() || schema.Find(out->asks) != nullptr);
  }

  const std::string whole = Stream(text, /*sliced=*/false);
  const std::string sliced = Stream(text, /*sliced=*/true);
  if (whole != sliced) {
    std::fprintf(stderr, "streamer not slicing-invariant:\n  whole=%s\n  sliced=%s\n",
                 Escaped(whole).c_str(), Escaped(sliced).c_str());
  }
  FUZZ_CHECK(whole == sliced);

  if (persona::IsValidUtf8(text) && !persona::IsValidUtf8(whole)) {
    Soft("streamer-utf8", text, whole);
  }
  if (out.ok() && !out->repaired && out->reply.size() < llm::kMaxReplyBytes &&
      whole != out->reply) {
    Soft("streamer-mismatch", text, whole);
  }
  return 0;
}
