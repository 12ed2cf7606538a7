#include "net/http_server.h"

#include <sys/socket.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/url/params_view.hpp>
#include <charconv>
#include <deque>
#include <list>
#include <thread>

#include "core/logging.h"
#include "metrics/metrics.h"
#include "net/conn_impl.h"
#include "net/listen.h"
#include "net/tls.h"

namespace persona::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

StatusOr<std::pair<std::string, uint16_t>> SplitHostPort(const std::string& host_port) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos || colon + 1 >= host_port.size())
    return absl::InvalidArgumentError("expected host:port, got '" + host_port + "'");
  std::string host = host_port.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  const std::string p = host_port.substr(colon + 1);
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
  if (ec != std::errc() || ptr != p.data() + p.size() || port > 65535)
    return absl::InvalidArgumentError("bad port in '" + host_port + "'");
  if (host.empty()) host = "0.0.0.0";
  return std::make_pair(host, static_cast<uint16_t>(port));
}

std::optional<std::string> QueryParameter(std::string_view query, std::string_view name) {
  // params_view keeps a reference to the string it was given: parse a copy
  // that outlives the loop (a temporary string_view here read freed memory).
  const std::string owned(query);
  try {
    boost::urls::params_view params(owned);  // throws on a malformed query
    for (auto p : params)
      if (p.key == name) return std::string(p.value);
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

struct WebSocketRoute {
  std::string path;
  std::string subprotocol;
  ConnHandler handler;
  HttpServer::UpgradeGate gate;
};

namespace {

struct NetMetrics {
  metrics::Gauge* connections;
  metrics::Counter* accepted;
  metrics::Counter* refused;
  metrics::Gauge* streams;
  metrics::Counter* stream_overflows;
  metrics::Counter* rate_limited;
  metrics::Counter* tls_failures;
  static NetMetrics& Get() {
    static NetMetrics m = [] {
      auto& r = metrics::Default();
      return NetMetrics{
          r.GetGauge("persona_http_connections", "Open HTTP connections"),
          r.GetCounter("persona_http_connections_accepted_total", "Accepted HTTP connections"),
          r.GetCounter("persona_http_connections_refused_total",
                       "Connections closed at once because http.max_connections was reached"),
          r.GetGauge("persona_http_event_streams", "Open server-sent event streams"),
          r.GetCounter("persona_http_event_stream_overflows_total",
                       "Event streams closed because the client could not keep up"),
          r.GetCounter("persona_http_connections_rate_limited_total",
                       "Connections refused by limits.connections_per_address"),
          r.GetCounter("persona_tls_handshake_failures_total",
                       "TLS handshakes that failed (HTTP and MQTT listeners)"),
      };
    }();
    return m;
  }
};

class SessionBase;

// Shared by a server and its connections, for the drain of an upgrade
// (HttpServer::CloseConnections): whether connections close after their
// current response, how many requests are between read and reply, and the
// live connections (registered once per connection, not per request).
struct DrainState {
  std::atomic<bool> closing{false};
  std::atomic<int> in_flight{0};
  std::mutex mu;
  std::list<std::weak_ptr<SessionBase>> sessions;
};

// What an Exchange and an EventStream need of a connection, whatever its
// transport (plain TCP or TLS).
class SessionBase {
 public:
  virtual ~SessionBase() = default;
  // Posts to the connection's strand: closes it if it waits for a request
  // or streams events; one answering a request closes after the response.
  virtual void CloseIfIdle() = 0;
  virtual void Respond(Response res) = 0;
  virtual std::shared_ptr<EventStream> StartStream(Response head) = 0;
  virtual bool QueueStream(std::string data) = 0;
  virtual void CloseStream() = 0;
  virtual const std::string& remote() const = 0;
};

class StreamImpl final : public EventStream, public std::enable_shared_from_this<StreamImpl> {
 public:
  StreamImpl(std::shared_ptr<SessionBase> session, size_t limit)
      : session_(std::move(session)), limit_(limit) {}
  bool Send(std::string data) override;
  void Close() override;
  void OnClose(std::function<void()> fn) override;

  // Called on the session strand.
  void Closed();
  // The session while the stream is open, else null.
  std::shared_ptr<SessionBase> Live();

  std::shared_ptr<SessionBase> session_;
  size_t limit_;
  std::mutex mu_;
  std::function<void()> on_close_;
  bool closed_ = false;
};

std::shared_ptr<Exchange> MakeExchange(std::shared_ptr<SessionBase> s);

// One HTTP connection. Stream is beast::tcp_stream, or
// beast::ssl_stream<beast::tcp_stream> for TLS (the TLS handshake comes
// first, under the request timeout).
template <class Stream>
class Session : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

 public:
  Session(tcp::socket socket, const ServerOptions& options, Handler* handler,
          std::shared_ptr<std::atomic<int>> live, std::shared_ptr<const WebSocketRoute> ws,
          std::shared_ptr<asio::ssl::context> tls, std::shared_ptr<DrainState> drain)
      : stream_(MakeStream(std::move(socket), tls.get())),
        tls_(std::move(tls)),
        options_(options),
        handler_(handler),
        live_(std::move(live)),
        ws_route_(std::move(ws)),
        upgrade_(std::move(drain)) {
    boost::system::error_code ec;
    auto ep = Lowest().socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
    Lowest().socket().set_option(tcp::no_delay(true), ec);
    NetMetrics::Get().connections->Add(1);
  }
  ~Session() {
    if (answering_) upgrade_->in_flight.fetch_sub(1);
    if (registered_) {
      std::lock_guard<std::mutex> l(upgrade_->mu);
      upgrade_->sessions.erase(entry_);
    }
    live_->fetch_sub(1);
    NetMetrics::Get().connections->Add(-1);
  }

  void Start() {
    {
      std::lock_guard<std::mutex> l(upgrade_->mu);
      entry_ = upgrade_->sessions.insert(upgrade_->sessions.end(), this->weak_from_this());
      registered_ = true;
    }
    asio::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (kTls) {
        self->Lowest().expires_after(std::chrono::milliseconds(self->options_.request_timeout_ms));
        self->stream_.async_handshake(asio::ssl::stream_base::server, [self](beast::error_code ec) {
          if (ec) {
            NetMetrics::Get().tls_failures->Inc();
            return self->Shutdown();
          }
          self->WaitForRequest();
        });
      } else {
        self->WaitForRequest();
      }
    });
  }

  // --- called from any thread --------------------------------------------
  void Respond(Response res) override {
    asio::post(stream_.get_executor(),
               [self = this->shared_from_this(), res = std::move(res)]() mutable {
                 self->Write(std::move(res));
               });
  }

  std::shared_ptr<EventStream> StartStream(Response head) override {
    auto s = std::make_shared<StreamImpl>(this->shared_from_this(), options_.stream_queue_limit);
    asio::post(stream_.get_executor(), [self = this->shared_from_this(), s,
                                        head = std::move(head)] { self->BeginStream(s, head); });
    return s;
  }

  // Queues stream data; false if the queue is full. Called via StreamImpl.
  bool QueueStream(std::string data) override {
    {
      std::lock_guard<std::mutex> l(out_mu_);
      if (stream_closed_) return false;
      if (out_.size() >= options_.stream_queue_limit) return false;
      out_.push_back(std::move(data));
    }
    asio::post(stream_.get_executor(), [self = this->shared_from_this()] { self->FlushStream(); });
    return true;
  }

  void CloseStream() override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this()] { self->EndStream(); });
  }

  const std::string& remote() const override { return remote_; }

  void CloseIfIdle() override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this()] {
      if (self->stream_obj_) return self->EndStream();
      if (self->idle_) self->Shutdown();  // the pending read ends with an error
    });
  }

 private:
  static Stream MakeStream(tcp::socket socket, asio::ssl::context* tls) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *tls);
    } else {
      return Stream(std::move(socket));
    }
  }
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }
  // --- on the strand ------------------------------------------------------
  void WaitForRequest() {
    if (buffer_.size() > 0) return ReadRequest();  // pipelined bytes already here
    if (upgrade_->closing.load(std::memory_order_relaxed)) return Shutdown();
    Lowest().expires_after(std::chrono::milliseconds(options_.idle_timeout_ms));
    idle_ = true;
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = this->shared_from_this()](beast::error_code ec, size_t n) {
                              self->idle_ = false;
                              if (ec) return self->Shutdown();
                              self->buffer_.commit(n);
                              self->ReadRequest();
                            });
  }

  void ReadRequest() {
    parser_.emplace();
    parser_->body_limit(options_.max_body_bytes);
    parser_->header_limit(static_cast<uint32_t>(options_.max_header_bytes));
    // The whole request must arrive within the timeout: slow-drip clients are cut off.
    Lowest().expires_after(std::chrono::milliseconds(options_.request_timeout_ms));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::eof) {
      return Shutdown();
    }
    if (ec) {
      http::status status = http::status::bad_request;
      std::string detail = "malformed HTTP request: " + ec.message();
      if (ec == http::error::body_limit) {
        status = http::status::payload_too_large;
        detail = "request body exceeds " + std::to_string(options_.max_body_bytes) + " bytes";
      } else if (ec == http::error::header_limit) {
        status = http::status::request_header_fields_too_large;
        detail = "request headers exceed " + std::to_string(options_.max_header_bytes) + " bytes";
      } else if (ec == asio::error::operation_aborted) {
        return Shutdown();
      }
      Response res = handler_->Refusal(status, detail);
      res.keep_alive(false);
      linger_ = true;
      return Write(std::move(res));
    }
    if (ws_route_ && boost::beast::websocket::is_upgrade(parser_->get())) {
      const std::string_view target = parser_->get().target();
      if (target.substr(0, target.find('?')) == ws_route_->path) {
        std::string credential;
        if (ws_route_->gate) {
          if (auto refusal = ws_route_->gate(parser_->get(), &credential)) {
            refusal->keep_alive(false);
            return Write(std::move(*refusal));
          }
        }
        // The connection leaves HTTP: the WebSocket owns the socket from here.
        if constexpr (kTls) {
          AcceptWebSocket(std::move(stream_), std::move(buffer_), parser_->release(),
                          ws_route_->subprotocol, std::move(credential), tls_, ws_route_->handler);
        } else {
          AcceptWebSocket(std::move(stream_), std::move(buffer_), parser_->release(),
                          ws_route_->subprotocol, std::move(credential), ws_route_->handler);
        }
        return;
      }
    }
    Request req = parser_->release();
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    Lowest().expires_never();  // the handler may take a while (AI, fsync)
    answering_ = true;
    upgrade_->in_flight.fetch_add(1);
    handler_->Handle(std::move(req), MakeExchange(this->shared_from_this()));
  }

  void Write(Response res) {
    res.version(version_);
    if (!keep_alive_ || upgrade_->closing.load(std::memory_order_relaxed)) res.keep_alive(false);
    res.prepare_payload();
    const bool close = !res.keep_alive();
    auto sp = std::make_shared<Response>(std::move(res));
    Lowest().expires_after(std::chrono::milliseconds(options_.request_timeout_ms));
    http::async_write(stream_, *sp,
                      [self = this->shared_from_this(), sp, close](beast::error_code ec, size_t) {
                        self->Answered();
                        if (!ec && close && self->linger_) return self->Linger(0);
                        if (ec || close) return self->Shutdown();
                        self->WaitForRequest();
                      });
  }

  // The request handed to the handler has its reply on the wire (or the
  // connection failed): it no longer holds up a drain.
  void Answered() {
    if (!answering_) return;
    answering_ = false;
    upgrade_->in_flight.fetch_sub(1);
  }

  void BeginStream(std::shared_ptr<StreamImpl> s, const Response& head) {
    Answered();
    stream_obj_ = s;
    NetMetrics::Get().streams->Add(1);
    std::string h =
        "HTTP/1.1 " + std::to_string(head.result_int()) + " " +
        std::string(head.reason().empty() ? http::obsolete_reason(head.result()) : head.reason()) +
        "\r\n";
    for (const auto& f : head) {
      h += std::string(f.name_string()) + ": " + std::string(f.value()) + "\r\n";
    }
    h += "Connection: close\r\n\r\n";
    {
      std::lock_guard<std::mutex> l(out_mu_);
      out_.push_front(std::move(h));
    }
    Lowest().expires_never();
    // A read completes only when the peer closes (or misbehaves): end the stream then.
    stream_.async_read_some(
        asio::buffer(drain_),
        [self = this->shared_from_this()](beast::error_code, size_t) { self->EndStream(); });
    FlushStream();
  }

  void FlushStream() {
    if (writing_ || stream_closed_) return;
    {
      std::lock_guard<std::mutex> l(out_mu_);
      if (out_.empty()) return;
      writing_buf_.clear();
      // Coalesce everything queued into one write.
      while (!out_.empty()) {
        writing_buf_ += out_.front();
        out_.pop_front();
      }
    }
    writing_ = true;
    Lowest().expires_after(std::chrono::milliseconds(options_.request_timeout_ms));
    asio::async_write(stream_, asio::buffer(writing_buf_),
                      [self = this->shared_from_this()](beast::error_code ec, size_t) {
                        self->writing_ = false;
                        if (ec) return self->EndStream();
                        self->Lowest().expires_never();
                        self->FlushStream();
                      });
  }

  void EndStream() {
    if (stream_closed_) return;
    {
      std::lock_guard<std::mutex> l(out_mu_);
      stream_closed_ = true;
      out_.clear();
    }
    NetMetrics::Get().streams->Add(-1);
    if (auto s = stream_obj_) {
      stream_obj_.reset();
      s->Closed();
    }
    Shutdown();
  }

  // After refusing a request whose body is still arriving, stop sending and
  // discard input for a while, so the client reads the refusal instead of a
  // connection reset. Bounded in time and bytes.
  void Linger(size_t discarded) {
    if (discarded == 0) {
      beast::error_code ec;
      Lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
      Lowest().expires_after(std::chrono::seconds(2));
    }
    if (discarded > (8u << 20)) return Shutdown();
    stream_.async_read_some(asio::buffer(drain_), [self = this->shared_from_this(), discarded](
                                                      beast::error_code ec, size_t n) {
      if (ec) return self->Shutdown();
      self->Linger(discarded + n);
    });
  }

  void Shutdown() {
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    Lowest().socket().close(ec);
  }

  Stream stream_;
  std::shared_ptr<asio::ssl::context> tls_;  // the context this connection started with
  const ServerOptions options_;
  Handler* handler_;
  std::shared_ptr<std::atomic<int>> live_;
  std::shared_ptr<const WebSocketRoute> ws_route_;
  beast::flat_buffer buffer_{static_cast<size_t>(64 << 10) + (2 << 20)};
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = true;
  bool linger_ = false;
  unsigned version_ = 11;
  std::string remote_;
  std::shared_ptr<DrainState> upgrade_;
  std::list<std::weak_ptr<SessionBase>>::iterator entry_;
  bool registered_ = false;
  bool idle_ = false;       // waiting for the first bytes of a request
  bool answering_ = false;  // a request is with the handler (counted in in_flight)

  // Event-stream state.
  std::shared_ptr<StreamImpl> stream_obj_;
  std::mutex out_mu_;
  std::deque<std::string> out_;
  bool stream_closed_ = false;
  bool writing_ = false;
  std::string writing_buf_;
  char drain_[4096];
};

