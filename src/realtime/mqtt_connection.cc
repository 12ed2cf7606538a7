#include "realtime/mqtt_connection.h"

#include <chrono>
#include <ctime>
#include <memory>
#include <variant>

#include "absl/container/btree_set.h"
#include "core/ids.h"
#include "core/logging.h"
#include "metrics/metrics.h"
#include "realtime/mqtt/codec.h"

namespace persona::realtime {
namespace {

struct MqttMetrics {
  metrics::Gauge* connections;
  metrics::Counter* messages_in;
  metrics::Counter* refused;
  metrics::Counter* protocol_errors;
  metrics::Counter* refused_connections;
  metrics::Counter* refused_auth;
  static MqttMetrics& Get() {
    static MqttMetrics m = [] {
      auto& r = metrics::Default();
      return MqttMetrics{
          r.GetGauge("persona_mqtt_connections", "Open MQTT connections (TCP and WebSocket)"),
          r.GetCounter("persona_mqtt_messages_in_total", "MQTT PUBLISH packets received"),
          r.GetCounter("persona_mqtt_refused_publishes_total",
                       "Client PUBLISHes on server-owned topics, dropped"),
          r.GetCounter("persona_mqtt_protocol_errors_total",
                       "Connections closed for a protocol violation"),
          r.GetCounter("persona_mqtt_connections_refused_total",
                       "MQTT connections closed at once because mqtt.max_connections was reached"),
          r.GetCounter("persona_mqtt_connect_refused_total",
                       "MQTT CONNECTs refused for a missing or invalid token (CONNACK 5)"),
      };
    }();
    return m;
  }
};

class MqttConnection final : public Link,
                             public net::Conn::Receiver,
                             public std::enable_shared_from_this<MqttConnection> {
 public:
  MqttConnection(std::shared_ptr<net::Conn> conn, Broker* broker, MqttPolicy* policy,
                 const MqttOptions& options)
      : conn_(std::move(conn)),
        broker_(broker),
        policy_(policy),
        parser_(options.max_packet_bytes, mqtt::Parser::Role::kServer) {
    MqttMetrics::Get().connections->Add(1);
  }
  ~MqttConnection() override { MqttMetrics::Get().connections->Add(-1); }

  void Start(int connect_timeout_ms) {
    auto self = shared_from_this();
    conn_->SetReadTimeout(connect_timeout_ms);
    conn_->Start(self);
  }

  // Link
  bool Send(std::string head, std::shared_ptr<const std::string> payload) override {
    return payload ? conn_->Send(std::move(head), std::move(payload))
                   : conn_->Send(std::move(head));
  }
  size_t queued_bytes() const override { return conn_->queued_bytes(); }
  void Kick(const char* reason) override {
    LogInfo("mqtt client disconnected", {{"client_id", client_.client_id}, {"reason", reason}});
    conn_->Abort();
  }
  void Leave() override {
    leaving_.store(true);
    conn_->Close();
  }

 private:
  // Runs on the connection's strand, one call at a time.
  void OnData(std::string_view data) override {
    if (closing_) return;  // bytes that arrive after we decided to close are ignored
    // Local, not a member: an idle connection keeps no packet storage.
    std::vector<mqtt::Packet> packets;
    mqtt::ParseResult r = parser_.Feed(data, &packets);
    for (auto& p : packets) {
      if (closing_) break;
      Handle(p);
    }
    if (!r.ok && !closing_) {
      MqttMetrics::Get().protocol_errors->Inc();
      LogInfo("mqtt protocol error", {{"remote", conn_->remote_address()},
                                      {"client_id", client_.client_id},
                                      {"reason", r.reason}});
      if (r.connack_code) {
        std::string out;
        mqtt::EncodeConnack({false, *r.connack_code}, &out);
        conn_->Send(std::move(out));
      }
      closing_ = true;
      conn_->Close();
    }
  }

  void Handle(mqtt::Packet& p) {
    // The parser lets nothing but CONNECT through first; a refused CONNECT
    // sets closing_, so every other packet here has a session.
    if (!session_ && !std::holds_alternative<mqtt::Connect>(p)) return;
    std::visit([this](auto& pkt) { On(pkt); }, p);
  }

  void On(mqtt::Connect& c) {
    std::string out;
    auto caller = policy_->Authenticate(c.password, conn_->credential());
    // A token inside the verifier's leeway but past its exp would be cut off
    // at once: refuse it at CONNECT instead.
    if (caller.ok() && caller->expires_at_s() > 0 &&
        caller->expires_at_s() <= static_cast<int64_t>(std::time(nullptr)))
      caller = absl::UnauthenticatedError("token expired");
    if (!caller.ok()) {
      MqttMetrics::Get().refused_auth->Inc();
      LogInfo("mqtt connect refused", {{"remote", conn_->remote_address()},
                                       {"reason", std::string(caller.status().message())}});
      mqtt::EncodeConnack({false, mqtt::ConnackCode::kNotAuthorized}, &out);
      conn_->Send(std::move(out));
      closing_ = true;
      conn_->Close();
      return;
    }
    client_.caller = std::move(*caller);
    client_.client_id = c.client_id.empty() ? "auto-" + NewId() : c.client_id;
    client_.remote = conn_->remote_address();
    // Persistent sessions belong to a grant: another user (or a token with
    // other sessions) using the same client id gets a session of its own,
    // never this one's subscriptions or queued messages.
    const std::string session_key = client_.caller.authenticated()
                                        ? client_.caller.Scope() + "|" + client_.client_id
                                        : client_.client_id;
    auto attached = broker_->Connect(session_key, c.clean_session, shared_from_this());
    if (!attached) {
      mqtt::EncodeConnack({false, mqtt::ConnackCode::kServerUnavailable}, &out);
      conn_->Send(std::move(out));
      closing_ = true;
      conn_->Close();
      return;
    }
    session_ = attached->session;
    // A persistent session another node kept (its node died, or the device
    // moved): its subscriptions, and what the device missed, come back
    // before the CONNACK says the session is present.
    if (!attached->session_present && !c.clean_session &&
        policy_->RestoreSession(client_, session_key, session_))
      attached->session_present = true;
    if (c.will) will_ = std::make_unique<mqtt::Will>(std::move(*c.will));
    // The server allows one and a half keep-alive periods [MQTT-3.1.2-24].
    conn_->SetReadTimeout(c.keep_alive_s == 0 ? 0 : c.keep_alive_s * 1500);
    // SPEC §10: the connection ends when its token does (clamped to ten
    // years: steady_clock's nanoseconds would overflow for a far exp).
    if (const int64_t exp = client_.caller.expires_at_s(); exp > 0) {
      const int64_t left = exp - static_cast<int64_t>(std::time(nullptr));
      conn_->SetDeadline(std::chrono::steady_clock::now() +
                         std::chrono::seconds(std::clamp<int64_t>(left, 0, 10 * 365 * 86400)));
    }
    mqtt::EncodeConnack({attached->session_present, mqtt::ConnackCode::kAccepted}, &out);
    conn_->Send(std::move(out));
    broker_->Resume(session_);
  }

  void On(mqtt::Publish& p) {
    MqttMetrics::Get().messages_in->Inc();
    if (p.qos == 2) {
      // Exactly-once inbound: act on the first PUBLISH of an id, answer PUBREC
      // to every copy, forget the id at PUBREL.
      if (!awaiting_rel_) awaiting_rel_ = std::make_unique<absl::btree_set<uint16_t>>();
      const bool first = awaiting_rel_->insert(p.packet_id).second;
      std::string out;
      mqtt::EncodePacketId(mqtt::PacketType::kPubrec, p.packet_id, &out);
      if (first && awaiting_rel_->size() > 1024) {
        closing_ = true;  // a client that never sends PUBREL: bound the set
        conn_->Close();
        return;
      }
      if (first) Route(p);
      conn_->Send(std::move(out));
      return;
    }
    Route(p);
    if (p.qos == 1) {
      std::string out;
      mqtt::EncodePacketId(mqtt::PacketType::kPuback, p.packet_id, &out);
      conn_->Send(std::move(out));
    }
  }

  void Route(mqtt::Publish& p) {
    switch (policy_->OnClientPublish(client_, p.topic, p.payload)) {
      case MqttPolicy::Verdict::kConsumed:
        return;
      case MqttPolicy::Verdict::kRefused:
        MqttMetrics::Get().refused->Inc();
        return;
      case MqttPolicy::Verdict::kForward:
        break;
    }
    Message m;
    m.topic = std::move(p.topic);
    m.payload = std::make_shared<const std::string>(std::move(p.payload));
    m.qos = p.qos > 1 ? 1 : p.qos;
    m.retain = p.retain;
    broker_->Publish(m);
  }

  void On(mqtt::PacketIdOnly& p) {
    switch (p.type) {
      case mqtt::PacketType::kPuback:
        broker_->Acked(session_, p.packet_id);
        break;
      case mqtt::PacketType::kPubrel: {
        if (awaiting_rel_) awaiting_rel_->erase(p.packet_id);
        std::string out;
        mqtt::EncodePacketId(mqtt::PacketType::kPubcomp, p.packet_id, &out);
        conn_->Send(std::move(out));
        break;
      }
      default:
        break;  // PUBREC/PUBCOMP: the server never sends QoS 2, nothing to do
    }
  }

  void On(mqtt::Subscribe& s) {
    mqtt::Suback ack;
    ack.packet_id = s.packet_id;
    for (const auto& [filter, qos] : s.filters) {
      if (!policy_->MaySubscribe(client_, filter)) {
        ack.codes.push_back(mqtt::kSubackFailure);
        continue;
      }
      policy_->OnSubscribe(client_, session_, filter);
      ack.codes.push_back(broker_->Subscribe(session_, filter, qos));
    }
    std::string out;
    if (mqtt::EncodeSuback(ack, &out)) conn_->Send(std::move(out));
    for (size_t i = 0; i < s.filters.size(); ++i)
      if (ack.codes[i] != mqtt::kSubackFailure)
        broker_->DeliverRetained(session_, s.filters[i].first, ack.codes[i]);
  }

  void On(mqtt::Unsubscribe& u) {
    for (const auto& f : u.filters) broker_->Unsubscribe(session_, f);
    std::string out;
    mqtt::EncodePacketId(mqtt::PacketType::kUnsuback, u.packet_id, &out);
    conn_->Send(std::move(out));
  }

  void On(mqtt::Pingreq&) {
    std::string out;
    mqtt::EncodePingresp(&out);
    conn_->Send(std::move(out));
  }

  void On(mqtt::Disconnect&) {
    will_.reset();  // a clean DISCONNECT discards the will [MQTT-3.14.4-3]
    closing_ = true;
    conn_->Close();
  }

  // Client-bound packets never arrive here (the parser refuses them).
  void On(mqtt::Connack&) {}
  void On(mqtt::Suback&) {}
  void On(mqtt::Pingresp&) {}

  void OnClose() override {
    if (!session_) return;
    if (will_ && !leaving_.load()) {
      Message m;
      m.topic = will_->topic;
      m.payload = std::make_shared<const std::string>(std::move(will_->payload));
      m.qos = will_->qos > 1 ? 1 : will_->qos;
      m.retain = will_->retain;
      will_.reset();
      if (policy_->OnClientPublish(client_, m.topic, *m.payload) == MqttPolicy::Verdict::kForward)
        broker_->Publish(m);
    }
    broker_->Disconnect(session_, this);
    session_.reset();
  }

  std::shared_ptr<net::Conn> conn_;
  Broker* broker_;
  MqttPolicy* policy_;
  mqtt::Parser parser_;
  MqttClient client_;
  std::shared_ptr<Broker::Session> session_;
  // Idle connections are most of them: what only some need is held by pointer.
  std::unique_ptr<mqtt::Will> will_;
  std::atomic<bool> leaving_{false};  // closed by the server for an upgrade: no will
  std::unique_ptr<absl::btree_set<uint16_t>> awaiting_rel_;  // QoS 2 ids awaiting PUBREL
  bool closing_ = false;
};

}  // namespace

void RegisterMqttMetrics() { MqttMetrics::Get(); }

void ServeMqtt(std::shared_ptr<net::Conn> conn, Broker* broker, MqttPolicy* policy,
               const MqttOptions& options) {
  // One bound for TCP and WebSocket together.
  if (MqttMetrics::Get().connections->value() >= options.max_connections) {
    MqttMetrics::Get().refused_connections->Inc();
    conn->Abort();
    return;
  }
  std::make_shared<MqttConnection>(std::move(conn), broker, policy, options)
      ->Start(options.connect_timeout_ms);
}

}  // namespace persona::realtime
