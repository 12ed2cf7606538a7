#include "flags/flags.h"

#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/logging.h"
#include "flags/json_logic.h"
#include "metrics/metrics.h"

namespace persona::flags {

void CountEvaluation(const Resolution& r) {
  metrics::Default()
      .GetCounter("persona_flag_evaluations_total",
                  "Flag resolutions for persona's own features, by flag and variant",
                  "flag=\"" + r.key + "\",variant=\"" +
                      (r.variant.empty() ? std::string("error") : r.variant) + "\"")
      ->Inc();
}
namespace {

// Replaces every {"$ref": "name"} in `rule` by $evaluators' rule.
// At most this many nodes in a flag's targeting once $refs are expanded: a
// chain of evaluators that each use the next several times grows
// exponentially from a small file.
constexpr size_t kMaxRuleNodes = 100000;

StatusOr<json::value> ResolveRefs(const json::value& rule, const json::object& evaluators,
                                  int depth, size_t* nodes) {
  if (depth > kMaxDepth) return absl::InvalidArgumentError("targeting nested too deep");
  if (++*nodes > kMaxRuleNodes)
    return absl::InvalidArgumentError("targeting grows past 100,000 nodes once $refs are expanded");
  if (rule.is_array()) {
    json::array out;
    for (const auto& r : rule.get_array()) {
      auto v = ResolveRefs(r, evaluators, depth + 1, nodes);
      if (!v.ok()) return v.status();
      out.push_back(std::move(*v));
    }
    return json::value(std::move(out));
  }
  if (!rule.is_object()) return rule;
  const json::object& o = rule.get_object();
  if (o.size() == 1 && o.contains("$ref")) {
    const json::value& name = o.at("$ref");
    if (!name.is_string()) return absl::InvalidArgumentError("$ref must name an evaluator");
    auto it = evaluators.find(name.get_string());
    if (it == evaluators.end())
      return absl::InvalidArgumentError("$ref '" + std::string(name.get_string()) +
                                        "' is not in $evaluators");
    return ResolveRefs(it->value(), evaluators, depth + 1, nodes);
  }
  json::object out;
  for (const auto& [k, v] : o) {
    auto r = ResolveRefs(v, evaluators, depth + 1, nodes);
    if (!r.ok()) return r.status();
    out[k] = std::move(*r);
  }
  return json::value(std::move(out));
}

std::string Fingerprint(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";
  return std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(st.st_ino);
}

StatusOr<std::string> ReadBounded(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read '" + path + "'");
  std::string text;
  text.resize(kMaxFileBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxFileBytes)
    return absl::InvalidArgumentError("'" + path + "' is larger than 1 MiB");
  return text;
}

}  // namespace

StatusOr<std::shared_ptr<const FlagSet>> FlagSet::Parse(std::string_view text) {
  if (text.size() > kMaxFileBytes) return absl::InvalidArgumentError("larger than 1 MiB");
  auto parsed = ParseJson(text);
  if (!parsed.ok() || !parsed->is_object())
    return absl::InvalidArgumentError("not a JSON object (flagd's flag-definition format)");
  const json::object& root = parsed->get_object();
  const json::value* flags = root.if_contains("flags");
  if (flags == nullptr || !flags->is_object())
    return absl::InvalidArgumentError("'flags' must be an object");
  json::object evaluators;
  if (const json::value* e = root.if_contains("$evaluators")) {
    if (!e->is_object()) return absl::InvalidArgumentError("'$evaluators' must be an object");
    evaluators = e->get_object();
  }
  auto set = std::make_shared<FlagSet>();
  for (const auto& [key, def] : flags->get_object()) {
    const std::string name(key);
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError("flag '" + name + "': " + why);
    };
    if (!def.is_object()) return bad("must be an object");
    const json::object& d = def.get_object();
    Flag f;
    const json::value* state = d.if_contains("state");
    if (state == nullptr || !state->is_string() ||
        (state->get_string() != "ENABLED" && state->get_string() != "DISABLED"))
      return bad("'state' must be ENABLED or DISABLED");
    f.enabled = state->get_string() == "ENABLED";
    const json::value* variants = d.if_contains("variants");
    if (variants == nullptr || !variants->is_object() || variants->get_object().empty())
      return bad("'variants' must be a non-empty object");
    f.variants = variants->get_object();
    // One type per flag, as OpenFeature's typed resolution expects.
    const json::kind kind = f.variants.begin()->value().kind();
    for (const auto& [vk, vv] : f.variants) {
      const bool same =
          vv.kind() == kind || (vv.is_number() && f.variants.begin()->value().is_number());
      if (!same) return bad("variant '" + std::string(vk) + "' has another type than the others");
    }
    // defaultVariant may be absent or null: the caller's own default then.
    const json::value* def_variant = d.if_contains("defaultVariant");
    if (def_variant != nullptr && !def_variant->is_null()) {
      if (!def_variant->is_string() || !f.variants.contains(def_variant->get_string()))
        return bad("'defaultVariant' must name one of its variants");
      f.default_variant = std::string(def_variant->get_string());
    }
    if (const json::value* t = d.if_contains("targeting")) {
      if (!t->is_object()) return bad("'targeting' must be a JsonLogic object");
      if (!t->get_object().empty()) {
        size_t nodes = 0;
        auto resolved = ResolveRefs(*t, evaluators, 0, &nodes);
        if (!resolved.ok()) return bad(std::string(resolved.status().message()));
        f.targeting = std::move(*resolved);
      }
    }
    set->flags_.emplace(name, std::move(f));
  }
  return std::shared_ptr<const FlagSet>(std::move(set));
}

