// SemanticCache: the response cache's semantic half (SPEC §12, issue 12).
//
// A model's answer is kept with the question's sentence vector (the intent
// gate's fastText model, IntentGate::Embed) and served again for a question
// of the same meaning from the same user with the same profile: "what can
// you do for me" after "what are you able to do". A hit needs all of
//   - the same partition: user, schema and a hash of the profile the model
//     saw (ResponseCache::Partition), so no other user's answer and no answer
//     from a stale profile is ever served;
//   - cosine similarity >= `threshold` with the nearest cached question
//     (hnswlib, an index per partition);
//   - the same intent by the gate's model (its top label; never "oos");
//   - the same meaning markers (MeaningMarkers): the same numbers, the same
//     negation, the same polarity words (on/off, up/down, buy/sell, …), the
//     same cities, countries and languages, no rare word swapped for another (slot fillers: "in
//     french" and "in spanish" are near each other as vectors), and not the
//     same words in another order ("usd to eur" against "eur to usd").
// The threshold comes from measuring wrong hits on CLINC150's val split
// (bench/cache_eval.cc, README). Entries expire after `ttl_s`; at most
// `max_entries` are kept (least recently used go first) and at most
// `max_per_partition` per partition; a user's entries are erased with
// EraseUser. Thread-safe (one mutex: a lookup is a few microseconds).
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "ai/gate/intent_gate.h"
#include "ai/provider.h"

namespace hnswlib {
template <typename T>
class HierarchicalNSW;
class InnerProductSpace;
}  // namespace hnswlib

namespace persona::ai {

// What two questions must share for one's answer to answer the other.
struct MeaningMarkers {
  std::vector<std::string> tokens;     // normalised, in order
  std::multiset<std::string> numbers;  // tokens with a digit, number words
  bool negated = false;
  std::map<std::string, int> polarity;  // on/off, today/tomorrow, …: word → its group
  // Words rare in the model's training text: slot fillers such as "french"
  // or "salmon", names it never saw. One question may add some (a detail),
  // but two questions that each have one the other lacks ask about
  // different things ("in french", "in spanish").
  std::set<std::string> rare;
  std::set<std::string> places;  // cities, countries, languages: must be the same
  std::string intent;            // the gate model's top label, "oos" below min_intent_confidence
};
bool SameMeaning(const MeaningMarkers& a, const MeaningMarkers& b);

struct SemanticCacheOptions {
  double threshold = 0.8;
  int64_t ttl_s = 3600;
  size_t max_entries = 100000;
  size_t max_per_partition = 256;
  // A word seen fewer times than this in the model's training text is a
  // meaning marker (chosen on CLINC150 val with the threshold).
  int64_t rare_count = 25;
  // Below this confidence the gate model's label is "oos", which never hits.
  double min_intent_confidence = 0.9;
  int64_t (*now_ms)() = nullptr;  // tests; nullptr: the steady clock
};

class SemanticCache {
 public:
  // `gate` must outlive this.
  SemanticCache(const IntentGate* gate, SemanticCacheOptions options);
  ~SemanticCache();

  // A question, embedded and marked once for a lookup and a later Put.
  struct Query {
    std::string partition;  // "" if not cacheable
    std::string user_id;
    std::vector<float> vec;
    MeaningMarkers markers;
    Intent top;  // the gate model's top label (markers.intent is it, or "oos")
  };
  Query Prepare(const AiRequest& req) const;
  Query Prepare(std::string partition, std::string user_id, std::string_view text) const;
  MeaningMarkers Mark(std::string_view text) const;
  MeaningMarkers Mark(std::string_view text, const Intent& top) const;

  struct Hit {
    AiReply reply;
    double similarity = 0;
  };
  // The cached answer to the nearest question of the same meaning, if its
  // similarity reaches the threshold.
  std::optional<Hit> Get(const Query& q);
  void Put(const Query& q, const AiReply& reply);
  void EraseUser(const std::string& user_id);
  size_t size() const;
  double threshold() const { return options_.threshold; }

 private:
  struct Entry {
    std::string partition, user_id;
    size_t label;
    std::vector<float> vec;
    MeaningMarkers markers;
    AiReply reply;
    int64_t expires_ms;
  };
  using List = std::list<Entry>;
  struct Partition;

  int64_t Now() const;
  void Remove(List::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rebuilds the partition's index from its live entries.
  void Rebuild(Partition& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const IntentGate* gate_;
  const SemanticCacheOptions options_;
  std::unique_ptr<hnswlib::InnerProductSpace> space_;
  mutable std::mutex mu_;
  List lru_ ABSL_GUARDED_BY(mu_);  // most recently used first
  std::unordered_map<std::string, std::unique_ptr<Partition>> partitions_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, std::set<std::string>> by_user_ ABSL_GUARDED_BY(mu_);
  size_t next_label_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace persona::ai
