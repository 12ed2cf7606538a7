// HttpClient against an in-process test server: a blocking Asio/Beast server
// on 127.0.0.1:0, one thread per connection, whose behaviour is picked by the
// request path (JSON, chunked with delays, 429, hang, close mid-body, oversize
// body or headers, close after answering, drop the next request). TLS tests
// generate self-signed certificates with the openssl CLI and skip without it.
#include "net/http_client.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace persona::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

std::map<std::string, std::string> Query(std::string_view target) {
  std::map<std::string, std::string> out;
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return out;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view kv = rest.substr(0, amp);
    const size_t eq = kv.find('=');
    out[std::string(kv.substr(0, eq))] =
        eq == std::string_view::npos ? "" : std::string(kv.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return out;
}

int IntParam(const std::map<std::string, std::string>& q, const std::string& k, int def) {
  auto it = q.find(k);
  return it == q.end() ? def : std::stoi(it->second);
}

class TestServer {
 public:
  explicit TestServer(ssl::context* tls = nullptr) : tls_(tls), acceptor_(ioc_) {
    const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~TestServer() {
    stopping_ = true;
    {
      // Wake the blocking accept().
      tcp::socket s(ioc_);
      boost::system::error_code ec;
      s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);
    }
    accept_thread_.join();
    {
      std::lock_guard<std::mutex> l(mu_);
      cv_.notify_all();
      for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : conn_threads_) t.join();
  }

  uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }
  int requests() const { return requests_.load(); }
  std::string Url(const std::string& path) const {
    return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  void AcceptLoop() {
    for (;;) {
      tcp::socket s(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(s, ec);
      if (stopping_) return;
      if (ec) continue;
      accepted_++;
      std::lock_guard<std::mutex> l(mu_);
      open_fds_.insert(s.native_handle());
      conn_threads_.emplace_back([this, s = std::move(s)]() mutable { ServeConn(std::move(s)); });
    }
  }

  void ServeConn(tcp::socket sock) {
    const int fd = sock.native_handle();
    if (tls_) {
      ssl::stream<tcp::socket> s(std::move(sock), *tls_);
      boost::system::error_code ec;
      s.handshake(ssl::stream_base::server, ec);
      if (!ec) Serve(s);
      Forget(fd);
      s.next_layer().close(ec);
    } else {
      Serve(sock);
      Forget(fd);
      boost::system::error_code ec;
      sock.close(ec);
    }
  }

  void Forget(int fd) {
    std::lock_guard<std::mutex> l(mu_);
    open_fds_.erase(fd);
  }

  template <class Stream>
  static bool Raw(Stream& s, const std::string& data) {
    boost::system::error_code ec;
    asio::write(s, asio::buffer(data), ec);
    return !ec;
  }

  template <class Stream>
  void Serve(Stream& s) {
    beast::flat_buffer buf;
    bool drop_next = false;
    for (;;) {
      http::request<http::string_body> req;
      boost::system::error_code ec;
      http::read(s, buf, req, ec);
      if (ec || drop_next) return;  // drop_next: read the request, close without answering
      requests_++;
      const std::string target(req.target());
      const std::string path = target.substr(0, target.find('?'));
      const auto q = Query(target);
      http::response<http::string_body> res{http::status::ok, 11};
      res.keep_alive(req.keep_alive());

      if (path == "/json" || path == "/close-after" || path == "/drop-next") {
        std::this_thread::sleep_for(std::chrono::milliseconds(IntParam(q, "delay_ms", 0)));
        res.set(http::field::content_type, "application/json");
        res.set("X-Seen-Method", req.method_string());
        res.set("X-Seen-User-Agent", req[http::field::user_agent]);
        res.set("X-Seen-Host", req[http::field::host]);
        res.body() = "{\"ok\":true,\"echo\":\"" + req.body() + "\"}";
      } else if (path == "/429") {
        res.result(http::status::too_many_requests);
        res.set(http::field::retry_after, "7");
        res.set(http::field::content_type, "application/json");
        res.body() = "{\"error\":\"slow down\"}";
      } else if (path == "/big") {
        res.body() = std::string(IntParam(q, "n", 0), 'x');
      } else if (path == "/big-headers") {
        for (int i = 0; i < 3; ++i) res.insert("X-Huge", std::string(30 << 10, 'h'));
      } else if (path == "/hang") {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait_for(l, 20s, [this] { return stopping_.load(); });
        return;
      } else if (path == "/drop") {
        return;
      } else if (path == "/close-mid-body") {
        Raw(s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        std::this_thread::sleep_for(50ms);
        return;
      } else if (path == "/chunked") {
        const int n = IntParam(q, "n", 3);
        const int delay = IntParam(q, "delay_ms", 0);
        const int size = IntParam(q, "size", 0);
        if (!Raw(s,
                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n")) {
          return;
        }
        for (int i = 0; i < n; ++i) {
          if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
          const std::string piece = size > 0 ? std::string(size, static_cast<char>('a' + i % 26))
                                             : "piece-" + std::to_string(i) + ";";
          char hex[16];
          std::snprintf(hex, sizeof(hex), "%zx", piece.size());
          if (!Raw(s, std::string(hex) + "\r\n" + piece + "\r\n")) return;
        }
        if (!Raw(s, "0\r\n\r\n")) return;
        continue;
      } else {
        res.result(http::status::not_found);
      }
      res.prepare_payload();
      http::write(s, res, ec);
      if (ec || !res.keep_alive() || path == "/close-after") return;
      if (path == "/drop-next") drop_next = true;
    }
  }

  ssl::context* tls_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::thread accept_thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> requests_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<int> open_fds_;
  std::vector<std::thread> conn_threads_;
};

ClientRequest Get(const std::string& url, int timeout_ms = 10000) {
  ClientRequest r;
  r.method = "GET";
  r.url = url;
  r.timeout_ms = timeout_ms;
  return r;
}

// Sends and waits (at most 20 s, so a bug fails the test instead of hanging it).
StatusOr<ClientResponse> Fetch(HttpClient& client, ClientRequest req) {
  auto p = std::make_shared<std::promise<StatusOr<ClientResponse>>>();
  auto f = p->get_future();
  client.Send(std::move(req), [p](StatusOr<ClientResponse> r) { p->set_value(std::move(r)); });
  if (f.wait_for(20s) != std::future_status::ready) {
    return absl::InternalError("test: no answer within 20 s");
  }
  return f.get();
}

TEST(HttpClientTest, GetsJsonAndPostsBody) {
  TestServer server;
  HttpClient client;
  auto r = Fetch(client, Get(server.Url("/json")));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "{\"ok\":true,\"echo\":\"\"}");
  EXPECT_EQ(r->Header("content-type"), "application/json");
  EXPECT_EQ(r->Header("CONTENT-TYPE"), "application/json");
  EXPECT_EQ(r->Header("x-absent"), "");
  EXPECT_EQ(r->Header("x-seen-method"), "GET");
  EXPECT_FALSE(r->Header("x-seen-user-agent").empty());
  EXPECT_EQ(r->Header("x-seen-host"), "127.0.0.1:" + std::to_string(server.port()));

  ClientRequest post;
  post.url = server.Url("/json?x=1");
  post.headers = {{"Content-Type", "application/json"}, {"User-Agent", "mine/2"}};
  post.body = "hello";
  r = Fetch(client, post);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "{\"ok\":true,\"echo\":\"hello\"}");
  EXPECT_EQ(r->Header("x-seen-method"), "POST");
  EXPECT_EQ(r->Header("x-seen-user-agent"), "mine/2");
}

TEST(HttpClientTest, ErrorStatusIsAResponse) {
  TestServer server;
  HttpClient client;
  auto r = Fetch(client, Get(server.Url("/429")));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(r->Header("retry-after"), "7");
  EXPECT_EQ(r->body, "{\"error\":\"slow down\"}");
  r = Fetch(client, Get(server.Url("/nope")));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 404);
}

TEST(HttpClientTest, StreamsChunksAsTheyArrive) {
  TestServer server;
  HttpClient client;
  std::mutex mu;
  std::vector<std::pair<int64_t, std::string>> pieces;  // (ms since start, data)
  std::vector<std::string> order;
  int head_status = 0;
  std::string head_type;
  const auto start = Clock::now();
  auto p = std::make_shared<std::promise<StatusOr<ClientResponse>>>();
  client.Send(
      Get(server.Url("/chunked?n=4&delay_ms=150")),
      [p, &mu, &order](StatusOr<ClientResponse> r) {
        {
          std::lock_guard<std::mutex> l(mu);
          order.push_back("done");
        }
        p->set_value(std::move(r));
      },
      [&](int status, const HeaderList& headers) {
        std::lock_guard<std::mutex> l(mu);
        order.push_back("head");
        head_status = status;
        for (const auto& [k, v] : headers) {
          if (k == "Content-Type") head_type = v;
        }
      },
      [&](std::string_view data) {
        std::lock_guard<std::mutex> l(mu);
        order.push_back("data");
        pieces.emplace_back(MsSince(start), std::string(data));
      });
  auto f = p->get_future();
  ASSERT_EQ(f.wait_for(20s), std::future_status::ready);
  auto r = f.get();
  const int64_t done_ms = MsSince(start);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "");  // delivered through on_data
  EXPECT_EQ(r->Header("transfer-encoding"), "chunked");
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(head_status, 200);
  EXPECT_EQ(head_type, "text/plain");
  std::string all;
  for (const auto& [ms, data] : pieces) all += data;
  EXPECT_EQ(all, "piece-0;piece-1;piece-2;piece-3;");
  ASSERT_EQ(pieces.size(), 4u);  // one on_data per delayed chunk
  for (size_t i = 1; i < pieces.size(); ++i) {
    EXPECT_GE(pieces[i].first - pieces[i - 1].first, 80) << "chunk " << i << " not delayed";
  }
  // The first piece arrived long before the response completed.
  EXPECT_LE(pieces.front().first + 300, done_ms);
  ASSERT_GE(order.size(), 3u);
  EXPECT_EQ(order.front(), "head");
  EXPECT_EQ(order.back(), "done");
}

