// persona's embedded MQTT 3.1.1 broker against a third-party client: the
// Eclipse Paho C++ library (Debian's libpaho-mqttpp-dev over libpaho-mqtt-dev,
// i.e. Paho C's MQTTAsync). Each test starts the real persona binary on port
// 0 with its own data directory, creates sessions over HTTP (a tiny hand-written
// client on ::socket), and talks MQTT with Paho over TCP and over WebSocket.
//
// The binary comes from argv[1] (CTest passes $<TARGET_FILE:persona>) or
// $PERSONA_BIN; the schemas from $PERSONA_SCHEMAS_DIR or <repo>/schemas.
//
// Paho quirks seen here (Debian 12: Paho C package 1.3.12-1, whose library
// reports 1.3.11; Paho C++ 1.2.0):
// - libpaho-mqttpp-dev does not depend on libpaho-mqtt-dev, yet its headers
//   include <MQTTAsync.h>; both packages must be installed.
// - connect_options default to MQTTVERSION_DEFAULT (try 3.1.1, fall back to
//   3.1 on refusal); the tests pin MQTTVERSION_3_1_1.
// - Destroying (or disconnecting) a connected async_client always sends
//   DISCONNECT, so the will would never fire; the last-will test runs the Paho
//   client in a child process (this binary re-executed with --will-child) and
//   SIGKILLs it, which is a real abrupt close.
// - The consumer queue (start_consuming) must be started before connect() for
//   a persistent session: queued messages arrive right after CONNACK.
// - ws:// URIs work out of the box: Paho C >= 1.3 always has WebSocket support
//   and offers the "mqtt" subprotocol. But it leaves a second MQTT packet in
//   the same WebSocket frame unread until more bytes arrive (see NextOnWs).
// - get_subscribe_response().get_reason_codes() is garbage for a one-topic
//   v3 SUBSCRIBE; the granted QoS is checked on delivered messages instead.
// - A connect while another client in the process is connected takes 1-2 s
//   (Paho's I/O thread polls with a 1 s timeout); hence few connections.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

std::string g_persona_bin;  // path of the persona binary
std::string g_schemas_dir;  // <repo>/schemas
std::string g_self_exe;     // this test binary, for the will child

// ---------------------------------------------------------------- HTTP ----

struct HttpResponse {
  int status = 0;
  std::string headers;
  std::string body;
};

// One HTTP/1.1 request on a fresh connection (Connection: close). Handles a
// Content-Length body, a chunked body, or a body delimited by EOF.
HttpResponse Http(int port, const std::string& method, const std::string& path,
                  const std::string& body = {}) {
  HttpResponse r;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return r;
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return r;
  }
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!body.empty() || method == "POST" || method == "PATCH") {
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  for (size_t off = 0; off < req.size();) {
    ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return r;
    }
    off += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[8192];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  auto head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos || raw.compare(0, 9, "HTTP/1.1 ") != 0) return r;
  r.status = std::atoi(raw.c_str() + 9);
  r.headers = raw.substr(0, head_end);
  std::string rest = raw.substr(head_end + 4);
  std::string lower = r.headers;
  for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (auto p = lower.find("\r\ncontent-length:"); p != std::string::npos) {
    size_t len = std::strtoul(lower.c_str() + p + 17, nullptr, 10);
    r.body = rest.substr(0, len);
  } else if (lower.find("\r\ntransfer-encoding: chunked") != std::string::npos) {
    size_t pos = 0;
    for (;;) {
      auto eol = rest.find("\r\n", pos);
      if (eol == std::string::npos) break;
      size_t len = std::strtoul(rest.c_str() + pos, nullptr, 16);
      if (len == 0) break;
      r.body += rest.substr(eol + 2, len);
      pos = eol + 2 + len + 2;
    }
  } else {
    r.body = std::move(rest);
  }
  return r;
}

json::value ParseJson(const std::string& s) {
  boost::system::error_code ec;
  json::value v = json::parse(s, ec);
  if (ec) {
    ADD_FAILURE() << "not JSON (" << ec.message() << "): " << s;
    return json::object{};
  }
  return v;
}

