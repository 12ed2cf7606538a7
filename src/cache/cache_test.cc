// ProfileCache backends: the in-process LRU, and Redis against a real
// redis-server started by the test on a free port (scripts/install-deps.sh
// installs it; without it the Redis tests fail rather than skip).
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>
#include <vector>

#include "cache/memory_cache.h"
#include "cache/profile_cache.h"
#include "cache/redis_cache.h"
#include "metrics/metrics.h"

extern char** environ;

namespace persona::cache {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

CachedProfile Profile(uint64_t version, std::string body = "") {
  if (body.empty()) body = "{\"version\":" + std::to_string(version) + "}";
  return CachedProfile{std::move(body), version};
}

// Polls `f` every 10 ms until it is true or `limit` has passed.
bool Eventually(const std::function<bool()>& f, std::chrono::milliseconds limit = 2000ms) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return f();
}

int64_t GaugeValue(const std::string& name, const std::string& labels) {
  return metrics::Default().GetGauge(name, "", labels)->value();
}

uint64_t CounterValue(const std::string& name, const std::string& labels) {
  return metrics::Default().GetCounter(name, "", labels)->value();
}

// ---- memory ----------------------------------------------------------------

CacheOptions MemoryOptions(size_t max_entries = 1000, int ttl_s = 60) {
  CacheOptions o;
  o.backend = "memory";
  o.max_entries = max_entries;
  o.ttl_s = ttl_s;
  return o;
}

TEST(CacheMemoryTest, HitAndMiss) {
  auto made = MakeProfileCache(MemoryOptions());
  ASSERT_TRUE(made.ok()) << made.status();
  ProfileCache& cache = **made;
  EXPECT_EQ(cache.backend(), "memory");
  EXPECT_TRUE(cache.healthy());
  EXPECT_FALSE(cache.Get("s1").has_value());
  cache.Put("s1", Profile(4, "body4"));
  auto got = cache.Get("s1");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->version, 4u);
  EXPECT_EQ(got->body, "body4");
  EXPECT_FALSE(cache.Get("s2").has_value());
  cache.Invalidate("s1");
  EXPECT_FALSE(cache.Get("s1").has_value());
  cache.Invalidate("never-there");
}

TEST(CacheMemoryTest, HigherVersionIsNotReplaced) {
  MemoryCache cache(MemoryOptions());
  cache.Put("s", Profile(5, "five"));
  cache.Put("s", Profile(3, "three"));
  EXPECT_EQ(cache.Get("s")->body, "five");
  cache.Put("s", Profile(5, "five again"));  // an equal version replaces
  EXPECT_EQ(cache.Get("s")->body, "five again");
  cache.Put("s", Profile(7, "seven"));
  EXPECT_EQ(cache.Get("s")->version, 7u);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(CacheMemoryTest, EvictsTheLeastRecentlyUsedAtTheBound) {
  MemoryCache cache(MemoryOptions(3), nullptr, /*shards=*/1);
  cache.Put("a", Profile(1));
  cache.Put("b", Profile(1));
  cache.Put("c", Profile(1));
  ASSERT_TRUE(cache.Get("a").has_value());  // now b is the least recently used
  cache.Put("d", Profile(1));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_FALSE(cache.Get("b").has_value());
  EXPECT_TRUE(cache.Get("a").has_value());
  EXPECT_TRUE(cache.Get("c").has_value());
  EXPECT_TRUE(cache.Get("d").has_value());
  cache.Put("c", Profile(2));  // a replacement does not evict
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_TRUE(cache.Get("a").has_value());
}

TEST(CacheMemoryTest, BoundHoldsAcrossShards) {
  MemoryCache cache(MemoryOptions(100));
  EXPECT_EQ(cache.shard_count(), MemoryCache::kDefaultShards);
  for (int i = 0; i < 5000; ++i) cache.Put("s" + std::to_string(i), Profile(1));
  EXPECT_LE(cache.size(), 100u);
  EXPECT_GE(cache.size(), 90u);  // every shard is full after 5000 random keys

  MemoryCache tiny(MemoryOptions(3));  // fewer entries than shards
  EXPECT_EQ(tiny.shard_count(), 3u);
  for (int i = 0; i < 100; ++i) tiny.Put("s" + std::to_string(i), Profile(1));
  EXPECT_LE(tiny.size(), 3u);

  MemoryCache none(MemoryOptions(0));
  none.Put("s", Profile(1));
  EXPECT_FALSE(none.Get("s").has_value());
}

TEST(CacheMemoryTest, ExpiresAfterTheTtl) {
  int64_t now = 1'000'000;
  MemoryCache cache(MemoryOptions(1000, /*ttl_s=*/10), [&now] { return now; });
  cache.Put("s", Profile(5));
  now += 9'999;
  EXPECT_TRUE(cache.Get("s").has_value());
  now += 1;
  EXPECT_FALSE(cache.Get("s").has_value());
  EXPECT_EQ(cache.size(), 0u);  // removed when found expired

  // An expired entry does not protect its version.
  cache.Put("s", Profile(9));
  now += 10'000;
  cache.Put("s", Profile(2));
  auto got = cache.Get("s");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->version, 2u);
}

