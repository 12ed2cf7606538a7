#include "api/http_api.h"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <charconv>
#include <chrono>
#include <optional>

#include "api/openapi.inc"  // kOpenApiJson
#include "api/problem.h"
#include "api/web_client_js.inc"  // kWebClientJs: clients/js, built for the browser
#include "api/web_dashboard.inc"  // kWebDashboardHtml: /dashboard
#include "api/web_index.inc"      // kWebIndexHtml
#include "api/web_mqtt_js.inc"    // kWebMqttJs: MQTT.js from npm, bundled
#include "api/web_qrcode_js.inc"  // kWebQrcodeJs: qrcode-generator from npm, bundled
#include "api/web_uplot_css.inc"  // kWebUplotCss: uPlot from npm, bundled
#include "api/web_uplot_js.inc"   // kWebUplotJs
#include "core/ids.h"
#include "core/logging.h"

namespace persona::api {

namespace http = net::http;

struct HttpApi::Call {
  net::Request req;
  std::shared_ptr<net::Exchange> ex;
  std::string request_id;
  Route route = kNotFound;
  std::string session_id;
  std::string user_id;  // kUsers: the user in the path
  std::string path;
  std::string query;
  // Tracing (when on): this request's server span and its parent.
  tracing::SpanContext trace, parent;
  uint64_t start_unix_ns = 0;
  std::chrono::steady_clock::time_point start;
  auth::Caller caller;  // set by Admit
  // Whose flags apply (FlagUser): looked up once per request.
  std::optional<std::string> flag_user;
};

namespace {

// Status classes as the metrics label them.
constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx", "other"};
constexpr size_t kMaxTextBytes = 16 << 10;
constexpr size_t kMaxUserIdBytes = 256;

const char* kRouteNames[] = {"/",
                             "/healthz",
                             "/readyz",
                             "/metrics",
                             "/openapi.json",
                             "/v1/sessions",
                             "/v1/sessions/{id}",
                             "/v1/sessions/{id}/messages",
                             "/v1/sessions/{id}/profile",
                             "/v1/sessions/{id}/events",
                             "/v1/requests/{id}",
                             "/v1/users/{id}/usage",
                             "/v1/sessions/{id}/links",
                             "/v1/flags/{key}",
                             "other"};

}  // namespace

// Who may use each route. A switch without a default: a route added to the
// enum does not compile (-Werror=switch) until it says who may use it.
static_assert(std::size(kRouteNames) == HttpApi::kRouteCount);

HttpApi::Access HttpApi::AccessOf(Route route) {
  switch (route) {
    case kIndex:  // the web UI and its scripts
    case kOpenApi:
      return Access::kPublic;
    case kHealth:
    case kReady:
      return Access::kProbe;
    case kMetrics:
      return Access::kAdmin;
    case kSessions:
    case kSession:
    case kMessages:
    case kProfile:
    case kEvents:
    case kRequests:
    case kUsers:
    case kLinks:
    case kFlags:     // the caller's own user, or any with an admin token (GetFlag)
    case kNotFound:  // unknown paths need a token too
    case kRouteCount:
      return Access::kUser;
  }
  return Access::kUser;
}

namespace {

net::Response Json(http::status status, const json::value& body, unsigned version) {
  net::Response res(status, version);
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.body() = json::serialize(body);
  return res;
}

std::optional<std::string> QueryParam(const std::string& query, std::string_view name) {
  return net::QueryParameter(query, name);
}

// Parses a non-negative integer query parameter; InvalidArgument if malformed.
StatusOr<uint64_t> UintParam(const std::string& query, std::string_view name, uint64_t fallback,
                             uint64_t max) {
  auto v = QueryParam(query, name);
  if (!v) return fallback;
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || p != v->data() + v->size() || n > max)
    return absl::InvalidArgumentError("query parameter '" + std::string(name) +
                                      "' must be an integer between 0 and " + std::to_string(max));
  return n;
}

// Accepts "7", "\"7\"" and W/"7"; nullopt for "*" or garbage.
std::optional<uint64_t> ParseVersionTag(std::string_view tag) {
  if (tag.starts_with("W/")) tag.remove_prefix(2);
  if (tag.size() >= 2 && tag.front() == '"' && tag.back() == '"')
    tag = tag.substr(1, tag.size() - 2);
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(tag.data(), tag.data() + tag.size(), n);
  if (ec != std::errc() || p != tag.data() + tag.size()) return std::nullopt;
  return n;
}

bool IsJsonMediaType(std::string_view ct) {
  const size_t semi = ct.find(';');
  std::string base(ct.substr(0, semi));
  while (!base.empty() && base.back() == ' ') base.pop_back();
  for (auto& c : base) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return base == "application/json" || base == "application/merge-patch+json";
}

bool ValidHeaderToken(std::string_view s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (unsigned char c : s)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

// Frames one event for SSE: id, event type and the JSON on one data line.
std::string SseFrame(uint64_t seq, std::string_view type, std::string_view json_text) {
  std::string out;
  out.reserve(json_text.size() + type.size() + 40);
  out += "id: ";
  out += std::to_string(seq);
  out += "\nevent: ";
  out += type;
  out += "\ndata: ";
  out += json_text;
  out += "\n\n";
  return out;
}

// Reads "seq" and "type" from an event's JSON text (EventToJson writes seq first).
bool PeekEvent(std::string_view text, uint64_t* seq, std::string* type) {
  auto v = ParseJson(text);
  if (!v.ok() || !v->is_object()) return false;
  auto s = GetInt(v->get_object(), "seq");
  auto t = GetString(v->get_object(), "type");
  if (!s || !t) return false;
  *seq = static_cast<uint64_t>(*s);
  *type = std::string(*t);
  return true;
}

// The preferences in a Prefer header (RFC 7240), lower-cased, without values.
bool HasPreference(std::string_view header, std::string_view token) {
  while (!header.empty()) {
    const size_t comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    item = item.substr(0, item.find_first_of(";="));
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item.size() != token.size()) continue;
    bool eq = true;
    for (size_t i = 0; i < item.size() && eq; ++i)
      eq = std::tolower(static_cast<unsigned char>(item[i])) == token[i];
    if (eq) return true;
  }
  return false;
}

int HttpStatusForClass(const Status& st) { return static_cast<int>(HttpStatusFor(st)) / 100; }

}  // namespace

