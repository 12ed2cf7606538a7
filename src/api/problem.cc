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
  return static_cast<http::status>(HttpStatusCode(st));
}

net::Response ProblemFor(const Status& st, unsigned version) {
  const http::status s = HttpStatusFor(st);
  std::string_view title = http::obsolete_reason(s);
  net::Response res = Problem(s, std::string(title), st.message(), version);
  if (const int retry = RetryAfterOf(st); retry > 0)
    res.set(http::field::retry_after, std::to_string(retry));
  return res;
}

}  // namespace persona::api
