// Status and result types used at every module boundary.
//
// persona uses absl::Status / absl::StatusOr<T>. The status code carries the
// class of error; api/ maps codes to HTTP status in one place:
//   InvalidArgument → 400/422, NotFound → 404, FailedPrecondition → 412,
//   AlreadyExists/Aborted → 409, ResourceExhausted → 429/503,
//   Unavailable → 503, Unauthenticated → 401, PermissionDenied → 403, Unimplemented → 501,
//   Internal/DataLoss → 500.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"

namespace persona {

using absl::Status;
using absl::StatusOr;

// The HTTP status code for `st` (the table above): the one mapping, used by
// api/ for responses and by realtime/ for the problems it publishes.
int HttpStatusCode(const Status& st);

// A refusal that says when to try again (Retry-After, in whole seconds, at
// least 1), carried as a payload of the status.
Status WithRetryAfter(Status st, double seconds);
// The Retry-After of `st`, or 0 if it carries none.
int RetryAfterOf(const Status& st);

}  // namespace persona