HttpApi::HttpApi(engine::Engine* engine, HttpApiOptions options)
    : engine_(engine), options_(options) {
  if (options_.auth == nullptr) options_.auth = &off_;
  auto& reg = metrics::Default();
  if (options_.blocking_read_threads > 0)
    readers_ = std::make_unique<boost::asio::thread_pool>(
        static_cast<size_t>(options_.blocking_read_threads));
  readers_refused_ = reg.GetCounter("persona_http_profile_reads_refused_total",
                                    "Profile reads answered 503: too many waiting for a thread");
  bad_traceparent_ = reg.GetCounter("persona_tracing_bad_traceparent_total",
                                    "Requests whose traceparent header was malformed (ignored)");
  for (int r = 0; r < kRouteCount; ++r) {
    const std::string label = std::string("route=\"") + kRouteNames[r] + "\"";
    latency_[r] = reg.GetHistogram("persona_http_request_duration_seconds",
                                   "HTTP request latency by route", label);
    for (int c = 0; c < 6; ++c)
      responses_[r][c] =
          reg.GetCounter("persona_http_responses_total", "HTTP responses by route and status class",
                         label + ",code=\"" + kClasses[c] + "\"");
  }
}

net::Response HttpApi::Refusal(http::status status, std::string_view detail) {
  responses_[kNotFound][static_cast<int>(status) / 100 - 1]->Inc();
  return Problem(status, std::string(http::obsolete_reason(status)),
                 absl::string_view(detail.data(), detail.size()));
}

void HttpApi::Finish(const std::shared_ptr<Call>& call, net::Response res) {
  res.set("X-Request-Id", call->request_id);
  if (call->trace.valid() && tracing::Global() != nullptr)
    res.set("traceparent", tracing::FormatTraceparent(call->trace));
  if (tracing::Tracer* tracer = tracing::Global();
      tracer && call->trace.sampled && call->trace.valid()) {
    tracing::Span span;
    span.ctx = call->trace;
    span.parent_span_id = call->parent.span_id;
    span.name = std::string(call->req.method_string()) + " " + kRouteNames[call->route];
    span.kind = 2;  // server
    span.start_unix_ns = call->start_unix_ns;
    span.end_unix_ns = tracing::NowUnixNs();
    span.attributes = {{"http.request.method", std::string(call->req.method_string())},
                       {"http.route", kRouteNames[call->route]},
                       {"http.response.status_code", res.result_int()},
                       {"persona.request_id", call->request_id}};
    span.error = res.result_int() >= 500;
    tracer->Record(std::move(span));
  }
  res.keep_alive(call->req.keep_alive());
  const int cls = res.result_int() / 100;
  responses_[call->route][cls >= 1 && cls <= 5 ? cls - 1 : 5]->Inc();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - call->start).count();
  latency_[call->route]->Observe(seconds);
  if (options_.flags) CountVariants(*call, cls, seconds);
  if (cls == 5) {
    LogWarn("request failed", {{"request_id", call->request_id},
                               {"route", kRouteNames[call->route]},
                               {"status", res.result_int()},
                               {"detail", res.body()}});
  }
  call->ex->Respond(std::move(res));
}

const std::string& HttpApi::FlagUser(Call& call) const {
  if (!call.flag_user) {
    std::string user = call.caller.user_id();
    if (user.empty() && !call.session_id.empty() && call.route != kRequests &&
        call.route != kFlags) {
      auto owner = engine_->Owner(call.caller, call.session_id);
      if (owner.ok()) user = *owner;
    }
    call.flag_user = std::move(user);
  }
  return *call.flag_user;
}

void HttpApi::CountVariants(Call& call, int status_class, double seconds) {
  static constexpr const char* kOwnFlags[] = {"persona.gate", "persona.cache", "persona.model",
                                              "persona.write_mode"};
  std::shared_ptr<const flags::FlagSet> set = options_.flags();
  if (!set) return;
  bool any = false;
  for (const char* key : kOwnFlags) any = any || set->Has(key);
  if (!any) return;
  const std::string& user = FlagUser(call);
  if (user.empty()) return;  // no user to judge (probes, a session that is gone)
  auto& reg = metrics::Default();
  const char* cls = kClasses[status_class >= 1 && status_class <= 5 ? status_class - 1 : 5];
  for (const char* key : kOwnFlags) {
    if (!set->Has(key)) continue;
    const flags::Resolution r = set->Evaluate(key, user);  // not counted: no decision made here
    if (!r.error_code.empty()) continue;
    const std::string labels = std::string("flag=\"") + key + "\",variant=\"" + r.variant +
                               "\",route=\"" + kRouteNames[call.route] + "\"";
    reg.GetCounter(
           "persona_variant_http_responses_total",
           "HTTP responses by the flag variant of the caller's user, route and status class",
           labels + ",code=\"" + cls + "\"")
        ->Inc();
    reg.GetHistogram("persona_variant_http_request_duration_seconds",
                     "HTTP request latency by the flag variant of the caller's user and route",
                     labels)
        ->Observe(seconds);
  }
}

