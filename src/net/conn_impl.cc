#include "net/conn_impl.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <limits>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "metrics/metrics.h"

namespace persona::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// What the sweeper knows of a connection: when it last read, its read
// timeout and its deadline, written on the connection's strand and read by
// the sweeper thread.
class Expiring : public Conn {
 public:
  ~Expiring() override;
  // Posts a check to the connection's strand, which closes it if it expired.
  virtual void CheckExpiry() = 0;

  bool ExpiredAt(int64_t now_ms) const {
    if (now_ms >= deadline_ms_.load(std::memory_order_relaxed)) return true;
    const int timeout = read_timeout_ms_.load(std::memory_order_relaxed);
    return timeout > 0 && now_ms - last_read_ms_.load(std::memory_order_relaxed) >= timeout;
  }

 protected:
  // Watches this connection from now on (once; later calls do nothing).
  void Watch(std::weak_ptr<Expiring> self);

  std::atomic<int64_t> last_read_ms_{NowMs()};
  std::atomic<int64_t> deadline_ms_{std::numeric_limits<int64_t>::max()};
  std::atomic<int> read_timeout_ms_{0};

 private:
  friend class Sweeper;
  static constexpr uint32_t kNoSlot = UINT32_MAX;
  uint32_t slot_ = kNoSlot;  // index in the sweeper's table (guarded by its mutex)
};

// Read timeouts and credential deadlines of every Conn, checked by one thread
// every 200 ms instead of a steady_timer per connection: an armed timer is
// 120 bytes and holds a pending wait operation of 160-512 bytes, which was
// most of an idle connection's memory. Expiry is precise to the period
// (MQTT's keep-alive is counted in seconds). A process-wide table: connections
// come and go on every I/O thread.
class Sweeper {
 public:
  static Sweeper& Get() {
    static Sweeper* sweeper = new Sweeper;  // never destroyed: its thread runs to exit
    return *sweeper;
  }

  void Add(Expiring* raw, std::weak_ptr<Expiring> weak) {
    absl::MutexLock l(&mu_);
    if (raw->slot_ != Expiring::kNoSlot) return;
    raw->slot_ = static_cast<uint32_t>(entries_.size());
    entries_.push_back({raw, std::move(weak)});
    if (!started_) {
      started_ = true;
      std::thread([this] { Run(); }).detach();
    }
  }
  // From the connection's destructor: its entry goes (the last one moves into
  // its place). The raw pointers in the table stay valid while held under
  // mu_, since a connection cannot finish destruction without taking it.
  void Remove(Expiring* raw) {
    absl::MutexLock l(&mu_);
    if (raw->slot_ == Expiring::kNoSlot) return;
    const uint32_t i = raw->slot_;
    if (i + 1 != entries_.size()) {
      entries_[i] = std::move(entries_.back());
      entries_[i].raw->slot_ = i;
    }
    entries_.pop_back();
    raw->slot_ = Expiring::kNoSlot;
    if (entries_.capacity() > 64 && entries_.size() < entries_.capacity() / 4)
      entries_.shrink_to_fit();
  }

 private:
  struct Entry {
    Expiring* raw;
    std::weak_ptr<Expiring> weak;
  };

  void Run() {
    std::vector<std::shared_ptr<Expiring>> expired;
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const int64_t now = NowMs();
      {
        absl::MutexLock l(&mu_);
        for (const Entry& e : entries_) {
          auto c = e.weak.lock();  // null while it is being destroyed
          if (c && c->ExpiredAt(now)) expired.push_back(std::move(c));
        }
      }
      // Outside the lock: a connection's last reference may go here.
      for (auto& c : expired) c->CheckExpiry();
      expired.clear();
    }
  }

  absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
};

Expiring::~Expiring() { Sweeper::Get().Remove(this); }
void Expiring::Watch(std::weak_ptr<Expiring> self) { Sweeper::Get().Add(this, std::move(self)); }

// The queueing, write-coalescing, read-timeout and close logic shared by both
// transports; Derived supplies executor(), ReadSome(), WriteItems() and
// CloseStream(). Most connections are idle most of the time, so every member
// counts (an idle MQTT connection is measured by bench/run_realtime.sh).
template <class Derived>
class ConnBase : public Expiring, public std::enable_shared_from_this<Derived> {
 public:
  void Start(std::shared_ptr<Receiver> receiver) override {
    receiver_ = std::move(receiver);
    asio::dispatch(Ex(), [self = Self()] { self->DoRead(); });
  }

  bool Send(std::string data) override { return Queue({std::move(data), nullptr}); }
  bool Send(std::string head, std::shared_ptr<const std::string> payload) override {
    return Queue({std::move(head), std::move(payload)});
  }

