// ResponseCache: the AI optimizer's exact response cache (SPEC §12, issue
// 12; the semantic half is semantic_cache.h).
//
// A model's answer is kept under (user, schema, the message's normalised
// text, a hash of the user's profile as the model saw it) and served again
// for the same message from the same user with the same profile, with
// source "cache" and no model call:
//   - partitioned per user: one user's entry is never another's answer;
//   - the profile is part of the key, so an answer that depends on the
//     profile ("what's my name?") is never served from a stale profile;
//   - only answers that proposed no profile change are kept (an answer that
//     changed the profile would not be the same answer again);
//   - entries expire after `ttl_s`, at most `max_entries` are kept (the
//     least recently used go first), and a user's entries are erased with
//     any of their sessions (EraseUser).
// CachingProvider puts it (and the semantic cache, if on) in front of the
// provider chain. Thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "ai/provider.h"
#include "metrics/metrics.h"

namespace persona::ai {

struct ResponseCacheOptions {
  int64_t ttl_s = 3600;
  size_t max_entries = 100000;
  int64_t (*now_ms)() = nullptr;  // tests; nullptr: the steady clock
};

class ResponseCache {
 public:
  explicit ResponseCache(ResponseCacheOptions options);

  // The cache key of a request: "" if it is not cacheable (no user).
  static std::string Key(const AiRequest& req);
  // The key without the text: user, schema and the profile's hash (the
  // semantic cache's partition). "" if not cacheable.
  static std::string Partition(const AiRequest& req);
  // Lower-case, whitespace collapsed, trailing punctuation dropped.
  static std::string NormaliseText(std::string_view text);

  std::optional<AiReply> Get(const std::string& key, const std::string& user_id);
  void Put(const std::string& key, const std::string& user_id, const AiReply& reply);
  void EraseUser(const std::string& user_id);
  size_t size() const;

 private:
  struct Entry {
    std::string key, user_id;
    AiReply reply;
    int64_t expires_ms;
  };
  using List = std::list<Entry>;
  int64_t Now() const;
  void Remove(List::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ResponseCacheOptions options_;
  mutable std::mutex mu_;
  List lru_ ABSL_GUARDED_BY(mu_);  // most recently used first
  std::unordered_map<std::string, List::iterator> by_key_ ABSL_GUARDED_BY(mu_);
  std::unordered_multimap<std::string, List::iterator> by_user_ ABSL_GUARDED_BY(mu_);
};

class SemanticCache;

class CachingProvider final : public Provider {
 public:
  // `cache`, `semantic` (may be null: exact only) and `next` must outlive this.
  CachingProvider(ResponseCache* cache, SemanticCache* semantic, Provider* next);
  const std::string& name() const override { return next_->name(); }
  std::shared_ptr<Call> Respond(AiRequest req, Callback done) override;

 private:
  ResponseCache* cache_;
  SemanticCache* semantic_;
  Provider* next_;
  metrics::Counter* hits_;
  metrics::Counter* semantic_hits_;
  metrics::Counter* misses_;
};

}  // namespace persona::ai