engine::ReplyCallback HttpApi::ReplyTo(std::shared_ptr<Call> call) {
  return [this, call](StatusOr<engine::Reply> r) {
    if (!r.ok()) return Finish(call, ProblemFor(r.status(), call->req.version()));
    if (r->status == 204) {
      net::Response res(http::status::no_content, call->req.version());
      return Finish(call, std::move(res));
    }
    net::Response res = Json(static_cast<http::status>(r->status), r->body, call->req.version());
    if (r->replayed) res.set("Idempotent-Replayed", "true");
    if (r->status == 202) {
      if (auto loc = GetString(r->body, "location")) res.set(http::field::location, *loc);
      if (HasPreference(call->req["Prefer"], "respond-async"))
        res.set("Preference-Applied", "respond-async");
    }
    if (const json::value* v = r->body.if_contains("version"); v && v->is_number())
      res.set(http::field::etag, "\"" + std::to_string(v->to_number<uint64_t>()) + "\"");
    if (call->route == kSessions) {
      if (auto sid = GetString(r->body, "session_id"))
        res.set(http::field::location, "/v1/sessions/" + std::string(*sid));
    }
    Finish(call, std::move(res));
  };
}

void HttpApi::Handle(net::Request req, std::shared_ptr<net::Exchange> exchange) {
  auto call = std::make_shared<Call>();
  call->start = std::chrono::steady_clock::now();
  call->ex = std::move(exchange);
  auto rid = req["X-Request-Id"];
  call->request_id = ValidHeaderToken(rid, 128) ? std::string(rid) : NewId();
  const std::string target(req.target());
  call->req = std::move(req);
  const size_t q = target.find('?');
  call->path = target.substr(0, q);
  call->query = q == std::string::npos ? "" : target.substr(q + 1);
  if (tracing::Tracer* tracer = tracing::Global()) {
    // W3C Trace Context: the caller's span is the parent; a malformed header
    // starts a new trace.
    const auto header = call->req["traceparent"];
    if (!header.empty()) {
      if (auto p = tracing::ParseTraceparent(std::string_view(header.data(), header.size()))) {
        call->parent = *p;
      } else {
        bad_traceparent_->Inc();
        Log(spdlog::level::debug, "ignoring a malformed traceparent",
            {{"request_id", call->request_id}});
      }
    }
    call->trace = call->parent.valid() ? tracing::ChildOf(call->parent) : tracer->NewRoot();
    call->start_unix_ns = tracing::NowUnixNs();
  }
  Dispatch(std::move(call));
}

HttpApi::~HttpApi() {
  if (readers_) readers_->join();
}

// Which route a request is for, and the ids in its path. Touches nothing.
void HttpApi::Classify(Call& call) const {
  const std::string& path = call.path;
  call.route = kNotFound;
  if (path == "/" || path == "/index.html" || path == "/dashboard" ||
      path == "/assets/mqtt.min.js" || path == "/assets/persona-client.js" ||
      path == "/assets/qrcode.js" || path == "/assets/uPlot.iife.min.js" ||
      path == "/assets/uPlot.min.css") {
    call.route = kIndex;
    return;
  }
  if (path == "/healthz") call.route = kHealth;
  if (path == "/readyz") call.route = kReady;
  if (path == "/metrics") call.route = kMetrics;
  if (path == "/openapi.json") call.route = kOpenApi;
  if (call.route != kNotFound) return;

  constexpr std::string_view kUsersPrefix = "/v1/users/";
  if (path.starts_with(kUsersPrefix) && path.ends_with("/usage") &&
      path.size() > kUsersPrefix.size() + 6) {
    call.route = kUsers;
    std::string raw = path.substr(kUsersPrefix.size(), path.size() - kUsersPrefix.size() - 6);
    std::string user;  // percent-decoded
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '%' && i + 2 < raw.size() &&
          std::isxdigit(static_cast<unsigned char>(raw[i + 1])) &&
          std::isxdigit(static_cast<unsigned char>(raw[i + 2]))) {
        user += static_cast<char>(std::stoi(raw.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        user += raw[i];
      }
    }
    call.user_id = std::move(user);
    return;
  }
  constexpr std::string_view kFlagsPrefix = "/v1/flags/";
  if (path.starts_with(kFlagsPrefix) && path.size() > kFlagsPrefix.size()) {
    call.route = kFlags;
    call.session_id = path.substr(kFlagsPrefix.size());  // the flag key
    return;
  }
  constexpr std::string_view kRequestsPrefix = "/v1/requests/";
  if (path.starts_with(kRequestsPrefix)) {
    call.route = kRequests;
    call.session_id = path.substr(kRequestsPrefix.size());  // the request id
    return;
  }
  // /v1/sessions[/{id}[/messages|/profile|/events]]
  constexpr std::string_view kPrefix = "/v1/sessions";
  if (!path.starts_with(kPrefix)) return;
  std::string_view rest = std::string_view(path).substr(kPrefix.size());
  if (rest.empty() || rest == "/") {
    call.route = kSessions;
    return;
  }
  if (rest.front() != '/') return;
  rest.remove_prefix(1);
  const size_t slash = rest.find('/');
  call.session_id = std::string(rest.substr(0, slash));
  const std::string_view sub = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  if (sub.empty() || !IsValidId(call.session_id)) {
    call.route = kSession;
  } else if (sub == "messages") {
    call.route = kMessages;
  } else if (sub == "profile") {
    call.route = kProfile;
  } else if (sub == "events") {
    call.route = kEvents;
  } else if (sub == "links") {
    call.route = kLinks;
  }
}

