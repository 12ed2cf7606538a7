#include "model/schema.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "model/default_schema.inc"  // kDefaultSchemaYaml, generated from schemas/default.yaml

namespace persona::model {
namespace {

std::string Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n\f\v");
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n\f\v");
  return std::string(s.substr(b, e - b + 1));
}

StatusOr<FieldType> ParseType(const std::string& t) {
  static const std::pair<const char*, FieldType> kTypes[] = {
      {"string", FieldType::kString},
      {"integer", FieldType::kInteger},
      {"number", FieldType::kNumber},
      {"boolean", FieldType::kBoolean},
      {"email", FieldType::kEmail},
      {"phone", FieldType::kPhone},
      {"date", FieldType::kDate},
      {"enum", FieldType::kEnum},
      {"list<string>", FieldType::kStringList},
      {"text", FieldType::kText},
  };
  for (const auto& [name, type] : kTypes)
    if (t == name) return type;
  return absl::InvalidArgumentError("unknown type '" + t + "'");
}

bool IsValidDate(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  for (int i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  const int y = std::stoi(std::string(s.substr(0, 4)));
  const int m = std::stoi(std::string(s.substr(5, 2)));
  const int d = std::stoi(std::string(s.substr(8, 2)));
  if (m < 1 || m > 12 || d < 1) return false;
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return d <= kDays[m - 1] + (m == 2 && leap ? 1 : 0);
}

bool IsValidEmail(std::string_view s) {
  static const std::regex kEmail(
      R"([A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})");
  return std::regex_match(s.begin(), s.end(), kEmail);
}

// Keeps a leading '+' and the digits; rejects anything but separators.
std::optional<std::string> NormalizePhone(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (std::isdigit(static_cast<unsigned char>(c))) {
      out.push_back(c);
    } else if (c == '+' && out.empty()) {
      out.push_back(c);
    } else if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')') {
      continue;
    } else {
      return std::nullopt;
    }
  }
  const size_t digits = out.size() - (out.starts_with('+') ? 1 : 0);
  if (digits < 7 || digits > 15) return std::nullopt;
  return out;
}

Status Invalid(const FieldSpec& f, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("field '", f.name, "': ", std::string(why)));
}

StatusOr<std::string> ValidateString(const FieldSpec& f, const json::value& v) {
  if (!v.is_string()) return Invalid(f, "expected a string");
  std::string s = Trim(std::string_view(v.get_string().data(), v.get_string().size()));
  if (s.empty()) return Invalid(f, "must not be empty");
  if (!IsValidUtf8(s)) return Invalid(f, "not valid UTF-8");
  if (s.size() > f.max_length)
    return Invalid(f, absl::StrCat("longer than ", f.max_length, " bytes"));
  if (f.pattern_re && !std::regex_match(s, *f.pattern_re))
    return Invalid(f, "does not match pattern " + f.pattern);
  return s;
}

}  // namespace

std::string_view FieldTypeName(FieldType t) {
  switch (t) {
    case FieldType::kString:
      return "string";
    case FieldType::kInteger:
      return "integer";
    case FieldType::kNumber:
      return "number";
    case FieldType::kBoolean:
      return "boolean";
    case FieldType::kEmail:
      return "email";
    case FieldType::kPhone:
      return "phone";
    case FieldType::kDate:
      return "date";
    case FieldType::kEnum:
      return "enum";
    case FieldType::kStringList:
      return "list<string>";
    case FieldType::kText:
      return "text";
  }
  return "string";
}