class ExchangeImpl final : public Exchange {
 public:
  explicit ExchangeImpl(std::shared_ptr<SessionBase> s) : session_(std::move(s)) {}
  void Respond(Response res) override {
    if (done_.exchange(true)) return;
    session_->Respond(std::move(res));
  }
  std::shared_ptr<EventStream> StartStream(Response head) override {
    if (done_.exchange(true)) return nullptr;
    return session_->StartStream(std::move(head));
  }
  const std::string& remote_address() const override { return session_->remote(); }

 private:
  std::shared_ptr<SessionBase> session_;
  std::atomic<bool> done_{false};
};

std::shared_ptr<Exchange> MakeExchange(std::shared_ptr<SessionBase> s) {
  return std::make_shared<ExchangeImpl>(std::move(s));
}

// The session is taken under the lock: Closed() drops it (on the session's
// strand) while senders on other threads may still hold the stream, e.g. a
// streamed reply whose client went away mid-answer.
std::shared_ptr<SessionBase> StreamImpl::Live() {
  std::lock_guard<std::mutex> l(mu_);
  return closed_ ? nullptr : session_;
}

bool StreamImpl::Send(std::string data) {
  auto session = Live();
  if (!session) return false;
  if (session->QueueStream(std::move(data))) return true;
  NetMetrics::Get().stream_overflows->Inc();
  session->CloseStream();
  return false;
}

