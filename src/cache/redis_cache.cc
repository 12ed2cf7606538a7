#include "cache/redis_cache.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <boost/url.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <initializer_list>
#include <iterator>

#include "core/logging.h"

namespace persona::cache {
namespace {

constexpr size_t kMaxIdleConnections = 16;  // pooled read connections kept open
constexpr size_t kMaxPipeline = 512;        // writes sent before reading their replies

// KEYS[1]: the key. ARGV[1]: the value (8-byte big-endian version, then the
// body). ARGV[2]: the TTL in seconds. Writes unless the stored version is
// higher. The versions are compared byte by byte because Lua compares strings
// with strcoll (locale-dependent) and its numbers are doubles (53 bits).
constexpr char kPutScript[] = R"lua(
local cur = redis.call('GETRANGE', KEYS[1], 0, 7)
if #cur == 8 then
  for i = 1, 8 do
    local a, b = string.byte(cur, i), string.byte(ARGV[1], i)
    if a > b then return 0 end
    if a < b then break end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
)lua";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

timeval ToTimeval(int ms) {
  timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = static_cast<suseconds_t>(ms % 1000) * 1000;
  return tv;
}

std::string Key(std::string_view session_id) {
  std::string key = "profile:";
  key.append(session_id);
  return key;
}

std::string EncodeValue(const CachedProfile& value) {
  std::string out;
  out.reserve(8 + value.body.size());
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((value.version >> (i * 8)) & 0xff));
  out.append(value.body);
  return out;
}

uint64_t DecodeVersion(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::string DescribeReply(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_ERROR:
    case REDIS_REPLY_STATUS:
      return std::string(r->str, r->len);
    case REDIS_REPLY_STRING:
      return "a string of " + std::to_string(r->len) + " bytes";
    case REDIS_REPLY_INTEGER:
      return "the integer " + std::to_string(r->integer);
    case REDIS_REPLY_ARRAY:
      return "an array";
    case REDIS_REPLY_NIL:
      return "nil";
  }
  return "a reply of type " + std::to_string(r->type);
}

// What went wrong on `c`, for logs. `saved_errno` is errno right after the
// failed call: hiredis reports a socket timeout as EAGAIN's text.
std::string IoError(const redisContext* c, int saved_errno, std::string_view what, int timeout_ms) {
  std::string msg(what);
  msg += ": ";
  if (c->err == REDIS_ERR_IO && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)) {
    msg += "timed out after " + std::to_string(timeout_ms) + " ms";
  } else {
    msg += c->errstr;
  }
  return msg;
}

redisReply* Command(redisContext* c, std::initializer_list<std::string_view> args) {
  return RedisCommand(c, args);
}

bool AppendCommand(redisContext* c, std::initializer_list<std::string_view> args) {
  const char* argv[8];
  size_t lens[8];
  int n = 0;
  for (std::string_view a : args) {
    argv[n] = a.data();
    lens[n] = a.size();
    ++n;
  }
  return redisAppendCommandArgv(c, n, argv, lens) == REDIS_OK;
}

// Blocks SIGPIPE on this thread for the guard's life and discards one raised
// meanwhile, so that a write to a connection the server closed fails with
// EPIPE instead of killing a process that does not ignore SIGPIPE.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~ScopedSigpipeBlock() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        const timespec zero{0, 0};
        while (sigtimedwait(&set, nullptr, &zero) == -1 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  sigset_t old_;
  bool was_pending_ = false;
};

// For messages about a URL that did not parse: hides everything before the
// last '@', which may be a password.
std::string CrudeRedact(std::string_view url) {
  const size_t at = url.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  const size_t scheme = url.find("://");
  const size_t from = scheme == std::string_view::npos || scheme > at ? 0 : scheme + 3;
  return std::string(url.substr(0, from)) + "***" + std::string(url.substr(at));
}

Status BadUrl(const std::string& shown, const std::string& why) {
  return absl::InvalidArgumentError("invalid redis URL \"" + shown + "\": " + why);
}

