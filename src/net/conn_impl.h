// Internal to net/: the Conn implementations over a TCP socket and over a
// server-side WebSocket (binary frames).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <memory>

#include "net/conn.h"

namespace persona::net {

// Wraps an accepted TCP socket (its executor should be a strand).
std::shared_ptr<Conn> MakeTcpConn(boost::asio::ip::tcp::socket socket);

// Completes the WebSocket handshake for `req` on `stream` (answering with
// `subprotocol` when the client offered it), then calls `handler` with the
// connection, which carries `credential`. Closes the socket if the
// handshake fails.
void AcceptWebSocket(boost::beast::tcp_stream stream, boost::beast::flat_buffer buffer,
                     boost::beast::http::request<boost::beast::http::string_body> req,
                     std::string subprotocol, std::string credential, ConnHandler handler);
// The same over TLS (wss://); the connection keeps `ctx` alive.
void AcceptWebSocket(boost::beast::ssl_stream<boost::beast::tcp_stream> stream,
                     boost::beast::flat_buffer buffer,
                     boost::beast::http::request<boost::beast::http::string_body> req,
                     std::string subprotocol, std::string credential,
                     std::shared_ptr<boost::asio::ssl::context> ctx, ConnHandler handler);

// Completes a server TLS handshake on `socket` within `timeout_ms`, then
// calls `handler` with the connection; a failed handshake is counted and
// the socket closed.
void AcceptTls(boost::asio::ip::tcp::socket socket, std::shared_ptr<boost::asio::ssl::context> ctx,
               int timeout_ms, ConnHandler handler);

}  // namespace persona::net
