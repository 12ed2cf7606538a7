#include "net/tcp_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "core/logging.h"
#include "metrics/metrics.h"
#include "net/conn_impl.h"
#include "net/listen.h"
#include "net/tls.h"

namespace persona::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class TcpServer::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::io_context& ioc, int max_connections, ConnHandler handler)
      : ioc_(ioc),
        acceptor_(asio::make_strand(ioc)),
        max_connections_(max_connections),
        handler_(std::move(handler)),
        refused_(metrics::Default().GetCounter(
            "persona_mqtt_connections_refused_total",
            "MQTT connections closed at once because mqtt.max_connections was reached")) {}

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

  std::atomic<int> listen_fd_{-1};

  void StopAccepting() {
    asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
      boost::system::error_code ec;
      self->acceptor_.close(ec);
    });
  }

 private:
  void DoAccept() {
    acceptor_.async_accept(
        asio::make_strand(ioc_),
        [self = shared_from_this()](boost::system::error_code ec, tcp::socket socket) {
          if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
          if (ec == asio::error::no_descriptors) {
            LogWarn("mqtt accept: out of file descriptors");
            auto t =
                std::make_shared<asio::steady_timer>(self->ioc_, std::chrono::milliseconds(50));
            t->async_wait([self, t](boost::system::error_code) { self->DoAccept(); });
            return;
          }
          if (!ec) {
            if (self->live_->load() >= self->max_connections_) {
              self->refused_->Inc();
              boost::system::error_code ignored;
              socket.close(ignored);
            } else if (self->filter_ && !self->Admitted(socket)) {
              self->rate_limited_->Inc();
              RefuseConnection(std::move(socket), self->refusal_);
            } else {
              // Counted from accept until the owner lets go of the
              // connection, or until a TLS handshake fails.
              self->live_->fetch_add(1);
              if (self->tls_) {
                // The handshake holds the count until it hands it to the connection.
                struct Slot {
                  std::shared_ptr<std::atomic<int>> live;
                  ~Slot() {
                    if (live) live->fetch_sub(1);
                  }
                };
                auto slot = std::make_shared<Slot>(Slot{self->live_});
                AcceptTls(std::move(socket), self->tls_->Current(), self->handshake_timeout_ms_,
                          [slot, handler = self->handler_](std::shared_ptr<Conn> conn) {
                            conn->CountIn(std::move(slot->live));
                            handler(std::move(conn));
                          });
              } else {
                auto conn = MakeTcpConn(std::move(socket));
                conn->CountIn(self->live_);
                self->handler_(std::move(conn));
              }
            }
          }
          self->DoAccept();
        });
  }

  bool Admitted(tcp::socket& socket) {
    boost::system::error_code ec;
    auto ep = socket.remote_endpoint(ec);
    return ec || filter_(ep.address().to_string());
  }

 public:
  std::function<bool(std::string_view)> filter_;
  std::shared_ptr<const std::string> refusal_;
  std::shared_ptr<TlsContext> tls_;
  int handshake_timeout_ms_ = 10000;
  metrics::Counter* rate_limited_ =
      metrics::Default().GetCounter("persona_mqtt_connections_rate_limited_total",
                                    "MQTT connections refused by limits.connections_per_address");

 private:
  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  int max_connections_;
  ConnHandler handler_;
  metrics::Counter* refused_;
  std::shared_ptr<std::atomic<int>> live_ = std::make_shared<std::atomic<int>>(0);
};

TcpServer::TcpServer(asio::io_context& ioc, int max_connections, ConnHandler handler)
    : impl_(std::make_shared<Impl>(ioc, max_connections, std::move(handler))) {}
TcpServer::~TcpServer() = default;
StatusOr<uint16_t> TcpServer::Listen(const std::string& host_port) {
  return impl_->Listen(host_port);
}
void TcpServer::StopAccepting() { impl_->StopAccepting(); }
StatusOr<uint16_t> TcpServer::Adopt(int fd) { return impl_->Adopt(fd); }
int TcpServer::listener_fd() const { return impl_->listen_fd_.load(); }
void TcpServer::SetTls(std::shared_ptr<TlsContext> tls) { impl_->tls_ = std::move(tls); }
void TcpServer::SetConnectionFilter(std::function<bool(std::string_view)> filter,
                                    std::string refusal) {
  impl_->filter_ = std::move(filter);
  impl_->refusal_ = std::make_shared<const std::string>(std::move(refusal));
}

}  // namespace persona::net
