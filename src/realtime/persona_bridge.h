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
//
// Authorization (SPEC §10): with authentication on, a CONNECT needs a valid
// token; a non-admin caller may subscribe only to filters under
// session/{id}/… of sessions it may touch (a wildcard in the session level
// could match someone else's: refused), and a PUBLISH to any other session
// is dropped. Topics outside session/… follow `open_topics`.
#pragma once

#include <memory>

#include "auth/authenticator.h"
#include "bus/bus.h"
#include "engine/engine.h"
#include "limits/rate_limiter.h"
#include "realtime/broker.h"
#include "realtime/mqtt_connection.h"
#include "store/event_store.h"

namespace persona::realtime {

struct BridgeOptions {
  const auth::Authenticator* auth = nullptr;  // null: authentication off
  // Topics outside session/…: a plain broker for anyone connected.
  bool open_topics = true;
  // Token buckets on client PUBLISHes; null = none.
  limits::RateLimiter* publish_per_user = nullptr;
  limits::RateLimiter* publish_per_address = nullptr;
  // A shared store that keeps persistent MQTT sessions (SessionMirror
  // writes them): a device's session follows it to this node. Null: none.
  store::EventStore* sessions = nullptr;
};

class PersonaBridge final : public MqttPolicy {
 public:
  // Subscribes to the engine's bus; `engine`, `broker` and the options'
  // objects must outlive this.
  PersonaBridge(engine::Engine* engine, Broker* broker, BridgeOptions options = {});
  ~PersonaBridge() override;

  StatusOr<auth::Caller> Authenticate(const std::optional<std::string>& password,
                                      const std::string& transport_credential) override;
  Verdict OnClientPublish(const MqttClient& client, const std::string& topic,
                          const std::string& payload) override;
  bool MaySubscribe(const MqttClient& client, const std::string& filter) override;
  void OnSubscribe(const MqttClient& client, const std::shared_ptr<Broker::Session>& session,
                   const std::string& filter) override;
  bool RestoreSession(const MqttClient& client, const std::string& session_key,
                      const std::shared_ptr<Broker::Session>& session) override;

 private:
  void PublishError(const std::string& session_id, std::string_view command,
                    const json::value& request_id, const Status& st);
  // Over a token bucket: the seconds to wait, else 0.
  double RateLimited(const MqttClient& client);

  engine::Engine* engine_;
  Broker* broker_;
  BridgeOptions options_;
  auth::Authenticator off_;  // used when options_.auth is null
  std::unique_ptr<bus::Subscription> firehose_;
  metrics::Counter* rate_limited_;
  metrics::Counter* refused_subscriptions_;
  metrics::Counter* restored_sessions_;
  metrics::Counter* replayed_events_;
};

}  // namespace persona::realtime
