// ProfileCache: serialized profile bodies keyed by session id.
//
// The cache is only an accelerator: every entry carries the session version
// it was built from, and the engine uses an entry only when that version
// equals the session's authoritative version (its in-memory state, or the
// store's version record). A stale, lost or unreachable cache therefore
// costs a miss, never a wrong answer. Backends:
//
//   memory  an in-process sharded LRU with a TTL (the default)
//   redis   a Redis server (hiredis); key "profile:{session_id}", SET … EX ttl
//
// Get may block for at most the backend's timeout; errors are counted and
// reported as misses. Put and Invalidate never block the caller on the
// network. All methods are thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace persona::cache {

struct CachedProfile {
  std::string body;      // {"profile", "meta", "version"} as JSON text
  uint64_t version = 0;  // the session version the body was built from
};

class ProfileCache {
 public:
  virtual ~ProfileCache() = default;

  // The entry, if present and younger than the TTL; nullopt on a miss or an
  // error.
  virtual std::optional<CachedProfile> Get(std::string_view session_id) = 0;
  // Stores (or replaces) the entry. An entry never replaces one with a higher
  // version that is already in the cache.
  virtual void Put(std::string_view session_id, CachedProfile value) = 0;
  // Removes the entry (a write changed the session, or it was erased).
  virtual void Invalidate(std::string_view session_id) = 0;

  // "memory" or "redis".
  virtual std::string_view backend() const = 0;
  // False while the backend is unreachable (reads go to the store).
  virtual bool healthy() const { return true; }
};

struct CacheOptions {
  std::string backend = "memory";  // memory | redis
  std::string url;                 // redis://[:password@]host[:port][/db]
  int ttl_s = 3600;
  size_t max_entries = 100000;        // memory: bound on entries across all shards
  int timeout_ms = 50;                // redis: connect and command timeout
  int retry_ms = 1000;                // redis: after a failure, how long reads skip Redis
  size_t max_pending_writes = 65536;  // redis: bound on queued Put/Invalidate
};

// InvalidArgument for an unknown backend or a malformed URL. A Redis server
// that is down at start is not an error: the cache starts unhealthy and
// reconnects by itself.
StatusOr<std::unique_ptr<ProfileCache>> MakeProfileCache(const CacheOptions& options);

}  // namespace persona::cache
