// HttpServer: HTTP/1.1 over Boost.Beast.
//
// One strand per connection; keep-alive; one request in flight per
// connection (pipelined requests wait in a bounded read buffer); limits on
// header size, body size and connection count; a whole-request read timeout
// (slow senders are cut off) and an idle keep-alive timeout. Requests are
// handed to a Handler together with an Exchange through which the handler
// answers, at once or later from any thread, or switches the connection to a
// server-sent-events stream.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/status.h"
#include "net/conn.h"

namespace persona::net {

class TlsContext;
namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// A server-sent stream on one connection. Thread-safe.
class EventStream {
 public:
  virtual ~EventStream() = default;
  // Queues `data` (already framed, e.g. "id: 3\ndata: …\n\n"). Returns false
  // if the stream is closed or its bounded queue is full, in which case the
  // stream is closed: a client that cannot keep up is cut off, never waited for.
  virtual bool Send(std::string data) = 0;
  virtual void Close() = 0;
  // Called once when the stream ends (peer closed, error, or Close()).
  virtual void OnClose(std::function<void()> fn) = 0;
};

// The reply channel of one request. Exactly one of Respond or StartStream
// must be called, once, from any thread.
class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual void Respond(Response res) = 0;
  // Sends `head` (status and headers; its body is ignored) and keeps the
  // connection open for streaming.
  virtual std::shared_ptr<EventStream> StartStream(Response head) = 0;
  virtual const std::string& remote_address() const = 0;
};

class Handler {
 public:
  virtual ~Handler() = default;
  virtual void Handle(Request req, std::shared_ptr<Exchange> exchange) = 0;
  // Answers a request the server refused before handing it over (malformed,
  // too large): status and a one-line reason.
  virtual Response Refusal(http::status status, std::string_view detail) = 0;
};

struct ServerOptions {
  uint64_t max_body_bytes = 1 << 20;
  uint64_t max_header_bytes = 16 << 10;
  int request_timeout_ms = 15000;
  int idle_timeout_ms = 60000;
  int max_connections = 20000;
  size_t stream_queue_limit = 1024;  // queued messages per event stream
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& ioc, ServerOptions options, Handler* handler);
  ~HttpServer();

  // Binds "host:port" (port 0 picks a free one) with SO_REUSEADDR and
  // SO_REUSEPORT, and starts accepting. Returns the bound port.
  StatusOr<uint16_t> Listen(const std::string& host_port);
  // Accepts on `fd`, a listening socket handed over by the process this one
  // upgrades (instead of Listen). Returns its port.
  StatusOr<uint16_t> Adopt(int fd);
  // The listening socket (for handing over), or -1 before Listen.
  int listener_fd() const;
  // Stops accepting new connections; open ones finish their current request.
  void StopAccepting();
  // For an upgrade's drain: from now on every response closes its
  // connection, and connections waiting for a request (or streaming events)
  // are closed. WaitForRequests waits until no request is with the handler;
  // false if some still are after `timeout_ms`.
  void CloseConnections();
  bool WaitForRequests(int timeout_ms);
  // Upgrades WebSocket requests for `path` (call before Listen): the
  // handshake answers with `subprotocol` when offered, then `handler` gets
  // the connection (binary frames in and out). `gate`, if set, sees the
  // upgrade request first: it may refuse it with a response, or set the
  // credential the connection carries (Conn::credential()).
  using UpgradeGate = std::function<std::optional<Response>(const Request&, std::string*)>;
  void SetWebSocketRoute(std::string path, std::string subprotocol, ConnHandler handler,
                         UpgradeGate gate = nullptr);
  // Decides, per client address, whether a new connection is served (call
  // before Listen). A refused one is answered `refusal` (a complete HTTP
  // response) and closed, before any request is read.
  using ConnectionFilter = std::function<bool(std::string_view address)>;
  void SetConnectionFilter(ConnectionFilter filter, std::string refusal);
  // Serves HTTPS (and wss:// for the WebSocket route) with `tls` (call
  // before Listen); each connection takes the context current at accept.
  void SetTls(std::shared_ptr<TlsContext> tls);

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

// The decoded value of query parameter `name` in `query` (the part after
// '?'), or nullopt if absent or the query is malformed.
std::optional<std::string> QueryParameter(std::string_view query, std::string_view name);

// Splits "host:port" ("[::1]:80" for IPv6). InvalidArgument if malformed.
StatusOr<std::pair<std::string, uint16_t>> SplitHostPort(const std::string& host_port);

}  // namespace persona::net
