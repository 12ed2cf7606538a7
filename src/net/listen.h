// Internal to net/: opening a listening socket.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <string>

#include "core/status.h"

namespace persona::net {

// Opens, binds (SO_REUSEADDR and SO_REUSEPORT) and listens on "host:port";
// returns the bound port. Unavailable names the address and the reason.
StatusOr<uint16_t> OpenAcceptor(boost::asio::ip::tcp::acceptor& acceptor,
                                const std::string& host_port);

// Takes over `fd`, a listening TCP socket another process handed over (a
// zero-downtime upgrade); returns its port.
StatusOr<uint16_t> AdoptAcceptor(boost::asio::ip::tcp::acceptor& acceptor, int fd);

// Writes `bytes` (a refusal in the protocol's own terms) to a new connection
// and closes it.
void RefuseConnection(boost::asio::ip::tcp::socket socket,
                      std::shared_ptr<const std::string> bytes);

}  // namespace persona::net