void StreamImpl::Close() {
  if (auto session = Live()) session->CloseStream();
}

void StreamImpl::OnClose(std::function<void()> fn) {
  bool run_now;
  {
    std::lock_guard<std::mutex> l(mu_);
    run_now = closed_;
    if (!run_now) on_close_ = std::move(fn);
  }
  if (run_now) fn();
}

void StreamImpl::Closed() {
  std::function<void()> fn;
  std::shared_ptr<SessionBase> session;  // released outside the lock
  {
    std::lock_guard<std::mutex> l(mu_);
    closed_ = true;
    fn = std::move(on_close_);
    session = std::move(session_);  // break the Session ↔ StreamImpl cycle
  }
  if (fn) fn();
}

}  // namespace

void RefuseConnection(tcp::socket socket, std::shared_ptr<const std::string> bytes) {
  // Says why, then closes; the bytes are shared, the socket lives in the handler.
  auto sock = std::make_shared<tcp::socket>(std::move(socket));
  asio::async_write(*sock, asio::buffer(*bytes), [sock, bytes](boost::system::error_code, size_t) {
    boost::system::error_code ec;
    sock->shutdown(tcp::socket::shutdown_both, ec);
    sock->close(ec);
  });
}

StatusOr<uint16_t> AdoptAcceptor(tcp::acceptor& acceptor, int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return absl::InvalidArgumentError("an inherited listener is not a socket");
  boost::system::error_code ec;
  acceptor.assign(addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) return absl::UnavailableError("cannot use an inherited listener: " + ec.message());
  auto ep = acceptor.local_endpoint(ec);
  if (ec) return absl::UnavailableError("cannot use an inherited listener: " + ec.message());
  return ep.port();
}

