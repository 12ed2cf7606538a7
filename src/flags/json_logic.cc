#include "flags/json_logic.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_split.h"

namespace persona::flags {

uint32_t Murmur3(std::string_view data, uint32_t seed) {
  // MurmurHash3_x86_32, after the public-domain reference implementation.
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  const size_t n = data.size();
  const size_t blocks = n / 4;
  uint32_t h = seed;
  constexpr uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
  auto rotl = [](uint32_t x, int r) { return (x << r) | (x >> (32 - r)); };
  for (size_t i = 0; i < blocks; ++i) {
    uint32_t k;
    std::memcpy(&k, p + i * 4, 4);  // little-endian, as x86
    k *= c1;
    k = rotl(k, 15);
    k *= c2;
    h ^= k;
    h = rotl(h, 13);
    h = h * 5 + 0xe6546b64;
  }
  const uint8_t* tail = p + blocks * 4;
  uint32_t k = 0;
  switch (n & 3) {
    case 3:
      k ^= uint32_t{tail[2]} << 16;
      [[fallthrough]];
    case 2:
      k ^= uint32_t{tail[1]} << 8;
      [[fallthrough]];
    case 1:
      k ^= tail[0];
      k *= c1;
      k = rotl(k, 15);
      k *= c2;
      h ^= k;
  }
  h ^= static_cast<uint32_t>(n);
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  h ^= h >> 16;
  return h;
}

int FractionalBucketIndex(std::string_view bucketing_value, const std::vector<int64_t>& weights) {
  uint64_t total = 0;
  for (int64_t w : weights) total += static_cast<uint64_t>(std::max<int64_t>(0, w));
  if (total == 0) return -1;
  // flagd (core v0.15+): the hash scaled to [0, total) in integer arithmetic;
  // each variant owns the half-open range of its cumulative weight.
  const uint64_t bucket = (uint64_t{Murmur3(bucketing_value)} * total) >> 32;
  uint64_t range_end = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    range_end += static_cast<uint64_t>(std::max<int64_t>(0, weights[i]));
    if (bucket < range_end) return static_cast<int>(i);
  }
  return -1;
}

bool Truthy(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return false;
    case json::kind::bool_:
      return v.get_bool();
    case json::kind::int64:
      return v.get_int64() != 0;
    case json::kind::uint64:
      return v.get_uint64() != 0;
    case json::kind::double_:
      return v.get_double() != 0 && !std::isnan(v.get_double());
    case json::kind::string:
      return !v.get_string().empty();
    case json::kind::array:
      return !v.get_array().empty();
    case json::kind::object:
      return true;
  }
  return false;
}