json::value ParseJson(const mqtt::const_message_ptr& m) { return ParseJson(m->get_payload_str()); }

// ------------------------------------------------------------- server ----

int PortOf(const std::string& hostport) {
  auto colon = hostport.rfind(':');
  return colon == std::string::npos ? 0 : std::atoi(hostport.c_str() + colon + 1);
}

// One persona process: `persona serve` on port 0, stdout+stderr piped; the
// "listening" JSON log line gives the HTTP and MQTT ports.
class PersonaProcess {
 public:
  ~PersonaProcess() { Stop(); }

  // Returns an empty string on success, else why it failed.
  std::string Start() {
    char tmpl[] = "/tmp/persona-paho-XXXXXX";
    if (!::mkdtemp(tmpl)) return std::string("mkdtemp: ") + std::strerror(errno);
    dir_ = tmpl;
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return std::string("pipe2: ") + std::strerror(errno);
    std::string data_dir = dir_ + "/data";
    std::vector<std::string> args = {g_persona_bin,   "serve",       "--http-listen", "127.0.0.1:0",
                                     "--mqtt-listen", "127.0.0.1:0", "--data-dir",    data_dir,
                                     "--schemas-dir", g_schemas_dir};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);  // dup2 clears O_CLOEXEC
    posix_spawn_file_actions_adddup2(&fa, p[1], 2);
    int rc = ::posix_spawn(&pid_, g_persona_bin.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(p[1]);
    if (rc != 0) {
      ::close(p[0]);
      pid_ = -1;
      return "posix_spawn " + g_persona_bin + ": " + std::strerror(rc);
    }
    out_ = p[0];

    auto deadline = std::chrono::steady_clock::now() + 20s;
    std::string buf;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{out_, POLLIN, 0};
      if (::poll(&pfd, 1, 200) <= 0) continue;
      char chunk[4096];
      ssize_t n = ::read(out_, chunk, sizeof chunk);
      if (n <= 0) break;  // exited
      buf.append(chunk, static_cast<size_t>(n));
      for (size_t nl; (nl = buf.find('\n')) != std::string::npos;) {
        std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        AppendLog(line + "\n");
        boost::system::error_code ec;
        json::value v = json::parse(line, ec);
        if (ec || !v.is_object()) continue;
        const auto& o = v.as_object();
        auto* msg = o.if_contains("msg");
        if (!msg || !msg->is_string() || msg->as_string() != "listening") continue;
        http_port_ = PortOf(std::string(o.at("http").as_string()));
        mqtt_port_ = PortOf(std::string(o.at("mqtt").as_string()));
        if (auto* ws = o.if_contains("mqtt_websocket"); ws && ws->is_string())
          ws_path_ = std::string(ws->as_string());
        AppendLog(buf);
        // Keep draining so persona never blocks on a full pipe.
        drain_ = std::thread([this] {
          char c[4096];
          for (ssize_t k; (k = ::read(out_, c, sizeof c)) > 0;)
            AppendLog(std::string(c, static_cast<size_t>(k)));
        });
        if (http_port_ <= 0 || mqtt_port_ <= 0) return "bad listening line: " + line;
        return {};
      }
    }
    return "persona did not log \"listening\":\n" + Log();
  }

  // SIGTERM, then waitpid (SIGKILL after 10 s). Returns the wait status.
  int Stop() {
    int status = -1;
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      auto deadline = std::chrono::steady_clock::now() + 10s;
      for (;;) {
        pid_t w = ::waitpid(pid_, &status, WNOHANG);
        if (w == pid_ || w < 0) break;
        if (std::chrono::steady_clock::now() > deadline) {
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, &status, 0);
          break;
        }
        std::this_thread::sleep_for(20ms);
      }
      pid_ = -1;
    }
    if (drain_.joinable()) drain_.join();
    if (out_ >= 0) ::close(out_), out_ = -1;
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      dir_.clear();
    }
    return status;
  }

  std::string Log() {
    std::lock_guard<std::mutex> g(mu_);
    return log_;
  }

  int http_port() const { return http_port_; }
  int mqtt_port() const { return mqtt_port_; }
  const std::string& ws_path() const { return ws_path_; }

 private:
  void AppendLog(const std::string& s) {
    std::lock_guard<std::mutex> g(mu_);
    log_ += s;
  }

  pid_t pid_ = -1;
  int out_ = -1;
  std::string dir_;
  int http_port_ = 0, mqtt_port_ = 0;
  std::string ws_path_ = "/mqtt";
  std::thread drain_;
  std::mutex mu_;
  std::string log_;
};