TEST(HttpClientTest, HangingServerHitsDeadline) {
  TestServer server;
  HttpClient client;
  const auto start = Clock::now();
  auto r = Fetch(client, Get(server.Url("/hang"), 300));
  const int64_t ms = MsSince(start);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_GE(ms, 290);
  EXPECT_LE(ms, 300 + 400);  // timeout + 200 ms expected; slack for loaded machines
}

TEST(HttpClientTest, CloseMidBodyIsUnavailable) {
  TestServer server;
  HttpClient client;
  auto r = Fetch(client, Get(server.Url("/close-mid-body")));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_NE(r.status().message().find("mid-response"), std::string::npos) << r.status();
}

TEST(HttpClientTest, OversizeBodyIsResourceExhausted) {
  TestServer server;
  HttpClient client;
  ClientRequest req = Get(server.Url("/big?n=100000"));
  req.max_response_bytes = 50000;
  auto r = Fetch(client, req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();

  req.max_response_bytes = 100000;  // exactly at the limit is fine
  r = Fetch(client, req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body.size(), 100000u);

  // Streamed and chunked: the total is bounded too.
  size_t streamed = 0;
  auto p = std::make_shared<std::promise<StatusOr<ClientResponse>>>();
  ClientRequest chunked = Get(server.Url("/chunked?n=10&size=10000"));
  chunked.max_response_bytes = 35000;
  client.Send(
      chunked, [p](StatusOr<ClientResponse> r) { p->set_value(std::move(r)); }, {},
      [&streamed](std::string_view d) { streamed += d.size(); });
  auto f = p->get_future();
  ASSERT_EQ(f.wait_for(20s), std::future_status::ready);
  r = f.get();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_LE(streamed, 35000u);
}

TEST(HttpClientTest, OversizeHeadersAreResourceExhausted) {
  TestServer server;
  HttpClient client;
  auto r = Fetch(client, Get(server.Url("/big-headers")));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
}

TEST(HttpClientTest, ReusesKeepAliveConnection) {
  TestServer server;
  HttpClient client;
  for (int i = 0; i < 10; ++i) {
    auto r = Fetch(client, Get(server.Url("/json")));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  // Streamed responses that complete are reusable too.
  auto p = std::make_shared<std::promise<StatusOr<ClientResponse>>>();
  client.Send(
      Get(server.Url("/chunked?n=3")),
      [p](StatusOr<ClientResponse> r) { p->set_value(std::move(r)); }, {}, [](std::string_view) {});
  ASSERT_TRUE(p->get_future().get().ok());
  EXPECT_TRUE(Fetch(client, Get(server.Url("/json"))).ok());
  EXPECT_EQ(server.accepted(), 1);
  EXPECT_EQ(server.requests(), 12);
}

TEST(HttpClientTest, IdleConnectionsExpireAndPoolIsBounded) {
  TestServer server;
  HttpClient::Options o;
  o.idle_timeout_ms = 100;
  HttpClient client(o);
  ASSERT_TRUE(Fetch(client, Get(server.Url("/json"))).ok());
  std::this_thread::sleep_for(400ms);
  ASSERT_TRUE(Fetch(client, Get(server.Url("/json"))).ok());
  EXPECT_EQ(server.accepted(), 2);

  TestServer server2;
  HttpClient::Options none;
  none.max_idle_per_host = 0;
  HttpClient no_pool(none);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Fetch(no_pool, Get(server2.Url("/json"))).ok());
  EXPECT_EQ(server2.accepted(), 3);
}

TEST(HttpClientTest, ServerClosedPooledConnectionIsReplaced) {
  TestServer server;
  HttpClient client;
  // The server answers keep-alive and then closes the connection.
  ASSERT_TRUE(Fetch(client, Get(server.Url("/close-after"))).ok());
  std::this_thread::sleep_for(50ms);
  auto r = Fetch(client, Get(server.Url("/json")));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(server.accepted(), 2);
}

TEST(HttpClientTest, StaleConnectionIsRetriedOnce) {
  TestServer server;
  HttpClient client;
  // The server answers, then reads the next request on that connection and
  // closes without answering: the keep-alive race. The client retries it on
  // a fresh connection.
  ASSERT_TRUE(Fetch(client, Get(server.Url("/drop-next"))).ok());
  ClientRequest post;
  post.url = server.Url("/json");
  post.body = "again";
  auto r = Fetch(client, post);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "{\"ok\":true,\"echo\":\"again\"}");
  EXPECT_EQ(server.accepted(), 2);
}

