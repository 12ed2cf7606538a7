// Authenticator: turns a transport's credential (a bearer token) into a
// Caller. The one place where HTTP and MQTT learn who is calling.
//
// With authentication off every credential (or none) is Caller::Open().
// With it on, a token is verified by JwtVerifier; a missing, malformed,
// expired or wrongly signed token is Unauthenticated. Verified tokens are
// remembered (up to a bound) until they expire, so a client that sends the
// same token on every request pays for its signature once. Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "auth/caller.h"
#include "auth/jwt.h"

namespace persona::auth {

class Authenticator {
 public:
  // Authentication off.
  Authenticator() = default;
  // Authentication on, with `verifier` (not null).
  explicit Authenticator(std::unique_ptr<JwtVerifier> verifier, size_t max_cached = 50000);

  bool enabled() const { return verifier_ != nullptr; }

  // The caller a bearer token names. `token` may be empty (no credential).
  StatusOr<Caller> FromToken(std::string_view token) const;
  // The same for an Authorization header value ("Bearer <token>", scheme
  // case-insensitive); an empty header is no credential.
  StatusOr<Caller> FromAuthorization(std::string_view header) const;

  // Replaces the verifier's keys (SIGHUP); forgets remembered tokens.
  Status Reload(JwtOptions options);

  JwtVerifier* verifier() const { return verifier_.get(); }

 private:
  struct Entry {
    Caller caller;
    int64_t expires_at_s;
  };
  static constexpr size_t kShards = 16;
  // Looks tokens up by string_view: no copy of the token per request.
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, Entry, Hash, std::equal_to<>> tokens ABSL_GUARDED_BY(mu);
  };

  std::unique_ptr<JwtVerifier> verifier_;
  // Bumped by Reload before the shards are cleared: a verification that
  // started under the old keys is not remembered after it.
  std::atomic<uint64_t> generation_{0};
  size_t max_per_shard_ = 0;
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace persona::auth