namespace {

bool IsNumber(const json::value& v) { return v.is_number(); }

double ToNumber(const json::value& v) {
  if (v.is_number()) return v.to_number<double>();
  if (v.is_bool()) return v.get_bool() ? 1 : 0;
  if (v.is_null()) return 0;
  if (v.is_string()) {
    const std::string s(v.get_string());
    char* end = nullptr;
    const double d = std::strtod(s.c_str(), &end);
    if (end != s.c_str() && *end == '\0') return d;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

std::string ToText(const json::value& v) {
  if (v.is_string()) return std::string(v.get_string());
  if (v.is_null()) return "null";
  if (v.is_double()) {
    const double d = v.get_double();
    if (d == std::floor(d) && std::abs(d) < 1e15) return std::to_string(static_cast<int64_t>(d));
  }
  return json::serialize(v);
}

// A double as an int64, for indexes: NaN and out-of-range values clamped.
int64_t ToIndex(double d) {
  if (!std::isfinite(d)) return 0;
  return static_cast<int64_t>(std::clamp(d, -9e15, 9e15));
}

json::value Number(double d) {
  if (d == std::floor(d) && std::abs(d) < 9e15) return json::value(static_cast<int64_t>(d));
  return json::value(d);
}

bool StrictEqual(const json::value& a, const json::value& b) {
  if (IsNumber(a) && IsNumber(b)) return ToNumber(a) == ToNumber(b);
  return a == b;
}

// JavaScript's loose equality for the JSON types.
bool LooseEqual(const json::value& a, const json::value& b) {
  if (a.is_null() || b.is_null()) return a.is_null() && b.is_null();
  if (a.kind() == b.kind() || (IsNumber(a) && IsNumber(b))) return StrictEqual(a, b);
  if (a.is_string() && b.is_string()) return a == b;
  if ((a.is_array() || a.is_object()) || (b.is_array() || b.is_object()))
    return ToText(a) == ToText(b);
  return ToNumber(a) == ToNumber(b);
}

// A semantic version: major.minor.patch[-pre], with an optional leading v.
struct SemVer {
  int64_t part[3] = {0, 0, 0};
  std::string pre;
};
std::optional<SemVer> ParseSemVer(std::string s) {
  if (!s.empty() && (s[0] == 'v' || s[0] == 'V')) s.erase(0, 1);
  SemVer v;
  const size_t dash = s.find_first_of("-+");
  std::string core = s.substr(0, dash);
  if (dash != std::string::npos && s[dash] == '-') {
    v.pre = s.substr(dash + 1);
    const size_t plus = v.pre.find('+');
    if (plus != std::string::npos) v.pre.resize(plus);
  }
  std::vector<std::string> parts = absl::StrSplit(core, '.');
  if (parts.empty() || parts.size() > 3) return std::nullopt;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].empty() || parts[i].size() > 18 ||
        !std::all_of(parts[i].begin(), parts[i].end(), ::isdigit))
      return std::nullopt;
    v.part[i] = std::stoll(parts[i]);
  }
  return v;
}
int Compare(const SemVer& a, const SemVer& b) {
  for (int i = 0; i < 3; ++i)
    if (a.part[i] != b.part[i]) return a.part[i] < b.part[i] ? -1 : 1;
  if (a.pre == b.pre) return 0;
  if (a.pre.empty()) return 1;  // a release is after its pre-releases
  if (b.pre.empty()) return -1;
  return a.pre < b.pre ? -1 : 1;
}

class Evaluator {
 public:
  explicit Evaluator(const json::object& data) : data_(data) {}

