// MqttConnection: the MQTT 3.1.1 protocol for one client connection (TCP or
// WebSocket), between the wire (net::Conn) and the Broker.
#pragma once

#include <memory>
#include <string>

#include "net/conn.h"
#include "realtime/broker.h"

namespace persona::realtime {

// Decides what happens to a PUBLISH from a client before the broker fans it
// out: persona consumes its command topics and refuses its server-owned ones.
class PublishFilter {
 public:
  enum class Verdict { kForward, kConsumed, kRefused };
  virtual ~PublishFilter() = default;
  virtual Verdict OnClientPublish(const std::string& client_id, const std::string& topic,
                                  const std::string& payload) = 0;
  // May this client publish on / subscribe to this topic (authorization)?
  virtual bool MaySubscribe(const std::string& client_id, const std::string& filter) = 0;
};

struct MqttOptions {
  size_t max_packet_bytes = 256 << 10;
  int connect_timeout_ms = 10000;   // CONNECT must arrive within this
  int64_t max_connections = 20000;  // TCP and WebSocket together
};

// Runs the protocol on `conn` until it closes. `broker` and `filter` must
// outlive every connection.
void ServeMqtt(std::shared_ptr<net::Conn> conn, Broker* broker, PublishFilter* filter,
               const MqttOptions& options);

}  // namespace persona::realtime
