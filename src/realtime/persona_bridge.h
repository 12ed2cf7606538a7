// PersonaBridge: persona's topics on the MQTT broker (SPEC §5).
//
//   session/{id}/profile      server → clients, retained: {"profile","meta","version"}
//   session/{id}/events       server → clients: each event, in seq order
//   session/{id}/profile/set  client → server: {"fields", "base_version"?, "base_hlc"?}
//   session/{id}/messages     client → server: {"text"}; the reply arrives on …/events
//   session/{id}/errors       server → clients: problem+json for a refused command, with
//                             "command" and the command's "request_id" if it had one
//
// Events and profile snapshots come from the engine over the bus (only for
// topics someone subscribed to); the retained profile is read from the
// engine when a client subscribes, so nothing is kept per session here.
// Clients cannot publish on the server-owned topics.
#pragma once

#include <memory>

#include "bus/bus.h"
#include "engine/engine.h"
#include "realtime/broker.h"
#include "realtime/mqtt_connection.h"

namespace persona::realtime {

class PersonaBridge final : public PublishFilter {
 public:
  // Subscribes to the engine's bus; `engine` and `broker` must outlive this.
  PersonaBridge(engine::Engine* engine, Broker* broker);
  ~PersonaBridge() override;

  Verdict OnClientPublish(const std::string& client_id, const std::string& topic,
                          const std::string& payload) override;
  bool MaySubscribe(const std::string& client_id, const std::string& filter) override;

 private:
  void PublishError(const std::string& session_id, std::string_view command,
                    const json::value& request_id, const Status& st);

  engine::Engine* engine_;
  Broker* broker_;
  std::unique_ptr<bus::Subscription> firehose_;
};

}  // namespace persona::realtime
