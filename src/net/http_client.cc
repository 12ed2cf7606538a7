#include "net/http_client.h"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "core/logging.h"

namespace persona::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using error_code = boost::system::error_code;

namespace {

constexpr uint32_t kMaxHeaderBytes = 64 << 10;
constexpr size_t kReadChunk = 16 << 10;
constexpr char kUserAgent[] = "persona-http-client/1";

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

bool HasCtl(std::string_view s) {
  for (char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') return true;
  }
  return false;
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

// Where a request goes, from its URL.
struct Target {
  bool tls = false;
  std::string host;  // name or IP address, no brackets
  uint16_t port = 0;
  std::string target;       // origin-form: /path?query
  std::string host_header;  // host[:port], IPv6 in brackets
  std::string key;          // pool key: scheme://host:port
};

StatusOr<Target> ParseUrl(const std::string& url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) {
    return absl::InvalidArgumentError("malformed URL '" + url + "': " + parsed.error().message());
  }
  const boost::urls::url_view& u = *parsed;
  std::string scheme(u.scheme());
  for (char& c : scheme) c = Lower(c);
  if (scheme != "http" && scheme != "https") {
    return absl::InvalidArgumentError("unsupported URL scheme '" + scheme + "' in '" + url +
                                      "' (want http or https)");
  }
  if (!u.has_authority() || u.encoded_host().empty()) {
    return absl::InvalidArgumentError("URL '" + url + "' has no host");
  }
  if (u.has_userinfo()) {
    return absl::InvalidArgumentError("credentials in URL '" + url + "' are not supported");
  }
  if (u.host_type() == boost::urls::host_type::ipvfuture ||
      u.encoded_host_address().find('%') != std::string_view::npos) {
    return absl::InvalidArgumentError("unsupported host in URL '" + url + "'");
  }
  Target t;
  t.tls = scheme == "https";
  t.host = std::string(u.encoded_host_address());
  t.port = t.tls ? 443 : 80;
  const std::string_view port = u.port();
  if (!port.empty()) {
    unsigned p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || ptr != port.data() + port.size() || p == 0 || p > 65535) {
      return absl::InvalidArgumentError("bad port in URL '" + url + "'");
    }
    t.port = static_cast<uint16_t>(p);
  }
  t.target = std::string(u.encoded_path());
  if (t.target.empty()) t.target = "/";
  if (t.target.front() != '/') return absl::InvalidArgumentError("bad path in URL '" + url + "'");
  if (u.has_query()) t.target += "?" + std::string(u.encoded_query());
  const std::string host =
      u.host_type() == boost::urls::host_type::ipv6 ? "[" + t.host + "]" : t.host;
  const std::string host_port = host + ":" + std::to_string(t.port);
  t.host_header = t.port == (t.tls ? 443 : 80) ? host : host_port;
  t.key = scheme + "://" + host_port;
  return t;
}

// One kept-alive transport: plain TCP or TLS over TCP.
struct Conn {
  Conn(asio::io_context& ioc, ssl::context* tls_ctx, std::string key) : key(std::move(key)) {
    if (tls_ctx) {
      secure.emplace(ioc.get_executor(), *tls_ctx);
    } else {
      plain.emplace(ioc.get_executor());
    }
  }

  bool tls() const { return secure.has_value(); }
  beast::tcp_stream& tcp_layer() { return secure ? secure->next_layer() : *plain; }
  tcp::socket& socket() { return tcp_layer().socket(); }

  // Runs f(stream) with the outermost stream.
  template <class F>
  void With(F&& f) {
    if (secure) {
      f(*secure);
    } else {
      f(*plain);
    }
  }

  void Close() {
    error_code ec;
    socket().shutdown(tcp::socket::shutdown_both, ec);
    socket().close(ec);
  }