TEST(CacheMemoryTest, ExpiresOnTheRealClock) {
  auto made = MakeProfileCache(MemoryOptions(1000, /*ttl_s=*/1));
  ASSERT_TRUE(made.ok()) << made.status();
  (*made)->Put("s", Profile(1));
  EXPECT_TRUE((*made)->Get("s").has_value());
  std::this_thread::sleep_for(1100ms);
  EXPECT_FALSE((*made)->Get("s").has_value());
}

TEST(CacheMemoryTest, EntriesGaugeFollowsTheContents) {
  const std::string labels = "backend=\"memory\"";
  const int64_t before = GaugeValue("persona_cache_entries", labels);
  {
    MemoryCache cache(MemoryOptions(2), nullptr, 1);
    cache.Put("a", Profile(1));
    cache.Put("b", Profile(1));
    cache.Put("c", Profile(1));  // evicts a
    EXPECT_EQ(GaugeValue("persona_cache_entries", labels), before + 2);
    cache.Invalidate("b");
    EXPECT_EQ(GaugeValue("persona_cache_entries", labels), before + 1);
  }
  EXPECT_EQ(GaugeValue("persona_cache_entries", labels), before);
}

TEST(CacheMemoryTest, ConcurrentUse) {
  MemoryCache cache(MemoryOptions(10000));
  constexpr int kThreads = 8;
  constexpr int kOps = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < kOps; ++i) {
        const std::string key = "s" + std::to_string(i % 64);
        switch (i % 4) {
          case 0:
          case 1:
            cache.Put(key, Profile(static_cast<uint64_t>(i * kThreads + t + 1)));
            break;
          case 2:
            if (auto got = cache.Get(key)) {
              EXPECT_EQ(got->body, Profile(got->version).body);
            }
            break;
          case 3:
            if (i % 400 == 3) cache.Invalidate(key);
            break;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(cache.size(), 64u);
  // With no invalidation after the last Puts, each key holds the highest
  // version any thread put.
  for (int k = 0; k < 64; ++k) cache.Put("s" + std::to_string(k), Profile(1'000'000'000));
  for (int k = 0; k < 64; ++k)
    EXPECT_EQ(cache.Get("s" + std::to_string(k))->version, 1'000'000'000u);
}

TEST(CacheFactoryTest, RejectsUnknownBackendsAndBadOptions) {
  CacheOptions o;
  o.backend = "memcached";
  auto made = MakeProfileCache(o);
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(made.status().message().find("memcached"), std::string::npos);

  o = MemoryOptions();
  o.ttl_s = 0;
  EXPECT_EQ(MakeProfileCache(o).status().code(), absl::StatusCode::kInvalidArgument);

  o = CacheOptions();
  o.backend = "redis";
  o.url = "redis://127.0.0.1:1";
  o.timeout_ms = 0;
  EXPECT_EQ(MakeProfileCache(o).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- Redis URLs ------------------------------------------------------------

TEST(CacheRedisUrlTest, ParsesEveryPart) {
  auto ep = ParseRedisUrl("redis://localhost");
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_EQ(ep->host, "localhost");
  EXPECT_EQ(ep->port, 6379);
  EXPECT_EQ(ep->db, 0);
  EXPECT_TRUE(ep->password.empty());

  ep = ParseRedisUrl("redis://:p%40ss@10.0.0.7:6380/2");
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_EQ(ep->host, "10.0.0.7");
  EXPECT_EQ(ep->port, 6380);
  EXPECT_EQ(ep->password, "p@ss");
  EXPECT_TRUE(ep->user.empty());
  EXPECT_EQ(ep->db, 2);
  EXPECT_EQ(ep->redacted, "redis://:***@10.0.0.7:6380/2");

  ep = ParseRedisUrl("REDIS://app:pw@[::1]:7000/");
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_EQ(ep->host, "::1");
  EXPECT_EQ(ep->port, 7000);
  EXPECT_EQ(ep->user, "app");
  EXPECT_EQ(ep->password, "pw");
  EXPECT_EQ(ep->db, 0);
}

TEST(CacheRedisUrlTest, RejectsMalformedUrls) {
  for (const char* url :
       {"", "not a url", "http://localhost:6379", "rediss://localhost", "redis://",
        "redis:localhost", "redis://h:0", "redis://h:99999", "redis://h:/", "redis://h/db1",
        "redis://h/-1", "redis://h/1?x=y", "redis://h#frag"}) {
    CacheOptions o;
    o.backend = "redis";
    o.url = url;
    auto made = MakeProfileCache(o);
    ASSERT_FALSE(made.ok()) << url;
    EXPECT_EQ(made.status().code(), absl::StatusCode::kInvalidArgument) << url;
    EXPECT_NE(made.status().message().find(std::string("\"") + url + "\""), std::string::npos)
        << made.status();
  }
  auto user_only = ParseRedisUrl("redis://justuser@h");  // the user may be a password
  ASSERT_FALSE(user_only.ok());
  EXPECT_NE(user_only.status().message().find("\"redis://***@h\""), std::string::npos)
      << user_only.status();
  // The message names the URL, but never its password.
  for (const char* url : {"redis://:hunter2@h:99999", "ftp://u:hunter2@h", "%%:hunter2@h"}) {
    auto ep = ParseRedisUrl(url);
    ASSERT_FALSE(ep.ok()) << url;
    EXPECT_EQ(ep.status().message().find("hunter2"), std::string::npos) << ep.status();
    EXPECT_NE(ep.status().message().find("***"), std::string::npos) << ep.status();
  }
}

// ---- Redis -----------------------------------------------------------------

constexpr char kRedisServer[] = "/usr/bin/redis-server";

// A port nothing listens on now (the kernel's pick for an ephemeral bind).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A direct hiredis connection, to look at what the cache wrote.
class RawRedis {
 public:
  RawRedis(int port, const std::string& password = "", int db = 0) {
    c_ = redisConnectWithTimeout("127.0.0.1", port, timeval{2, 0});
    if (c_ != nullptr && c_->err == 0 && !password.empty()) Free(Command({"AUTH", password}));
    if (c_ != nullptr && c_->err == 0 && db != 0) Free(Command({"SELECT", std::to_string(db)}));
  }
  ~RawRedis() {
    if (c_ != nullptr) redisFree(c_);
  }
  bool ok() const { return c_ != nullptr && c_->err == 0; }
  redisReply* Command(std::vector<std::string> args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    return static_cast<redisReply*>(
        redisCommandArgv(c_, static_cast<int>(args.size()), argv.data(), lens.data()));
  }
  bool Ok(std::vector<std::string> args) {
    redisReply* r = Command(std::move(args));
    const bool ok = r != nullptr && r->type == REDIS_REPLY_STATUS;
    Free(r);
    return ok;
  }
  long long Integer(std::vector<std::string> args) {
    redisReply* r = Command(std::move(args));
    const long long v = r != nullptr && r->type == REDIS_REPLY_INTEGER ? r->integer : -999;
    Free(r);
    return v;
  }
  std::optional<std::string> String(std::vector<std::string> args) {
    redisReply* r = Command(std::move(args));
    std::optional<std::string> v;
    if (r != nullptr && r->type == REDIS_REPLY_STRING) v = std::string(r->str, r->len);
    Free(r);
    return v;
  }

 private:
  static void Free(redisReply* r) {
    if (r != nullptr) freeReplyObject(r);
  }
  redisContext* c_ = nullptr;
};

std::string Encode(uint64_t version, const std::string& body) {
  std::string out;
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((version >> (i * 8)) & 0xff));
  return out + body;
}

class CacheRedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kRedisServer, X_OK) != 0) {
      FAIL() << kRedisServer
             << " is missing: these tests start a real Redis; run scripts/install-deps.sh";
    }
    dir_ = std::filesystem::temp_directory_path() /
           ("persona-cache-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    port_ = FreePort();
    ASSERT_NE(port_, 0);
  }
  void TearDown() override {
    cache_.reset();
    StopServer(SIGKILL);
    std::filesystem::remove_all(dir_);
  }

  // Starts redis-server on port_ and waits until it answers PING.
  void StartServer(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {kRedisServer, "--port",       std::to_string(port_),
                                     "--bind",     "127.0.0.1",    "--save",
                                     "",           "--appendonly", "no",
                                     "--dir",      dir_.string(),  "--daemonize",
                                     "no",         "--logfile",    (dir_ / "redis.log").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ASSERT_EQ(::posix_spawn(&pid_, kRedisServer, nullptr, nullptr, argv.data(), environ), 0);
    const auto deadline = Clock::now() + 10s;
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        FAIL() << "redis-server exited at start; its log:\n" << ServerLog();
      }
      redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, timeval{0, 200000});
      if (c != nullptr && c->err == 0) {
        auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
        // PONG, or NOAUTH when a password is required: either way it serves.
        const bool up = r != nullptr;
        if (r != nullptr) freeReplyObject(r);
        redisFree(c);
        if (up) return;
      } else if (c != nullptr) {
        redisFree(c);
      }
      std::this_thread::sleep_for(20ms);
    }
    FAIL() << "redis-server did not accept connections on port " << port_ << "; its log:\n"
           << ServerLog();
  }
  void StopServer(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
  }
  std::string ServerLog() const {
    std::ifstream in(dir_ / "redis.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  CacheOptions Options() const {
    CacheOptions o;
    o.backend = "redis";
    o.url = "redis://127.0.0.1:" + std::to_string(port_);
    o.ttl_s = 600;
    o.timeout_ms = 200;
    o.retry_ms = 200;
    return o;
  }
  void MakeCache(const CacheOptions& o) {
    auto made = MakeProfileCache(o);
    ASSERT_TRUE(made.ok()) << made.status();
    cache_ = std::move(*made);
    ASSERT_EQ(cache_->backend(), "redis");
  }
  // Get, polled: writes reach Redis asynchronously.
  bool EventuallyGets(std::string_view sid, uint64_t version, const std::string& body = "") {
    return Eventually([&] {
      auto got = cache_->Get(sid);
      return got.has_value() && got->version == version && (body.empty() || got->body == body);
    });
  }

  std::filesystem::path dir_;
  int port_ = 0;
  pid_t pid_ = 0;
  std::unique_ptr<ProfileCache> cache_;
};

TEST_F(CacheRedisTest, PutThenGet) {
  StartServer();
  MakeCache(Options());
  EXPECT_TRUE(cache_->healthy());
  EXPECT_FALSE(cache_->Get("s1").has_value());
  const std::string body = std::string("{\"profile\":{\"name\":\"Alice\"}}\0binary\xff", 36);
  cache_->Put("s1", Profile(3, body));
  EXPECT_TRUE(EventuallyGets("s1", 3, body));
  auto got = cache_->Get("s1");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->body, body);

  RawRedis raw(port_);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw.String({"GET", "profile:s1"}), Encode(3, body));
  EXPECT_FALSE(cache_->Get("other").has_value());
  EXPECT_TRUE(cache_->healthy());
}