// ------------------------------------------------------------- fixture ----

mqtt::connect_options Options(bool clean, std::optional<mqtt::will_options> will = std::nullopt) {
  mqtt::connect_options_builder b;
  b.clean_session(clean)
      .mqtt_version(MQTTVERSION_3_1_1)
      .keep_alive_interval(20s)
      .connect_timeout(5s);
  if (will) b.will(*will);
  return b.finalize();
}

class PahoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(g_persona_bin.empty()) << "pass the persona binary as argv[1] or $PERSONA_BIN";
    std::string err = server_.Start();
    ASSERT_TRUE(err.empty()) << err;
  }

  void TearDown() override {
    int status = server_.Stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "persona should exit 0 on SIGTERM (wait status " << status << ")";
    if (HasFailure()) std::cerr << "---- persona log ----\n" << server_.Log();
  }

  std::string TcpUri() const { return "tcp://127.0.0.1:" + std::to_string(server_.mqtt_port()); }
  std::string WsUri() const {
    return "ws://127.0.0.1:" + std::to_string(server_.http_port()) + server_.ws_path();
  }

  // POST /v1/sessions; returns the session id ("" after a test failure).
  std::string CreateSession() {
    auto r = Http(server_.http_port(), "POST", "/v1/sessions", R"({"user_id":"paho"})");
    EXPECT_EQ(r.status, 201) << r.body;
    json::value v = ParseJson(r.body);
    auto* id = v.is_object() ? v.as_object().if_contains("session_id") : nullptr;
    EXPECT_TRUE(id && id->is_string()) << r.body;
    return id && id->is_string() ? std::string(id->as_string()) : std::string();
  }

  // PATCH /v1/sessions/{id}/profile; returns the new version (-1 on failure).
  int64_t Patch(const std::string& sid, const std::string& body) {
    auto r = Http(server_.http_port(), "PATCH", "/v1/sessions/" + sid + "/profile", body);
    EXPECT_EQ(r.status, 200) << r.body;
    json::value v = ParseJson(r.body);
    auto* ver = v.is_object() ? v.as_object().if_contains("version") : nullptr;
    return ver && ver->is_int64() ? ver->as_int64() : -1;
  }

  // Connects (consumer queue started first) and returns whether the broker
  // reported a present session.
  static bool Connect(mqtt::async_client& c, const mqtt::connect_options& o) {
    c.start_consuming();
    auto tok = c.connect(o);
    EXPECT_TRUE(tok->wait_for(5s)) << "CONNECT to " << c.get_server_uri() << " timed out";
    return tok->get_connect_response().is_session_present();
  }

  static void Subscribe(mqtt::async_client& c, const std::string& filter, int qos = 1) {
    auto tok = c.subscribe(filter, qos);
    // SUBACK arrived and granted the subscription (a failure code 0x80 makes
    // wait_for throw). The granted QoS is checked on the delivered messages
    // instead of get_subscribe_response(): with Debian's Paho C++ 1.2.0 its
    // reason codes for a single-topic v3 SUBSCRIBE are garbage.
    ASSERT_TRUE(tok->wait_for(5s)) << "SUBSCRIBE " << filter << " timed out";
  }

  static void Disconnect(mqtt::async_client& c) {
    if (c.is_connected()) {
      EXPECT_TRUE(c.disconnect()->wait_for(5s));
    }
  }

  // The next message on `topic` (others are skipped and counted), or null.
  static mqtt::const_message_ptr NextOn(mqtt::async_client& c, const std::string& topic,
                                        std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) return nullptr;
      auto m = c.try_consume_message_for(left);
      if (!m) return nullptr;
      if (m->get_topic() == topic) return m;
    }
  }

  // NextOn for a Paho WebSocket connection. Paho C quirk (1.3.11/1.3.12):
  // persona may write several MQTT packets in one WebSocket frame (e.g.
  // SUBACK + the retained PUBLISH), which MQTT 3.1.1 allows [MQTT-6.0.0-2].
  // Paho C parses the first packet and leaves the rest in its WebSocket
  // buffer until more bytes arrive on the socket (the next PINGRESP, up to a
  // keep-alive later). When nothing surfaces within 400 ms, a QoS 1 publish
  // to an unused topic makes the broker send a PUBACK, which releases it.
  static mqtt::const_message_ptr NextOnWs(mqtt::async_client& c, const std::string& topic,
                                          int& nudges) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto m = NextOn(c, topic, 400ms)) return m;
      if (!c.is_connected()) return nullptr;
      ++nudges;
      if (!c.publish("paho/nudge", "x", 1, false)->wait_for(5s)) return nullptr;
    }
    return nullptr;
  }

  PersonaProcess server_;
};