  // False if the peer has closed an idle connection (or, for plain HTTP, sent
  // bytes nobody asked for). TLS may legitimately have records pending
  // (session tickets); those are left for the next read to handle.
  bool LooksReusable() {
    if (!socket().is_open() || buffer.size() != 0) return false;
    char b;
    const ssize_t n = ::recv(socket().native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    return tls();
  }

  std::string key;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  Clock::time_point idle_since;
};

}  // namespace

std::string ClientResponse::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (IEquals(k, name)) return v;
  }
  return "";
}

class CallImpl;

class HttpClient::Impl {
 public:
  explicit Impl(Options options)
      : options_(std::move(options)),
        ioc_(std::max(1, options_.threads)),
        work_(asio::make_work_guard(ioc_)),
        tls_ctx_(ssl::context::tls_client),
        sweeper_(ioc_) {
    InitTls();
    const int n = std::max(1, options_.threads);
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this] {
        for (;;) {
          try {
            ioc_.run();
            return;
          } catch (const std::exception& e) {
            LogError("http client: callback threw", {{"error", e.what()}});
          }
        }
      });
    }
  }

  ~Impl();

  std::shared_ptr<Call> Send(ClientRequest req, Done done, OnHead on_head, OnData on_data);

  // --- pool; thread-safe --------------------------------------------------
  // The newest idle connection for `key` that still looks alive, or null.
  std::unique_ptr<Conn> TakeIdle(const std::string& key) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = idle_.find(key);
    if (it == idle_.end()) return nullptr;
    std::unique_ptr<Conn> found;
    auto& list = it->second;
    while (!list.empty() && !found) {
      std::unique_ptr<Conn> c = std::move(list.back());
      list.pop_back();
      if (c->LooksReusable()) {
        found = std::move(c);
      } else {
        c->Close();
      }
    }
    if (list.empty()) idle_.erase(it);
    return found;
  }

  // Keeps `c` (no operation pending on it) for reuse, within the bounds.
  void PutIdle(std::unique_ptr<Conn> c) {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_ || options_.max_idle_per_host == 0 || options_.idle_timeout_ms <= 0) {
      c->Close();
      return;
    }
    auto& list = idle_[c->key];
    while (list.size() >= options_.max_idle_per_host) {
      list.front()->Close();
      list.pop_front();
    }
    c->idle_since = Clock::now();
    const auto expiry = c->idle_since + std::chrono::milliseconds(options_.idle_timeout_ms);
    list.push_back(std::move(c));
    if (!sweep_armed_) ArmSweeperLocked(expiry);
  }

  void Unregister(uint64_t id) {
    std::lock_guard<std::mutex> l(mu_);
    live_.erase(id);
  }

  asio::io_context& ioc() { return ioc_; }
  ssl::context* tls_ctx() { return &tls_ctx_; }
  const Status& tls_status() const { return tls_status_; }
  bool verify_tls() const { return options_.verify_tls; }

 private:
  void InitTls() {
    SSL_CTX_set_min_proto_version(tls_ctx_.native_handle(), TLS1_2_VERSION);
    tls_ctx_.set_options(ssl::context::default_workarounds | ssl::context::no_compression);
    if (!options_.verify_tls) {
      tls_ctx_.set_verify_mode(ssl::verify_none);
      return;
    }
    tls_ctx_.set_verify_mode(ssl::verify_peer);
    error_code ec;
    tls_ctx_.set_default_verify_paths(ec);
    if (ec) LogWarn("http client: no system CA store", {{"error", ec.message()}});
    if (!options_.ca_file.empty()) {
      tls_ctx_.load_verify_file(options_.ca_file, ec);
      if (ec) {
        tls_status_ = absl::FailedPreconditionError("cannot load CA file '" + options_.ca_file +
                                                    "': " + ec.message());
        LogError("http client: cannot load CA file",
                 {{"ca_file", options_.ca_file}, {"error", ec.message()}});
      }
    }
  }

  void ArmSweeperLocked(Clock::time_point at) {
    sweep_armed_ = true;
    sweeper_.expires_at(at);
    sweeper_.async_wait([this](error_code ec) {
      if (!ec) Sweep();
    });
  }

  // Closes idle connections past idle_timeout_ms; re-arms for the next one.
  void Sweep() {
    std::lock_guard<std::mutex> l(mu_);
    sweep_armed_ = false;
    if (stopping_) return;
    const auto now = Clock::now();
    const auto timeout = std::chrono::milliseconds(options_.idle_timeout_ms);
    std::optional<Clock::time_point> next;
    for (auto it = idle_.begin(); it != idle_.end();) {
      auto& list = it->second;
      while (!list.empty() && list.front()->idle_since + timeout <= now) {
        list.front()->Close();
        list.pop_front();
      }
      if (list.empty()) {
        it = idle_.erase(it);
        continue;
      }
      const auto expiry = list.front()->idle_since + timeout;
      if (!next || expiry < *next) next = expiry;
      ++it;
    }
    if (next) ArmSweeperLocked(*next);
  }

  const Options options_;
  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  ssl::context tls_ctx_;
  Status tls_status_;
  std::vector<std::thread> threads_;

  std::mutex mu_;
  bool stopping_ = false;
  std::unordered_map<std::string, std::deque<std::unique_ptr<Conn>>> idle_;
  asio::steady_timer sweeper_;
  bool sweep_armed_ = false;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::weak_ptr<CallImpl>> live_;
};

