// Status and result types used at every module boundary.
//
// persona uses absl::Status / absl::StatusOr<T>. The status code carries the
// class of error; api/ maps codes to HTTP status in one place:
//   InvalidArgument → 400/422, NotFound → 404, FailedPrecondition → 412,
//   AlreadyExists/Aborted → 409, ResourceExhausted → 429/503,
//   Unavailable → 503, Internal/DataLoss → 500.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace persona {

using absl::Status;
using absl::StatusOr;

}  // namespace persona