  void Close() override {
    asio::post(Ex(), [self = Self()] {
      self->close_after_write_ = true;
      if (!self->writing_) self->Flush();
    });
  }
  void Abort() override {
    asio::post(Ex(), [self = Self()] { self->Finish(); });
  }

  void SetReadTimeout(int ms) override {
    last_read_ms_.store(NowMs(), std::memory_order_relaxed);
    read_timeout_ms_.store(ms, std::memory_order_relaxed);
    if (ms > 0) Watch(Self());
  }
  void SetDeadline(std::chrono::steady_clock::time_point deadline) override {
    deadline_ms_.store(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline.time_since_epoch()).count(),
        std::memory_order_relaxed);
    Watch(Self());
  }
  void CheckExpiry() override {
    asio::post(Ex(), [self = Self()] {
      if (self->ExpiredAt(NowMs())) self->Finish();
    });
  }
  const std::string& credential() const override {
    static const std::string none;
    return none;
  }
  void CountIn(std::shared_ptr<std::atomic<int>> counter) override {
    counter_ = std::move(counter);
  }
  ~ConnBase() override {
    if (counter_) counter_->fetch_sub(1);
  }

  size_t queued_bytes() const override { return queued_.load(std::memory_order_relaxed); }
  const std::string& remote_address() const override { return remote_; }

 protected:
  struct Item {
    std::string head;
    std::shared_ptr<const std::string> payload;
    size_t size() const { return head.size() + (payload ? payload->size() : 0); }
  };

  std::shared_ptr<Derived> Self() { return this->shared_from_this(); }
  auto Ex() { return static_cast<Derived*>(this)->executor(); }

  void DoRead() {
    if (finished_) return;
    static_cast<Derived*>(this)->ReadSome(
        [self = Self()](beast::error_code ec, std::string_view data) {
          if (ec) return self->Finish();
          self->last_read_ms_.store(NowMs(), std::memory_order_relaxed);
          if (!data.empty() && self->receiver_) self->receiver_->OnData(data);
          self->DoRead();
        });
  }

  bool Queue(Item item) {
    bool schedule = false;
    {
      absl::MutexLock l(&mu_);
      if (closed_) return false;
      queued_.fetch_add(item.size(), std::memory_order_relaxed);
      out_.push_back(std::move(item));
      schedule = !flush_scheduled_;
      flush_scheduled_ = true;
    }
    if (schedule) asio::post(Ex(), [self = Self()] { self->Flush(); });
    return true;
  }

  // On the strand: writes everything queued as one gathered write.
  void Flush() {
    if (writing_ || finished_) return;
    {
      absl::MutexLock l(&mu_);
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

  void Finish() {
    if (finished_) return;
    finished_ = true;
    {
      absl::MutexLock l(&mu_);
      closed_ = true;
      size_t dropped = 0;
      for (const auto& it : out_) dropped += it.size();
      out_.clear();
      queued_.fetch_sub(dropped, std::memory_order_relaxed);
    }
    static_cast<Derived*>(this)->CloseStream();
    if (auto r = std::move(receiver_)) r->OnClose();
  }

  std::string remote_;
  std::shared_ptr<Receiver> receiver_;
  std::shared_ptr<std::atomic<int>> counter_;  // decremented when the connection goes

  // Strand-only state.
  bool writing_ = false;
  bool finished_ = false;
  bool close_after_write_ = false;
  std::vector<Item> writing_items_;

  // Shared with senders on other threads.
  absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool flush_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Item> out_ ABSL_GUARDED_BY(mu_);  // a vector: an idle connection holds no allocation
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
  explicit TcpConn(tcp::socket socket) : socket_(std::move(socket)) {
    beast::error_code ec;
    socket_.set_option(tcp::no_delay(true), ec);
    socket_.non_blocking(true, ec);  // read_some after wait_read must never block
    auto ep = socket_.remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  }
  std::string_view transport() const override { return "tcp"; }
  auto executor() { return socket_.get_executor(); }

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
      : stream_(std::move(stream)), ctx_(std::move(ctx)) {
    beast::error_code ec;
    auto ep = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
    beast::get_lowest_layer(stream_).socket().set_option(tcp::no_delay(true), ec);
  }
  std::string_view transport() const override { return "tls"; }
  auto executor() { return stream_.get_executor(); }

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
      : ws_(std::move(ws)), credential_(std::move(credential)), ctx_(std::move(ctx)) {
    beast::error_code ec;
    auto ep = beast::get_lowest_layer(ws_).socket().remote_endpoint(ec);
    if (!ec) this->remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
    ws_.binary(true);
  }
  std::string_view transport() const override { return "websocket"; }
  const std::string& credential() const override { return credential_; }
  auto executor() { return ws_.get_executor(); }

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
  std::string credential_;
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