bool ParseInt(std::string_view s, int* out) {
  if (s.empty()) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

redisReply* RedisCommand(redisContext* c, std::initializer_list<std::string_view> args) {
  const char* argv[8];
  size_t lens[8];
  int n = 0;
  for (std::string_view a : args) {
    argv[n] = a.data();
    lens[n] = a.size();
    ++n;
  }
  return static_cast<redisReply*>(redisCommandArgv(c, n, argv, lens));
}

StatusOr<RedisEndpoint> ParseRedisUrl(std::string_view url) {
  if (url.empty()) return BadUrl("", "empty; expected redis://[:password@]host[:port][/db]");
  auto parsed = boost::urls::parse_uri(boost::core::string_view(url.data(), url.size()));
  if (!parsed) return BadUrl(CrudeRedact(url), "not a URL (" + parsed.error().message() + ")");
  const boost::urls::url_view u = *parsed;

  RedisEndpoint ep;
  {
    boost::urls::url shown(u);
    if (shown.has_password()) {
      shown.set_password("***");
    } else if (shown.has_userinfo()) {
      shown.set_user("***");
    }
    ep.redacted = std::string(shown.buffer().data(), shown.buffer().size());
  }
  std::string scheme(u.scheme().data(), u.scheme().size());
  for (char& ch : scheme) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (scheme != "redis") {
    return BadUrl(ep.redacted, "the scheme must be redis:// (TLS, rediss://, is not supported)");
  }
  if (!u.has_authority() || u.host_address().empty()) return BadUrl(ep.redacted, "no host");
  ep.host = u.host_address();
  if (u.has_port()) {
    const std::string_view port(u.port().data(), u.port().size());
    if (!ParseInt(port, &ep.port) || ep.port < 1 || ep.port > 65535)
      return BadUrl(ep.redacted, "the port must be a number from 1 to 65535");
  }
  if (u.has_userinfo()) {
    if (!u.has_password() || u.password().empty())
      return BadUrl(ep.redacted, "a user without a password; write redis://:password@host");
    ep.user = u.user();
    ep.password = u.password();
  }
  const std::string path = u.path();
  if (!path.empty() && path != "/") {
    if (path[0] != '/' || !ParseInt(std::string_view(path).substr(1), &ep.db) || ep.db < 0)
      return BadUrl(ep.redacted, "the path must be a database number, as in /0");
  }
  if (u.has_query() || u.has_fragment())
    return BadUrl(ep.redacted, "a query or fragment is not supported");
  return ep;
}

RedisCache::RedisCache(const CacheOptions& options, RedisEndpoint endpoint)
    : options_(options), endpoint_(std::move(endpoint)) {
  auto& reg = metrics::Default();
  const std::string labels = "backend=\"redis\"";
  errors_ = reg.GetCounter("persona_cache_errors_total",
                           "Profile cache operations that failed (each is a miss or a lost write)",
                           labels);
  dropped_ = reg.GetCounter("persona_cache_dropped_writes_total",
                            "Profile cache writes dropped: queue full or backend down", labels);
  up_ = reg.GetGauge("persona_cache_up", "1 while the profile cache backend is reachable", labels);
}

StatusOr<std::unique_ptr<RedisCache>> RedisCache::Create(const CacheOptions& options) {
  auto endpoint = ParseRedisUrl(options.url);
  if (!endpoint.ok()) return endpoint.status();
  std::unique_ptr<RedisCache> cache(new RedisCache(options, *std::move(endpoint)));
  {
    // One connection now, so that health is known (and logged) from the start.
    ScopedSigpipeBlock block;
    std::string error;
    redisContext* c = cache->Connect(&error);
    if (c != nullptr) {
      cache->ReturnConnection(c);
      cache->MarkUp();
    } else {
      cache->MarkDown(error);
    }
  }
  cache->writer_ = std::thread([c = cache.get()] { c->WriterLoop(); });
  return cache;
}

RedisCache::~RedisCache() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  std::lock_guard<std::mutex> l(pool_mu_);
  for (redisContext* c : pool_) redisFree(c);
  pool_.clear();
}

