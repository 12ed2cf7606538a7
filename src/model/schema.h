// Profile schemas: the fields a session learns about its user.
//
// A schema is loaded from YAML (schemas/*.yaml). Each field has a type,
// validation rules, the questions that ask for it (per language) and hints
// for extraction. Schema objects are immutable after loading and safe to
// share between threads.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "core/status.h"

namespace persona::model {

enum class FieldType {
  kString,
  kInteger,
  kNumber,
  kBoolean,
  kEmail,
  kPhone,
  kDate,
  kEnum,
  kStringList,
  kText,
};

std::string_view FieldTypeName(FieldType t);

struct FieldSpec {
  std::string name;
  FieldType type = FieldType::kString;
  std::string description;
  bool required = false;
  std::optional<double> min;  // integer/number range, inclusive
  std::optional<double> max;
  std::string pattern;  // ECMAScript regex the whole (string) value must match
  std::optional<std::regex> pattern_re;
  std::vector<std::string> enum_values;
  // Enum synonyms: lower-case phrase → canonical value ("text" → "sms").
  std::map<std::string, std::string> synonyms;
  size_t max_length = 200;  // per string (each item for lists)
  size_t max_items = 20;    // list<string>
  // Questions per language code ("en", "ko"); the first is asked by default.
  std::map<std::string, std::vector<std::string>> questions;
  // Free-form extraction hints (keywords that signal this field).
  std::vector<std::string> hints;
};

class Schema {
 public:
  // Parses a schema from YAML text. InvalidArgument names the bad key.
  static StatusOr<std::shared_ptr<const Schema>> FromYaml(std::string_view yaml);

  const std::string& name() const { return name_; }
  const std::string& description() const { return description_; }
  const std::vector<FieldSpec>& fields() const { return fields_; }

  // nullptr if the schema has no such field.
  const FieldSpec* Find(std::string_view field) const;

  // Checks `value` against the field's rules and returns it normalised
  // (trimmed strings, lower-case emails, canonical enum values, de-duplicated
  // lists). NotFound if the schema lacks the field; InvalidArgument with a
  // human-readable reason if the value is rejected. A null value is not
  // accepted here (clearing is decided by the caller).
  StatusOr<json::value> Validate(std::string_view field, const json::value& value) const;

  // The schema as JSON (for GET responses and the web UI).
  json::object ToJson() const;

 private:
  std::string name_;
  std::string description_;
  std::vector<FieldSpec> fields_;
};

// Loads every *.yaml in `dir` (name taken from the file's `name:` key or its
// stem). Always contains "default": the built-in copy is used when the
// directory lacks one. InvalidArgument names the file and key on error.
StatusOr<std::map<std::string, std::shared_ptr<const Schema>>> LoadSchemas(const std::string& dir);

// The default schema shipped inside the binary (schemas/default.yaml).
std::string_view BuiltinDefaultSchemaYaml();

}  // namespace persona::model