StatusOr<uint16_t> OpenAcceptor(tcp::acceptor& acceptor, const std::string& host_port) {
  auto hp = SplitHostPort(host_port);
  if (!hp.ok()) return hp.status();
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(hp->first, ec);
  if (ec) return absl::InvalidArgumentError("bad listen address '" + hp->first + "'");
  tcp::endpoint ep(addr, hp->second);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) {
    int one = 1;
    ::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    acceptor.bind(ep, ec);
  }
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError("cannot listen on " + host_port + ": " + ec.message());
  return acceptor.local_endpoint().port();
}

class HttpServer::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::io_context& ioc, ServerOptions options, Handler* handler)
      : ioc_(ioc), acceptor_(asio::make_strand(ioc)), options_(options), handler_(handler) {}

  StatusOr<uint16_t> Listen(const std::string& host_port) {
    auto port = OpenAcceptor(acceptor_, host_port);
    if (port.ok()) {
      listen_fd_ = acceptor_.native_handle();
      DoAccept();
    }
    return port;
  }

  StatusOr<uint16_t> Adopt(int fd) {
    auto port = AdoptAcceptor(acceptor_, fd);
    if (port.ok()) {
      listen_fd_ = fd;
      DoAccept();
    }
    return port;
  }

  void StopAccepting() {
    asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
      boost::system::error_code ec;
      self->acceptor_.close(ec);
    });
  }

  void CloseConnections() {
    drain_->closing.store(true);
    std::vector<std::shared_ptr<SessionBase>> live;
    {
      std::lock_guard<std::mutex> l(drain_->mu);
      for (const auto& w : drain_->sessions)
        if (auto s = w.lock()) live.push_back(std::move(s));
    }
    for (const auto& s : live) s->CloseIfIdle();
  }

  bool WaitForRequests(int timeout_ms) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (drain_->in_flight.load() > 0) {
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
  }

  std::atomic<int> listen_fd_{-1};

 private:
  void DoAccept() {
    acceptor_.async_accept(
        asio::make_strand(ioc_),
        [self = shared_from_this()](boost::system::error_code ec, tcp::socket socket) {
          if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
          if (!ec) {
            if (self->live_->load() >= self->options_.max_connections) {
              NetMetrics::Get().refused->Inc();
              boost::system::error_code ignored;
              socket.close(ignored);
            } else if (self->filter_ && !self->Admitted(socket)) {
              NetMetrics::Get().rate_limited->Inc();
              RefuseConnection(std::move(socket), self->refusal_);
            } else {
              self->live_->fetch_add(1);
              NetMetrics::Get().accepted->Inc();
              if (self->tls_) {
                std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
                    std::move(socket), self->options_, self->handler_, self->live_, self->ws_route_,
                    self->tls_->Current(), self->drain_)
                    ->Start();
              } else {
                std::make_shared<Session<beast::tcp_stream>>(std::move(socket), self->options_,
                                                             self->handler_, self->live_,
                                                             self->ws_route_, nullptr, self->drain_)
                    ->Start();
              }
            }
          } else if (ec == asio::error::no_descriptors) {
            // Out of file descriptors: back off briefly instead of spinning.
            LogWarn("accept: out of file descriptors");
            auto t =
                std::make_shared<asio::steady_timer>(self->ioc_, std::chrono::milliseconds(50));
            t->async_wait([self, t](boost::system::error_code) { self->DoAccept(); });
            return;
          }
          self->DoAccept();
        });
  }

  bool Admitted(tcp::socket& socket) {
    boost::system::error_code ec;
    auto ep = socket.remote_endpoint(ec);
    return ec || filter_(ep.address().to_string());
  }

  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  ServerOptions options_;
  Handler* handler_;
  std::shared_ptr<std::atomic<int>> live_ = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<DrainState> drain_ = std::make_shared<DrainState>();

 public:
  std::shared_ptr<const WebSocketRoute> ws_route_;
  ConnectionFilter filter_;
  std::shared_ptr<const std::string> refusal_;
  std::shared_ptr<TlsContext> tls_;
};