TEST_F(CacheRedisTest, Invalidate) {
  StartServer();
  MakeCache(Options());
  cache_->Put("s1", Profile(3));
  ASSERT_TRUE(EventuallyGets("s1", 3));
  cache_->Invalidate("s1");
  EXPECT_TRUE(Eventually([&] { return !cache_->Get("s1").has_value(); }));
  RawRedis raw(port_);
  EXPECT_EQ(raw.Integer({"EXISTS", "profile:s1"}), 0);
}

TEST_F(CacheRedisTest, HigherVersionIsNotReplaced) {
  StartServer();
  RawRedis raw(port_);
  ASSERT_TRUE(raw.ok());
  MakeCache(Options());
  cache_->Put("s1", Profile(5, "five"));
  ASSERT_TRUE(EventuallyGets("s1", 5, "five"));
  cache_->Put("s1", Profile(3, "three"));
  cache_->Put("s2", Profile(1, "one"));
  // Another writer (a second persona node) already stored a higher version.
  ASSERT_TRUE(raw.Ok({"SET", "profile:s3", Encode(9, "nine")}));
  cache_->Put("s3", Profile(8, "eight"));
  // Versions differing only in a low byte, and a high one.
  cache_->Put("s4", Profile(0x1'0000'0000ull, "big"));
  cache_.reset();  // the destructor flushes what is queued

  EXPECT_EQ(raw.String({"GET", "profile:s1"}), Encode(5, "five"));
  EXPECT_EQ(raw.String({"GET", "profile:s2"}), Encode(1, "one"));
  EXPECT_EQ(raw.String({"GET", "profile:s3"}), Encode(9, "nine"));

  MakeCache(Options());
  cache_->Put("s4", Profile(0xff, "small"));
  cache_->Put("s1", Profile(5, "five again"));  // an equal version replaces
  cache_->Put("s2", Profile(0x100, "higher"));
  cache_.reset();
  EXPECT_EQ(raw.String({"GET", "profile:s4"}), Encode(0x1'0000'0000ull, "big"));
  EXPECT_EQ(raw.String({"GET", "profile:s1"}), Encode(5, "five again"));
  EXPECT_EQ(raw.String({"GET", "profile:s2"}), Encode(0x100, "higher"));
}

