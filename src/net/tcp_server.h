// TcpServer: accepts TCP connections for a message protocol (MQTT) and hands
// each one, as a Conn on its own strand, to a ConnHandler.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"
#include "net/conn.h"

namespace persona::net {

class TlsContext;

class TcpServer {
 public:
  // Connections beyond `max_connections` are closed at once.
  TcpServer(boost::asio::io_context& ioc, int max_connections, ConnHandler handler);
  ~TcpServer();

  // Decides, per client address, whether a new connection is served (call
  // before Listen); a refused one gets `refusal` and is closed.
  void SetConnectionFilter(std::function<bool(std::string_view address)> filter,
                           std::string refusal);
  // Speaks TLS with `tls` (call before Listen): connections reach the
  // handler after their handshake.
  void SetTls(std::shared_ptr<TlsContext> tls);
  // Binds "host:port" (0 = any free port) and starts accepting; returns the port.
  StatusOr<uint16_t> Listen(const std::string& host_port);
  // Accepts on `fd`, a listening socket handed over by the process this one
  // upgrades (instead of Listen). Returns its port.
  StatusOr<uint16_t> Adopt(int fd);
  // The listening socket (for handing over), or -1 before Listen.
  int listener_fd() const;
  void StopAccepting();

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace persona::net
