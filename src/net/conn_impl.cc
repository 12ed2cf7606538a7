#include "net/conn_impl.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <mutex>
#include <vector>

#include "metrics/metrics.h"

namespace persona::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

// The queueing, write-coalescing, read-timeout and close logic shared by both
// transports; Derived supplies ReadSome(), WriteBuffers() and CloseStream().
template <class Derived>
class ConnBase : public Conn, public std::enable_shared_from_this<Derived> {
 public:
  explicit ConnBase(asio::any_io_executor ex) : ex_(std::move(ex)), timer_(ex_) {}

  void Start(std::function<void(std::string_view)> on_data,
             std::function<void()> on_close) override {
    on_data_ = std::move(on_data);
    on_close_ = std::move(on_close);
    asio::dispatch(ex_, [self = Self()] { self->DoRead(); });
  }

  bool Send(std::string data) override { return Queue({std::move(data), nullptr}); }
  bool Send(std::string head, std::shared_ptr<const std::string> payload) override {
    return Queue({std::move(head), std::move(payload)});
  }

  void Close() override {
    asio::post(ex_, [self = Self()] {
      self->close_after_write_ = true;
      if (!self->writing_) self->Flush();
    });
  }
  void Abort() override {
    asio::post(ex_, [self = Self()] { self->Finish(); });
  }

  void SetReadTimeout(int ms) override {
    asio::post(ex_, [self = Self(), ms] {
      self->read_timeout_ms_ = ms;
      self->last_read_ = std::chrono::steady_clock::now();
      self->ArmTimer();
    });
  }
  void SetDeadline(std::chrono::steady_clock::time_point deadline) override {
    asio::post(ex_, [self = Self(), deadline] {
      self->deadline_ = deadline;
      self->ArmTimer();
    });
  }
  const std::string& credential() const override { return credential_; }

  size_t queued_bytes() const override { return queued_.load(std::memory_order_relaxed); }
  const std::string& remote_address() const override { return remote_; }

 protected:
  struct Item {
    std::string head;
    std::shared_ptr<const std::string> payload;
    size_t size() const { return head.size() + (payload ? payload->size() : 0); }
  };

  std::shared_ptr<Derived> Self() { return this->shared_from_this(); }

  void DoRead() {
    if (finished_) return;
    static_cast<Derived*>(this)->ReadSome(
        [self = Self()](beast::error_code ec, std::string_view data) {
          if (ec) return self->Finish();
          self->last_read_ = std::chrono::steady_clock::now();
          if (!data.empty()) self->on_data_(data);
          self->DoRead();
        });
  }

