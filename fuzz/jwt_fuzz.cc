// libFuzzer target: auth::JwtVerifier::Verify (src/auth/jwt.cc) and base64url.
//
// The first input byte picks a mode; the rest is the data:
//   mode 0: the data is a token, verified as is (header, base64url, signature
//           checks: almost never gets past the signature);
//   mode 1: the data is "<header JSON>\n<claims JSON>", signed here with the
//           verifier's HS256 secret, so the claim checks are reached too;
//   mode 2: the data is base64url text: a decode that succeeds must re-encode
//           to the same text (the decoder accepts one encoding per byte string).
// The verifier allows HS256 and EdDSA (a JWKS written at start-up), with a
// fixed clock.
//
// Checks: no memory error / UB; a verified token has a subject of 1..256
// bytes, an exp later than the clock minus the leeway, and sessions that are
// all valid ids.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "auth/jwt.h"
#include "core/base64.h"
#include "core/ids.h"
#include "fuzz_check.h"

namespace auth = persona::auth;

namespace {

constexpr double kNow = 1800000000;
const std::string kSecret = "fuzz-secret-0123456789abcdef-0123456789";

auth::JwtVerifier* Verifier() {
  static std::unique_ptr<auth::JwtVerifier> v = [] {
    const std::string path = "/tmp/persona-jwt-fuzz-jwks.json";
    std::ofstream(path) << R"({"keys":[{"kty":"OKP","crv":"Ed25519",)"
                           R"("x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]})";
    auth::JwtOptions o;
    o.algorithms = {"HS256", "EdDSA"};
    o.hs256_secret = kSecret;
    o.public_keys_file = path;
    auto made = auth::JwtVerifier::Create(o, [] { return kNow; });
    if (!made.ok()) {
      std::fprintf(stderr, "verifier: %s\n", std::string(made.status().message()).c_str());
      std::abort();
    }
    return std::move(*made);
  }();
  return v.get();
}

void CheckClaims(const persona::StatusOr<auth::Claims>& r) {
  if (!r.ok()) return;
  FUZZ_CHECK(!r->subject.empty() && r->subject.size() <= 256);
  FUZZ_CHECK(static_cast<double>(r->expires_at_s) + 31 > kNow);
  for (const auto& s : r->sessions) FUZZ_CHECK(persona::IsValidId(s));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      CheckClaims(Verifier()->Verify(input));
      break;
    case 1: {
      const size_t nl = input.find('\n');
      const std::string header = input.substr(0, nl);
      const std::string claims = nl == std::string::npos ? "" : input.substr(nl + 1);
      const std::string signing_input =
          persona::Base64UrlEncode(header) + "." + persona::Base64UrlEncode(claims);
      CheckClaims(
          Verifier()->Verify(signing_input + "." + auth::SignHs256(kSecret, signing_input)));
      break;
    }
    default: {
      auto decoded = persona::Base64UrlDecode(input);
      if (decoded) FUZZ_CHECK(persona::Base64UrlEncode(*decoded) == input);
      break;
    }
  }
  return 0;
}