TEST(HttpClientTest, FreshConnectionIsNotRetried) {
  TestServer server;
  HttpClient client;
  auto r = Fetch(client, Get(server.Url("/drop")));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_EQ(server.accepted(), 1);
}

TEST(HttpClientTest, CancelMidStream) {
  TestServer server;
  HttpClient client;
  std::atomic<int> chunks{0};
  std::promise<void> first;
  auto p = std::make_shared<std::promise<StatusOr<ClientResponse>>>();
  auto call = client.Send(
      Get(server.Url("/chunked?n=40&delay_ms=50")),
      [p](StatusOr<ClientResponse> r) { p->set_value(std::move(r)); }, {},
      [&](std::string_view) {
        if (chunks.fetch_add(1) == 0) first.set_value();
      });
  ASSERT_EQ(first.get_future().wait_for(10s), std::future_status::ready);
  call->Cancel();
  call->Cancel();  // idempotent
  auto f = p->get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get().status().code(), absl::StatusCode::kCancelled);
  const int at_done = chunks.load();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(chunks.load(), at_done);  // on_data stopped
  EXPECT_LT(at_done, 10);
  call->Cancel();  // after done: no-op
  // The cancelled connection is not reused.
  ASSERT_TRUE(Fetch(client, Get(server.Url("/json"))).ok());
  EXPECT_EQ(server.accepted(), 2);
}