  bool Queue(Item item) {
    bool schedule = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (closed_) return false;
      queued_.fetch_add(item.size(), std::memory_order_relaxed);
      out_.push_back(std::move(item));
      schedule = !flush_scheduled_;
      flush_scheduled_ = true;
    }
    if (schedule) asio::post(ex_, [self = Self()] { self->Flush(); });
    return true;
  }

  // On the strand: writes everything queued as one gathered write.
  void Flush() {
    if (writing_ || finished_) return;
    {
      std::lock_guard<std::mutex> l(mu_);
      flush_scheduled_ = false;
      writing_items_.clear();
      writing_items_.swap(out_);
      if (writing_items_.empty()) std::vector<Item>().swap(out_);  // idle: hold nothing
    }
    if (writing_items_.empty()) {
      // Idle again: give the buffers back (most connections are idle).
      std::vector<Item>().swap(writing_items_);
      if (close_after_write_) Finish();
      return;
    }
    size_t bytes = 0;
    for (const auto& it : writing_items_) bytes += it.size();
    writing_ = true;
    static_cast<Derived*>(this)->WriteItems(
        writing_items_, [self = Self(), bytes](beast::error_code ec) {
          self->writing_ = false;
          self->queued_.fetch_sub(bytes, std::memory_order_relaxed);
          if (ec) return self->Finish();
          self->Flush();
        });
  }

  // One timer serves both the read timeout and the hard deadline: it fires
  // at the earlier of the two (an idle connection holds one timer, not two).
  void ArmTimer() {
    using Clock = std::chrono::steady_clock;
    if (finished_) return;
    auto at = deadline_;
    if (read_timeout_ms_ > 0)
      at = std::min(at, last_read_ + std::chrono::milliseconds(read_timeout_ms_));
    if (at == Clock::time_point::max()) {
      timer_.cancel();
      return;
    }
    timer_.expires_at(at);
    timer_.async_wait([self = Self()](beast::error_code ec) {
      if (ec || self->finished_) return;
      const auto now = Clock::now();
      if (now >= self->deadline_) return self->Finish();  // the credential expired
      if (self->read_timeout_ms_ > 0 &&
          now - self->last_read_ >= std::chrono::milliseconds(self->read_timeout_ms_)) {
        return self->Finish();  // keep-alive expired
      }
      self->ArmTimer();
    });
  }

  void Finish() {
    if (finished_) return;
    finished_ = true;
    {
      std::lock_guard<std::mutex> l(mu_);
      closed_ = true;
      size_t dropped = 0;
      for (const auto& it : out_) dropped += it.size();
      out_.clear();
      queued_.fetch_sub(dropped, std::memory_order_relaxed);
    }
    timer_.cancel();
    static_cast<Derived*>(this)->CloseStream();
    if (auto cb = std::move(on_close_)) cb();
    on_data_ = nullptr;
  }

  asio::any_io_executor ex_;
  asio::steady_timer timer_;
  std::string remote_;
  std::function<void(std::string_view)> on_data_;
  std::function<void()> on_close_;

  // Strand-only state.
  bool writing_ = false;
  bool finished_ = false;
  bool close_after_write_ = false;
  int read_timeout_ms_ = 0;
  std::chrono::steady_clock::time_point last_read_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  std::string credential_;
  std::vector<Item> writing_items_;

  // Shared with senders on other threads.
  std::mutex mu_;
  std::vector<Item> out_;  // a vector: an idle connection holds no allocation
  bool closed_ = false;
  bool flush_scheduled_ = false;
  std::atomic<size_t> queued_{0};
};

// Writes every queued item (head, then the shared payload) as one gathered write.
template <class Stream, class Items, class Handler>
void GatherWrite(Stream& stream, const Items& items, std::vector<asio::const_buffer>* buffers,
                 Handler h) {
  buffers->clear();
  for (const auto& it : items) {
    buffers->emplace_back(asio::buffer(it.head));
    if (it.payload) buffers->emplace_back(asio::buffer(*it.payload));
  }
  asio::async_write(stream, *buffers,
                    [h = std::move(h)](beast::error_code ec, size_t) mutable { h(ec); });
}