redisContext* RedisCache::Connect(std::string* error) {
  const timeval tv = ToTimeval(options_.timeout_ms);
  redisContext* c = redisConnectWithTimeout(endpoint_.host.c_str(), endpoint_.port, tv);
  if (c == nullptr) {
    *error = "cannot allocate a hiredis context";
    return nullptr;
  }
  if (c->err == 0) redisSetTimeout(c, tv);
  if (c->err != 0) {
    *error = "connect: " + std::string(c->errstr);
    redisFree(c);
    return nullptr;
  }
  auto expect_ok = [&](redisReply* r, std::string_view what) {
    if (r == nullptr) {
      *error = IoError(c, errno, what, options_.timeout_ms);
      return false;
    }
    const bool ok = r->type == REDIS_REPLY_STATUS;
    if (!ok) *error = std::string(what) + ": " + DescribeReply(r);
    freeReplyObject(r);
    return ok;
  };
  bool ok = true;
  if (!endpoint_.password.empty()) {
    ok = endpoint_.user.empty()
             ? expect_ok(Command(c, {"AUTH", endpoint_.password}), "AUTH")
             : expect_ok(Command(c, {"AUTH", endpoint_.user, endpoint_.password}), "AUTH");
  }
  if (ok && endpoint_.db != 0)
    ok = expect_ok(Command(c, {"SELECT", std::to_string(endpoint_.db)}), "SELECT");
  // Without AUTH or SELECT nothing has been asked yet: a server that wants a
  // password, or is not Redis at all, would only show up on the first GET.
  if (ok && endpoint_.password.empty() && endpoint_.db == 0)
    ok = expect_ok(Command(c, {"PING"}), "PING");
  if (!ok) {
    redisFree(c);
    return nullptr;
  }
  return c;
}

redisContext* RedisCache::TakeConnection(bool* reused, std::string* error) {
  if (*reused) {
    std::lock_guard<std::mutex> l(pool_mu_);
    if (!pool_.empty()) {
      redisContext* c = pool_.back();
      pool_.pop_back();
      return c;
    }
  }
  *reused = false;
  return Connect(error);
}

void RedisCache::ReturnConnection(redisContext* c) {
  if (!IsDown()) {
    std::lock_guard<std::mutex> l(pool_mu_);
    if (pool_.size() < kMaxIdleConnections) {
      pool_.push_back(c);
      return;
    }
  }
  redisFree(c);
}

bool RedisCache::GetOn(redisContext* c, const std::string& key, std::optional<CachedProfile>* out,
                       std::string* error, bool* retryable) {
  errno = 0;
  redisReply* r = Command(c, {"GET", key});
  const int saved_errno = errno;
  if (r == nullptr) {
    // The server closed the connection before this command (an idle timeout,
    // a restart): worth one more try on a new connection. A timeout is not.
    *retryable = c->err == REDIS_ERR_EOF ||
                 (c->err == REDIS_ERR_IO && (saved_errno == ECONNRESET || saved_errno == EPIPE));
    *error = IoError(c, saved_errno, "GET", options_.timeout_ms);
    return false;
  }
  bool ok = true;
  if (r->type == REDIS_REPLY_STRING && r->len >= 8) {
    *out = CachedProfile{std::string(r->str + 8, r->len - 8), DecodeVersion(r->str)};
  } else if (r->type == REDIS_REPLY_STRING) {
    // Not a value this cache wrote; the server itself is fine.
    errors_->Inc();
  } else if (r->type != REDIS_REPLY_NIL) {
    *error = "GET: unexpected reply: " + DescribeReply(r);
    *retryable = false;
    ok = false;
  }
  freeReplyObject(r);
  return ok;
}

std::optional<CachedProfile> RedisCache::Get(std::string_view session_id) {
  if (IsDown()) return std::nullopt;
  const std::string key = Key(session_id);
  ScopedSigpipeBlock block;
  std::string error;
  // First a pooled connection; after it failed as a connection the server had
  // closed, once more on a new one.
  for (bool reused : {true, false}) {
    redisContext* c = TakeConnection(&reused, &error);
    if (c == nullptr) break;
    std::optional<CachedProfile> out;
    bool retryable = false;
    if (GetOn(c, key, &out, &error, &retryable)) {
      ReturnConnection(c);
      MarkUp();
      return out;
    }
    redisFree(c);
    if (!reused || !retryable) break;
  }
  MarkDown(error);
  return std::nullopt;
}

