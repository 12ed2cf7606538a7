#include "ai/cache/response_cache.h"

#include <chrono>

#include "ai/cache/semantic_cache.h"
#include "core/json.h"

namespace persona::ai {

ResponseCache::ResponseCache(ResponseCacheOptions options) : options_(options) {}

int64_t ResponseCache::Now() const {
  if (options_.now_ms) return options_.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string ResponseCache::NormaliseText(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    if (ch == '\t' || ch == '\n' || ch == '\r') ch = ' ';
    if (ch == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += ch;
  }
  while (!out.empty() && std::string_view(" .!?,;").find(out.back()) != std::string_view::npos)
    out.pop_back();
  return out;
}

std::string ResponseCache::Key(const AiRequest& req) {
  std::string key = Partition(req);
  if (key.empty()) return key;
  key += '\x1e';
  key += NormaliseText(req.text);
  return key;
}

std::string ResponseCache::Partition(const AiRequest& req) {
  if (req.user_id.empty() || req.schema == nullptr) return "";
  // The profile as the model saw it, values in schema order: a change to
  // any field makes another key.
  std::string profile;
  for (const auto& f : req.schema->fields()) {
    auto it = req.profile.find(f.name);
    if (it == req.profile.end()) continue;
    profile += f.name;
    profile += '=';
    profile += json::serialize(it->value());
    profile += '\x1f';
  }
  std::string key = req.user_id;
  key += '\x1e';
  key += req.schema->name();
  key += '\x1e';
  key += std::to_string(std::hash<std::string>{}(profile));
  return key;
}

void ResponseCache::Remove(List::iterator it) {
  by_key_.erase(it->key);
  auto [b, e] = by_user_.equal_range(it->user_id);
  for (auto u = b; u != e; ++u) {
    if (u->second == it) {
      by_user_.erase(u);
      break;
    }
  }
  lru_.erase(it);
}

std::optional<AiReply> ResponseCache::Get(const std::string& key, const std::string& user_id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return std::nullopt;
  // The key begins with the user, so this holds by construction; checked
  // again because a cross-user hit must never happen.
  if (it->second->user_id != user_id || it->second->expires_ms <= Now()) {
    Remove(it->second);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->reply;
}

void ResponseCache::Put(const std::string& key, const std::string& user_id, const AiReply& reply) {
  if (key.empty() || options_.max_entries == 0) return;
  std::lock_guard<std::mutex> l(mu_);
  if (auto it = by_key_.find(key); it != by_key_.end()) Remove(it->second);
  lru_.push_front(Entry{key, user_id, reply, Now() + options_.ttl_s * 1000});
  by_key_.emplace(key, lru_.begin());
  by_user_.emplace(user_id, lru_.begin());
  while (lru_.size() > options_.max_entries) Remove(std::prev(lru_.end()));
}

void ResponseCache::EraseUser(const std::string& user_id) {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<List::iterator> gone;
  auto [b, e] = by_user_.equal_range(user_id);
  for (auto u = b; u != e; ++u) gone.push_back(u->second);
  for (auto it : gone) Remove(it);
}

size_t ResponseCache::size() const {
  std::lock_guard<std::mutex> l(mu_);
  return lru_.size();
}

CachingProvider::CachingProvider(ResponseCache* cache, SemanticCache* semantic, Provider* next)
    : cache_(cache), semantic_(semantic), next_(next) {
  auto& reg = metrics::Default();
  hits_ = reg.GetCounter("persona_response_cache_total", "Steps looked up in the response cache",
                         "outcome=\"hit\"");
  semantic_hits_ =
      reg.GetCounter("persona_response_cache_total", "Steps looked up in the response cache",
                     "outcome=\"semantic_hit\"");
  misses_ = reg.GetCounter("persona_response_cache_total", "Steps looked up in the response cache",
                           "outcome=\"miss\"");
}

namespace {
void AsHit(AiReply* hit, const char* match, double similarity) {
  hit->source = "cache";
  hit->cache_match = match;
  hit->cache_similarity = similarity;
  hit->tokens_in = hit->tokens_out = 0;
  hit->cost_usd = 0;
  hit->latency_ms = 0;
  hit->fallbacks.clear();
}
}  // namespace

std::shared_ptr<Call> CachingProvider::Respond(AiRequest req, Callback done) {
  if (!req.use_cache) return next_->Respond(std::move(req), std::move(done));  // a flag
  const std::string key = ResponseCache::Key(req);
  std::optional<SemanticCache::Query> query;
  // High priority goes straight to the primary tier (its answer is still kept).
  if (!key.empty() && req.priority != Priority::kHigh) {
    if (auto hit = cache_->Get(key, req.user_id)) {
      hits_->Inc();
      AsHit(&*hit, "exact", 1.0);
      done(std::move(*hit));
      return nullptr;
    }
    if (semantic_) {
      query = semantic_->Prepare(req);
      if (auto hit = semantic_->Get(*query)) {
        semantic_hits_->Inc();
        AsHit(&hit->reply, "semantic", hit->similarity);
        done(std::move(hit->reply));
        return nullptr;
      }
    }
    misses_->Inc();
  }
  if (semantic_ && !query && !key.empty()) query = semantic_->Prepare(req);
  if (query && !query->partition.empty()) {  // the gate below need not classify it again
    req.top_intent = query->top.name;
    req.top_intent_confidence = query->top.confidence;
  }
  const std::string user = req.user_id;
  return next_->Respond(std::move(req), [this, key, user, query = std::move(query),
                                         done = std::move(done)](StatusOr<AiReply> r) {
    // Only a model's answer, and only one that changed nothing.
    if (r.ok() && !key.empty() && r->source == "llm" && r->changes.empty()) {
      cache_->Put(key, user, *r);
      if (query) semantic_->Put(*query, *r);
    }
    done(std::move(r));
  });
}

}  // namespace persona::ai