void CloseSocket(tcp::socket& socket) {
  beast::error_code ec;
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

class TcpConn final : public ConnBase<TcpConn> {
 public:
  explicit TcpConn(tcp::socket socket)
      : ConnBase(socket.get_executor()), socket_(std::move(socket)) {
    beast::error_code ec;
    socket_.set_option(tcp::no_delay(true), ec);
    socket_.non_blocking(true, ec);  // read_some after wait_read must never block
    auto ep = socket_.remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  }
  std::string_view transport() const override { return "tcp"; }

  // Waits for readability, then reads into a per-thread buffer: an idle
  // connection holds no read buffer (8 KiB each would dominate its memory).
  template <class Handler>
  void ReadSome(Handler h) {
    socket_.async_wait(tcp::socket::wait_read,
                       [this, h = std::move(h)](beast::error_code ec) mutable {
                         if (ec) return h(ec, std::string_view());
                         thread_local char buf[16384];
                         const size_t n = socket_.read_some(asio::buffer(buf), ec);
                         if (ec == asio::error::would_block || ec == asio::error::try_again)
                           return h(beast::error_code(), std::string_view());
                         h(ec, std::string_view(buf, ec ? 0 : n));
                       });
  }
  template <class Handler>
  void WriteItems(const std::vector<Item>& items, Handler h) {
    GatherWrite(socket_, items, &buffers_, std::move(h));
  }
  void CloseStream() { CloseSocket(socket_); }

 private:
  tcp::socket socket_;
  std::vector<asio::const_buffer> buffers_;
};

// TLS over TCP (MQTT on a TLS listener): like TcpConn, but a TLS record
// cannot be read with the wait-then-read trick, so each connection has its
// own read buffer.
class TlsConn final : public ConnBase<TlsConn> {
 public:
  TlsConn(beast::ssl_stream<beast::tcp_stream> stream, std::shared_ptr<ssl::context> ctx)
      : ConnBase(stream.get_executor()), stream_(std::move(stream)), ctx_(std::move(ctx)) {
    beast::error_code ec;
    auto ep = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
    beast::get_lowest_layer(stream_).socket().set_option(tcp::no_delay(true), ec);
  }
  std::string_view transport() const override { return "tls"; }

  template <class Handler>
  void ReadSome(Handler h) {
    stream_.async_read_some(asio::buffer(buf_),
                            [this, h = std::move(h)](beast::error_code ec, size_t n) mutable {
                              h(ec, std::string_view(buf_.data(), ec ? 0 : n));
                            });
  }
  template <class Handler>
  void WriteItems(const std::vector<Item>& items, Handler h) {
    GatherWrite(stream_, items, &buffers_, std::move(h));
  }
  void CloseStream() { CloseSocket(beast::get_lowest_layer(stream_).socket()); }

 private:
  beast::ssl_stream<beast::tcp_stream> stream_;
  std::shared_ptr<ssl::context> ctx_;  // the context this connection started with
  std::array<char, 4096> buf_;
  std::vector<asio::const_buffer> buffers_;
};

// A server-side WebSocket carrying binary frames, over plain TCP
// (Next = beast::tcp_stream) or TLS (beast::ssl_stream<beast::tcp_stream>).
template <class Next>
class WsConn final : public ConnBase<WsConn<Next>> {
  using Base = ConnBase<WsConn<Next>>;
  using Item = typename Base::Item;

 public:
  WsConn(websocket::stream<Next> ws, std::string credential, std::shared_ptr<ssl::context> ctx)
      : Base(ws.get_executor()), ws_(std::move(ws)), ctx_(std::move(ctx)) {
    this->credential_ = std::move(credential);
    beast::error_code ec;
    auto ep = beast::get_lowest_layer(ws_).socket().remote_endpoint(ec);
    if (!ec) this->remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
    ws_.binary(true);
  }
  std::string_view transport() const override { return "websocket"; }

  template <class Handler>
  void ReadSome(Handler h) {
    buffer_.consume(buffer_.size());
    ws_.async_read(buffer_, [this, h = std::move(h)](beast::error_code ec, size_t) mutable {
      const auto data = buffer_.data();
      h(ec, ec ? std::string_view()
               : std::string_view(static_cast<const char*>(data.data()), data.size()));
    });
  }
  // One WebSocket frame per MQTT packet: the spec allows several per frame,
  // but Paho C reads only the first packet of a frame.
  template <class Handler>
  void WriteItems(const std::vector<Item>& items, Handler h) {
    WriteFrom(items, 0, std::move(h));
  }
  template <class Handler>
  void WriteFrom(const std::vector<Item>& items, size_t i, Handler h) {
    if (i == items.size()) return h(beast::error_code());
    frame_[0] = asio::buffer(items[i].head);
    frame_[1] = items[i].payload ? asio::buffer(*items[i].payload) : asio::const_buffer();
    ws_.async_write(frame_,
                    [this, &items, i, h = std::move(h)](beast::error_code ec, size_t) mutable {
                      if (ec) return h(ec);
                      WriteFrom(items, i + 1, std::move(h));
                    });
  }
  void CloseStream() { CloseSocket(beast::get_lowest_layer(ws_).socket()); }

 private:
  websocket::stream<Next> ws_;
  std::shared_ptr<ssl::context> ctx_;
  beast::flat_buffer buffer_;
  std::array<asio::const_buffer, 2> frame_;
};

template <class Next>
void AcceptWebSocketOn(Next stream, beast::http::request<beast::http::string_body> req,
                       std::string subprotocol, std::string credential,
                       std::shared_ptr<ssl::context> ctx, ConnHandler handler) {
  auto ws = std::make_shared<websocket::stream<Next>>(std::move(stream));
  beast::get_lowest_layer(*ws).expires_never();
  // Pings from the server are not needed: MQTT has its own keep-alive.
  websocket::stream_base::timeout t =
      websocket::stream_base::timeout::suggested(beast::role_type::server);
  t.idle_timeout = websocket::stream_base::none();
  t.keep_alive_pings = false;
  ws->set_option(t);
  ws->read_message_max(1 << 20);
  const bool offered =
      req[beast::http::field::sec_websocket_protocol].find(subprotocol) != std::string_view::npos;
  ws->set_option(
      websocket::stream_base::decorator([subprotocol, offered](websocket::response_type& res) {
        if (offered) res.set(beast::http::field::sec_websocket_protocol, subprotocol);
      }));
  auto req_ptr = std::make_shared<beast::http::request<beast::http::string_body>>(std::move(req));
  ws->async_accept(*req_ptr, [ws, req_ptr, credential = std::move(credential), ctx = std::move(ctx),
                              handler = std::move(handler)](beast::error_code ec) mutable {
    if (ec) return;
    handler(std::make_shared<WsConn<Next>>(std::move(*ws), std::move(credential), std::move(ctx)));
  });
}

}  // namespace