TEST_F(CacheRedisTest, PutSetsTheTtl) {
  StartServer();
  MakeCache(Options());
  cache_->Put("s1", Profile(1));
  ASSERT_TRUE(EventuallyGets("s1", 1));
  RawRedis raw(port_);
  const long long ttl = raw.Integer({"TTL", "profile:s1"});
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 600);
}

TEST_F(CacheRedisTest, AuthAndDatabase) {
  StartServer({"--requirepass", "s3cret"});
  MakeCache(Options());  // no password: the server refuses the cache
  EXPECT_FALSE(cache_->healthy());
  EXPECT_FALSE(cache_->Get("s1").has_value());
  cache_.reset();

  CacheOptions o = Options();
  o.url = "redis://:s3cret@127.0.0.1:" + std::to_string(port_) + "/3";
  MakeCache(o);
  EXPECT_TRUE(cache_->healthy());
  cache_->Put("s1", Profile(2));
  ASSERT_TRUE(EventuallyGets("s1", 2));
  RawRedis in_db3(port_, "s3cret", 3);
  EXPECT_EQ(in_db3.Integer({"EXISTS", "profile:s1"}), 1);
  RawRedis in_db0(port_, "s3cret", 0);
  EXPECT_EQ(in_db0.Integer({"EXISTS", "profile:s1"}), 0);
}

