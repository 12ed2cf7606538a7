#include "auth/caller.h"

#include <algorithm>

namespace persona::auth {

Caller Caller::Open() {
  Caller c;
  c.kind_ = Kind::kOpen;
  return c;
}

Caller Caller::System() {
  Caller c;
  c.kind_ = Kind::kSystem;
  return c;
}

Caller Caller::User(std::string user_id, bool admin, bool limited,
                    std::vector<std::string> sessions, int64_t expires_at_s) {
  Caller c;
  c.kind_ = Kind::kUser;
  c.user_id_ = std::move(user_id);
  c.admin_ = admin;
  c.limited_ = limited;
  std::sort(sessions.begin(), sessions.end());
  sessions.erase(std::unique(sessions.begin(), sessions.end()), sessions.end());
  c.sessions_ = std::make_shared<const std::vector<std::string>>(std::move(sessions));
  c.expires_at_s_ = expires_at_s;
  return c;
}

const std::vector<std::string>& Caller::sessions() const {
  static const std::vector<std::string> kNone;
  return sessions_ ? *sessions_ : kNone;
}

bool Caller::MayAccessSession(std::string_view session_id, std::string_view owner) const {
  if (unrestricted()) return true;
  if (kind_ != Kind::kUser || user_id_.empty()) return false;
  // A limited admin token may open the sessions it lists, whoever owns them.
  if (owner != user_id_ && !admin_) return false;
  if (!limited_) return true;
  const auto& s = sessions();
  return std::binary_search(s.begin(), s.end(), session_id,
                            [](std::string_view a, std::string_view b) { return a < b; });
}

bool Caller::MayCreateSessions() const {
  if (unrestricted()) return true;
  return kind_ == Kind::kUser && !limited_;
}

bool Caller::MayReadUser(std::string_view user_id) const {
  if (unrestricted()) return true;
  return kind_ == Kind::kUser && !limited_ && user_id == user_id_;
}

std::string Caller::Scope() const {
  switch (kind_) {
    case Kind::kNone:
      return "none";
    case Kind::kOpen:
      return "open";
    case Kind::kSystem:
      return "system";
    case Kind::kUser:
      break;
  }
  std::string s = (admin_ ? "admin:" : "user:") + std::to_string(user_id_.size()) + ":" + user_id_;
  if (limited_) {
    s += ":sessions";
    for (const auto& id : sessions()) s += "," + id;
  }
  return s;
}

}  // namespace persona::auth