HttpServer::HttpServer(asio::io_context& ioc, ServerOptions options, Handler* handler)
    : impl_(std::make_shared<Impl>(ioc, options, handler)) {}
HttpServer::~HttpServer() = default;

StatusOr<uint16_t> HttpServer::Listen(const std::string& host_port) {
  return impl_->Listen(host_port);
}
void HttpServer::StopAccepting() { impl_->StopAccepting(); }
StatusOr<uint16_t> HttpServer::Adopt(int fd) { return impl_->Adopt(fd); }
int HttpServer::listener_fd() const { return impl_->listen_fd_.load(); }
void HttpServer::CloseConnections() { impl_->CloseConnections(); }
bool HttpServer::WaitForRequests(int timeout_ms) { return impl_->WaitForRequests(timeout_ms); }
void HttpServer::SetWebSocketRoute(std::string path, std::string subprotocol, ConnHandler handler,
                                   UpgradeGate gate) {
  impl_->ws_route_ = std::make_shared<const WebSocketRoute>(
      WebSocketRoute{std::move(path), std::move(subprotocol), std::move(handler), std::move(gate)});
}
void HttpServer::SetTls(std::shared_ptr<TlsContext> tls) { impl_->tls_ = std::move(tls); }
void HttpServer::SetConnectionFilter(ConnectionFilter filter, std::string refusal) {
  impl_->filter_ = std::move(filter);
  impl_->refusal_ = std::make_shared<const std::string>(std::move(refusal));
}

}  // namespace persona::net