// 1. A Paho subscriber to session/{id}/profile gets the current profile at
//    once, as a retained message, matching what HTTP reported.
TEST_F(PahoTest, SubscribeGetsRetainedCurrentProfile) {
  std::string sid = CreateSession();
  ASSERT_FALSE(sid.empty());
  int64_t version = Patch(sid, R"({"fields":{"city":"Seoul","age":34}})");
  ASSERT_GT(version, 0);

  mqtt::async_client c(TcpUri(), "paho-retained");
  EXPECT_FALSE(Connect(c, Options(true)));
  ASSERT_NO_FATAL_FAILURE(Subscribe(c, "session/" + sid + "/profile", 1));
  auto m = c.try_consume_message_for(5s);
  ASSERT_TRUE(m) << "no retained profile";
  EXPECT_EQ(m->get_topic(), "session/" + sid + "/profile");
  EXPECT_TRUE(m->is_retained());
  EXPECT_EQ(m->get_qos(), 1);
  json::value v = ParseJson(m);
  ASSERT_TRUE(v.is_object());
  ASSERT_TRUE(v.as_object().contains("profile")) << m->get_payload_str();
  ASSERT_TRUE(v.as_object().contains("version")) << m->get_payload_str();
  EXPECT_EQ(v.at("version").as_int64(), version);
  EXPECT_EQ(v.at("profile"), json::parse(R"({"city":"Seoul","age":34})"));
  EXPECT_TRUE(v.as_object().contains("meta"));
  // Nothing else is pending.
  EXPECT_FALSE(c.try_consume_message_for(300ms));
  Disconnect(c);
}

