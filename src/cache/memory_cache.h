// MemoryCache: the in-process ProfileCache, a sharded LRU with a TTL.
//
// Entries are spread over up to kDefaultShards shards by a hash of the
// session id; each shard is a mutex, an LRU list (front = most recently used)
// and an index into it. The bound on entries is split across the shards so
// the total never exceeds max_entries; when a shard is full, its least
// recently used entry is evicted (the LRU order is per shard, so eviction is
// approximately, not exactly, global LRU). Expiry is checked on Get (and on
// Put of the same key); expired entries that are never read again are
// eventually evicted by the bound.
//
// Put does not replace a live entry with a higher version; it does replace an
// equal or lower one, and any expired one. All methods are thread-safe; a
// call holds one shard's mutex and does no I/O.
//
// Metric: persona_cache_entries{backend="memory"} (a gauge summed over all
// MemoryCache instances of the process).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "cache/profile_cache.h"
#include "metrics/metrics.h"

namespace persona::cache {

class MemoryCache final : public ProfileCache {
 public:
  static constexpr size_t kDefaultShards = 16;
  // Milliseconds on a monotonic clock; injectable so tests need not sleep.
  using Clock = std::function<int64_t()>;

  // Uses options.max_entries and options.ttl_s. `now_ms` defaults to
  // std::chrono::steady_clock. `shards` is capped by max_entries (at least 1).
  explicit MemoryCache(const CacheOptions& options, Clock now_ms = nullptr,
                       size_t shards = kDefaultShards);
  ~MemoryCache() override;

  std::optional<CachedProfile> Get(std::string_view session_id) override;
  void Put(std::string_view session_id, CachedProfile value) override;
  void Invalidate(std::string_view session_id) override;
  std::string_view backend() const override { return "memory"; }

  // Entries held now, expired ones not yet removed included.
  size_t size() const;
  size_t shard_count() const { return shards_.size(); }

 private:
  struct Entry {
    std::string key;
    CachedProfile value;
    int64_t expires_ms = 0;
  };
  struct Shard {
    mutable std::mutex mu;
    size_t capacity = 0;
    std::list<Entry> lru ABSL_GUARDED_BY(mu);
    // Keys view Entry::key inside `lru`, whose nodes never move in memory.
    std::unordered_map<std::string_view, std::list<Entry>::iterator> index ABSL_GUARDED_BY(mu);
  };

  Shard& ShardFor(std::string_view session_id);
  // Removes `it` from `shard` (whose mutex is held) and updates the gauge.
  void Erase(Shard& shard, std::list<Entry>::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  const int64_t ttl_ms_;
  const Clock now_ms_;
  std::vector<std::unique_ptr<Shard>> shards_;
  metrics::Gauge* entries_;
};

}  // namespace persona::cache