// One request: resolve → connect → handshake → write → head → body. Every
// step below runs on strand_; only RequestCancel() is called from elsewhere.
class CallImpl final : public std::enable_shared_from_this<CallImpl> {
 public:
  CallImpl(HttpClient::Impl* client, uint64_t id, ClientRequest req, HttpClient::Done done,
           HttpClient::OnHead on_head, HttpClient::OnData on_data)
      : client_(client),
        id_(id),
        strand_(asio::make_strand(client->ioc())),
        timer_(client->ioc()),
        resolver_(client->ioc()),
        req_(std::move(req)),
        done_(std::move(done)),
        on_head_(std::move(on_head)),
        on_data_(std::move(on_data)) {}

  void Post() {
    asio::post(strand_, [self = shared_from_this()] { self->Start(); });
  }

  // Any thread.
  void RequestCancel() {
    if (cancel_requested_.exchange(true)) return;
    asio::post(strand_, [self = shared_from_this()] { self->Fail(Cancelled()); });
  }

 private:
  template <class F>
  auto OnStrand(F&& f) {
    return asio::bind_executor(strand_, std::forward<F>(f));
  }

  static Status Cancelled() { return absl::CancelledError("request cancelled"); }

  std::string Where() const { return target_.host_header.empty() ? req_.url : target_.key; }

  void Start() {
    if (cancel_requested_) return Fail(Cancelled());
    if (req_.timeout_ms > 0) {
      timer_.expires_after(std::chrono::milliseconds(req_.timeout_ms));
      timer_.async_wait(OnStrand([self = shared_from_this()](error_code ec) {
        if (ec) return;
        self->Fail(absl::DeadlineExceededError("no complete response from " + self->Where() +
                                               " within " + std::to_string(self->req_.timeout_ms) +
                                               " ms"));
      }));
    }
    auto target = ParseUrl(req_.url);
    if (!target.ok()) return Fail(target.status());
    target_ = *std::move(target);
    Status built;
    try {
      built = BuildRequest();
    } catch (const std::exception& e) {  // Beast refuses oversize fields by throwing
      built = absl::InvalidArgumentError(std::string("bad request: ") + e.what());
    }
    if (!built.ok()) return Fail(built);
    if (target_.tls && !client_->tls_status().ok()) return Fail(client_->tls_status());
    Connect();
  }

