#include "auth/authenticator.h"

#include <chrono>

namespace persona::auth {
namespace {

int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Authenticator::Authenticator(std::unique_ptr<JwtVerifier> verifier, size_t max_cached)
    : verifier_(std::move(verifier)), max_per_shard_(std::max<size_t>(1, max_cached / kShards)) {}

StatusOr<Caller> Authenticator::FromToken(std::string_view token) const {
  if (!verifier_) return Caller::Open();
  if (token.empty()) return absl::UnauthenticatedError("no token");
  Shard& shard = shards_[std::hash<std::string_view>()(token) % kShards];
  const int64_t now = NowSeconds();
  {
    std::lock_guard<std::mutex> l(shard.mu);
    auto it = shard.tokens.find(token);
    // A remembered token is good until its exp (without leeway: the leeway
    // is for clock skew at verification, not an extension).
    if (it != shard.tokens.end()) {
      if (now < it->second.expires_at_s) return it->second.caller;
      shard.tokens.erase(it);
    }
  }
  const uint64_t generation = generation_.load();
  auto claims = verifier_->Verify(token);
  if (!claims.ok()) return claims.status();
  Caller caller = Caller::User(std::move(claims->subject), claims->admin, claims->limited,
                               std::move(claims->sessions), claims->expires_at_s);
  if (now < caller.expires_at_s()) {
    std::lock_guard<std::mutex> l(shard.mu);
    if (generation_.load() != generation) return caller;  // keys reloaded meanwhile
    if (shard.tokens.size() >= max_per_shard_) {
      // Full: drop expired entries, or any one if none has expired.
      for (auto it = shard.tokens.begin(); it != shard.tokens.end();)
        it = now >= it->second.expires_at_s ? shard.tokens.erase(it) : std::next(it);
      if (shard.tokens.size() >= max_per_shard_) shard.tokens.erase(shard.tokens.begin());
    }
    shard.tokens.emplace(std::string(token), Entry{caller, caller.expires_at_s()});
  }
  return caller;
}

StatusOr<Caller> Authenticator::FromAuthorization(std::string_view header) const {
  if (!verifier_) return Caller::Open();
  while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
  if (header.empty()) return absl::UnauthenticatedError("no token");
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() <= kScheme.size()) return absl::UnauthenticatedError("not a bearer token");
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i])
      return absl::UnauthenticatedError("not a bearer token");
  header.remove_prefix(kScheme.size());
  while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
  while (!header.empty() && header.back() == ' ') header.remove_suffix(1);
  return FromToken(header);
}

Status Authenticator::Reload(JwtOptions options) {
  if (!verifier_) return absl::OkStatus();
  if (Status st = verifier_->Reload(std::move(options)); !st.ok()) return st;
  generation_.fetch_add(1);
  for (auto& shard : shards_) {
    std::lock_guard<std::mutex> l(shard.mu);
    shard.tokens.clear();
  }
  return absl::OkStatus();
}

}  // namespace persona::auth
