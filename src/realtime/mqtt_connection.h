// MqttConnection: the MQTT 3.1.1 protocol for one client connection (TCP or
// WebSocket), between the wire (net::Conn) and the Broker.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "auth/caller.h"
#include "core/status.h"
#include "net/conn.h"
#include "realtime/broker.h"

namespace persona::realtime {

// Who a connection belongs to, once CONNECT is accepted.
struct MqttClient {
  auth::Caller caller;
  std::string client_id;
  std::string_view remote;  // "address:port" (the connection's own string)
};

// MqttPolicy: the one authorization point for MQTT over TCP and WebSocket.
// It authenticates CONNECT, grants or refuses each SUBSCRIBE filter, and
// decides what happens to each client PUBLISH before the broker fans it
// out: persona consumes its command topics and refuses its server-owned
// ones and every topic the caller may not use. Thread-safe.
class MqttPolicy {
 public:
  enum class Verdict { kForward, kConsumed, kRefused };
  virtual ~MqttPolicy() = default;
  // The caller a CONNECT speaks for: its password (a bearer token) or, if it
  // has none, the credential of the transport (the WebSocket upgrade's
  // access_token). Any error refuses the CONNECT with return code 5.
  virtual StatusOr<auth::Caller> Authenticate(const std::optional<std::string>& password,
                                              const std::string& transport_credential) = 0;
  virtual Verdict OnClientPublish(const MqttClient& client, const std::string& topic,
                                  const std::string& payload) = 0;
  // May this client subscribe to `filter` (wildcards included)?
  virtual bool MaySubscribe(const MqttClient& client, const std::string& filter) = 0;
  // A granted filter, just before the broker subscribes `session` to it.
  virtual void OnSubscribe(const MqttClient& client,
                           const std::shared_ptr<Broker::Session>& session,
                           const std::string& filter) {}
  // A client asked for a persistent session this broker does not have:
  // restore it into `session` if another node left it (true: it was).
  virtual bool RestoreSession(const MqttClient& client, const std::string& session_key,
                              const std::shared_ptr<Broker::Session>& session) {
    return false;
  }
};

struct MqttOptions {
  size_t max_packet_bytes = 256 << 10;
  int connect_timeout_ms = 10000;   // CONNECT must arrive within this
  int64_t max_connections = 20000;  // TCP and WebSocket together
};

// Runs the protocol on `conn` until it closes. `broker` and `policy` must
// outlive every connection. A connection closes when its token expires.
void ServeMqtt(std::shared_ptr<net::Conn> conn, Broker* broker, MqttPolicy* policy,
               const MqttOptions& options);
// Registers the MQTT connection metrics, so /metrics has them (at 0) before
// the first connection.
void RegisterMqttMetrics();

}  // namespace persona::realtime