// The one authorization point for HTTP: every route passes here, with the
// access AccessOf gives it. Answers the refusal itself and returns false;
// otherwise sets call->caller.
bool HttpApi::Admit(const std::shared_ptr<Call>& call) {
  const unsigned ver = call->req.version();
  const Access access = AccessOf(call->route);
  const auto refuse = [&](Status st) {
    Finish(call, ProblemFor(st, ver));
    return false;
  };
  if (access != Access::kProbe && options_.per_address != nullptr) {
    const double wait = options_.per_address->Take(limits::AddressOnly(call->ex->remote_address()));
    if (wait > 0) {
      return refuse(WithRetryAfter(
          absl::ResourceExhaustedError("too many requests from this address"), wait));
    }
  }
  if (access == Access::kProbe || access == Access::kPublic) {
    call->caller = auth::Caller::Open();  // serves no one's data
    return true;
  }
  // RFC 6750 §2: the Authorization header; §2.3, the access_token query
  // parameter, only where a browser cannot set a header (an EventSource GET).
  std::string_view header = call->req[http::field::authorization];
  std::optional<std::string> query_token;
  if (call->req.method() == http::verb::get &&
      call->req[http::field::accept].find("text/event-stream") != std::string_view::npos)
    query_token = QueryParam(call->query, "access_token");
  if (!header.empty() && query_token) {
    Finish(call,
           Problem(http::status::bad_request, "Bad Request",
                   "give the token in the Authorization header or access_token, not both", ver));
    return false;
  }
  auto caller = query_token ? options_.auth->FromToken(*query_token)
                            : options_.auth->FromAuthorization(header);
  if (!caller.ok()) {
    net::Response res =
        Problem(http::status::unauthorized, "Unauthorized", caller.status().message(), ver);
    res.set(http::field::www_authenticate,
            "Bearer realm=\"persona\", error=\"invalid_token\", error_description=\"" +
                std::string(caller.status().message()) + "\"");
    Finish(call, std::move(res));
    return false;
  }
  if (access == Access::kAdmin && !caller->unrestricted()) {
    net::Response res = Problem(http::status::forbidden, "Forbidden",
                                "this route needs an admin token (persona_admin)", ver);
    res.set(http::field::www_authenticate,
            "Bearer realm=\"persona\", error=\"insufficient_scope\"");
    Finish(call, std::move(res));
    return false;
  }
  if (caller->authenticated() && options_.per_user != nullptr) {
    const double wait = options_.per_user->Take(caller->user_id());
    if (wait > 0) {
      return refuse(
          WithRetryAfter(absl::ResourceExhaustedError("too many requests for this user"), wait));
    }
  }
  call->caller = std::move(*caller);
  return true;
}

void HttpApi::Dispatch(std::shared_ptr<Call> call) {
  Classify(*call);
  if (!Admit(call)) return;
  const auto method = call->req.method();
  const unsigned ver = call->req.version();
  const std::string& path = call->path;
  auto method_not_allowed = [&](const char* allow) {
    net::Response res = Problem(http::status::method_not_allowed, "Method Not Allowed",
                                "allowed: " + std::string(allow), ver);
    res.set(http::field::allow, allow);
    Finish(call, std::move(res));
  };
  const auto not_found = [&] {
    Finish(call, Problem(http::status::not_found, "Not Found", "no route for " + path, ver));
  };

  // Work that queues is refused before its body is even parsed when the
  // server is at its admission limit: refusing must cost far less than
  // serving, or an overload would be spent on refusals.
  const bool queues = (call->route == kSessions && method == http::verb::post) ||
                      (call->route == kMessages && method == http::verb::post) ||
                      (call->route == kProfile && method == http::verb::patch) ||
                      (call->route == kSession && method == http::verb::delete_);
  if (queues) {
    if (Status st = engine_->Admissible(); !st.ok()) return Finish(call, ProblemFor(st, ver));
  }
  switch (call->route) {
    case kIndex: {
      // Static files only: the dashboard's page holds no data (it reads
      // /metrics, which needs an admin token when auth is on).
      if (method != http::verb::get && method != http::verb::head) return method_not_allowed("GET");
      net::Response res(http::status::ok, ver);
      if (path.starts_with("/assets/")) {
        const bool css = path.ends_with(".css");
        res.set(http::field::content_type,
                css ? "text/css; charset=utf-8" : "text/javascript; charset=utf-8");
        res.set(http::field::cache_control, "public, max-age=300");
        res.body() = std::string(path == "/assets/mqtt.min.js"         ? kWebMqttJs
                                 : path == "/assets/qrcode.js"         ? kWebQrcodeJs
                                 : path == "/assets/uPlot.iife.min.js" ? kWebUplotJs
                                 : css                                 ? kWebUplotCss
                                                                       : kWebClientJs);
        return Finish(call, std::move(res));
      }
      res.set(http::field::content_type, "text/html; charset=utf-8");
      res.body() = std::string(path == "/dashboard" ? kWebDashboardHtml : kWebIndexHtml);
      return Finish(call, std::move(res));
    }
    case kHealth:
      return Finish(call, Json(http::status::ok, {{"status", "ok"}}, ver));
    case kReady: {
      if (draining_ || engine_->draining())
        return Finish(call, Problem(http::status::service_unavailable, "Service Unavailable",
                                    "draining", ver));
      if (Status st = engine_->StorageHealth(); !st.ok())
        return Finish(call, Problem(http::status::service_unavailable, "Service Unavailable",
                                    st.message(), ver));
      return Finish(call, Json(http::status::ok, {{"status", "ready"}}, ver));
    }
    case kMetrics: {
      net::Response res(http::status::ok, ver);
      res.set(http::field::content_type, "text/plain; version=0.0.4");
      res.body() = metrics::Default().Render();
      return Finish(call, std::move(res));
    }
    case kOpenApi: {
      net::Response res(http::status::ok, ver);
      res.set(http::field::content_type, "application/json");
      res.body() = std::string(kOpenApiJson);
      return Finish(call, std::move(res));
    }
    case kUsers:
      if (method != http::verb::get) return method_not_allowed("GET");
      return GetUserUsage(call, call->user_id);
    case kRequests:
      if (method != http::verb::get) return method_not_allowed("GET");
      return GetRequest(call);
    case kFlags:
      if (method != http::verb::get) return method_not_allowed("GET");
      return GetFlag(call);
    case kSessions:
      if (method != http::verb::post) return method_not_allowed("POST");
      return CreateSession(call);
    case kSession: {
      if (!IsValidId(call->session_id))
        return Finish(call, Problem(http::status::not_found, "Not Found", "no such session", ver));
      if (method == http::verb::get) {
        auto s = engine_->GetSession(call->caller, call->session_id);
        if (!s.ok()) return Finish(call, ProblemFor(s.status(), ver));
        net::Response res = Json(http::status::ok, *s, ver);
        res.set(http::field::etag,
                "\"" + std::to_string(s->at("version").to_number<uint64_t>()) + "\"");
        return Finish(call, std::move(res));
      }
      if (method == http::verb::delete_)
        return engine_->DeleteSession(call->caller, call->session_id, ReplyTo(call));
      return method_not_allowed("GET, DELETE");
    }
    case kMessages:
      if (method == http::verb::post) return PostMessage(call);
      if (method == http::verb::get) return ListMessages(call);
      return method_not_allowed("GET, POST");
    case kProfile:
      if (method == http::verb::get) return GetProfile(call);
      if (method == http::verb::patch) return PatchProfile(call);
      return method_not_allowed("GET, PATCH");
    case kEvents:
      if (method != http::verb::get) return method_not_allowed("GET");
      if (call->req[http::field::accept].find("text/event-stream") != std::string_view::npos)
        return StreamEvents(call);
      return ListEvents(call);
    case kLinks:
      if (method != http::verb::post) return method_not_allowed("POST");
      return CreateLink(call);
    case kNotFound:
    case kRouteCount:
      break;
  }
  not_found();
}

