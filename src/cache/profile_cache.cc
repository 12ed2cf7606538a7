#include "cache/profile_cache.h"

#include "cache/memory_cache.h"
#include "cache/redis_cache.h"

namespace persona::cache {

StatusOr<std::unique_ptr<ProfileCache>> MakeProfileCache(const CacheOptions& options) {
  if (options.ttl_s <= 0) {
    return absl::InvalidArgumentError("cache ttl_s must be positive, got " +
                                      std::to_string(options.ttl_s));
  }
  if (options.backend == "memory") return std::make_unique<MemoryCache>(options);
  if (options.backend == "redis") {
    // A zero timeout would mean "block forever" to hiredis, and a zero retry
    // period would make the writer reconnect in a busy loop.
    if (options.timeout_ms <= 0) {
      return absl::InvalidArgumentError("cache timeout_ms must be positive, got " +
                                        std::to_string(options.timeout_ms));
    }
    if (options.retry_ms <= 0) {
      return absl::InvalidArgumentError("cache retry_ms must be positive, got " +
                                        std::to_string(options.retry_ms));
    }
    auto cache = RedisCache::Create(options);
    if (!cache.ok()) return cache.status();
    return std::unique_ptr<ProfileCache>(*std::move(cache));
  }
  return absl::InvalidArgumentError("unknown cache backend \"" + options.backend +
                                    "\" (expected memory or redis)");
}

}  // namespace persona::cache