// 2. A device edit published by Paho on …/profile/set (QoS 1, PUBACKed) is
//    validated and appended: an event on …/events, a new snapshot on
//    …/profile, and HTTP sees it.
TEST_F(PahoTest, ProfileSetOverMqttReachesEventsProfileAndHttp) {
  std::string sid = CreateSession();
  ASSERT_FALSE(sid.empty());
  const std::string base = "session/" + sid;

  mqtt::async_client c(TcpUri(), "paho-device");
  Connect(c, Options(true));
  ASSERT_NO_FATAL_FAILURE(Subscribe(c, base + "/profile", 1));
  auto retained = NextOn(c, base + "/profile");
  ASSERT_TRUE(retained);
  int64_t before = ParseJson(retained).at("version").as_int64();
  ASSERT_NO_FATAL_FAILURE(Subscribe(c, base + "/events", 1));

  auto pub = c.publish(base + "/profile/set", R"({"fields":{"city":"Busan"}})", 1, false);
  ASSERT_TRUE(pub->wait_for(5s)) << "no PUBACK";
  EXPECT_EQ(pub->get_message()->get_qos(), 1);

  json::value event, snapshot;
  bool snapshot_retained = true;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while ((event.is_null() || snapshot.is_null()) && std::chrono::steady_clock::now() < deadline) {
    auto m = c.try_consume_message_for(1s);
    if (!m) continue;
    if (m->get_topic() == base + "/events") {
      json::value e = ParseJson(m);
      if (e.at("type") == "profile.field_set") event = e;
    } else if (m->get_topic() == base + "/profile") {
      snapshot = ParseJson(m);
      snapshot_retained = m->is_retained();
    }
  }
  ASSERT_FALSE(event.is_null()) << "no profile.field_set event";
  EXPECT_EQ(event.at("data").at("field"), "city");
  EXPECT_EQ(event.at("data").at("value"), "Busan");
  EXPECT_EQ(event.at("origin"), "device");
  EXPECT_EQ(event.at("seq").as_int64(), before + 1);
  ASSERT_FALSE(snapshot.is_null()) << "no profile snapshot after the edit";
  EXPECT_EQ(snapshot.at("profile").at("city"), "Busan");
  EXPECT_EQ(snapshot.at("version").as_int64(), before + 1);
  EXPECT_FALSE(snapshot_retained) << "a live forward to an existing subscriber is not retained";

  auto r = Http(server_.http_port(), "GET", "/v1/sessions/" + sid + "/profile");
  ASSERT_EQ(r.status, 200) << r.body;
  json::value prof = ParseJson(r.body);
  EXPECT_EQ(prof.at("profile").at("city"), "Busan");
  EXPECT_EQ(prof.at("version").as_int64(), before + 1);
  Disconnect(c);
}

// 3. Persistent session: the subscription survives a disconnect, the 5
//    events made over HTTP while offline are queued and arrive, in seq order,
//    after a reconnect that reports session_present.
TEST_F(PahoTest, PersistentSessionQueuesEventsWhileOffline) {
  std::string sid = CreateSession();
  ASSERT_FALSE(sid.empty());
  const std::string events = "session/" + sid + "/events";
  const std::string id = "paho-tablet";
  {
    mqtt::async_client c(TcpUri(), id);
    EXPECT_FALSE(Connect(c, Options(false))) << "a first connect has no session";
    ASSERT_NO_FATAL_FAILURE(Subscribe(c, events, 1));
    Disconnect(c);
  }
  std::vector<std::string> cities = {"Seoul", "Busan", "Incheon", "Daegu", "Jeju"};
  int64_t last = -1;
  for (const auto& city : cities) last = Patch(sid, R"({"fields":{"city":")" + city + R"("}})");
  ASSERT_GT(last, 0);

  mqtt::async_client c(TcpUri(), id);
  EXPECT_TRUE(Connect(c, Options(false))) << "session_present should be set";
  std::vector<int64_t> seqs;
  for (size_t i = 0; i < cities.size(); ++i) {
    auto m = c.try_consume_message_for(5s);
    ASSERT_TRUE(m) << "only " << i << " of " << cities.size() << " queued events arrived";
    EXPECT_EQ(m->get_topic(), events);
    EXPECT_EQ(m->get_qos(), 1);
    json::value e = ParseJson(m);
    EXPECT_EQ(e.at("type"), "profile.field_set");
    EXPECT_EQ(e.at("data").at("value"), cities[i].c_str());
    seqs.push_back(e.at("seq").as_int64());
  }
  std::vector<int64_t> want;
  for (size_t i = 0; i < cities.size(); ++i)
    want.push_back(last - static_cast<int64_t>(cities.size()) + 1 + static_cast<int64_t>(i));
  EXPECT_EQ(seqs, want);
  EXPECT_FALSE(c.try_consume_message_for(300ms)) << "nothing beyond the 5 queued events";
  Disconnect(c);

  // A clean connect with the same id discards the session.
  mqtt::async_client fresh(TcpUri(), id);
  EXPECT_FALSE(Connect(fresh, Options(true)));
  Disconnect(fresh);
}