namespace {

// Checks media type and parses the body as a JSON object. On failure fills
// `problem` and returns nullopt.
std::optional<json::object> ParseBody(const net::Request& req,
                                      std::optional<net::Response>* problem,
                                      std::initializer_list<std::string_view> allowed_keys) {
  const unsigned ver = req.version();
  if (!IsJsonMediaType(req[http::field::content_type])) {
    problem->emplace(Problem(http::status::unsupported_media_type, "Unsupported Media Type",
                             "Content-Type must be application/json", ver));
    return std::nullopt;
  }
  auto v = ParseJson(req.body());
  if (!v.ok()) {
    problem->emplace(Problem(http::status::bad_request, "Bad Request", v.status().message(), ver));
    return std::nullopt;
  }
  if (!v->is_object()) {
    problem->emplace(
        Problem(http::status::bad_request, "Bad Request", "the body must be a JSON object", ver));
    return std::nullopt;
  }
  for (const auto& kv : v->get_object()) {
    bool known = false;
    for (auto k : allowed_keys) known = known || kv.key() == k;
    if (!known) {
      problem->emplace(Problem(http::status::unprocessable_entity, "Unprocessable Entity",
                               "unknown member '" + std::string(kv.key()) + "'", ver));
      return std::nullopt;
    }
  }
  return std::move(v->get_object());
}

StatusOr<std::string> IdempotencyKey(const net::Request& req) {
  auto k = req["Idempotency-Key"];
  if (k.empty()) return std::string();
  if (!ValidHeaderToken(k, 200))
    return absl::InvalidArgumentError("Idempotency-Key must be 1–200 visible ASCII characters");
  return std::string(k);
}

}  // namespace

void HttpApi::CreateSession(std::shared_ptr<Call> call) {
  const unsigned ver = call->req.version();
  std::optional<net::Response> problem;
  auto body = ParseBody(call->req, &problem, {"user_id", "schema", "metadata"});
  if (!body) return Finish(call, std::move(*problem));
  engine::CreateSessionRequest r;
  r.caller = call->caller;
  const json::value* user_v = Find(*body, "user_id");
  auto user = GetString(*body, "user_id");
  if (call->caller.authenticated()) {
    // The user is the token's subject; a body user_id may only repeat it
    // (an admin may create a session for anyone).
    if (user_v != nullptr && (!user || user->empty() || user->size() > kMaxUserIdBytes))
      return Finish(call,
                    Problem(http::status::unprocessable_entity, "Unprocessable Entity",
                            "'user_id' must be a non-empty string of at most 256 bytes", ver));
    if (user && *user != call->caller.user_id() && !call->caller.admin())
      return Finish(call, Problem(http::status::forbidden, "Forbidden",
                                  "'user_id' differs from the token's subject", ver));
    r.user_id = user ? std::string(*user) : call->caller.user_id();
  } else {
    if (!user || user->empty() || user->size() > kMaxUserIdBytes)
      return Finish(call,
                    Problem(http::status::unprocessable_entity, "Unprocessable Entity",
                            "'user_id' must be a non-empty string of at most 256 bytes", ver));
    r.user_id = std::string(*user);
  }
  if (const json::value* s = Find(*body, "schema")) {
    if (!s->is_string())
      return Finish(call, Problem(http::status::unprocessable_entity, "Unprocessable Entity",
                                  "'schema' must be a string", ver));
    r.schema = std::string(s->get_string());
  }
  if (const json::value* m = Find(*body, "metadata")) {
    if (!m->is_object())
      return Finish(call, Problem(http::status::unprocessable_entity, "Unprocessable Entity",
                                  "'metadata' must be an object", ver));
    r.metadata = m->get_object();
  }
  auto key = IdempotencyKey(call->req);
  if (!key.ok())
    return Finish(call,
                  Problem(http::status::bad_request, "Bad Request", key.status().message(), ver));
  r.idempotency_key = *key;
  engine_->CreateSession(std::move(r), ReplyTo(call));
}

