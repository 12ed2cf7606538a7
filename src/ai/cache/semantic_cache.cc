#include "ai/cache/semantic_cache.h"

#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <chrono>
#include <queue>
#include <unordered_set>

#include "absl/strings/str_split.h"
#include "ai/builtin/cities.h"
#include "ai/cache/response_cache.h"
#include "core/logging.h"

namespace persona::ai {
namespace {

// hnswlib's graph parameters for indexes of at most a few hundred entries:
// at that size a search visits most of them, so it finds the true nearest.
constexpr size_t kM = 16;
constexpr size_t kEfConstruction = 64;
constexpr size_t kEf = 32;
constexpr size_t kCandidates = 4;  // nearest questions checked for the same meaning

bool Negation(std::string_view t) {
  for (std::string_view w :
       {"not",   "no",      "never",  "nothing",  "nobody",  "none",   "neither",
        "nor",   "without", "cannot", "dont",     "cant",    "wont",   "isnt",
        "arent", "doesnt",  "didnt",  "shouldnt", "wouldnt", "couldnt"})
    if (t == w) return true;
  if (t.ends_with("n't")) return true;
  // Korean: 안 before a verb, and the negative endings 않-, 못, 없-, 말-.
  if (t == "안" || t == "못") return true;
  for (std::string_view k : {"않", "없", "못", "마세요", "말고"})
    if (t.find(k) != std::string_view::npos) return true;
  return false;
}

// Groups of words that ask for different answers when one is swapped for
// another of its group ("turn on", "turn off"; "today", "tomorrow"). The
// group's number, or 0.
int PolarGroup(std::string_view t) {
  static const std::vector<std::vector<std::string_view>> kGroups = {
      {"on", "off"},
      {"up", "down"},
      {"increase", "decrease", "raise", "lower", "reduce"},
      {"more", "less", "fewer"},
      {"before", "after"},
      {"add", "remove", "delete"},
      {"open", "close", "shut"},
      {"start", "stop", "pause", "resume"},
      {"enable", "disable"},
      {"lock", "unlock"},
      {"buy", "sell"},
      {"min", "max", "minimum", "maximum", "highest", "lowest", "most", "least"},
      {"best", "worst"},
      {"first", "last", "next", "previous"},
      {"yesterday", "today", "tomorrow", "tonight"},
      {"early", "earlier", "late", "later"},
      {"cheap", "cheapest", "expensive"},
      {"hot", "cold", "warm", "cool"},
      {"left", "right"},
      {"north", "south", "east", "west"},
      {"plus", "minus", "times"},
      {"send", "receive"},
      {"income", "expense", "expenses"},
      {"in", "out"},
      {"to", "from"},
      {"morning", "afternoon", "evening", "night"},
      {"checking", "savings"},
      {"celsius", "fahrenheit"},
      {"켜", "꺼", "켜줘", "꺼줘"},
      {"오늘", "내일", "어제"},
  };
  for (size_t g = 0; g < kGroups.size(); ++g)
    for (std::string_view w : kGroups[g])
      if (t == w) return static_cast<int>(g) + 1;
  return 0;
}

// Numbers written as words count as numbers.
bool NumberWord(std::string_view t) {
  for (std::string_view w : {"zero",     "one",      "two",      "three",   "four",    "five",
                             "six",      "seven",    "eight",    "nine",    "ten",     "eleven",
                             "twelve",   "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                             "eighteen", "nineteen", "twenty",   "thirty",  "forty",   "fifty",
                             "sixty",    "seventy",  "eighty",   "ninety",  "hundred", "thousand",
                             "million",  "billion",  "half",     "quarter", "noon",    "midnight"})
    if (t == w) return true;
  return false;
}

// Countries and languages: slot fillers the sentence vector cannot tell
// apart ("a visa for canada", "for japan"), like the cities of
// builtin::FindCuratedCity. A short hand list: GeoNames, which persona ships,
// has cities but no country or language names.
bool Entity(std::string_view t) {
  static const std::unordered_set<std::string_view> kNames = {
      // languages
      "english", "french", "spanish", "german", "italian", "portuguese", "russian", "chinese",
      "mandarin", "cantonese", "japanese", "korean", "arabic", "hindi", "bengali", "urdu",
      "turkish", "dutch", "swedish", "norwegian", "danish", "finnish", "polish", "greek", "hebrew",
      "thai", "vietnamese", "indonesian", "malay", "tagalog", "swahili", "persian", "farsi",
      "ukrainian", "czech", "hungarian", "romanian", "latin", "irish", "punjabi",
      // countries
      "afghanistan", "argentina", "australia", "austria", "bangladesh", "belgium", "bolivia",
      "brazil", "bulgaria", "cambodia", "canada", "chile", "china", "colombia", "croatia", "cuba",
      "denmark", "ecuador", "egypt", "england", "ethiopia", "finland", "france", "germany", "ghana",
      "greece", "guatemala", "iceland", "india", "indonesia", "iran", "iraq", "ireland", "israel",
      "italy", "jamaica", "japan", "jordan", "kenya", "korea", "laos", "lebanon", "malaysia",
      "mexico", "mongolia", "morocco", "nepal", "netherlands", "holland", "nigeria", "norway",
      "pakistan", "panama", "peru", "philippines", "poland", "portugal", "qatar", "romania",
      "russia", "scotland", "singapore", "spain", "sweden", "switzerland", "syria", "taiwan",
      "thailand", "turkey", "uganda", "ukraine", "uk", "usa", "america", "uruguay", "venezuela",
      "vietnam", "wales", "zimbabwe", "한국", "일본", "중국", "미국", "영국", "프랑스", "독일",
      "영어", "일본어", "중국어", "한국어", "프랑스어", "독일어", "스페인어"};
  return kNames.contains(t);
}

bool HasDigit(std::string_view t) {
  return std::any_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool Punctuation(std::string_view t) {
  return t.size() == 1 && std::string_view(".,!?;:()\"").find(t[0]) != std::string_view::npos;
}

}  // namespace

bool SameMeaning(const MeaningMarkers& a, const MeaningMarkers& b) {
  if (a.intent != b.intent || a.intent == "oos" || a.intent.empty()) return false;
  if (a.numbers != b.numbers || a.negated != b.negated || a.places != b.places) return false;
  // A polar word swapped for another of its group.
  for (const auto& [word, group] : a.polarity) {
    if (b.polarity.count(word)) continue;
    for (const auto& [other, g] : b.polarity)
      if (g == group && !a.polarity.count(other)) return false;
  }
  auto has_other = [](const std::set<std::string>& x, const std::set<std::string>& y) {
    return std::any_of(x.begin(), x.end(), [&y](const std::string& w) { return !y.count(w); });
  };
  if (has_other(a.rare, b.rare) && has_other(b.rare, a.rare)) return false;
  // The same words in another order ("usd to eur", "eur to usd") may ask the
  // opposite; the exact cache serves the same words in the same order.
  if (a.tokens != b.tokens) {
    std::vector<std::string> x = a.tokens, y = b.tokens;
    std::sort(x.begin(), x.end());
    std::sort(y.begin(), y.end());
    if (x == y) return false;
  }
  return true;
}

struct SemanticCache::Partition {
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> index;
  size_t capacity = 0;
  size_t deleted = 0;
  // By hnswlib label: labels grow, so the first is the oldest.
  std::map<size_t, List::iterator> entries;
};

SemanticCache::SemanticCache(const IntentGate* gate, SemanticCacheOptions options)
    : gate_(gate),
      options_(options),
      space_(std::make_unique<hnswlib::InnerProductSpace>(gate->dimension())) {}

SemanticCache::~SemanticCache() = default;

int64_t SemanticCache::Now() const {
  if (options_.now_ms) return options_.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

MeaningMarkers SemanticCache::Mark(std::string_view text) const {
  return Mark(text, gate_->Top(text));
}

MeaningMarkers SemanticCache::Mark(std::string_view text, const Intent& top) const {
  MeaningMarkers m;
  const std::string norm = IntentGate::Normalise(text.substr(0, 2000));
  for (absl::string_view piece : absl::StrSplit(norm, ' ', absl::SkipEmpty())) {
    const std::string_view t(piece.data(), piece.size());
    if (Punctuation(t)) continue;
    std::string tok(t);
    m.tokens.push_back(tok);
    if (HasDigit(t) || NumberWord(t)) {
      m.numbers.insert(tok);
      continue;
    }
    if (Negation(t)) m.negated = true;
    if (const int g = PolarGroup(t)) {
      m.polarity.emplace(tok, g);
      continue;
    }
    if (builtin::FindCuratedCity(t) != nullptr || Entity(t)) {
      m.places.insert(tok);
    } else if (gate_->Count(tok) < options_.rare_count) {
      m.rare.insert(tok);
    }
  }
  m.intent = top.confidence >= options_.min_intent_confidence ? top.name : "oos";
  return m;
}

SemanticCache::Query SemanticCache::Prepare(std::string partition, std::string user_id,
                                            std::string_view text) const {
  Query q;
  q.partition = std::move(partition);
  q.user_id = std::move(user_id);
  q.vec = gate_->Embed(text);
  q.top = gate_->Top(text);
  q.markers = Mark(text, q.top);
  return q;
}

SemanticCache::Query SemanticCache::Prepare(const AiRequest& req) const {
  std::string partition = ResponseCache::Partition(req);
  if (partition.empty()) return Query{};
  return Prepare(std::move(partition), req.user_id, req.text);
}

std::optional<SemanticCache::Hit> SemanticCache::Get(const Query& q) {
  if (q.partition.empty()) return std::nullopt;
  std::lock_guard<std::mutex> l(mu_);
  auto pit = partitions_.find(q.partition);
  if (pit == partitions_.end()) return std::nullopt;
  Partition& p = *pit->second;
  const size_t live = p.entries.size();
  if (live == 0) return std::nullopt;
  std::priority_queue<std::pair<float, size_t>> found;
  try {
    found = p.index->searchKnn(q.vec.data(), std::min(kCandidates, live));
  } catch (const std::exception& e) {
    LogWarn("semantic cache: a lookup failed", {{"error", e.what()}});
    return std::nullopt;
  }
  // searchKnn gives the farthest first.
  std::vector<std::pair<float, size_t>> near;
  while (!found.empty()) {
    near.push_back(found.top());
    found.pop();
  }
  const int64_t now = Now();
  std::vector<List::iterator> expired;
  std::optional<Hit> hit;
  for (auto it = near.rbegin(); it != near.rend() && !hit; ++it) {
    const double similarity = 1.0 - it->first;  // InnerProductSpace: 1 - dot
    if (similarity < options_.threshold) break;
    auto e = p.entries.find(it->second);
    if (e == p.entries.end()) continue;
    List::iterator entry = e->second;
    if (entry->user_id != q.user_id) continue;  // the partition names the user; belt and braces
    if (entry->expires_ms <= now) {
      expired.push_back(entry);  // removed below: it would keep taking a candidate's place
      continue;
    }
    if (!SameMeaning(q.markers, entry->markers)) continue;
    lru_.splice(lru_.begin(), lru_, entry);
    hit = Hit{entry->reply, similarity};
  }
  for (List::iterator e : expired) Remove(e);  // may drop the partition: `p` is not used after
  return hit;
}

void SemanticCache::Put(const Query& q, const AiReply& reply) {
  if (q.partition.empty() || q.user_id.empty()) return;
  // A message with no known word has no direction to compare.
  if (std::all_of(q.vec.begin(), q.vec.end(), [](float x) { return x == 0; })) return;
  std::lock_guard<std::mutex> l(mu_);
  auto& slot = partitions_[q.partition];
  if (!slot) slot = std::make_unique<Partition>();
  Partition& p = *slot;
  // A full partition drops its oldest entry.
  if (p.entries.size() >= options_.max_per_partition) Remove(p.entries.begin()->second);
  while (lru_.size() >= options_.max_entries) Remove(std::prev(lru_.end()));
  // Remove() may have dropped the partition.
  auto& again = partitions_[q.partition];
  if (!again) again = std::make_unique<Partition>();
  Partition& part = *again;
  try {  // hnswlib throws when it cannot allocate: then this answer is not kept
    if (!part.index || part.entries.size() + part.deleted >= part.capacity) {
      if (part.index && part.deleted > part.entries.size()) {
        Rebuild(part);
      }
      if (!part.index || part.entries.size() + part.deleted >= part.capacity) {
        const size_t cap = std::max<size_t>(8, part.capacity * 2);
        if (!part.index) {
          part.index = std::make_unique<hnswlib::HierarchicalNSW<float>>(space_.get(), cap, kM,
                                                                         kEfConstruction);
          part.index->setEf(kEf);
        } else {
          part.index->resizeIndex(cap);
        }
        part.capacity = cap;
      }
    }
  } catch (const std::exception& e) {
    LogWarn("semantic cache: an index could not grow", {{"error", e.what()}});
    if (part.entries.empty()) partitions_.erase(q.partition);
    return;
  }
  const size_t label = next_label_++;
  // hnswlib throws on failure (out of memory): then the entry is not kept,
  // and nothing refers to it.
  try {
    part.index->addPoint(q.vec.data(), label);
  } catch (const std::exception& e) {
    LogWarn("semantic cache: an answer could not be indexed", {{"error", e.what()}});
    return;
  }
  lru_.push_front(
      Entry{q.partition, q.user_id, label, q.vec, q.markers, reply, Now() + options_.ttl_s * 1000});
  part.entries.emplace(label, lru_.begin());
  by_user_[q.user_id].insert(q.partition);
}

void SemanticCache::Rebuild(Partition& p) {
  auto index = std::make_unique<hnswlib::HierarchicalNSW<float>>(
      space_.get(), std::max<size_t>(8, p.entries.size() * 2), kM, kEfConstruction);
  index->setEf(kEf);
  for (const auto& [label, it] : p.entries) index->addPoint(it->vec.data(), label);
  p.capacity = std::max<size_t>(8, p.entries.size() * 2);
  p.deleted = 0;
  p.index = std::move(index);
}

void SemanticCache::Remove(List::iterator it) {
  auto pit = partitions_.find(it->partition);
  if (pit != partitions_.end()) {
    Partition& p = *pit->second;
    p.entries.erase(it->label);
    if (p.entries.empty()) {
      partitions_.erase(pit);
      auto u = by_user_.find(it->user_id);
      if (u != by_user_.end()) {
        u->second.erase(it->partition);
        if (u->second.empty()) by_user_.erase(u);
      }
    } else {
      try {
        p.index->markDelete(it->label);
        ++p.deleted;
      } catch (const std::exception&) {
        // Not in the index: nothing to mark.
      }
    }
  }
  lru_.erase(it);
}

void SemanticCache::EraseUser(const std::string& user_id) {
  std::lock_guard<std::mutex> l(mu_);
  auto u = by_user_.find(user_id);
  if (u == by_user_.end()) return;
  const std::set<std::string> parts = u->second;
  by_user_.erase(u);
  for (const auto& key : parts) {
    auto pit = partitions_.find(key);
    if (pit == partitions_.end()) continue;
    for (auto& [label, it] : pit->second->entries) lru_.erase(it);
    partitions_.erase(pit);
  }
}

size_t SemanticCache::size() const {
  std::lock_guard<std::mutex> l(mu_);
  return lru_.size();
}

}  // namespace persona::ai
