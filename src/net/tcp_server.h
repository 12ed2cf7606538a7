// TcpServer: accepts TCP connections for a message protocol (MQTT) and hands
// each one, as a Conn on its own strand, to a ConnHandler.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "core/status.h"
#include "net/conn.h"

namespace persona::net {

class TcpServer {
 public:
  // Connections beyond `max_connections` are closed at once.
  TcpServer(boost::asio::io_context& ioc, int max_connections, ConnHandler handler);
  ~TcpServer();

  // Binds "host:port" (0 = any free port) and starts accepting; returns the port.
  StatusOr<uint16_t> Listen(const std::string& host_port);
  void StopAccepting();

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace persona::net