  Status BuildRequest() {
    if (!IsToken(req_.method)) {
      return absl::InvalidArgumentError("bad HTTP method '" + req_.method + "'");
    }
    const http::verb verb = http::string_to_verb(req_.method);
    if (verb == http::verb::unknown) {
      wire_.method_string(req_.method);
    } else {
      wire_.method(verb);
    }
    is_head_ = verb == http::verb::head;
    wire_.target(target_.target);
    wire_.version(11);
    bool has_host = false, has_agent = false;
    for (const auto& [name, value] : req_.headers) {
      if (!IsToken(name) || HasCtl(value)) {
        return absl::InvalidArgumentError("bad request header '" + name + "'");
      }
      if (IEquals(name, "content-length") || IEquals(name, "transfer-encoding")) continue;
      has_host |= IEquals(name, "host");
      has_agent |= IEquals(name, "user-agent");
      wire_.insert(name, value);
    }
    if (!has_host) wire_.set(http::field::host, target_.host_header);
    if (!has_agent) wire_.set(http::field::user_agent, kUserAgent);
    wire_.body() = std::move(req_.body);
    wire_.prepare_payload();
    return absl::OkStatus();
  }

  // A pooled connection unless this is the retry; else a fresh one.
  void Connect() {
    if (!retried_) conn_ = client_->TakeIdle(target_.key);
    if (conn_) {
      reused_ = true;
      return Write();
    }
    reused_ = false;
    resolver_.async_resolve(
        target_.host, std::to_string(target_.port),
        OnStrand([self = shared_from_this()](error_code ec, tcp::resolver::results_type r) {
          self->OnResolved(ec, std::move(r));
        }));
  }

  void OnResolved(error_code ec, tcp::resolver::results_type results) {
    if (finished_) return;
    if (ec) {
      return Fail(
          absl::UnavailableError("DNS lookup of '" + target_.host + "' failed: " + ec.message()));
    }
    conn_ = std::make_unique<Conn>(client_->ioc(), target_.tls ? client_->tls_ctx() : nullptr,
                                   target_.key);
    conn_->tcp_layer().async_connect(
        results, OnStrand([self = shared_from_this()](error_code ec, const tcp::endpoint&) {
          self->OnConnected(ec);
        }));
  }