  StatusOr<json::value> Eval(const json::value& rule, int depth) {
    if (depth > kMaxDepth) return absl::InvalidArgumentError("targeting rule nested too deep");
    if (rule.is_array()) {
      json::array out;
      for (const auto& r : rule.get_array()) {
        auto v = Eval(r, depth + 1);
        if (!v.ok()) return v.status();
        out.push_back(std::move(*v));
      }
      return json::value(std::move(out));
    }
    if (!rule.is_object() || rule.get_object().size() != 1) return rule;  // a literal
    const auto& [op_key, raw_args] = *rule.get_object().begin();
    const std::string op(op_key);
    json::array args;
    if (raw_args.is_array()) {
      args = raw_args.get_array();
    } else {
      args.push_back(raw_args);
    }
    // Operations that evaluate their arguments lazily.
    if (op == "if" || op == "?:") {
      size_t i = 0;
      for (; i + 1 < args.size(); i += 2) {
        auto c = Eval(args[i], depth + 1);
        if (!c.ok()) return c.status();
        if (Truthy(*c)) return Eval(args[i + 1], depth + 1);
      }
      if (i < args.size()) return Eval(args[i], depth + 1);
      return json::value(nullptr);
    }
    if (op == "and" || op == "or") {
      json::value last = nullptr;
      for (const auto& a : args) {
        auto v = Eval(a, depth + 1);
        if (!v.ok()) return v.status();
        last = std::move(*v);
        if ((op == "and") != Truthy(last)) return last;
      }
      return last;
    }
    std::vector<json::value> v;
    for (const auto& a : args) {
      auto e = Eval(a, depth + 1);
      if (!e.ok()) return e.status();
      v.push_back(std::move(*e));
    }
    auto arg = [&](size_t i) -> const json::value& {
      static const json::value kNull = nullptr;
      return i < v.size() ? v[i] : kNull;
    };
    if (op == "var") return Var(arg(0), v.size() > 1 ? arg(1) : json::value(nullptr));
    if (op == "missing") {
      json::array out;
      for (const auto& k : v) {
        if (Var(k, nullptr).is_null()) out.push_back(k);
      }
      return json::value(std::move(out));
    }
    if (op == "==") return json::value(LooseEqual(arg(0), arg(1)));
    if (op == "!=") return json::value(!LooseEqual(arg(0), arg(1)));
    if (op == "===") return json::value(StrictEqual(arg(0), arg(1)));
    if (op == "!==") return json::value(!StrictEqual(arg(0), arg(1)));
    if (op == "!") return json::value(!Truthy(arg(0)));
    if (op == "!!") return json::value(Truthy(arg(0)));
    if (op == "<" || op == "<=" || op == ">" || op == ">=") {
      auto cmp = [&](const json::value& a, const json::value& b) {
        if (a.is_string() && b.is_string())
          return op == "<"    ? a.get_string() < b.get_string()
                 : op == "<=" ? a.get_string() <= b.get_string()
                 : op == ">"  ? a.get_string() > b.get_string()
                              : a.get_string() >= b.get_string();
        const double x = ToNumber(a), y = ToNumber(b);
        return op == "<" ? x < y : op == "<=" ? x <= y : op == ">" ? x > y : x >= y;
      };
      if (v.size() == 3 && (op == "<" || op == "<="))  // between
        return json::value(cmp(arg(0), arg(1)) && cmp(arg(1), arg(2)));
      return json::value(cmp(arg(0), arg(1)));
    }
    if (op == "in") {
      if (arg(1).is_string() && arg(0).is_string())
        return json::value(arg(1).get_string().find(arg(0).get_string()) != std::string::npos);
      if (arg(1).is_array()) {
        for (const auto& x : arg(1).get_array())
          if (StrictEqual(x, arg(0))) return json::value(true);
      }
      return json::value(false);
    }
    if (op == "cat") {
      std::string s;
      for (const auto& x : v) s += ToText(x);
      return json::value(s);
    }
    if (op == "substr") {
      const std::string s = ToText(arg(0));
      int64_t from = ToIndex(ToNumber(arg(1)));
      if (from < 0) from = std::max<int64_t>(0, static_cast<int64_t>(s.size()) + from);
      if (from > static_cast<int64_t>(s.size())) return json::value("");
      std::string out = s.substr(static_cast<size_t>(from));
      if (v.size() > 2) {
        int64_t len = ToIndex(ToNumber(arg(2)));
        if (len < 0) len = std::max<int64_t>(0, static_cast<int64_t>(out.size()) + len);
        out = out.substr(0, static_cast<size_t>(len));
      }
      return json::value(out);
    }
    if (op == "+" || op == "*") {
      double acc = op == "+" ? 0 : 1;
      for (const auto& x : v) acc = op == "+" ? acc + ToNumber(x) : acc * ToNumber(x);
      return Number(acc);
    }
    if (op == "-") {
      if (v.size() == 1) return Number(-ToNumber(arg(0)));
      return Number(ToNumber(arg(0)) - ToNumber(arg(1)));
    }
    if (op == "/") return Number(ToNumber(arg(0)) / ToNumber(arg(1)));
    if (op == "%") return Number(std::fmod(ToNumber(arg(0)), ToNumber(arg(1))));
    if (op == "min" || op == "max") {
      if (v.empty()) return json::value(nullptr);
      double acc = ToNumber(v[0]);
      for (const auto& x : v)
        acc = op == "min" ? std::min(acc, ToNumber(x)) : std::max(acc, ToNumber(x));
      return Number(acc);
    }
    if (op == "merge") {
      json::array out;
      for (const auto& x : v) {
        if (x.is_array()) {
          for (const auto& y : x.get_array()) out.push_back(y);
        } else {
          out.push_back(x);
        }
      }
      return json::value(std::move(out));
    }
    if (op == "starts_with" || op == "ends_with") {
      if (!arg(0).is_string() || !arg(1).is_string()) return json::value(false);
      const std::string_view s = arg(0).get_string(), affix = arg(1).get_string();
      return json::value(op == "starts_with" ? s.starts_with(affix) : s.ends_with(affix));
    }
    if (op == "sem_ver") return SemVerOp(arg(0), arg(1), arg(2));
    if (op == "fractional") return Fractional(std::move(v));
    return absl::InvalidArgumentError("unknown targeting operation '" + op + "'");
  }