TEST(HttpClientTest, CancelFromCallbackAndBeforeStart) {
  TestServer server;
  HttpClient client;
  std::atomic<int> chunks{0};
  auto p = std::make_shared<std::promise<StatusOr<ClientResponse>>>();
  auto holder = std::make_shared<std::shared_ptr<HttpClient::Call>>();
  std::mutex mu;
  std::unique_lock<std::mutex> hold(mu);  // the callback waits until `holder` is set
  *holder = client.Send(
      Get(server.Url("/chunked?n=40&delay_ms=20")),
      [p](StatusOr<ClientResponse> r) { p->set_value(std::move(r)); }, {},
      [&, holder](std::string_view) {
        chunks++;
        std::lock_guard<std::mutex> l(mu);
        (*holder)->Cancel();
      });
  hold.unlock();
  auto f = p->get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get().status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(chunks.load(), 1);
  holder->reset();

  auto p2 = std::make_shared<std::promise<StatusOr<ClientResponse>>>();
  auto call = client.Send(Get(server.Url("/hang")),
                          [p2](StatusOr<ClientResponse> r) { p2->set_value(std::move(r)); });
  call->Cancel();
  auto f2 = p2->get_future();
  ASSERT_EQ(f2.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f2.get().status().code(), absl::StatusCode::kCancelled);
}