void HttpApi::PostMessage(std::shared_ptr<Call> call) {
  const unsigned ver = call->req.version();
  std::optional<net::Response> problem;
  auto body = ParseBody(call->req, &problem, {"text", "priority"});
  if (!body) return Finish(call, std::move(*problem));
  ai::Priority priority = ai::Priority::kNormal;
  if (const json::value* p = Find(*body, "priority")) {
    if (!p->is_string() || !ai::ParsePriority(p->get_string(), &priority))
      return Finish(call, Problem(http::status::unprocessable_entity, "Unprocessable Entity",
                                  "'priority' must be \"low\", \"normal\" or \"high\"", ver));
  }
  auto text = GetString(*body, "text");
  if (!text)
    return Finish(call, Problem(http::status::unprocessable_entity, "Unprocessable Entity",
                                "'text' is required and must be a string", ver));
  if (text->find_first_not_of(" \t\r\n") == std::string_view::npos || text->size() > kMaxTextBytes)
    return Finish(call, Problem(http::status::unprocessable_entity, "Unprocessable Entity",
                                "'text' must be non-blank and at most 16384 bytes", ver));
  auto key = IdempotencyKey(call->req);
  if (!key.ok())
    return Finish(call,
                  Problem(http::status::bad_request, "Bad Request", key.status().message(), ver));
  engine::MessageRequest r;
  r.caller = call->caller;
  r.session_id = call->session_id;
  r.text = std::string(*text);
  r.priority = priority;
  r.trace = call->trace;
  r.idempotency_key = *key;
  if (WantsAsync(*call)) return engine_->AcceptMessage(std::move(r), ReplyTo(call));
  if (call->req[http::field::accept].find("text/event-stream") != std::string_view::npos)
    return StreamMessage(std::move(call), std::move(r));
  engine_->PostMessage(std::move(r), ReplyTo(call));
}

void HttpApi::StreamMessage(std::shared_ptr<Call> call, engine::MessageRequest r) {
  // The stream starts with the first token (or with the final reply), so a
  // step refused before the AI runs (unknown session, too many pending)
  // still gets its problem+json status.
  struct State {
    std::mutex mu;
    std::shared_ptr<net::EventStream> stream;
    bool started = false;
  };
  auto st = std::make_shared<State>();
  auto start = [this, call](State& s) {
    if (s.started) return;
    s.started = true;
    net::Response head(http::status::ok, call->req.version());
    head.set(http::field::content_type, "text/event-stream");
    head.set(http::field::cache_control, "no-cache");
    head.set("X-Request-Id", call->request_id);
    head.set("X-Accel-Buffering", "no");
    s.stream = call->ex->StartStream(std::move(head));
  };
  r.on_token = [st, start](std::string_view text) {
    json::object o;
    o["text"] = text;
    std::lock_guard<std::mutex> l(st->mu);
    start(*st);
    if (st->stream) st->stream->Send("event: token\ndata: " + json::serialize(o) + "\n\n");
  };
  engine_->PostMessage(std::move(r), [this, call, st, start](StatusOr<engine::Reply> res) {
    std::unique_lock<std::mutex> l(st->mu);
    if (!st->started && !res.ok()) {
      l.unlock();
      return Finish(call, ProblemFor(res.status(), call->req.version()));
    }
    start(*st);
    const int cls = res.ok() ? 2 : HttpStatusForClass(res.status());
    responses_[kMessages][cls - 1]->Inc();
    latency_[kMessages]->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - call->start).count());
    if (!st->stream) return;
    if (res.ok()) {
      st->stream->Send("event: done\ndata: " + json::serialize(res->body) + "\n\n");
    } else {
      st->stream->Send("event: error\ndata: " +
                       std::string(ProblemFor(res.status(), call->req.version()).body()) + "\n\n");
    }
    st->stream->Close();
  });
}

void HttpApi::CreateLink(std::shared_ptr<Call> call) {
  const unsigned ver = call->req.version();
  int64_t ttl = 3600;
  if (!call->req.body().empty()) {
    std::optional<net::Response> problem;
    auto body = ParseBody(call->req, &problem, {"ttl_s"});
    if (!body) return Finish(call, std::move(*problem));
    if (const json::value* t = Find(*body, "ttl_s")) {
      if (!t->is_int64() || t->get_int64() < 60 || t->get_int64() > 7 * 86400)
        return Finish(call, Problem(http::status::unprocessable_entity, "Unprocessable Entity",
                                    "'ttl_s' must be an integer from 60 to 604800", ver));
      ttl = t->get_int64();
    }
  }
  auto owner = engine_->Owner(call->caller, call->session_id);
  if (!owner.ok()) return Finish(call, ProblemFor(owner.status(), ver));
  json::object out;
  out["session_id"] = call->session_id;
  if (!options_.auth->enabled()) {
    out["token"] = nullptr;  // auth off: the session id alone opens it
    return Finish(call, Json(http::status::created, out, ver));
  }
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  int64_t exp = now + ttl;
  // A device token may pass its session on, but not outlive itself.
  if (call->caller.limited()) exp = std::min(exp, call->caller.expires_at_s());
  json::object claims;
  claims["sub"] = *owner;  // the session's user, also when an admin asks
  claims["iat"] = now;
  claims["exp"] = exp;
  json::array sessions;
  sessions.push_back(json::string(call->session_id));
  claims["sessions"] = std::move(sessions);
  auto token = options_.auth->verifier()->Mint(std::move(claims));
  if (!token.ok()) return Finish(call, ProblemFor(token.status(), ver));
  out["token"] = *token;
  out["expires_at"] = FormatRfc3339Millis(exp * 1000);
  Finish(call, Json(http::status::created, out, ver));
}

void HttpApi::GetUserUsage(std::shared_ptr<Call> call, std::string user_id) {
  const unsigned ver = call->req.version();
  if (user_id.empty() || user_id.size() > kMaxUserIdBytes)
    return Finish(call, Problem(http::status::not_found, "Not Found", "no such user", ver));
  auto u = engine_->UserUsage(call->caller, user_id);
  if (!u.ok()) return Finish(call, ProblemFor(u.status(), ver));
  json::object o = store::UsageToJson(*u);
  o["user_id"] = user_id;
  Finish(call, Json(http::status::ok, o, ver));
}

bool HttpApi::WantsAsync(Call& call) const {
  const auto prefer = call.req["Prefer"];
  if (!prefer.empty() && HasPreference(prefer, "respond-async")) return true;
  if (!prefer.empty() && HasPreference(prefer, "respond-sync")) return false;
  // The write mode may be a flag, per user (persona.write_mode: "sync" |
  // "async"): the session's user, or the caller's.
  if (options_.flags) {
    if (auto set = options_.flags(); set && set->Has("persona.write_mode")) {
      const std::string& user = FlagUser(call);
      if (!user.empty()) {
        const flags::Resolution r = set->Evaluate("persona.write_mode", user);
        flags::CountEvaluation(r);
        if (r.error_code.empty() && r.value.is_string()) return r.value.get_string() == "async";
      }
    }
  }
  return options_.async_default;
}

