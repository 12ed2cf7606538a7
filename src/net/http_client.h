// HttpClient: asynchronous outbound HTTP/1.1 (and HTTPS) for calling LLM APIs.
//
// Design. The client owns an io_context and its thread(s). Each Send() is one
// Call: a small state machine (resolve → connect → TLS handshake → write →
// read head → read body) whose handlers all run on the call's own strand, so
// a call's callbacks never run concurrently with each other. A single
// steady_timer per call enforces the whole-exchange deadline (connect, send
// and the full response): when it fires, the socket is closed and the call
// finishes with DeadlineExceeded at once. Cancel() posts to the strand and
// does the same with Cancelled.
//
// Connections are kept alive in a pool keyed by (scheme, host, port), at most
// `max_idle_per_host` idle ones per key, newest reused first; idle ones are
// closed after `idle_timeout_ms`. A pooled connection is checked for a peer
// close before reuse, and a request on a reused connection that fails before
// any response byte arrives is retried once on a fresh connection (the
// keep-alive race, where the server closes an idle connection just as the
// request is sent). Note that this can, rarely, deliver a POST twice when a
// server processes a request and then closes without answering. A connection
// goes back to the pool only after a complete, keep-alive response that was
// not cancelled.
//
// TLS uses OpenSSL: TLS 1.2 minimum, SNI for host names, and — unless
// verify_tls is false — verification against the system trust store (plus
// `ca_file`) and of the host name (or IP address) against the certificate.
//
// Memory is bounded: response headers at 64 KiB, the body (buffered or
// streamed, Content-Length, chunked or until-close) at max_response_bytes.
//
// This header deliberately includes no Asio/Beast/OpenSSL headers (pimpl).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace persona::net {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct ClientRequest {
  std::string method = "POST";
  std::string url;     // http://host[:port]/path?query or https://…; the fragment is ignored
  HeaderList headers;  // Host and User-Agent are added if missing; Content-Length is
                       // always set from `body` (a caller-supplied one is replaced)
  std::string body;
  int timeout_ms = 10000;  // whole exchange deadline: connect + send + full response; <= 0: none
  size_t max_response_bytes = 8 << 20;  // body bytes (streamed ones too); more → ResourceExhausted
};

struct ClientResponse {
  int status = 0;
  HeaderList headers;  // names as received, in order
  std::string body;    // empty when the body was delivered through on_data
  // The first header named `name` (case-insensitive), or "" if absent.
  std::string Header(std::string_view name) const;
};

class HttpClient {
 public:
  struct Options {
    int threads = 1;
    size_t max_idle_per_host = 64;
    int idle_timeout_ms = 30000;
    bool verify_tls = true;
    std::string ca_file;  // PEM; trusted in addition to the system store
  };

  // A request in flight.
  class Call {
   public:
    virtual ~Call() = default;
    // Idempotent, callable from any thread (also from the call's own
    // callbacks). If the call has not finished, done gets Cancelled and, once
    // Cancel() has returned, on_head/on_data are not called again. A no-op
    // after done has run or after the client is destroyed.
    virtual void Cancel() = 0;
  };

  using Done = std::function<void(StatusOr<ClientResponse>)>;
  using OnHead = std::function<void(int status, const HeaderList& headers)>;
  using OnData = std::function<void(std::string_view chunk)>;

  // Starts the thread(s). An unreadable ca_file is logged, and every https
  // call then fails with FailedPrecondition.
  explicit HttpClient(Options options);
  HttpClient() : HttpClient(Options{}) {}
  // Cancels everything in flight (each done gets Cancelled), closes idle
  // connections, and joins the threads. Must not run on a client thread
  // (i.e. not from inside a callback), and must not race with Send().
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts `req`; thread-safe. `done` runs exactly once, on a client thread,
  // never inside Send(). Errors: bad URL or unsupported scheme →
  // InvalidArgument; DNS failure, refused/reset connection, TLS failure
  // (including certificate verification), malformed response → Unavailable;
  // deadline → DeadlineExceeded; Cancel() → Cancelled; response headers over
  // 64 KiB or body over max_response_bytes → ResourceExhausted. HTTP 4xx/5xx
  // are not errors: they come back as a ClientResponse.
  //
  // `on_head(status, headers)`, if set, runs once the response head is read.
  // Streaming: if `on_data` is set, every decoded body piece (chunked encoding
  // removed) goes to it as it arrives, and `done` finally gets the response
  // without a body. A call's callbacks run one at a time, in that order, on a
  // client thread; they must not block for long (they hold that thread).
  std::shared_ptr<Call> Send(ClientRequest req, Done done, OnHead on_head = {},
                             OnData on_data = {});

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace persona::net