 private:
  json::value Var(const json::value& path, const json::value& fallback) {
    if (path.is_null() || (path.is_string() && path.get_string().empty()))
      return json::value(data_);
    const std::string p = ToText(path);
    const json::value* cur = nullptr;
    const json::object* obj = &data_;
    for (absl::string_view part : absl::StrSplit(p, '.')) {
      const std::string key(part.data(), part.size());
      if (obj == nullptr) return fallback;
      auto it = obj->find(key);
      if (it == obj->end()) return fallback;
      cur = &it->value();
      obj = cur->is_object() ? &cur->get_object() : nullptr;
    }
    return cur ? *cur : fallback;
  }

  static json::value SemVerOp(const json::value& a, const json::value& op, const json::value& b) {
    if (!a.is_string() || !op.is_string() || !b.is_string()) return json::value(nullptr);
    auto x = ParseSemVer(std::string(a.get_string()));
    auto y = ParseSemVer(std::string(b.get_string()));
    if (!x || !y) return json::value(nullptr);
    const std::string o(op.get_string());
    const int c = Compare(*x, *y);
    if (o == "=") return json::value(c == 0);
    if (o == "!=") return json::value(c != 0);
    if (o == "<") return json::value(c < 0);
    if (o == "<=") return json::value(c <= 0);
    if (o == ">") return json::value(c > 0);
    if (o == ">=") return json::value(c >= 0);
    if (o == "^") return json::value(x->part[0] == y->part[0]);
    if (o == "~") return json::value(x->part[0] == y->part[0] && x->part[1] == y->part[1]);
    return json::value(nullptr);
  }

  // flagd's fractional (core v0.15+, "v2"): [bucketing value?, [variant,
  // weight?], …]. A string first argument is hashed as it is; otherwise
  // (absent, or null and dropped) the flag key then the targeting key, with
  // no separator. Any malformed input gives null (the default variant).
  json::value Fractional(std::vector<json::value> v) {
    std::string bucketing;
    size_t first = 0;
    if (!v.empty() && v[0].is_string()) {
      bucketing = std::string(v[0].get_string());
      first = 1;
    } else {
      if (!v.empty() && v[0].is_null()) first = 1;
      const json::value targeting_key = Var(json::value("targetingKey"), nullptr);
      if (!targeting_key.is_string() || targeting_key.get_string().empty())
        return json::value(nullptr);
      bucketing =
          ToText(Var(json::value("$flagd.flagKey"), "")) + std::string(targeting_key.get_string());
    }
    std::vector<json::value> variants;
    std::vector<int64_t> weights;
    constexpr int64_t kMaxWeightSum = std::numeric_limits<int32_t>::max();
    int64_t total = 0;
    for (size_t i = first; i < v.size(); ++i) {
      if (!v[i].is_array() || v[i].get_array().empty()) return json::value(nullptr);
      const auto& d = v[i].get_array();
      const json::value& variant = d[0];
      if (!(variant.is_string() || variant.is_bool() || variant.is_number() || variant.is_null()))
        return json::value(nullptr);
      int64_t weight = 1;
      if (d.size() > 1 && !d[1].is_null()) {
        if (!d[1].is_number()) return json::value(nullptr);
        const double w = d[1].to_number<double>();
        if (!std::isfinite(w) || w != std::floor(w) || w > static_cast<double>(kMaxWeightSum))
          return json::value(nullptr);
        weight = w < 0 ? 0 : static_cast<int64_t>(w);
      }
      total += weight;
      if (total > kMaxWeightSum) return json::value(nullptr);
      variants.push_back(variant);
      weights.push_back(weight);
    }
    const int chosen = FractionalBucketIndex(bucketing, weights);
    if (chosen < 0) return json::value(nullptr);
    return variants[static_cast<size_t>(chosen)];
  }

  const json::object& data_;
};

}  // namespace

StatusOr<json::value> EvaluateLogic(const json::value& rule, const json::object& data) {
  Evaluator e(data);
  return e.Eval(rule, 0);
}

}  // namespace persona::flags
