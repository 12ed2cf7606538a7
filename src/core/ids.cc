#include "core/ids.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/base64.h"

namespace persona {
namespace {

// Bytes from the kernel's CSPRNG (getrandom(2), ChaCha20 behind /dev/urandom),
// drawn in blocks of 256 per thread so an id costs no system call most of the
// time. Ids must not be predictable from ids already seen (SPEC §10), which
// rules out a seeded PRNG such as mt19937.
void RandomBytes(unsigned char* out, size_t n) {
  thread_local unsigned char pool[256];
  thread_local size_t left = 0;
  while (n > 0) {
    if (left == 0) {
      size_t got = 0;
      while (got < sizeof(pool)) {
        const ssize_t r = getrandom(pool + got, sizeof(pool) - got, 0);
        if (r < 0) {
          if (errno == EINTR) continue;
          std::abort();  // no entropy source: never hand out guessable ids
        }
        got += static_cast<size_t>(r);
      }
      left = sizeof(pool);
    }
    const size_t take = std::min(n, left);
    std::memcpy(out, pool + sizeof(pool) - left, take);
    std::memset(pool + sizeof(pool) - left, 0, take);  // used bytes are not kept
    left -= take;
    out += take;
    n -= take;
  }
}

}  // namespace

std::string NewId() {
  unsigned char bytes[16];
  RandomBytes(bytes, sizeof(bytes));
  std::string out = Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(bytes), 16));
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