TEST(HttpClientTest, HundredConcurrentRequests) {
  TestServer server;
  HttpClient::Options o;
  o.threads = 2;
  HttpClient client(o);
  constexpr int kPerThread = 25;
  std::atomic<int> ok{0}, failed{0}, calls{0};
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::thread> senders;
  for (int t = 0; t < 4; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        ClientRequest req;
        req.url = server.Url("/json?delay_ms=20");
        req.body = std::to_string(t * kPerThread + i);
        const std::string want = "{\"ok\":true,\"echo\":\"" + req.body + "\"}";
        client.Send(std::move(req), [&, want](StatusOr<ClientResponse> r) {
          (r.ok() && r->body == want ? ok : failed)++;
          std::lock_guard<std::mutex> l(mu);
          calls++;
          cv.notify_all();
        });
      }
    });
  }
  for (auto& s : senders) s.join();
  std::unique_lock<std::mutex> l(mu);
  ASSERT_TRUE(cv.wait_for(l, 30s, [&] { return calls.load() == 100; }));
  EXPECT_EQ(ok.load(), 100);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(server.requests(), 100);
}

TEST(HttpClientTest, BadUrlsAreInvalidArgument) {
  HttpClient client;
  for (const std::string url :
       {"", "not a url", "ftp://example.com/x", "http://", "http:///path", "http://host:99999/",
        "http://host:0/", "https://user:pw@example.com/", "http://exa mple.com/", "mailto:a@b.c",
        "http://[v1.x]/", "http://ho%0d%0ast/"}) {
    const auto caller = std::this_thread::get_id();
    std::thread::id ran_on;
    auto p = std::make_shared<std::promise<StatusOr<ClientResponse>>>();
    client.Send(Get(url), [p, &ran_on](StatusOr<ClientResponse> r) {
      ran_on = std::this_thread::get_id();
      p->set_value(std::move(r));
    });
    auto r = p->get_future().get();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << url << ": " << r.status();
    EXPECT_NE(ran_on, caller) << "done must not run inside Send";
  }
  ClientRequest bad_header = Get("http://127.0.0.1:1/");
  bad_header.headers = {{"X-Evil", "a\r\nInjected: yes"}};
  EXPECT_EQ(Fetch(client, bad_header).status().code(), absl::StatusCode::kInvalidArgument);
  bad_header.headers = {{"X-Huge", std::string(70000, 'h')}};
  EXPECT_EQ(Fetch(client, bad_header).status().code(), absl::StatusCode::kInvalidArgument);
  ClientRequest bad_method = Get("http://127.0.0.1:1/");
  bad_method.method = "GE T";
  EXPECT_EQ(Fetch(client, bad_method).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(HttpClientTest, ConnectionRefusedIsUnavailable) {
  uint16_t port;
  {
    asio::io_context ioc;
    tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }  // closed: nothing listens there now
  HttpClient client;
  auto r = Fetch(client, Get("http://127.0.0.1:" + std::to_string(port) + "/"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_NE(r.status().message().find("refused"), std::string::npos) << r.status();

  r = Fetch(client, Get("http://no-such-host.invalid/", 5000));
  EXPECT_TRUE(r.status().code() == absl::StatusCode::kUnavailable ||
              r.status().code() == absl::StatusCode::kDeadlineExceeded)
      << r.status();
}

TEST(HttpClientTest, DestructorCancelsInFlight) {
  TestServer server;
  auto client = std::make_unique<HttpClient>();
  ASSERT_TRUE(Fetch(*client, Get(server.Url("/json"))).ok());  // leaves an idle connection
  auto p = std::make_shared<std::promise<StatusOr<ClientResponse>>>();
  auto call = client->Send(Get(server.Url("/hang")),
                           [p](StatusOr<ClientResponse> r) { p->set_value(std::move(r)); });
  for (int i = 0; i < 200 && server.requests() < 2; ++i) std::this_thread::sleep_for(10ms);
  const auto start = Clock::now();
  client.reset();
  EXPECT_LT(MsSince(start), 2000);
  auto f = p->get_future();
  ASSERT_EQ(f.wait_for(0s), std::future_status::ready);
  EXPECT_EQ(f.get().status().code(), absl::StatusCode::kCancelled);
  call->Cancel();  // the client is gone: a no-op
}

// --- TLS ---------------------------------------------------------------------

class HttpClientTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system("openssl version >/dev/null 2>&1") != 0) return;
    char tmpl[] = "/tmp/persona_http_client_tls_XXXXXX";
    if (!::mkdtemp(tmpl)) return;
    dir_ = tmpl;
    const std::string common = " -nodes -days 1 >/dev/null 2>&1";
    const std::string a = "openssl req -x509 -newkey rsa:2048 -keyout " + dir_ + "/key.pem -out " +
                          dir_ +
                          "/cert.pem -subj /CN=localhost"
                          " -addext subjectAltName=DNS:localhost,IP:127.0.0.1" +
                          common;
    const std::string b =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout " + dir_ +
        "/other_key.pem -out " + dir_ + "/other_cert.pem -subj /CN=otherhost" +
        " -addext subjectAltName=DNS:otherhost" + common;
    ready_ = std::system(a.c_str()) == 0 && std::system(b.c_str()) == 0;
  }
  static void TearDownTestSuite() {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  void SetUp() override {
    if (std::system("openssl version >/dev/null 2>&1") != 0) {
      GTEST_SKIP() << "openssl CLI not found; TLS tests need it to make test certificates";
    }
    ASSERT_TRUE(ready_) << "could not generate test certificates with the openssl CLI";
  }

  static std::unique_ptr<ssl::context> ServerContext(const std::string& prefix) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    ctx->use_certificate_chain_file(dir_ + "/" + prefix + "cert.pem");
    ctx->use_private_key_file(dir_ + "/" + prefix + "key.pem", ssl::context::pem);
    return ctx;
  }

  static std::string Cert(const std::string& prefix = "") {
    return dir_ + "/" + prefix + "cert.pem";
  }

  static inline std::string dir_;
  static inline bool ready_ = false;
};

TEST_F(HttpClientTlsTest, VerifiesAgainstCaFile) {
  auto ctx = ServerContext("");
  TestServer server(ctx.get());
  HttpClient::Options o;
  o.ca_file = Cert();
  HttpClient client(o);
  const std::string port = std::to_string(server.port());
  auto r = Fetch(client, Get("https://localhost:" + port + "/json"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Header("x-seen-host"), "localhost:" + port);
  r = Fetch(client, Get("https://127.0.0.1:" + port + "/json"));  // IP SAN
  ASSERT_TRUE(r.ok()) << r.status();

  // Streaming and keep-alive over TLS.
  std::string streamed;
  auto p = std::make_shared<std::promise<StatusOr<ClientResponse>>>();
  client.Send(
      Get("https://127.0.0.1:" + port + "/chunked?n=3&delay_ms=20"),
      [p](StatusOr<ClientResponse> r) { p->set_value(std::move(r)); }, {},
      [&streamed](std::string_view d) { streamed += d; });
  auto f = p->get_future();
  ASSERT_EQ(f.wait_for(20s), std::future_status::ready);
  ASSERT_TRUE(f.get().ok());
  EXPECT_EQ(streamed, "piece-0;piece-1;piece-2;");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Fetch(client, Get("https://127.0.0.1:" + port + "/json")).ok());
  }
  EXPECT_EQ(server.accepted(), 2);  // one per host key (localhost, 127.0.0.1)
}

