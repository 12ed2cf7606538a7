#include "core/status.h"

#include <cstdlib>
#include <string>

namespace persona {

int HttpStatusCode(const Status& st) {
  switch (st.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 422;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kFailedPrecondition:
      return 412;
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kAlreadyExists:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return 503;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kUnimplemented:
      return 501;
    default:
      return 500;
  }
}

namespace {
constexpr char kRetryAfterUrl[] = "persona/retry-after";
}  // namespace

Status WithRetryAfter(Status st, double seconds) {
  int s = seconds < 1 ? 1 : seconds > 86400 ? 86400 : static_cast<int>(seconds + 0.999);
  st.SetPayload(kRetryAfterUrl, absl::Cord(std::to_string(s)));
  return st;
}

int RetryAfterOf(const Status& st) {
  auto p = st.GetPayload(kRetryAfterUrl);
  if (!p) return 0;
  const std::string text(*p);
  return std::atoi(text.c_str());
}

}  // namespace persona
