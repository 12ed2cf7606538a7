// JsonLogic (jsonlogic.com) as flagd evaluates targeting rules, with flagd's
// custom operations: fractional, starts_with, ends_with, sem_ver.
//
// Hand-written: no C++ JsonLogic library is packaged for Debian, and flagd's
// custom operations (fractional's murmur3 bucketing above all) must match
// flagd exactly, which its test vectors check (flags_test.cc).
//
// Evaluation is bounded: rules nest at most kMaxDepth deep (a deeper rule is
// an error, never a stack overflow), and a rule is a parsed JSON value that
// was size-checked when the flag file was read.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "core/status.h"

namespace persona::flags {

inline constexpr int kMaxDepth = 64;

// MurmurHash3, x86 32-bit (Austin Appleby's reference), as flagd buckets by.
uint32_t Murmur3(std::string_view data, uint32_t seed = 0);

// The `fractional` operation's choice for a bucketing value: the index of
// the entry whose cumulative weight covers the value's bucket (flagd's
// integer bucketing), or -1 if no weight is positive.
int FractionalBucketIndex(std::string_view bucketing_value, const std::vector<int64_t>& weights);

// Evaluates `rule` against `data` (the evaluation context, with
// `targetingKey` and `$flagd.flagKey` / `$flagd.timestamp` already in it).
// InvalidArgument for an unknown operation or a malformed rule.
StatusOr<json::value> EvaluateLogic(const json::value& rule, const json::object& data);

// True for JsonLogic's truthiness (0, "", [], null and false are false).
bool Truthy(const json::value& v);

}  // namespace persona::flags