// GET /v1/flags/{key}?targeting_key=U: OpenFeature resolution details (SPEC
// §13) for the caller's own user (the default targeting key), or any user's
// with an admin token; auth off: any.
void HttpApi::GetFlag(std::shared_ptr<Call> call) {
  const unsigned ver = call->req.version();
  std::shared_ptr<const flags::FlagSet> set = options_.flags ? options_.flags() : nullptr;
  if (!set)
    return Finish(call, Problem(http::status::not_found, "Not Found",
                                "no feature flags (flags.file is not set)", ver));
  std::string user = call->caller.user_id();
  if (auto q = QueryParam(call->query, "targeting_key")) user = *q;
  if (user.empty())
    return Finish(call, Problem(http::status::unprocessable_entity, "Unprocessable Entity",
                                "'targeting_key' is required", ver));
  if (user.size() > kMaxUserIdBytes)
    return Finish(call, Problem(http::status::unprocessable_entity, "Unprocessable Entity",
                                "'targeting_key' is longer than 256 bytes", ver));
  if (!call->caller.MayReadUser(user))
    return Finish(call, Problem(http::status::forbidden, "Forbidden",
                                "a token may read only its own user's flags", ver));
  const flags::Resolution r = set->Evaluate(call->session_id, user);
  if (r.error_code == "FLAG_NOT_FOUND")
    return Finish(call, Problem(http::status::not_found, "Not Found", r.error_message, ver));
  json::object o;
  o["key"] = r.key;
  o["value"] = r.value;
  o["variant"] = r.variant;
  o["reason"] = r.reason;
  if (!r.error_code.empty()) {
    o["errorCode"] = r.error_code;
    o["errorMessage"] = r.error_message;
  }
  return Finish(call, Json(http::status::ok, o, ver));
}

void HttpApi::GetRequest(std::shared_ptr<Call> call) {
  const unsigned ver = call->req.version();
  auto r = engine_->GetRequest(call->caller, call->session_id);
  if (!r.ok()) return Finish(call, ProblemFor(r.status(), ver));
  // A failure is stored as a status code and message; render it as the
  // problem the synchronous request would have got.
  if (const json::value* e = r->if_contains("error"); e && e->is_object()) {
    const auto code = GetInt(e->get_object(), "code").value_or(13);
    const auto msg = GetString(e->get_object(), "message").value_or("");
    const Status st(static_cast<absl::StatusCode>(code), absl::string_view(msg.data(), msg.size()));
    net::Response pr = ProblemFor(st, ver);
    if (auto pv = ParseJson(pr.body()); pv.ok()) (*r)["problem"] = std::move(*pv);
    r->erase("error");
  }
  net::Response res = Json(http::status::ok, *r, ver);
  if (GetString(*r, "status") == "pending") res.set(http::field::retry_after, "1");
  Finish(call, std::move(res));
}

void HttpApi::ListMessages(std::shared_ptr<Call> call) {
  const unsigned ver = call->req.version();
  auto limit = UintParam(call->query, "limit", 50, 500);
  auto before = UintParam(call->query, "before", 0, UINT64_MAX);
  if (!limit.ok() || !before.ok())
    return Finish(call, Problem(http::status::bad_request, "Bad Request",
                                (!limit.ok() ? limit.status() : before.status()).message(), ver));
  auto r =
      engine_->ListMessages(call->caller, call->session_id, *limit == 0 ? 50 : *limit, *before);
  if (!r.ok()) return Finish(call, ProblemFor(r.status(), ver));
  Finish(call, Json(http::status::ok, *r, ver));
}

void HttpApi::GetProfile(std::shared_ptr<Call> call) {
  if (!readers_) return ServeProfile(call);
  if (readers_waiting_.fetch_add(1) >= options_.blocking_read_queue) {
    readers_waiting_.fetch_sub(1);
    readers_refused_->Inc();
    net::Response res = Problem(http::status::service_unavailable, "Service Unavailable",
                                "too many profile reads waiting", call->req.version());
    res.set(http::field::retry_after, "1");
    return Finish(call, std::move(res));
  }
  boost::asio::post(*readers_, [this, call] {
    readers_waiting_.fetch_sub(1);
    ServeProfile(call);
  });
}

void HttpApi::ServeProfile(const std::shared_ptr<Call>& call) {
  const unsigned ver = call->req.version();
  auto p = engine_->GetProfileJson(call->caller, call->session_id);
  if (!p.ok()) return Finish(call, ProblemFor(p.status(), ver));
  const std::string etag = "\"" + std::to_string(p->second) + "\"";
  auto inm = call->req[http::field::if_none_match];
  if (!inm.empty() && (inm == "*" || ParseVersionTag(inm) == p->second)) {
    net::Response res(http::status::not_modified, ver);
    res.set(http::field::etag, etag);
    return Finish(call, std::move(res));
  }
  net::Response res(http::status::ok, ver);
  res.set(http::field::content_type, "application/json");
  res.set(http::field::etag, etag);
  res.set(http::field::cache_control, "no-cache");
  res.body() = std::move(p->first);
  Finish(call, std::move(res));
}