void RedisCache::Put(std::string_view session_id, CachedProfile value) {
  Enqueue(session_id, Op{true, std::move(value)});
}

void RedisCache::Invalidate(std::string_view session_id) { Enqueue(session_id, Op{}); }

bool RedisCache::IsDown() const { return NowMs() < down_until_ms_.load(std::memory_order_relaxed); }

void RedisCache::MarkDown(const std::string& error) {
  errors_->Inc();
  down_epoch_.fetch_add(1);
  down_until_ms_.store(NowMs() + options_.retry_ms, std::memory_order_relaxed);
  std::vector<redisContext*> idle;
  {
    std::lock_guard<std::mutex> l(pool_mu_);
    idle.swap(pool_);
  }
  for (redisContext* c : idle) redisFree(c);
  up_->Set(0);
  if (state_.exchange(kDown) != kDown) {
    LogWarn("redis cache unavailable; profile reads go to the store",
            {{"error", error}, {"url", endpoint_.redacted}, {"retry_ms", options_.retry_ms}});
  }
}

void RedisCache::MarkUp() {
  if (state_.load(std::memory_order_relaxed) == kUp) return;
  // A reply that raced with another call's failure does not end the down
  // period that failure started.
  if (IsDown()) return;
  up_->Set(1);
  if (state_.exchange(kUp) == kDown)
    LogInfo("redis cache reachable again", {{"url", endpoint_.redacted}});
}

void RedisCache::CountDropped(size_t n) {
  if (n > 0) dropped_->Inc(n);
}

void RedisCache::Enqueue(std::string_view session_id, Op op) {
  if (IsDown()) {
    CountDropped(1);
    return;
  }
  bool dropped = false;
  bool wake = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    std::string key(session_id);
    auto it = pending_.find(key);
    if (it != pending_.end()) {
      // The latest operation on a key wins, except that of two Puts the
      // higher version does (Redis would refuse the lower one anyway).
      if (!(op.put && it->second.put && it->second.value.version > op.value.version))
        it->second = std::move(op);
    } else if (pending_.size() >= options_.max_pending_writes) {
      dropped = true;
    } else {
      wake = pending_.empty();
      pending_.emplace(std::move(key), std::move(op));
    }
  }
  if (dropped) CountDropped(1);
  if (wake) cv_.notify_one();
}

void RedisCache::WriterLoop() {
  // Blocked for this thread's whole life: writes to a closed connection then
  // fail with EPIPE, and the pending signal is harmless.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  redisContext* c = nullptr;
  uint64_t conn_epoch = 0;  // down_epoch_ when `c` was opened
  std::string script_sha;   // empty until SCRIPT LOAD succeeded: Puts use EVAL
  std::vector<std::pair<std::string, Op>> ops;
  const auto idle_wait = std::chrono::milliseconds(std::max(options_.retry_ms, 100));
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    if (!stopping_ && pending_.empty()) {
      const int64_t down_for = down_until_ms_.load(std::memory_order_relaxed) - NowMs();
      if (down_for > 0) {
        cv_.wait_for(l, std::chrono::milliseconds(down_for));
      } else if (c != nullptr) {
        // Wakes now and then even without work, to notice a down period
        // that a read started and to reconnect after it.
        cv_.wait_for(l, idle_wait);
      }
      // Not connected and not down: connect now, which also probes health.
    }
    if (stopping_ && (pending_.empty() || IsDown())) break;
    ops.assign(std::make_move_iterator(pending_.begin()), std::make_move_iterator(pending_.end()));
    pending_.clear();
    l.unlock();

    if (IsDown()) {
      if (c != nullptr) {
        redisFree(c);
        c = nullptr;
      }
      CountDropped(ops.size());
    } else {
      std::string error;
      bool fresh = false;
      if (c != nullptr && conn_epoch != down_epoch_.load()) {
        // A down period began (and maybe ended) since this connection was
        // opened: it is probably dead, and using it would prove nothing.
        redisFree(c);
        c = nullptr;
      }
      if (c == nullptr) {
        conn_epoch = down_epoch_.load();
        c = Connect(&error);
        fresh = c != nullptr;
        if (c != nullptr && script_sha.empty()) {
          redisReply* r = Command(c, {"SCRIPT", "LOAD", kPutScript});
          if (r != nullptr && r->type == REDIS_REPLY_STRING) script_sha.assign(r->str, r->len);
          if (r != nullptr) freeReplyObject(r);
          if (r == nullptr) {
            error = IoError(c, errno, "SCRIPT LOAD", options_.timeout_ms);
            redisFree(c);
            c = nullptr;
          }
        }
      }
      size_t next = 0;
      bool ok = c != nullptr;
      if (ok && !ops.empty()) {
        ok = SendOps(c, ops, &next, &script_sha, &error);
        if (!ok && !fresh && next == 0) {
          // The connection had been idle; the server may have closed it (its
          // `timeout`, a restart). Resend everything once on a new one: Puts
          // are guarded by version and DEL is idempotent.
          redisFree(c);
          c = Connect(&error);
          ok = c != nullptr && SendOps(c, ops, &next, &script_sha, &error);
        }
      }
      if (ok) {
        if (fresh || !ops.empty()) MarkUp();  // only on a reply from the server
      } else {
        if (c != nullptr) redisFree(c);
        c = nullptr;
        MarkDown(error);
        CountDropped(ops.size() - next);
      }
    }
    ops.clear();
    l.lock();
  }
  CountDropped(pending_.size());
  pending_.clear();
  l.unlock();
  if (c != nullptr) redisFree(c);
}

