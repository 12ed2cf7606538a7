// RedisCache: the ProfileCache on a Redis server, through hiredis.
//
// Key "profile:{session_id}"; value: the version as 8 bytes big-endian, then
// the body. Put runs a Lua script (EVALSHA, falling back to EVAL) that
// compares the first 8 bytes of the stored value with the new version and
// SETs key value EX ttl_s only if the stored version is not higher, so the
// check and the write are one atomic round trip. Invalidate is DEL.
//
// Reads. Get is one blocking GET on a connection taken from a small
// mutex-protected pool (a new connection is opened when the pool is empty, so
// concurrent callers never share one; at most 16 idle ones are kept). A new
// connection sends AUTH and SELECT as the URL says, or else PING, so a server
// that refuses us fails at connect. Connect and command timeouts are
// options.timeout_ms. Any error (connect, timeout, I/O, an unexpected reply)
// frees that connection, counts an error and marks the cache down for
// options.retry_ms: until then Get returns nullopt at once, without touching
// the network. The first success after that marks it up again. One exception:
// a pooled connection that the server had closed (EOF or reset, as after its
// idle `timeout`) is retried once on a new connection before giving up.
//
// Writes. Put and Invalidate only queue the operation for one writer thread
// and return. The queue holds at most max_pending_writes keys; an operation
// on a key already queued replaces it (a Put keeps the higher version), and
// when the queue is full, or the cache is down, the write is dropped and
// counted: the cache may then hold a stale entry, which readers reject by
// its version. The writer sends what is queued as pipelined batches. While
// the cache is down it drops what is queued and tries to reconnect every
// retry_ms, so health comes back without any read traffic.
//
// Transitions are logged once each ("redis cache unavailable; profile reads
// go to the store" and "redis cache reachable again"), with the URL's
// password replaced by "***". Metrics (labels backend="redis"):
// persona_cache_errors_total, persona_cache_dropped_writes_total and the
// gauge persona_cache_up.
//
// SIGPIPE: hiredis writes with write(2), so a write to a connection the server
// has closed raises SIGPIPE. The writer thread blocks it; Get blocks it around
// its network calls and discards one it caused. The process need not ignore
// it (persona's serve does anyway).
//
// All methods are thread-safe. The destructor flushes what is queued if the
// server is reachable (bounded by the timeouts), stops the writer and closes
// every connection; no call may be in progress then.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "cache/profile_cache.h"
#include "core/status.h"
#include "metrics/metrics.h"

struct redisContext;  // hiredis
struct redisReply;

namespace persona::cache {

// A parsed redis://[[user]:password@]host[:port][/db] URL.
struct RedisEndpoint {
  std::string host;  // a name or an address (IPv6 without brackets)
  int port = 6379;
  std::string user;      // Redis 6 ACL user; empty: AUTH with the password alone
  std::string password;  // empty: no AUTH
  int db = 0;            // SELECTed after connecting when not 0
  std::string redacted;  // the URL with any password replaced by "***", for messages
};

// InvalidArgument naming the (redacted) URL if it is not a redis:// URL of the
// form above: another scheme, no host, a port outside 1..65535, a path that is
// not a database number, a query or fragment, or a user without a password.
StatusOr<RedisEndpoint> ParseRedisUrl(std::string_view url);

// redisCommandArgv over string_views (at most 8 arguments). nullptr on an I/O
// error (see c->errstr); the caller frees the reply.
redisReply* RedisCommand(redisContext* c, std::initializer_list<std::string_view> args);

class RedisCache final : public ProfileCache {
 public:
  // InvalidArgument for a malformed URL. An unreachable server is not an
  // error: the cache starts down and reconnects by itself.
  static StatusOr<std::unique_ptr<RedisCache>> Create(const CacheOptions& options);
  ~RedisCache() override;

  std::optional<CachedProfile> Get(std::string_view session_id) override;
  void Put(std::string_view session_id, CachedProfile value) override;
  void Invalidate(std::string_view session_id) override;
  std::string_view backend() const override { return "redis"; }
  bool healthy() const override { return state_.load(std::memory_order_relaxed) == kUp; }

 private:
  // The latest queued operation on one key.
  struct Op {
    bool put = false;  // false: DEL
    CachedProfile value;
  };
  enum State { kUnknown, kUp, kDown };

  RedisCache(const CacheOptions& options, RedisEndpoint endpoint);

  // Opens a connection, then AUTH and SELECT as the URL says; nullptr and
  // *error on failure.
  redisContext* Connect(std::string* error);
  // A pooled connection if *reused is true and the pool has one, else a new
  // one; on return *reused says which. nullptr and *error on failure.
  redisContext* TakeConnection(bool* reused, std::string* error);
  void ReturnConnection(redisContext* c);
  // One GET on `c`; false (and *error) on an I/O error or unexpected reply,
  // after which `c` must not be used again.
  bool GetOn(redisContext* c, const std::string& key, std::optional<CachedProfile>* out,
             std::string* error, bool* retryable);

  bool IsDown() const;
  // Counts an error, closes the pooled connections and starts a down period;
  // logs when the cache was not down already.
  void MarkDown(const std::string& error);
  // After a success: marks the cache up (logging if it was down), unless a
  // down period is still running.
  void MarkUp();
  void CountDropped(size_t n);

  void Enqueue(std::string_view session_id, Op op);
  void WriterLoop();
  // Sends `ops[*next...]` as pipelined batches on `c`, advancing *next past
  // every operation whose reply was read; false (and *error) on an I/O error.
  bool SendOps(redisContext* c, const std::vector<std::pair<std::string, Op>>& ops, size_t* next,
               std::string* script_sha, std::string* error);

  const CacheOptions options_;
  const RedisEndpoint endpoint_;

  std::atomic<int> state_{kUnknown};
  std::atomic<int64_t> down_until_ms_{0};  // steady clock
  std::atomic<uint64_t> down_epoch_{0};    // MarkDown calls so far

  std::mutex pool_mu_;
  std::vector<redisContext*> pool_ ABSL_GUARDED_BY(pool_mu_);

  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, Op> pending_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;

  std::atomic<bool> logged_reply_error_{false};
  metrics::Counter* errors_;
  metrics::Counter* dropped_;
  metrics::Gauge* up_;
};

}  // namespace persona::cache
