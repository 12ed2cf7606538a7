// JWT validation (RFC 7519) as RFC 8725 asks, on OpenSSL directly.
//
// Why not libjwt: Debian 12 ships libjwt 1.10, which has neither EdDSA nor
// JWKS, and lets the token's header pick the algorithm unless every caller
// remembers to pin it. Here the verifier owns the policy:
//   - the algorithm list is pinned by configuration (HS256, RS256, ES256,
//     EdDSA; "none" can never be configured, and a token saying alg "none"
//     or any unlisted algorithm is refused);
//   - each key is typed, and an algorithm only ever uses keys of its own
//     type: an RSA or EC public key is never used as an HMAC secret, so the
//     classic RS256→HS256 confusion cannot happen;
//   - the signature is checked before the claims are parsed;
//   - exp is required; nbf, iss and aud are checked (with leeway);
//   - tokens are bounded in size, segments are strict unpadded base64url,
//     JSON is depth-limited, and every claim must have its type.
// Keys come from a HS256 secret (config or environment) and a file of public
// keys, PEM (PUBLIC KEY and CERTIFICATE blocks) or JWKS (RSA, EC P-256,
// OKP Ed25519). Reload() swaps the keys atomically; a failed reload keeps
// the old ones. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "core/status.h"

namespace persona::auth {

struct JwtOptions {
  std::vector<std::string> algorithms = {"HS256"};
  std::string hs256_secret;      // the secret itself (resolved from hs256_secret_env by the caller)
  std::string public_keys_file;  // PEM or JWKS; required for RS256, ES256, EdDSA
  std::string issuer;            // checked when non-empty
  std::string audience = "persona";  // checked when non-empty
  int64_t leeway_s = 30;
  size_t max_token_bytes = 8192;
};

// The claims persona uses, validated.
struct Claims {
  std::string subject;       // sub: the user id
  int64_t expires_at_s = 0;  // exp (rounded down)
  bool admin = false;        // persona_admin
  bool limited = false;      // a sessions claim was present
  std::vector<std::string> sessions;
};

class JwtVerifier {
 public:
  // Seconds since the epoch; injectable for tests.
  using Clock = std::function<double()>;

  // InvalidArgument naming the problem (an unknown or "none" algorithm, a
  // secret shorter than 32 bytes, a key file that cannot be read, no key for
  // a configured algorithm).
  static StatusOr<std::unique_ptr<JwtVerifier>> Create(JwtOptions options, Clock clock = nullptr);
  ~JwtVerifier();

  // The token's claims, or Unauthenticated with a short reason (never the
  // token's content).
  StatusOr<Claims> Verify(std::string_view token) const;

  // Replaces options and keys; on error keeps the current ones.
  Status Reload(JwtOptions options);

  // Number of keys loaded (for logs and tests).
  size_t key_count() const;

  // Signs `claims` with the configured HS256 secret, adding aud and iss as
  // configured: a token this verifier accepts. Unimplemented when HS256 is
  // not configured (keys from an identity provider cannot be minted here).
  StatusOr<std::string> Mint(json::object claims) const;

 private:
  struct State;
  static StatusOr<std::shared_ptr<const State>> Build(JwtOptions options);
  explicit JwtVerifier(std::shared_ptr<const State> state, Clock clock);
  std::shared_ptr<const State> Current() const;

  mutable std::mutex mu_;
  std::shared_ptr<const State> state_;  // guarded by mu_ (swapped whole)
  Clock clock_;
};

// Signs `claims` with HS256 (persona token, tests).
std::string MintHs256(std::string_view secret, const json::object& claims);
// The base64url HS256 signature of a JWS signing input ("header.payload").
std::string SignHs256(std::string_view secret, std::string_view signing_input);

}  // namespace persona::auth
