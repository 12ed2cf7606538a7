// Conn: one message-oriented client connection (a TCP socket, or a WebSocket
// carrying binary frames), for protocols such as MQTT that net/ knows
// nothing about.
//
// The owner calls Start() once with its Receiver; OnData receives bytes in
// arrival order (TCP reads or WebSocket frames), on the connection's strand,
// one call at a time; OnClose runs once when the connection ends for any
// reason. Send() may be called from any thread: data is written in
// order, and the bytes queued but not yet written are bounded by the
// caller (it checks queued_bytes()).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace persona::net {

class Conn {
 public:
  // What the owner hands to Start(): the bytes as they arrive, and the end.
  class Receiver {
   public:
    virtual ~Receiver() = default;
    virtual void OnData(std::string_view data) = 0;
    virtual void OnClose() = 0;
  };

  virtual ~Conn() = default;

  // The connection holds `receiver` until it closes.
  virtual void Start(std::shared_ptr<Receiver> receiver) = 0;
  // Queues `data`. Returns false (and drops it) if the connection is closed.
  virtual bool Send(std::string data) = 0;
  // Queues a shared payload after `head` without copying it (fan-out).
  virtual bool Send(std::string head, std::shared_ptr<const std::string> payload) = 0;
  // Closes after the queued data is written.
  virtual void Close() = 0;
  // Closes at once, dropping queued data.
  virtual void Abort() = 0;
  // Closes the connection if nothing is received for `ms` (0 disables).
  // Both are checked every 200 ms.
  virtual void SetReadTimeout(int ms) = 0;
  // Closes the connection at `deadline` whatever it is doing (a token's expiry).
  virtual void SetDeadline(std::chrono::steady_clock::time_point deadline) = 0;
  // Counts the connection in `*counter` (already incremented by the caller):
  // decremented when the connection object goes.
  virtual void CountIn(std::shared_ptr<std::atomic<int>> counter) = 0;
  // A credential the transport carried before the protocol began (the
  // access_token of a WebSocket upgrade); empty if none.
  virtual const std::string& credential() const = 0;
  virtual size_t queued_bytes() const = 0;
  virtual const std::string& remote_address() const = 0;
  virtual std::string_view transport() const = 0;  // "tcp" | "websocket"
};

using ConnHandler = std::function<void(std::shared_ptr<Conn>)>;

}  // namespace persona::net