void HttpApi::PatchProfile(std::shared_ptr<Call> call) {
  const unsigned ver = call->req.version();
  std::optional<net::Response> problem;
  auto body = ParseBody(call->req, &problem, {"fields"});
  if (!body) return Finish(call, std::move(*problem));
  const json::value* fields = Find(*body, "fields");
  if (fields == nullptr || !fields->is_object())
    return Finish(call, Problem(http::status::unprocessable_entity, "Unprocessable Entity",
                                "'fields' is required and must be an object", ver));
  engine::PatchRequest r;
  r.caller = call->caller;
  r.session_id = call->session_id;
  r.fields = fields->get_object();
  auto if_match = call->req[http::field::if_match];
  if (!if_match.empty() && if_match != "*") {
    auto v = ParseVersionTag(if_match);
    if (!v)
      return Finish(call, Problem(http::status::bad_request, "Bad Request",
                                  "If-Match must be an entity tag like \"12\"", ver));
    r.if_match = *v;
  }
  auto key = IdempotencyKey(call->req);
  if (!key.ok())
    return Finish(call,
                  Problem(http::status::bad_request, "Bad Request", key.status().message(), ver));
  r.idempotency_key = *key;
  if (WantsAsync(*call)) return engine_->AcceptPatch(std::move(r), ReplyTo(call));
  engine_->PatchProfile(std::move(r), ReplyTo(call));
}

void HttpApi::ListEvents(std::shared_ptr<Call> call) {
  const unsigned ver = call->req.version();
  auto after = UintParam(call->query, "after", 0, UINT64_MAX);
  auto limit = UintParam(call->query, "limit", 100, 1000);
  if (!after.ok() || !limit.ok())
    return Finish(call, Problem(http::status::bad_request, "Bad Request",
                                (!after.ok() ? after.status() : limit.status()).message(), ver));
  auto events =
      engine_->ListEvents(call->caller, call->session_id, *after, *limit == 0 ? 100 : *limit);
  if (!events.ok()) return Finish(call, ProblemFor(events.status(), ver));
  json::array arr;
  for (const auto& e : *events) arr.push_back(model::EventToJson(e));
  json::object o;
  o["events"] = std::move(arr);
  if (!events->empty()) o["next_after"] = events->back().seq;
  Finish(call, Json(http::status::ok, o, ver));
}

// A live tail: subscribe first, then send the backlog from the store, then
// switch to live events, skipping any the backlog already covered.
void HttpApi::StreamEvents(std::shared_ptr<Call> call) {
  const unsigned ver = call->req.version();
  auto after = UintParam(call->query, "after", 0, UINT64_MAX);
  if (!after.ok())
    return Finish(call,
                  Problem(http::status::bad_request, "Bad Request", after.status().message(), ver));
  uint64_t from = *after;
  if (auto last = call->req["Last-Event-ID"]; !last.empty()) {
    auto v = ParseVersionTag(last);
    if (!v)
      return Finish(call, Problem(http::status::bad_request, "Bad Request",
                                  "Last-Event-ID must be an event seq", ver));
    from = *v;
  }
  auto version = engine_->Version(call->caller, call->session_id);
  if (!version.ok()) return Finish(call, ProblemFor(version.status(), ver));

  struct Tail {
    std::mutex mu;
    int64_t expires_at_s = 0;  // the token's exp: the stream ends there
    bool live = false;
    uint64_t last_sent = 0;
    std::vector<std::string> early;  // live events that arrived during the backlog
    std::shared_ptr<net::EventStream> stream;
    std::unique_ptr<bus::Subscription> sub;
  };
  auto tail = std::make_shared<Tail>();
  tail->last_sent = from;
  tail->expires_at_s = call->caller.expires_at_s();
  std::weak_ptr<Tail> weak = tail;
  auto deliver = [](Tail& t, std::string_view text) {
    uint64_t seq;
    std::string type;
    if (t.expires_at_s > 0 && std::time(nullptr) >= t.expires_at_s) return t.stream->Close();
    if (!PeekEvent(text, &seq, &type) || seq <= t.last_sent) return;
    t.last_sent = seq;
    t.stream->Send(SseFrame(seq, type, text));
    if (type == model::kSessionDeleted) t.stream->Close();
  };
  tail->sub = engine_->bus()->Subscribe(engine::Engine::EventsTopic(call->session_id),
                                        [weak, deliver](const bus::Payload& p) {
                                          auto t = weak.lock();
                                          if (!t) return;
                                          std::lock_guard<std::mutex> l(t->mu);
                                          if (!t->stream) return;
                                          if (!t->live) {
                                            if (t->early.size() >= 4096) return t->stream->Close();
                                            t->early.push_back(*p);
                                            return;
                                          }
                                          deliver(*t, *p);
                                        });

  net::Response head(http::status::ok, ver);
  head.set(http::field::content_type, "text/event-stream");
  head.set(http::field::cache_control, "no-cache");
  head.set("X-Request-Id", call->request_id);
  head.set("X-Accel-Buffering", "no");
  responses_[kEvents][1]->Inc();
  auto stream = call->ex->StartStream(std::move(head));
  if (!stream) return;
  {
    std::lock_guard<std::mutex> l(tail->mu);
    tail->stream = stream;
  }
  // The stream owns the tail; closing it drops the subscription.
  stream->OnClose([tail]() mutable {
    std::unique_ptr<bus::Subscription> sub;
    {
      std::lock_guard<std::mutex> l(tail->mu);
      sub = std::move(tail->sub);
      tail->stream.reset();
    }
  });
  stream->Send("retry: 1000\n\n");
  // Backlog, in pages, then go live.
  uint64_t cursor = from;
  for (;;) {
    auto events = engine_->ListEvents(call->caller, call->session_id, cursor, 1000);
    if (!events.ok()) {
      stream->Close();
      return;
    }
    std::lock_guard<std::mutex> l(tail->mu);
    if (!tail->stream) return;  // client went away
    for (const auto& e : *events) {
      if (e.seq <= tail->last_sent) continue;
      tail->last_sent = e.seq;
      if (!tail->stream->Send(SseFrame(e.seq, e.type, model::EventToJsonString(e)))) return;
    }
    if (events->size() < 1000) {
      tail->live = true;
      for (const auto& text : tail->early) deliver(*tail, text);
      tail->early.clear();
      return;
    }
    cursor = events->back().seq;
  }
}

}  // namespace persona::api