  void OnConnected(error_code ec) {
    if (finished_) return;
    if (ec) {
      return Fail(absl::UnavailableError("connect to " + target_.key + " failed: " + ec.message()));
    }
    error_code ignored;
    conn_->socket().set_option(tcp::no_delay(true), ignored);
    if (!conn_->tls()) return Write();

    SSL* ssl = conn_->secure->native_handle();
    error_code not_ip;
    asio::ip::make_address(target_.host, not_ip);
    // SNI carries host names only (RFC 6066 §3).
    if (not_ip) SSL_set_tlsext_host_name(ssl, target_.host.c_str());
    if (client_->verify_tls()) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      const int ok = not_ip ? X509_VERIFY_PARAM_set1_host(param, target_.host.c_str(), 0)
                            : X509_VERIFY_PARAM_set1_ip_asc(param, target_.host.c_str());
      if (ok != 1) return Fail(absl::InternalError("cannot set TLS host name check"));
    }
    conn_->secure->async_handshake(
        ssl::stream_base::client,
        OnStrand([self = shared_from_this()](error_code ec) { self->OnHandshake(ec); }));
  }

  void OnHandshake(error_code ec) {
    if (finished_) return;
    if (ec) {
      std::string reason = ec.message();
      const long verify = SSL_get_verify_result(conn_->secure->native_handle());
      if (client_->verify_tls() && verify != X509_V_OK) {
        reason = std::string("certificate verification failed: ") +
                 X509_verify_cert_error_string(verify);
      }
      return Fail(
          absl::UnavailableError("TLS handshake with " + target_.key + " failed: " + reason));
    }
    Write();
  }

  void Write() {
    if (finished_) return;
    conn_->With([&](auto& stream) {
      http::async_write(stream, wire_, OnStrand([self = shared_from_this()](error_code ec, size_t) {
                          self->OnWritten(ec);
                        }));
    });
  }

  void OnWritten(error_code ec) {
    if (finished_) return;
    if (ec) {
      if (CanRetry()) return Retry();
      return Fail(absl::UnavailableError("sending the request to " + target_.key +
                                         " failed: " + ec.message()));
    }
    ReadHead();
  }

  void ReadHead() {
    parser_.emplace();
    parser_->header_limit(kMaxHeaderBytes);
    parser_->body_limit(req_.max_response_bytes);
    if (is_head_) parser_->skip(true);
    conn_->With([&](auto& stream) {
      http::async_read_header(
          stream, conn_->buffer, *parser_,
          OnStrand([self = shared_from_this()](error_code ec, size_t) { self->OnHead(ec); }));
    });
  }

  void OnHead(error_code ec) {
    if (finished_) return;
    if (ec) return ReadFailed(ec);
    const auto& head = parser_->get();
    const int status = static_cast<int>(head.result_int());
    if (status >= 100 && status < 200 && status != 101) {
      // Interim response (100 Continue, 103 Early Hints): the real one follows.
      got_response_bytes_ = true;
      return ReadHead();
    }
    response_.status = status;
    for (const auto& f : head) {
      response_.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    }
    if (on_head_) {
      if (cancel_requested_) return Fail(Cancelled());
      on_head_(response_.status, response_.headers);
      if (cancel_requested_) return Fail(Cancelled());
    }
    if (parser_->is_done()) return Complete();
    if (!on_data_) {
      if (auto n = parser_->content_length()) response_.body.reserve(*n);
    }
    if (!chunk_) chunk_ = std::make_unique<char[]>(kReadChunk);
    ReadBody();
  }

  void ReadBody() {
    auto& body = parser_->get().body();
    body.data = chunk_.get();
    body.size = kReadChunk;
    conn_->With([&](auto& stream) {
      http::async_read_some(
          stream, conn_->buffer, *parser_,
          OnStrand([self = shared_from_this()](error_code ec, size_t) { self->OnBody(ec); }));
    });
  }

  void OnBody(error_code ec) {
    if (finished_) return;
    if (ec == http::error::need_buffer) ec = {};
    const size_t n = kReadChunk - parser_->get().body().size;
    if (n > 0) {
      if (on_data_) {
        if (cancel_requested_) return Fail(Cancelled());
        on_data_(std::string_view(chunk_.get(), n));
        if (cancel_requested_) return Fail(Cancelled());
      } else {
        response_.body.append(chunk_.get(), n);
      }
    }
    if (ec) return ReadFailed(ec);
    if (parser_->is_done()) return Complete();
    ReadBody();
  }

  void ReadFailed(error_code ec) {
    if (ec == http::error::body_limit) {
      return Fail(absl::ResourceExhaustedError("response body from " + target_.key + " exceeds " +
                                               std::to_string(req_.max_response_bytes) + " bytes"));
    }
    if (ec == http::error::header_limit) {
      return Fail(absl::ResourceExhaustedError("response headers from " + target_.key + " exceed " +
                                               std::to_string(kMaxHeaderBytes) + " bytes"));
    }
    // TLS peers often close without close_notify; for a body that ends at
    // EOF that is still the end of the body.
    if (ec == ssl::error::stream_truncated && parser_->got_some() && parser_->need_eof()) {
      error_code eof_ec;
      parser_->put_eof(eof_ec);
      if (!eof_ec && parser_->is_done()) return Complete();
    }
    const bool nothing = !got_response_bytes_ && !parser_->got_some() && conn_->buffer.size() == 0;
    if (nothing && CanRetry()) return Retry();
    if (nothing) {
      return Fail(absl::UnavailableError(
          target_.key + " closed the connection without a response: " + ec.message()));
    }
    const bool parse_error =
        ec.category() == http::make_error_code(http::error::need_more).category() &&
        ec != http::error::partial_message && ec != http::error::end_of_stream;
    const bool transport = !parse_error;
    if (transport) {
      return Fail(absl::UnavailableError("connection to " + target_.key +
                                         " failed mid-response: " + ec.message()));
    }
    Fail(absl::UnavailableError("malformed HTTP response from " + target_.key + ": " +
                                ec.message()));
  }

  // Stale keep-alive: a reused connection that failed before any response
  // byte gets one more try on a fresh connection.
  bool CanRetry() const { return reused_ && !retried_ && !cancel_requested_; }

  void Retry() {
    conn_->Close();
    retired_ = std::move(conn_);  // a completing operation may still reference it
    retried_ = true;
    got_response_bytes_ = false;
    parser_.reset();
    Connect();
  }

  void Complete() {
    const bool reusable = parser_->keep_alive() && conn_->buffer.size() == 0 && !cancel_requested_;
    if (reusable) {
      client_->PutIdle(std::move(conn_));
    } else {
      conn_->Close();
    }
    Finish(std::move(response_));
  }

  void Fail(Status status) {
    if (finished_) return;
    if (conn_) conn_->Close();  // never pooled again; pending operations complete with errors
    Finish(std::move(status));
  }

  void Finish(StatusOr<ClientResponse> result) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    resolver_.cancel();
    client_->Unregister(id_);
    on_head_ = nullptr;
    on_data_ = nullptr;
    HttpClient::Done done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(result));
  }

  HttpClient::Impl* const client_;
  const uint64_t id_;
  asio::strand<asio::io_context::executor_type> strand_;
  asio::steady_timer timer_;
  tcp::resolver resolver_;
  ClientRequest req_;
  HttpClient::Done done_;
  HttpClient::OnHead on_head_;
  HttpClient::OnData on_data_;
  std::atomic<bool> cancel_requested_{false};

  // --- strand state -------------------------------------------------------
  Target target_;
  http::request<http::string_body> wire_;
  bool is_head_ = false;
  std::unique_ptr<Conn> conn_;
  std::unique_ptr<Conn> retired_;
  bool reused_ = false;
  bool retried_ = false;
  bool got_response_bytes_ = false;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  std::unique_ptr<char[]> chunk_;
  ClientResponse response_;
  bool finished_ = false;
};

