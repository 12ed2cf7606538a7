// Feature flags in flagd's flag-definition format (SPEC §13, issue 13), so
// one file serves persona, flagd and any OpenFeature SDK:
//
//   {"flags": {"persona.gate": {"state": "ENABLED",
//                               "variants": {"on": true, "off": false},
//                               "defaultVariant": "off",
//                               "targeting": {"fractional": [["on", 5], ["off", 95]]}}},
//    "$evaluators": {"name": {…a rule…}}}          // used as {"$ref": "name"}
//
// A FlagSet is one parsed file; Evaluate() resolves a flag for a targeting
// key (persona's user id) as flagd does: a DISABLED flag or a missing one
// is an error, no targeting or a targeting result of null gives the default
// variant (reason STATIC / DEFAULT), a result naming a variant gives it
// (TARGETING_MATCH), anything else is an error with the default value.
//
// FlagFile keeps the current FlagSet of `flags.file` and reloads it when the
// file changes (checked once a second); a file that does not parse keeps the
// last good flags and logs why. Thread-safe: readers get a shared_ptr to an
// immutable FlagSet.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/json.h"
#include "core/status.h"

namespace persona::flags {

inline constexpr size_t kMaxFileBytes = 1 << 20;

struct Resolution {
  std::string key;
  json::value value = nullptr;
  std::string variant;     // "" on error
  std::string reason;      // STATIC | TARGETING_MATCH | DEFAULT | DISABLED | ERROR
  std::string error_code;  // FLAG_NOT_FOUND | PARSE_ERROR | TYPE_MISMATCH | GENERAL
  std::string error_message;
};

// Counts `r` in persona_flag_evaluations_total{flag,variant} (variant
// "error" for a failed resolution): each resolution that switches one of
// persona's own features.
void CountEvaluation(const Resolution& r);

class FlagSet {
 public:
  // InvalidArgument naming the flag and what is wrong with it.
  static StatusOr<std::shared_ptr<const FlagSet>> Parse(std::string_view text);

  Resolution Evaluate(const std::string& key, const std::string& targeting_key,
                      const json::object& context = {}) const;
  // A boolean flag's value for a user, or `fallback` if the flag is missing,
  // disabled, not boolean or fails.
  bool Bool(const std::string& key, const std::string& targeting_key, bool fallback) const;
  bool Has(const std::string& key) const { return flags_.contains(key); }
  size_t size() const { return flags_.size(); }

 private:
  struct Flag {
    bool enabled = true;
    json::object variants;
    std::string default_variant;
    json::value targeting = nullptr;  // $ref resolved
  };
  std::map<std::string, Flag> flags_;
};

class FlagFile {
 public:
  // Reads `path` now: an error if it cannot be read or parsed (start-up
  // refuses a bad flag file), then watches it.
  static StatusOr<std::unique_ptr<FlagFile>> Open(const std::string& path, int poll_ms = 1000);
  ~FlagFile();

  std::shared_ptr<const FlagSet> Current() const;
  // Reloads now if the file changed (the watcher calls it; tests too).
  void Check();
  uint64_t reloads() const { return reloads_.load(); }

 private:
  FlagFile(std::string path, int poll_ms);
  std::string path_;
  int poll_ms_;
  mutable std::mutex mu_;
  std::shared_ptr<const FlagSet> current_;
  std::string fingerprint_;  // mtime and size of the last file read
  std::atomic<uint64_t> reloads_{0};
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread watcher_;
};

}  // namespace persona::flags
