// Caller: who is making a request, as the transport's authentication
// established it (SPEC §10), and what that lets them touch.
//
// Every engine entry point takes a Caller; a session is visible to a caller
// only if Caller::MayAccessSession says so, and the engine answers any other
// session exactly like a missing one. A default-constructed Caller is
// anonymous and may do nothing: forgetting to authenticate denies, it never
// grants. Immutable and cheap to copy.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace persona::auth {

class Caller {
 public:
  // Denies everything.
  Caller() = default;

  // Authentication is off: every session, every route (as before auth existed).
  static Caller Open();
  // The server itself (the async applier re-running a request that was
  // authorized when it was accepted).
  static Caller System();
  // An authenticated user (`sub` of a valid token). `admin` is the
  // persona_admin claim; `sessions`, when non-empty, limits the token to
  // those sessions of the user (the sessions claim; `limited` says the claim
  // was present, even if empty). `expires_at_s` is the token's exp.
  static Caller User(std::string user_id, bool admin, bool limited,
                     std::vector<std::string> sessions, int64_t expires_at_s);

  // Unrestricted: auth off, the server, or an admin whose token lists no
  // sessions (a sessions claim limits every token, an admin's too).
  bool unrestricted() const {
    return kind_ == Kind::kOpen || kind_ == Kind::kSystem || (admin_ && !limited_);
  }
  // The server itself (Caller::System()).
  bool system() const { return kind_ == Kind::kSystem; }
  // Authentication is on and this is a real principal (admin or not).
  bool authenticated() const { return kind_ == Kind::kUser; }
  bool admin() const { return admin_; }
  // The token's subject; empty unless authenticated().
  const std::string& user_id() const { return user_id_; }
  // True if a sessions claim limits the token (a device link).
  bool limited() const { return limited_; }
  const std::vector<std::string>& sessions() const;
  // exp of the token, seconds since the epoch; 0 when there is no token.
  int64_t expires_at_s() const { return expires_at_s_; }

  // May act on session `session_id`, owned by user `owner`.
  bool MayAccessSession(std::string_view session_id, std::string_view owner) const;
  // May create sessions (for itself). Device tokens may not.
  bool MayCreateSessions() const;
  // May read the usage of `user_id`: one's own (not with a device token), or an admin.
  bool MayReadUser(std::string_view user_id) const;
  // A stable text naming the grant (for MQTT session keys): two tokens with
  // the same scope string grant exactly the same topics.
  std::string Scope() const;

 private:
  enum class Kind { kNone, kOpen, kSystem, kUser };
  Kind kind_ = Kind::kNone;
  bool admin_ = false;
  bool limited_ = false;
  std::string user_id_;
  std::shared_ptr<const std::vector<std::string>> sessions_;  // sorted
  int64_t expires_at_s_ = 0;
};

}  // namespace persona::auth