StatusOr<std::shared_ptr<const Schema>> Schema::FromYaml(std::string_view yaml) {
  auto schema = std::make_shared<Schema>();
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(std::string("YAML: ") + e.what());
  }
  std::string key = "name";
  try {
    if (!root.IsMap()) return absl::InvalidArgumentError("schema must be a YAML mapping");
    schema->name_ = root["name"].as<std::string>("");
    key = "description";
    schema->description_ = root["description"].as<std::string>("");
    const YAML::Node fields = root["fields"];
    if (!fields || !fields.IsSequence() || fields.size() == 0)
      return absl::InvalidArgumentError("key 'fields': a non-empty list is required");
    for (size_t i = 0; i < fields.size(); ++i) {
      const YAML::Node n = fields[i];
      FieldSpec f;
      key = absl::StrCat("fields[", i, "].name");
      f.name = n["name"].as<std::string>("");
      if (f.name.empty()) return absl::InvalidArgumentError("key '" + key + "' is required");
      if (schema->Find(f.name) != nullptr)
        return absl::InvalidArgumentError("key '" + key + "': duplicate field " + f.name);
      key = absl::StrCat("fields[", i, "].type");
      auto type = ParseType(n["type"].as<std::string>("string"));
      if (!type.ok())
        return absl::InvalidArgumentError("key '" + key +
                                          "': " + std::string(type.status().message()));
      f.type = *type;
      key = absl::StrCat("fields[", i, "].description");
      f.description = n["description"].as<std::string>("");
      key = absl::StrCat("fields[", i, "].required");
      f.required = n["required"].as<bool>(false);
      key = absl::StrCat("fields[", i, "].min");
      if (n["min"]) f.min = n["min"].as<double>();
      key = absl::StrCat("fields[", i, "].max");
      if (n["max"]) f.max = n["max"].as<double>();
      key = absl::StrCat("fields[", i, "].max_length");
      if (f.type == FieldType::kText) f.max_length = 2000;
      if (n["max_length"]) f.max_length = n["max_length"].as<size_t>();
      key = absl::StrCat("fields[", i, "].max_items");
      if (n["max_items"]) f.max_items = n["max_items"].as<size_t>();
      key = absl::StrCat("fields[", i, "].pattern");
      f.pattern = n["pattern"].as<std::string>("");
      if (!f.pattern.empty()) {
        try {
          f.pattern_re.emplace(f.pattern, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
          return absl::InvalidArgumentError("key '" + key + "': bad regex: " + e.what());
        }
      }
      key = absl::StrCat("fields[", i, "].values");
      if (n["values"]) f.enum_values = n["values"].as<std::vector<std::string>>();
      if (f.type == FieldType::kEnum && f.enum_values.empty())
        return absl::InvalidArgumentError("key '" + key + "': an enum needs values");
      key = absl::StrCat("fields[", i, "].synonyms");
      if (n["synonyms"]) {
        for (const auto& kv : n["synonyms"]) {
          std::string to = kv.second.as<std::string>();
          if (std::find(f.enum_values.begin(), f.enum_values.end(), to) == f.enum_values.end())
            return absl::InvalidArgumentError("key '" + key + "': '" + to + "' is not a value");
          f.synonyms[absl::AsciiStrToLower(kv.first.as<std::string>())] = std::move(to);
        }
      }
      key = absl::StrCat("fields[", i, "].questions");
      if (n["questions"]) {
        if (n["questions"].IsSequence()) {
          f.questions["en"] = n["questions"].as<std::vector<std::string>>();
        } else {
          for (const auto& kv : n["questions"]) {
            f.questions[kv.first.as<std::string>()] =
                kv.second.IsSequence() ? kv.second.as<std::vector<std::string>>()
                                       : std::vector<std::string>{kv.second.as<std::string>()};
          }
        }
      }
      key = absl::StrCat("fields[", i, "].hints");
      if (n["hints"]) f.hints = n["hints"].as<std::vector<std::string>>();
      schema->fields_.push_back(std::move(f));
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError("key '" + key + "': " + e.what());
  }
  if (schema->name_.empty()) return absl::InvalidArgumentError("key 'name' is required");
  return std::shared_ptr<const Schema>(std::move(schema));
}

const FieldSpec* Schema::Find(std::string_view field) const {
  for (const auto& f : fields_)
    if (f.name == field) return &f;
  return nullptr;
}

StatusOr<json::value> Schema::Validate(std::string_view field, const json::value& v) const {
  const FieldSpec* spec = Find(field);
  if (spec == nullptr)
    return absl::NotFoundError(
        absl::StrCat("schema '", name_, "' has no field '", std::string(field), "'"));
  const FieldSpec& f = *spec;
  switch (f.type) {
    case FieldType::kString:
    case FieldType::kText: {
      auto s = ValidateString(f, v);
      if (!s.ok()) return s.status();
      return json::value(*s);
    }
    case FieldType::kEmail: {
      auto s = ValidateString(f, v);
      if (!s.ok()) return s.status();
      std::string e = absl::AsciiStrToLower(*s);
      if (!IsValidEmail(e)) return Invalid(f, "not a valid email address");
      return json::value(e);
    }
    case FieldType::kPhone: {
      auto s = ValidateString(f, v);
      if (!s.ok()) return s.status();
      auto p = NormalizePhone(*s);
      if (!p) return Invalid(f, "not a valid phone number (7–15 digits, optional leading +)");
      return json::value(*p);
    }
    case FieldType::kDate: {
      auto s = ValidateString(f, v);
      if (!s.ok()) return s.status();
      if (!IsValidDate(*s)) return Invalid(f, "expected a date YYYY-MM-DD");
      return json::value(*s);
    }
    case FieldType::kInteger: {
      int64_t n;
      if (v.is_int64()) {
        n = v.get_int64();
      } else if (v.is_uint64() && v.get_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
        n = static_cast<int64_t>(v.get_uint64());
      } else if (v.is_double() && std::isfinite(v.get_double()) &&
                 v.get_double() == std::floor(v.get_double()) && std::fabs(v.get_double()) < 9e15) {
        n = static_cast<int64_t>(v.get_double());
      } else {
        return Invalid(f, "expected an integer");
      }
      if ((f.min && n < *f.min) || (f.max && n > *f.max))
        return Invalid(f, absl::StrCat("must be between ", f.min.value_or(-9e15), " and ",
                                       f.max.value_or(9e15)));
      return json::value(n);
    }
    case FieldType::kNumber: {
      if (!v.is_number()) return Invalid(f, "expected a number");
      const double d = v.to_number<double>();
      if (!std::isfinite(d)) return Invalid(f, "expected a finite number");
      if ((f.min && d < *f.min) || (f.max && d > *f.max))
        return Invalid(f, absl::StrCat("must be between ", f.min.value_or(-1e308), " and ",
                                       f.max.value_or(1e308)));
      return json::value(d);
    }
    case FieldType::kBoolean:
      if (!v.is_bool()) return Invalid(f, "expected true or false");
      return v;
    case FieldType::kEnum: {
      if (!v.is_string()) return Invalid(f, "expected one of the enum values as a string");
      const std::string s = absl::AsciiStrToLower(
          Trim(std::string_view(v.get_string().data(), v.get_string().size())));
      for (const auto& e : f.enum_values)
        if (absl::AsciiStrToLower(e) == s) return json::value(e);
      if (auto it = f.synonyms.find(s); it != f.synonyms.end()) return json::value(it->second);
      std::string allowed;
      for (const auto& e : f.enum_values) absl::StrAppend(&allowed, allowed.empty() ? "" : ", ", e);
      return Invalid(f, "must be one of: " + allowed);
    }
    case FieldType::kStringList: {
      json::array out;
      auto add = [&](const json::value& item) -> Status {
        auto s = ValidateString(f, item);
        if (!s.ok()) return s.status();
        for (const auto& have : out)
          if (absl::AsciiStrToLower(have.get_string().c_str()) == absl::AsciiStrToLower(*s))
            return absl::OkStatus();
        out.emplace_back(*s);
        return absl::OkStatus();
      };
      if (v.is_string()) {
        if (auto st = add(v); !st.ok()) return st;
      } else if (v.is_array()) {
        for (const auto& item : v.get_array())
          if (auto st = add(item); !st.ok()) return st;
      } else {
        return Invalid(f, "expected a list of strings");
      }
      if (out.empty()) return Invalid(f, "must not be empty");
      if (out.size() > f.max_items)
        return Invalid(f, absl::StrCat("more than ", f.max_items, " items"));
      return json::value(std::move(out));
    }
  }
  return Invalid(f, "unsupported type");
}

json::object Schema::ToJson() const {
  json::object o;
  o["name"] = name_;
  if (!description_.empty()) o["description"] = description_;
  json::array fields;
  for (const auto& f : fields_) {
    json::object j;
    j["name"] = f.name;
    j["type"] = FieldTypeName(f.type);
    j["required"] = f.required;
    if (!f.description.empty()) j["description"] = f.description;
    // Integral bounds render as integers ("130", not "1.3E2").
    auto number = [](double d) {
      return d == std::floor(d) && std::fabs(d) < 9e15 ? json::value(static_cast<int64_t>(d))
                                                       : json::value(d);
    };
    if (f.min) j["min"] = number(*f.min);
    if (f.max) j["max"] = number(*f.max);
    if (!f.enum_values.empty()) {
      json::array vals;
      for (const auto& e : f.enum_values) vals.emplace_back(e);
      j["values"] = std::move(vals);
    }
    fields.push_back(std::move(j));
  }
  o["fields"] = std::move(fields);
  return o;
}

StatusOr<std::map<std::string, std::shared_ptr<const Schema>>> LoadSchemas(const std::string& dir) {
  std::map<std::string, std::shared_ptr<const Schema>> out;
  std::error_code ec;
  if (!dir.empty() && std::filesystem::is_directory(dir, ec)) {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
      if (e.path().extension() == ".yaml" || e.path().extension() == ".yml")
        files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& p : files) {
      std::ifstream in(p);
      std::stringstream ss;
      ss << in.rdbuf();
      auto schema = Schema::FromYaml(ss.str());
      if (!schema.ok())
        return absl::InvalidArgumentError(p.string() + ": " +
                                          std::string(schema.status().message()));
      out[(*schema)->name()] = *schema;
    }
  }
  if (!out.count("default")) {
    auto schema = Schema::FromYaml(kDefaultSchemaYaml);
    if (!schema.ok()) return schema.status();
    out["default"] = *schema;
  }
  return out;
}

std::string_view BuiltinDefaultSchemaYaml() { return kDefaultSchemaYaml; }

}  // namespace persona::model
