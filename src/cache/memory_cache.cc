#include "cache/memory_cache.h"

#include <algorithm>
#include <chrono>
#include <utility>

namespace persona::cache {
namespace {

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

MemoryCache::MemoryCache(const CacheOptions& options, Clock now_ms, size_t shards)
    : ttl_ms_(static_cast<int64_t>(options.ttl_s) * 1000),
      now_ms_(now_ms ? std::move(now_ms) : Clock(SteadyNowMs)) {
  // Never more shards than entries, so that every shard holds at least one
  // and the per-shard capacities add up to exactly max_entries.
  const size_t n = std::max<size_t>(1, std::min(shards, options.max_entries));
  shards_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    auto shard = std::make_unique<Shard>();
    shard->capacity = options.max_entries / n + (i < options.max_entries % n ? 1 : 0);
    shards_.push_back(std::move(shard));
  }
  entries_ = metrics::Default().GetGauge("persona_cache_entries", "Entries in the profile cache",
                                         "backend=\"memory\"");
}

MemoryCache::~MemoryCache() { entries_->Add(-static_cast<int64_t>(size())); }

MemoryCache::Shard& MemoryCache::ShardFor(std::string_view session_id) {
  // Mix the hash before reducing it: each shard's unordered_map hashes the
  // same key with std::hash again, and should not see only one residue.
  const uint64_t h = std::hash<std::string_view>{}(session_id)*0x9E3779B97F4A7C15ull;
  return *shards_[(h >> 32) % shards_.size()];
}

void MemoryCache::Erase(Shard& shard, std::list<Entry>::iterator it) {
  shard.index.erase(std::string_view(it->key));
  shard.lru.erase(it);
  entries_->Add(-1);
}

std::optional<CachedProfile> MemoryCache::Get(std::string_view session_id) {
  Shard& shard = ShardFor(session_id);
  const int64_t now = now_ms_();
  std::lock_guard<std::mutex> l(shard.mu);
  auto found = shard.index.find(session_id);
  if (found == shard.index.end()) return std::nullopt;
  auto it = found->second;
  if (it->expires_ms <= now) {
    Erase(shard, it);
    return std::nullopt;
  }
  shard.lru.splice(shard.lru.begin(), shard.lru, it);
  return it->value;
}

void MemoryCache::Put(std::string_view session_id, CachedProfile value) {
  Shard& shard = ShardFor(session_id);
  const int64_t now = now_ms_();
  std::lock_guard<std::mutex> l(shard.mu);
  if (shard.capacity == 0) return;
  auto found = shard.index.find(session_id);
  if (found != shard.index.end()) {
    auto it = found->second;
    const bool live = it->expires_ms > now;
    if (live && it->value.version > value.version) return;
    it->value = std::move(value);
    it->expires_ms = now + ttl_ms_;
    shard.lru.splice(shard.lru.begin(), shard.lru, it);
    return;
  }
  while (shard.lru.size() >= shard.capacity) Erase(shard, std::prev(shard.lru.end()));
  shard.lru.push_front(Entry{std::string(session_id), std::move(value), now + ttl_ms_});
  shard.index.emplace(std::string_view(shard.lru.front().key), shard.lru.begin());
  entries_->Add(1);
}

void MemoryCache::Invalidate(std::string_view session_id) {
  Shard& shard = ShardFor(session_id);
  std::lock_guard<std::mutex> l(shard.mu);
  auto found = shard.index.find(session_id);
  if (found != shard.index.end()) Erase(shard, found->second);
}

size_t MemoryCache::size() const {
  size_t n = 0;
  for (const auto& shard : shards_) {
    std::lock_guard<std::mutex> l(shard->mu);
    n += shard->lru.size();
  }
  return n;
}

}  // namespace persona::cache
