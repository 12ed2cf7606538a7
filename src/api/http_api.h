// HttpApi: the HTTP routes of SPEC §4 on top of the Engine.
//
// Parses and validates requests (media type, JSON, field types), calls the
// engine, and renders JSON or problem+json. Also serves the web UI, the
// OpenAPI document, health, readiness and metrics. Every request passes one
// authorization point (Admit): rate limits, the bearer token, and the
// route's access level; the engine then checks the session against the
// caller. Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "auth/authenticator.h"
#include "engine/engine.h"
#include "flags/flags.h"
#include "limits/rate_limiter.h"
#include "metrics/metrics.h"
#include "net/http_server.h"
#include "tracing/tracer.h"

namespace boost::asio {
class thread_pool;
}

namespace persona::api {

struct HttpApiOptions {
  // write_mode: async. Messages and profile PATCHes are answered 202 unless
  // the request says `Prefer: respond-sync`; otherwise only requests that
  // say `Prefer: respond-async` are.
  bool async_default = false;
  // Authentication (never null: a default Authenticator means auth off).
  const auth::Authenticator* auth = nullptr;
  // Token buckets per authenticated user and per client address; null = none.
  limits::RateLimiter* per_user = nullptr;
  limits::RateLimiter* per_address = nullptr;
  // Feature flags (flags.file): the current set, or null without a file.
  std::function<std::shared_ptr<const flags::FlagSet>()> flags;
  // > 0: profile reads run on this many threads of their own instead of the
  // I/O threads HTTP and MQTT share, because they can wait on the network
  // (a Redis profile cache, a PostgreSQL store). At most blocking_read_queue
  // wait for a thread; more are answered 503 with Retry-After.
  int blocking_read_threads = 0;
  size_t blocking_read_queue = 4096;
};

class HttpApi final : public net::Handler {
 public:
  explicit HttpApi(engine::Engine* engine, HttpApiOptions options = {});
  ~HttpApi() override;  // waits for the profile reads in flight

  void Handle(net::Request req, std::shared_ptr<net::Exchange> exchange) override;
  net::Response Refusal(net::http::status status, std::string_view detail) override;

  // /readyz answers 503 once draining starts.
  void SetDraining() { draining_ = true; }

  enum Route : int {
    kIndex,
    kHealth,
    kReady,
    kMetrics,
    kOpenApi,
    kSessions,
    kSession,
    kMessages,
    kProfile,
    kEvents,
    kRequests,
    kUsers,
    kLinks,
    kFlags,
    kNotFound,
    kRouteCount
  };

 private:
  struct Call;  // one request in flight
  enum class Access { kProbe, kPublic, kUser, kAdmin };
  // kProbe: open and exempt from rate limits (load balancers poll it);
  // kPublic: open, serves no one's data; kUser: a valid token (auth on),
  // then the engine checks the session; kAdmin: an admin token.
  static Access AccessOf(Route route);

  void Classify(Call& call) const;
  bool Admit(const std::shared_ptr<Call>& call);
  void Dispatch(std::shared_ptr<Call> call);
  void CreateSession(std::shared_ptr<Call> call);
  void PostMessage(std::shared_ptr<Call> call);
  void ListMessages(std::shared_ptr<Call> call);
  void GetProfile(std::shared_ptr<Call> call);
  void ServeProfile(const std::shared_ptr<Call>& call);
  void PatchProfile(std::shared_ptr<Call> call);
  void ListEvents(std::shared_ptr<Call> call);
  void StreamEvents(std::shared_ptr<Call> call);
  void GetRequest(std::shared_ptr<Call> call);
  void GetUserUsage(std::shared_ptr<Call> call, std::string user_id);
  // POST /v1/sessions/{id}/links: a token limited to the session, for another device.
  void CreateLink(std::shared_ptr<Call> call);
  // POST …/messages with Accept: text/event-stream: reply tokens as they come.
  void StreamMessage(std::shared_ptr<Call> call, engine::MessageRequest r);
  // Whether this write goes through the async intake (Prefer, write_mode).
  bool WantsAsync(Call& call) const;
  // The user whose flags apply to `call`: the caller's, or (auth off) the
  // session's owner; "" if none. Looked up once per request.
  const std::string& FlagUser(Call& call) const;
  void GetFlag(std::shared_ptr<Call> call);
  void Finish(const std::shared_ptr<Call>& call, net::Response res);
  // With feature flags: counts the response and its latency under each
  // variant persona's own flags give the caller's user (the session's owner
  // when the caller has none), so a rollout or a canary can be judged on its
  // HTTP errors and latency too (persona_variant_http_*).
  void CountVariants(Call& call, int status_class, double seconds);
  engine::ReplyCallback ReplyTo(std::shared_ptr<Call> call);

  engine::Engine* engine_;
  HttpApiOptions options_;
  auth::Authenticator off_;  // options_.auth when none was given: auth off
  std::atomic<bool> draining_{false};
  std::array<metrics::Histogram*, kRouteCount> latency_;
  metrics::Counter* bad_traceparent_ = nullptr;
  std::array<std::array<metrics::Counter*, 6>, kRouteCount> responses_;  // by status class
  std::unique_ptr<boost::asio::thread_pool> readers_;                    // blocking_read_threads
  std::atomic<size_t> readers_waiting_{0};
  metrics::Counter* readers_refused_ = nullptr;
};

}  // namespace persona::api