namespace {

class CallHandle final : public HttpClient::Call {
 public:
  explicit CallHandle(std::weak_ptr<CallImpl> impl) : impl_(std::move(impl)) {}
  void Cancel() override {
    if (auto c = impl_.lock()) c->RequestCancel();
  }

 private:
  std::weak_ptr<CallImpl> impl_;
};

}  // namespace

std::shared_ptr<HttpClient::Call> HttpClient::Impl::Send(ClientRequest req, Done done,
                                                         OnHead on_head, OnData on_data) {
  std::shared_ptr<CallImpl> call;
  bool stopping;
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping = stopping_;
    const uint64_t id = next_id_++;
    call = std::make_shared<CallImpl>(this, id, std::move(req), std::move(done), std::move(on_head),
                                      std::move(on_data));
    if (!stopping) live_[id] = call;
  }
  auto handle = std::make_shared<CallHandle>(call);
  if (stopping) call->RequestCancel();
  call->Post();
  return handle;
}

HttpClient::Impl::~Impl() {
  std::vector<std::shared_ptr<CallImpl>> calls;
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
    sweeper_.cancel();
    for (auto& [key, list] : idle_) {
      for (auto& c : list) c->Close();
    }
    idle_.clear();
    for (auto& [id, weak] : live_) {
      if (auto c = weak.lock()) calls.push_back(std::move(c));
    }
  }
  for (auto& c : calls) c->RequestCancel();
  calls.clear();
  work_.reset();
  for (auto& t : threads_) t.join();
}

HttpClient::HttpClient(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}
HttpClient::~HttpClient() = default;

std::shared_ptr<HttpClient::Call> HttpClient::Send(ClientRequest req, Done done, OnHead on_head,
                                                   OnData on_data) {
  return impl_->Send(std::move(req), std::move(done), std::move(on_head), std::move(on_data));
}

}  // namespace persona::net