std::shared_ptr<Conn> MakeTcpConn(tcp::socket socket) {
  return std::make_shared<TcpConn>(std::move(socket));
}

void AcceptWebSocket(beast::tcp_stream stream, beast::flat_buffer buffer,
                     beast::http::request<beast::http::string_body> req, std::string subprotocol,
                     std::string credential, ConnHandler handler) {
  (void)buffer;  // bytes after the upgrade request would be WebSocket frames; clients wait for 101
  AcceptWebSocketOn(std::move(stream), std::move(req), std::move(subprotocol),
                    std::move(credential), nullptr, std::move(handler));
}

void AcceptWebSocket(beast::ssl_stream<beast::tcp_stream> stream, beast::flat_buffer buffer,
                     beast::http::request<beast::http::string_body> req, std::string subprotocol,
                     std::string credential, std::shared_ptr<ssl::context> ctx,
                     ConnHandler handler) {
  (void)buffer;
  AcceptWebSocketOn(std::move(stream), std::move(req), std::move(subprotocol),
                    std::move(credential), std::move(ctx), std::move(handler));
}

void AcceptTls(tcp::socket socket, std::shared_ptr<ssl::context> ctx, int timeout_ms,
               ConnHandler handler) {
  auto stream = std::make_shared<beast::ssl_stream<beast::tcp_stream>>(std::move(socket), *ctx);
  beast::get_lowest_layer(*stream).expires_after(std::chrono::milliseconds(timeout_ms));
  stream->async_handshake(
      ssl::stream_base::server,
      [stream, ctx = std::move(ctx), handler = std::move(handler)](beast::error_code ec) mutable {
        if (ec) {
          metrics::Default()
              .GetCounter("persona_tls_handshake_failures_total",
                          "TLS handshakes that failed (HTTP and MQTT listeners)")
              ->Inc();
          return;
        }
        beast::get_lowest_layer(*stream).expires_never();
        handler(std::make_shared<TlsConn>(std::move(*stream), std::move(ctx)));
      });
}

}  // namespace persona::net