// Run in a child process: a Paho client with a will, connected, that is then
// SIGKILLed by the parent (Paho itself always says DISCONNECT on the way out).
int WillChild(const std::string& uri, const std::string& client_id, const std::string& will_topic) {
  try {
    mqtt::async_client c(uri, client_id);
    mqtt::will_options will(will_topic, std::string("gone"), 1, false);
    c.connect(Options(true, will))->wait();
    std::cout << "connected" << std::endl;
    for (;;) std::this_thread::sleep_for(1s);
  } catch (const std::exception& e) {
    std::cout << "error " << e.what() << std::endl;
    return 1;
  }
}

// 4. persona as a plain broker for topics outside session/…: `+` wildcard,
//    retained messages (set, delivered to late subscribers, cleared), and the
//    last will of a client killed abruptly (but not of one that disconnects).
TEST_F(PahoTest, PlainBrokerWildcardRetainedAndWill) {
  mqtt::async_client sub(TcpUri(), "paho-sub");
  Connect(sub, Options(true));
  ASSERT_NO_FATAL_FAILURE(Subscribe(sub, "a/+/c", 1));
  ASSERT_NO_FATAL_FAILURE(Subscribe(sub, "wills/#", 1));

  mqtt::async_client pub(TcpUri(), "paho-pub");
  Connect(pub, Options(true));
  ASSERT_TRUE(pub.publish("a/x/y/c", "too deep", 1, false)->wait_for(5s));
  ASSERT_TRUE(pub.publish("a/b/d", "wrong leaf", 1, false)->wait_for(5s));
  ASSERT_TRUE(pub.publish("a/b/c", "hello", 1, true)->wait_for(5s));
  auto m = sub.try_consume_message_for(5s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->get_topic(), "a/b/c") << "`+` matches one level only";
  EXPECT_EQ(m->get_payload_str(), "hello");
  EXPECT_FALSE(m->is_retained()) << "live forward";

  {  // A late subscriber gets the retained message with RETAIN set.
    mqtt::async_client late(TcpUri(), "paho-late");
    Connect(late, Options(true));
    ASSERT_NO_FATAL_FAILURE(Subscribe(late, "a/+/c", 1));
    auto r = late.try_consume_message_for(5s);
    ASSERT_TRUE(r) << "no retained message";
    EXPECT_EQ(r->get_topic(), "a/b/c");
    EXPECT_EQ(r->get_payload_str(), "hello");
    EXPECT_TRUE(r->is_retained());
    Disconnect(late);
  }
  // An empty retained payload clears it (and is forwarded to live subscribers).
  ASSERT_TRUE(pub.publish("a/b/c", "", 1, true)->wait_for(5s));
  auto cleared = NextOn(sub, "a/b/c");
  ASSERT_TRUE(cleared);
  EXPECT_EQ(cleared->get_payload_str(), "");
  Disconnect(pub);
  {
    // A late subscriber finds nothing retained any more. It also has a will
    // and disconnects politely, so its will must not be published.
    mqtt::async_client polite(TcpUri(), "paho-polite");
    Connect(polite,
            Options(true, mqtt::will_options("wills/polite", std::string("gone"), 1, false)));
    ASSERT_NO_FATAL_FAILURE(Subscribe(polite, "a/+/c", 1));
    EXPECT_FALSE(polite.try_consume_message_for(300ms)) << "retained message was cleared";
    Disconnect(polite);
  }
  // A client with a will, killed with SIGKILL: the broker sees the socket
  // close without DISCONNECT and publishes the will.
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  std::vector<std::string> args = {g_self_exe, "--will-child", TcpUri(), "paho-dying",
                                   "wills/dying"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  pid_t child = -1;
  int rc = ::posix_spawn(&child, g_self_exe.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(p[1]);
  ASSERT_EQ(rc, 0) << std::strerror(rc);
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (out.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{p[0], POLLIN, 0};
    if (::poll(&pfd, 1, 100) <= 0) continue;
    char buf[256];
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ::close(p[0]);
  ASSERT_EQ(out, "connected\n") << "will child";
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  auto will = sub.try_consume_message_for(5s);
  ASSERT_TRUE(will) << "no last will";
  EXPECT_EQ(will->get_topic(), "wills/dying") << "the polite client's will must not be published";
  EXPECT_EQ(will->get_payload_str(), "gone");
  EXPECT_FALSE(sub.try_consume_message_for(300ms));
  Disconnect(sub);
}

// 5. Paho over WebSocket (ws://HOST:HTTP_PORT/mqtt, subprotocol "mqtt") gets
//    the retained profile just as over TCP, and can edit it.
TEST_F(PahoTest, WebSocketClientGetsRetainedProfile) {
  // Paho C has had WebSocket support built in (no option) since 1.3.0;
  // Debian 12 ships 1.3.12. Older builds reject ws:// in the constructor.
  std::unique_ptr<mqtt::async_client> cp;
  try {
    cp = std::make_unique<mqtt::async_client>(WsUri(), "paho-ws");
  } catch (const mqtt::exception& e) {
    GTEST_SKIP() << "this Paho C build has no WebSocket support: " << e.what();
  }
  mqtt::async_client& c = *cp;
  std::string sid = CreateSession();
  ASSERT_FALSE(sid.empty());
  int64_t version = Patch(sid, R"({"fields":{"name":"Wendy"}})");
  const std::string base = "session/" + sid;

  EXPECT_FALSE(Connect(c, Options(true)));
  ASSERT_NO_FATAL_FAILURE(Subscribe(c, base + "/profile", 1));
  int nudges = 0;
  auto m = NextOnWs(c, base + "/profile", nudges);
  ASSERT_TRUE(m) << "no retained profile over WebSocket";
  EXPECT_TRUE(m->is_retained());
  EXPECT_EQ(m->get_qos(), 1);
  json::value v = ParseJson(m);
  EXPECT_EQ(v.at("profile"), json::parse(R"({"name":"Wendy"})"));
  EXPECT_EQ(v.at("version").as_int64(), version);

  ASSERT_NO_FATAL_FAILURE(Subscribe(c, base + "/events", 1));
  ASSERT_TRUE(
      c.publish(base + "/profile/set", R"({"fields":{"city":"Ulsan"}})", 1, false)->wait_for(5s));
  auto ev = NextOnWs(c, base + "/events", nudges);
  ASSERT_TRUE(ev) << "no event over WebSocket";
  json::value e = ParseJson(ev);
  EXPECT_EQ(e.at("type"), "profile.field_set");
  EXPECT_EQ(e.at("data").at("value"), "Ulsan");
  EXPECT_EQ(e.at("origin"), "device");
  auto r = Http(server_.http_port(), "GET", "/v1/sessions/" + sid + "/profile");
  EXPECT_EQ(ParseJson(r.body).at("profile").at("city"), "Ulsan");
  RecordProperty("paho_ws_nudges", nudges);
  if (nudges > 0) {
    std::cerr << "note: Paho C needed " << nudges
              << " nudge(s) to surface MQTT packets that shared a WebSocket frame\n";
  }
  Disconnect(c);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--will-child")
    return WillChild(argv[2], argv[3], argv[4]);
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1)
    g_persona_bin = argv[1];
  else if (const char* b = std::getenv("PERSONA_BIN"))
    g_persona_bin = b;
  if (const char* s = std::getenv("PERSONA_SCHEMAS_DIR"))
    g_schemas_dir = s;
  else
    g_schemas_dir = PERSONA_SOURCE_DIR "/schemas";
  std::error_code ec;
  g_self_exe = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) g_self_exe = argv[0];
  ::signal(SIGPIPE, SIG_IGN);
  return RUN_ALL_TESTS();
}