Resolution FlagSet::Evaluate(const std::string& key, const std::string& targeting_key,
                             const json::object& context) const {
  Resolution r;
  r.key = key;
  auto it = flags_.find(key);
  if (it == flags_.end()) {
    r.reason = "ERROR";
    r.error_code = "FLAG_NOT_FOUND";
    r.error_message = "no flag '" + key + "'";
    return r;
  }
  const Flag& f = it->second;
  if (!f.enabled) {  // flagd (core v0.16+): reason DISABLED, no value
    r.reason = "DISABLED";
    return r;
  }
  auto use = [&](const std::string& variant, const char* reason) {
    r.variant = variant;
    r.value = variant.empty() ? json::value(nullptr) : f.variants.at(variant);
    r.reason = reason;
  };
  if (f.targeting.is_null()) {
    use(f.default_variant, "STATIC");
    return r;
  }
  json::object data = context;
  data["targetingKey"] = targeting_key;
  json::object meta;
  meta["flagKey"] = key;
  meta["timestamp"] = static_cast<int64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                               std::chrono::system_clock::now().time_since_epoch())
                                               .count());
  data["$flagd"] = std::move(meta);
  auto out = EvaluateLogic(f.targeting, data);
  // On an error flagd gives no value: the caller's default applies.
  if (!out.ok()) {
    r.reason = "ERROR";
    r.error_code = "PARSE_ERROR";
    r.error_message = std::string(out.status().message());
    return r;
  }
  if (out->is_null()) {
    use(f.default_variant, "DEFAULT");
    return r;
  }
  // flagd names the variant by the result's text: "true" for true, "1" for 1.
  std::string variant;
  if (out->is_string()) {
    variant = std::string(out->get_string());
  } else if (out->is_bool()) {
    variant = out->get_bool() ? "true" : "false";
  } else if (out->is_number()) {
    const double d = out->to_number<double>();
    variant = d == std::floor(d) && std::abs(d) < 9e15 ? std::to_string(static_cast<int64_t>(d))
                                                       : json::serialize(*out);
  }
  if (!f.variants.contains(variant)) {
    r.reason = "ERROR";
    r.error_code = "GENERAL";
    r.error_message = "targeting chose '" + variant + "', which is not a variant";
    return r;
  }
  use(variant, "TARGETING_MATCH");
  return r;
}

bool FlagSet::Bool(const std::string& key, const std::string& targeting_key, bool fallback) const {
  if (!flags_.contains(key)) return fallback;
  const Resolution r = Evaluate(key, targeting_key);
  if (!r.error_code.empty() || !r.value.is_bool()) return fallback;
  return r.value.get_bool();
}

FlagFile::FlagFile(std::string path, int poll_ms) : path_(std::move(path)), poll_ms_(poll_ms) {}

StatusOr<std::unique_ptr<FlagFile>> FlagFile::Open(const std::string& path, int poll_ms) {
  std::unique_ptr<FlagFile> f(new FlagFile(path, poll_ms));
  f->fingerprint_ = Fingerprint(path);
  auto text = ReadBounded(path);
  if (!text.ok())
    return absl::InvalidArgumentError("flags.file: " + std::string(text.status().message()));
  auto set = FlagSet::Parse(*text);
  if (!set.ok())
    return absl::InvalidArgumentError("flags.file '" + path +
                                      "': " + std::string(set.status().message()));
  f->current_ = std::move(*set);
  f->watcher_ = std::thread([raw = f.get()] {
    std::unique_lock<std::mutex> l(raw->mu_);
    while (!raw->stop_) {
      raw->cv_.wait_for(l, std::chrono::milliseconds(raw->poll_ms_));
      if (raw->stop_) break;
      l.unlock();
      raw->Check();
      l.lock();
    }
  });
  return f;
}

FlagFile::~FlagFile() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();
}

std::shared_ptr<const FlagSet> FlagFile::Current() const {
  std::lock_guard<std::mutex> l(mu_);
  return current_;
}

void FlagFile::Check() {
  const std::string fp = Fingerprint(path_);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (fp == fingerprint_) return;
    fingerprint_ = fp;  // a bad file is reported once, not every second
  }
  auto text = ReadBounded(path_);
  StatusOr<std::shared_ptr<const FlagSet>> set =
      text.ok() ? FlagSet::Parse(*text) : StatusOr<std::shared_ptr<const FlagSet>>(text.status());
  if (!set.ok()) {
    LogWarn("flags.file changed but cannot be used; keeping the last good flags",
            {{"file", path_}, {"error", std::string(set.status().message())}});
    return;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    current_ = *set;
  }
  ++reloads_;
  LogInfo("flags reloaded", {{"file", path_}, {"flags", static_cast<int64_t>((*set)->size())}});
}

}  // namespace persona::flags