TEST_F(HttpClientTlsTest, UnknownCaIsUnavailable) {
  auto ctx = ServerContext("");
  TestServer server(ctx.get());
  HttpClient client;  // system store only
  auto r = Fetch(client, Get("https://localhost:" + std::to_string(server.port()) + "/json"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_NE(r.status().message().find("certificate"), std::string::npos) << r.status();
}

TEST_F(HttpClientTlsTest, HostNameMismatchIsUnavailable) {
  auto ctx = ServerContext("other_");  // trusted, but issued to "otherhost"
  TestServer server(ctx.get());
  HttpClient::Options o;
  o.ca_file = Cert("other_");
  HttpClient client(o);
  auto r = Fetch(client, Get(server.Url("/json")));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_NE(r.status().message().find("mismatch"), std::string::npos) << r.status();
}

TEST_F(HttpClientTlsTest, NoVerifyAcceptsAnyCertificate) {
  auto ctx = ServerContext("other_");
  TestServer server(ctx.get());
  HttpClient::Options o;
  o.verify_tls = false;
  HttpClient client(o);
  auto r = Fetch(client, Get("https://localhost:" + std::to_string(server.port()) + "/json"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpClientTlsTest, MissingCaFileFailsHttpsCalls) {
  HttpClient::Options o;
  o.ca_file = dir_ + "/does-not-exist.pem";
  HttpClient client(o);
  auto r = Fetch(client, Get("https://127.0.0.1:1/"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
}

}  // namespace
}  // namespace persona::net