TEST_F(CacheRedisTest, SurvivesAnOutage) {
  StartServer();
  MakeCache(Options());
  cache_->Put("s1", Profile(1));
  ASSERT_TRUE(EventuallyGets("s1", 1));
  const std::string labels = "backend=\"redis\"";
  const uint64_t errors_before = CounterValue("persona_cache_errors_total", labels);

  StopServer(SIGKILL);
  // Every Get returns promptly, as a miss, while writes keep coming.
  const auto outage_end = Clock::now() + 1s;
  int gets = 0;
  while (Clock::now() < outage_end) {
    const auto start = Clock::now();
    EXPECT_FALSE(cache_->Get("s1").has_value());
    EXPECT_LT(Clock::now() - start, 500ms);
    cache_->Put("s1", Profile(2));
    cache_->Invalidate("s2");
    ++gets;
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_GT(gets, 10);
  EXPECT_FALSE(cache_->healthy());
  EXPECT_GT(CounterValue("persona_cache_errors_total", labels), errors_before);
  EXPECT_EQ(GaugeValue("persona_cache_up", labels), 0);

  StartServer();  // the same port; the data is gone (no persistence)
  ASSERT_TRUE(Eventually([&] { return cache_->healthy(); }, 3000ms));
  EXPECT_EQ(GaugeValue("persona_cache_up", labels), 1);
  cache_->Put("s1", Profile(3));
  EXPECT_TRUE(EventuallyGets("s1", 3));
  EXPECT_TRUE(cache_->healthy());
}

TEST_F(CacheRedisTest, StartsDownAndConnectsLater) {
  MakeCache(Options());  // nothing listens on port_ yet
  EXPECT_FALSE(cache_->healthy());
  const auto start = Clock::now();
  EXPECT_FALSE(cache_->Get("s1").has_value());
  EXPECT_LT(Clock::now() - start, 500ms);
  StartServer();
  // The writer reconnects by itself, without any reads.
  ASSERT_TRUE(Eventually([&] { return cache_->healthy(); }, 3000ms));
  cache_->Put("s1", Profile(1));
  EXPECT_TRUE(EventuallyGets("s1", 1));
}

TEST_F(CacheRedisTest, DropsWritesWhileDown) {
  const std::string labels = "backend=\"redis\"";
  const uint64_t before = CounterValue("persona_cache_dropped_writes_total", labels);
  MakeCache(Options());  // no server: down
  for (int i = 0; i < 10; ++i) cache_->Put("s" + std::to_string(i), Profile(1));
  cache_->Invalidate("s0");
  EXPECT_EQ(CounterValue("persona_cache_dropped_writes_total", labels), before + 11);
}

// A server that accepts connections but never answers (here: stopped).
TEST_F(CacheRedisTest, BoundsWaitsOnAHungServer) {
  StartServer();
  CacheOptions o = Options();
  o.max_pending_writes = 4;
  MakeCache(o);
  cache_->Put("warm", Profile(1));
  ASSERT_TRUE(EventuallyGets("warm", 1));
  const std::string labels = "backend=\"redis\"";
  const uint64_t dropped_before = CounterValue("persona_cache_dropped_writes_total", labels);

  ASSERT_EQ(::kill(pid_, SIGSTOP), 0);
  // The writer blocks on its first batch while the queue fills up.
  cache_->Put("first", Profile(1));
  std::this_thread::sleep_for(20ms);
  for (int i = 0; i < 10; ++i) cache_->Put("s" + std::to_string(i), Profile(1));
  EXPECT_GE(CounterValue("persona_cache_dropped_writes_total", labels), dropped_before + 6);

  const auto start = Clock::now();
  EXPECT_FALSE(cache_->Get("warm").has_value());
  EXPECT_LT(Clock::now() - start, 500ms);  // timeout_ms is 200
  EXPECT_FALSE(cache_->healthy());

  ASSERT_EQ(::kill(pid_, SIGCONT), 0);
  ASSERT_TRUE(Eventually([&] { return cache_->healthy(); }, 3000ms));
  EXPECT_TRUE(EventuallyGets("warm", 1));
}

TEST_F(CacheRedisTest, ConcurrentCallers) {
  StartServer();
  MakeCache(Options());
  constexpr int kThreads = 4;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        const std::string key = "s" + std::to_string(i % 16);
        if (i % 3 == 0) cache_->Put(key, Profile(static_cast<uint64_t>(i * kThreads + t + 1)));
        if (auto got = cache_->Get(key); got && got->body != Profile(got->version).body) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_TRUE(cache_->healthy());
}

}  // namespace
}  // namespace persona::cache
