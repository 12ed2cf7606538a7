#include "api/problem.h"

#include "core/json.h"

namespace persona::api {

namespace http = net::http;

net::Response Problem(http::status status, std::string_view title, absl::string_view detail,
                      unsigned version) {
  json::object o;
  std::string slug(title);
  for (char& c : slug)
    c = (c == ' ') ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  o["type"] = "/problems/" + slug;
  o["title"] = json::string_view(title.data(), title.size());
  o["status"] = static_cast<int>(status);
  o["detail"] = json::string_view(detail.data(), detail.size());
  net::Response res(status, version);
  res.set(http::field::content_type, "application/problem+json");
  res.set(http::field::cache_control, "no-store");
  if (status == http::status::too_many_requests || status == http::status::service_unavailable)
    res.set(http::field::retry_after, "1");
  res.body() = json::serialize(o);
  return res;
}

http::status HttpStatusFor(const Status& st) {
  switch (st.code()) {
    case absl::StatusCode::kOk:
      return http::status::ok;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return http::status::unprocessable_entity;
    case absl::StatusCode::kNotFound:
      return http::status::not_found;
    case absl::StatusCode::kFailedPrecondition:
      return http::status::precondition_failed;
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kAlreadyExists:
      return http::status::conflict;
    case absl::StatusCode::kResourceExhausted:
      return http::status::too_many_requests;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return http::status::service_unavailable;
    default:
      return http::status::internal_server_error;
  }
}

net::Response ProblemFor(const Status& st, unsigned version) {
  const http::status s = HttpStatusFor(st);
  std::string_view title = http::obsolete_reason(s);
  return Problem(s, std::string(title), st.message(), version);
}

}  // namespace persona::api
