// problem+json (RFC 9457) responses and the one place where a Status becomes
// an HTTP status code.
#pragma once

#include <string_view>

#include "core/status.h"
#include "net/http_server.h"

namespace persona::api {

// Builds an application/problem+json response.
// `detail` is an absl::string_view so Status messages pass straight through.
net::Response Problem(net::http::status status, std::string_view title, absl::string_view detail,
                      unsigned version = 11);

// Maps a Status to its HTTP status: InvalidArgument → 422, NotFound → 404,
// FailedPrecondition → 412, Aborted/AlreadyExists → 409, ResourceExhausted →
// 429, Unavailable → 503 (both with Retry-After), anything else → 500.
net::http::status HttpStatusFor(const Status& st);

// Problem(HttpStatusFor(st), …) with the status message as the detail.
net::Response ProblemFor(const Status& st, unsigned version = 11);

}  // namespace persona::api