bool RedisCache::SendOps(redisContext* c, const std::vector<std::pair<std::string, Op>>& ops,
                         size_t* next, std::string* script_sha, std::string* error) {
  const std::string ttl = std::to_string(options_.ttl_s);
  auto append = [&](const std::pair<std::string, Op>& op, bool eval) {
    const std::string key = Key(op.first);
    if (!op.second.put) return AppendCommand(c, {"DEL", key});
    const std::string value = EncodeValue(op.second.value);
    if (eval || script_sha->empty())
      return AppendCommand(c, {"EVAL", kPutScript, "1", key, value, ttl});
    return AppendCommand(c, {"EVALSHA", *script_sha, "1", key, value, ttl});
  };
  // Reads one reply; false on an I/O error. *noscript: the server does not
  // know the script (SCRIPT FLUSH, a failover), so the Put must go as EVAL.
  auto read = [&](bool* noscript) {
    void* raw = nullptr;
    if (redisGetReply(c, &raw) != REDIS_OK || raw == nullptr) {
      *error = IoError(c, errno, "write", options_.timeout_ms);
      return false;
    }
    auto* r = static_cast<redisReply*>(raw);
    if (r->type == REDIS_REPLY_ERROR) {
      const std::string msg(r->str, r->len);
      if (msg.rfind("NOSCRIPT", 0) == 0) {
        *noscript = true;
      } else {
        // The server is reachable but refused this write (OOM, ACL): count
        // it, log the first one, and carry on.
        errors_->Inc();
        if (!logged_reply_error_.exchange(true))
          LogWarn("redis cache refused a write", {{"error", msg}, {"url", endpoint_.redacted}});
      }
    }
    freeReplyObject(r);
    return true;
  };

  while (*next < ops.size()) {
    const size_t begin = *next;
    const size_t end = std::min(ops.size(), begin + kMaxPipeline);
    for (size_t i = begin; i < end; ++i) {
      if (!append(ops[i], false)) {
        *error = IoError(c, errno, "write", options_.timeout_ms);
        return false;
      }
    }
    std::vector<size_t> retry;
    for (size_t i = begin; i < end; ++i) {
      bool noscript = false;
      if (!read(&noscript)) return false;
      if (noscript) retry.push_back(i);
      ++*next;
    }
    // EVAL also puts the script back in the server's cache, so later
    // EVALSHAs work again.
    for (size_t i : retry) {
      if (!append(ops[i], true)) {
        *error = IoError(c, errno, "write", options_.timeout_ms);
        return false;
      }
    }
    for (size_t n = 0; n < retry.size(); ++n) {
      bool noscript = false;
      if (!read(&noscript)) return false;
    }
  }
  return true;
}

}  // namespace persona::cache
