#include "core/ids.h"

#include <cstdint>
#include <cstring>
#include <random>

namespace persona {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

uint64_t RandomWord() {
  // One generator per thread, seeded from the OS: ids need no global lock.
  thread_local std::mt19937_64 gen([] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }());
  return gen();
}

}  // namespace

std::string NewId() {
  unsigned char bytes[18] = {};  // 16 random bytes, padded to a multiple of 3
  const uint64_t words[2] = {RandomWord(), RandomWord()};
  std::memcpy(bytes, words, sizeof(words));
  std::string out;
  out.reserve(24);
  for (int i = 0; i < 18; i += 3) {
    const uint32_t v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 0x3f]);
  }
  out.resize(22);  // 128 bits need 22 digits; the rest is padding
  // An id that starts with '-' reads as a flag on command lines (persona
  // replay ID); '-' and '_' both map to '_' in the first digit.
  if (out[0] == '-') out[0] = '_';
  return out;
}

bool IsValidId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == '~';
    if (!ok) return false;
  }
  return true;
}

}  // namespace persona
