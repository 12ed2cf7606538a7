// Rule-based extraction of profile values from one user message, for the
// builtin (offline, deterministic) provider.
//
// Rules are chosen per field by type (email, phone, date, integer, number,
// boolean, enum, list<string>) and, for the default schema, by field name
// (name, age, city, occupation, interests, goals), so they work for any
// schema. Every candidate is validated with Schema::Validate and only valid,
// normalised values are proposed; candidates that fail validation are
// reported as rejections so the reply can explain them.
//
// All functions are pure and thread-safe; "born in 1990" uses the real
// current date (system clock).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ai/provider.h"
#include "core/json.h"
#include "model/schema.h"

namespace persona::ai::builtin {

// A candidate value the schema rejected ("200" for age).
struct Rejection {
  std::string field;
  std::string raw;     // the value as the user wrote it
  std::string reason;  // Schema::Validate's message
};

struct Extraction {
  // Proposed changes in schema order; value null clears the field. A value
  // equal to the one already in the profile is not proposed (see restated).
  std::vector<ProposedChange> changes;
  // Fields the user stated again with the value the profile already has.
  std::vector<std::string> restated;
  std::vector<Rejection> rejected;
  // The user declined to answer `asked_field` ("I'd rather not say", "skip").
  bool declined = false;
};

// Only the first kMaxTextBytes of a message are read.
inline constexpr size_t kMaxTextBytes = 1000;

// Extracts from `text`. `profile` is the current profile (list fields such as
// interests are merged with it unless the user says "only"/"just");
// `asked_field` is the field the previous assistant turn asked for ("" if
// none), so a bare answer ("34", "Alice", "hiking and jazz") fills it; `lang`
// is "en" or "ko" (both languages' rules always run; `lang` only breaks ties).
Extraction ExtractDetailed(const model::Schema& schema, const json::object& profile,
                           std::string_view text, std::string_view asked_field,
                           std::string_view lang);

// ExtractDetailed(...).changes.
std::vector<ProposedChange> Extract(const model::Schema& schema, const json::object& profile,
                                    std::string_view text, std::string_view asked_field,
                                    std::string_view lang);

// "en" or "ko": Hangul anywhere → "ko"; text without letters (digits,
// punctuation) → `hint` or "en"; a single token without Hangul (an email, a
// name) keeps a "ko" hint; otherwise "en".
std::string DetectLanguage(std::string_view text, std::string_view hint);

// English number words, 0..999: "thirty-four", "thirty four", "one hundred
// and five". nullopt unless the whole (trimmed, lower-cased) input is one.
std::optional<int> ParseEnglishNumber(std::string_view words);

// Korean native numbers 1..99 as used for ages: "서른네" → 34, "스무" → 20.
std::optional<int> ParseKoreanNativeNumber(std::string_view word);

}  // namespace persona::ai::builtin
