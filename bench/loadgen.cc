// persona_loadgen: an HTTP/1.1 keep-alive load generator for persona's step
// loop (bench/run_steps.sh drives it).
//
// Raw Asio sockets, hand-written request writing and response parsing
// (Content-Length bodies only, which is what persona sends). One io_context
// per thread, no locks on the hot path.
//
//   persona_loadgen closed --url http://127.0.0.1:8080 --connections 64
//       --duration 10 --warmup 2 --sessions-per-conn 4 --mode step|profile
//   persona_loadgen open --url http://127.0.0.1:8080 --users 10000
//       --rate-per-user 0.5 --duration 20 --warmup 2 --connections 512
//
// closed: every connection loops request -> response -> request.
// open:   every user sends one step per 1/rate seconds at its scheduled time,
//         whether or not earlier requests have been answered; a request that
//         finds no free connection waits in a FIFO, and its latency is taken
//         from the SCHEDULED time (no coordinated omission).
//
// Prints one JSON object on stdout. Never crashes on server errors: connection
// errors, timeouts and non-2xx answers are counted. Runtime is bounded by
// setup-timeout + warmup + duration + drain.

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using error_code = boost::system::error_code;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// ---------------------------------------------------------------- options

struct Options {
  std::string kind;               // closed | open
  std::string workload = "step";  // step | profile
  std::string host = "127.0.0.1";
  std::string port = "8080";
  int connections = 64;
  int threads = 1;
  double duration = 10;
  double warmup = 2;
  int sessions_per_conn = 4;
  int users = 10000;
  double rate_per_user = 0.5;
  std::string arrival = "uniform";  // uniform | poisson
  int prefill = -1;                 // steps posted to each session in setup (-1: auto)
  int setup_concurrency = 256;
  double setup_timeout = 90;
  double drain = 5;           // seconds to wait for in-flight requests after the run
  bool metrics = true;        // scrape /metrics at the window edges
  bool prefer_async = false;  // steps ask for 202 Accepted (Prefer: respond-async)
  std::string token;          // Authorization: Bearer for every request but /metrics
  std::string admin_token;    // … and for /metrics (auth on needs an admin token)
  uint64_t seed = 42;
};

[[noreturn]] void usage(const char* msg) {
  if (msg) std::fprintf(stderr, "persona_loadgen: %s\n", msg);
  std::fprintf(stderr,
               "usage: persona_loadgen closed|open --url http://HOST:PORT [options]\n"
               "  --connections N        connections (closed: 64; open: pool size, 512)\n"
               "  --duration S           measured seconds (10)\n"
               "  --warmup S             unmeasured seconds before (2)\n"
               "  --threads N            io threads, closed loop only (1)\n"
               "  --mode step|profile    closed loop request kind (step)\n"
               "  --sessions-per-conn N  closed loop sessions per connection (4)\n"
               "  --users N              open loop users, one session each (10000)\n"
               "  --rate-per-user R      open loop steps/s per user (0.5)\n"
               "  --arrival uniform|poisson  open loop schedule (uniform)\n"
               "  --prefill N            steps posted per session during setup\n"
               "                         (default: 0 for step, 3 for profile)\n"
               "  --setup-concurrency N  connections used to create sessions (256)\n"
               "  --setup-timeout S      abort if setup takes longer (90)\n"
               "  --drain S              wait for in-flight requests after the run (5)\n"
               "  --no-metrics           do not scrape /metrics\n"
               "  --prefer-async         measured steps send Prefer: respond-async (202)\n"
               "  --token T              send Authorization: Bearer T (sessions are then\n"
               "                         created for the token's user)\n"
               "  --admin-token T        bearer token for the /metrics scrapes\n");
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  if (argc < 2) usage(nullptr);
  o.kind = argv[1];
  if (o.kind != "closed" && o.kind != "open") usage("first argument must be closed or open");
  bool conn_set = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    try {
      if (a == "--url") {
        std::string u = val();
        if (u.rfind("http://", 0) != 0) usage("--url must start with http://");
        u = u.substr(7);
        if (auto s = u.find('/'); s != std::string::npos) u = u.substr(0, s);
        auto c = u.rfind(':');
        if (c == std::string::npos) {
          o.host = u;
          o.port = "80";
        } else {
          o.host = u.substr(0, c);
          o.port = u.substr(c + 1);
        }
      } else if (a == "--connections") {
        o.connections = std::stoi(val());
        conn_set = true;
      } else if (a == "--threads") {
        o.threads = std::stoi(val());
      } else if (a == "--duration") {
        o.duration = std::stod(val());
      } else if (a == "--warmup") {
        o.warmup = std::stod(val());
      } else if (a == "--mode") {
        o.workload = val();
      } else if (a == "--sessions-per-conn") {
        o.sessions_per_conn = std::stoi(val());
      } else if (a == "--users") {
        o.users = std::stoi(val());
      } else if (a == "--rate-per-user") {
        o.rate_per_user = std::stod(val());
      } else if (a == "--arrival") {
        o.arrival = val();
      } else if (a == "--prefill") {
        o.prefill = std::stoi(val());
      } else if (a == "--setup-concurrency") {
        o.setup_concurrency = std::stoi(val());
      } else if (a == "--setup-timeout") {
        o.setup_timeout = std::stod(val());
      } else if (a == "--drain") {
        o.drain = std::stod(val());
      } else if (a == "--no-metrics") {
        o.metrics = false;
      } else if (a == "--prefer-async") {
        o.prefer_async = true;
      } else if (a == "--token") {
        o.token = val();
      } else if (a == "--admin-token") {
        o.admin_token = val();
      } else if (a == "--seed") {
        o.seed = std::stoull(val());
      } else if (a == "-h" || a == "--help") {
        usage(nullptr);
      } else {
        usage(("unknown option " + a).c_str());
      }
    } catch (const std::exception&) {
      usage(("bad value for " + a).c_str());
    }
  }
  if (o.kind == "open" && !conn_set) o.connections = 512;
  if (o.workload != "step" && o.workload != "profile") usage("--mode must be step or profile");
  if (o.arrival != "uniform" && o.arrival != "poisson")
    usage("--arrival must be uniform or poisson");
  if (o.connections < 1 || o.threads < 1 || o.sessions_per_conn < 1 || o.users < 1 ||
      o.rate_per_user <= 0 || o.duration <= 0 || o.warmup < 0 || o.setup_concurrency < 1)
    usage("numeric options out of range");
  if (o.kind == "open") {
    o.threads = 1;
    o.workload = "step";
  }
  o.threads = std::min(o.threads, o.connections);
  if (o.prefill < 0) o.prefill = o.workload == "profile" ? 3 : 0;
  return o;
}

// ---------------------------------------------------------------- workload

// Realistic user utterances, English and Korean, with and without facts the
// built-in engine extracts. No character needs JSON escaping.
const std::vector<std::string_view> kUtterances = {
    "Hi, I'm Alice Kim",
    "I'm 34",
    "I live in Seoul",
    "I work as a nurse",
    "I like hiking, jazz and cooking",
    "my email is alice@example.com",
    "저는 부산에 살아요",
    "actually I'm 35",
    "my phone number is 010-1234-5678",
    "how are you today?",
    "제 이름은 김민지예요",
    "I want to run a marathon next year",
    "please contact me by email",
    "저는 서른 살이에요",
    "I moved to Busan last month",
    "what do you know about me?",
    "저는 요리하는 걸 좋아해요",
    "I'm a software engineer now",
};

std::string make_request(const Options& o, std::string_view method, std::string_view path,
                         std::string_view body, bool prefer_async = false) {
  std::string r;
  r.reserve(160 + path.size() + body.size());
  r.append(method).append(" ").append(path).append(" HTTP/1.1\r\nHost: ");
  r.append(o.host).append(":").append(o.port).append("\r\n");
  if (!body.empty() || method == "POST") {
    r.append("Content-Type: application/json\r\nContent-Length: ");
    r.append(std::to_string(body.size())).append("\r\n");
  }
  if (prefer_async) r.append("Prefer: respond-async\r\n");
  const std::string& token = path == "/metrics" ? o.admin_token : o.token;
  if (!token.empty()) r.append("Authorization: Bearer ").append(token).append("\r\n");
  r.append("Accept: application/json\r\n\r\n");
  r.append(body);
  return r;
}

std::string step_request(const Options& o, const std::string& session, size_t n,
                         bool prefer_async = false) {
  std::string body = "{\"text\":\"";
  body.append(kUtterances[n % kUtterances.size()]).append("\"}");
  return make_request(o, "POST", "/v1/sessions/" + session + "/messages", body, prefer_async);
}

std::string profile_request(const Options& o, const std::string& session) {
  return make_request(o, "GET", "/v1/sessions/" + session + "/profile", {});
}

std::string create_request(const Options& o, size_t i) {
  // With a token the session belongs to the token's user (SPEC §10).
  std::string body =
      o.token.empty() ? "{\"user_id\":\"bench-user-" + std::to_string(i) + "\"}" : "{}";
  return make_request(o, "POST", "/v1/sessions", body);
}

std::optional<std::string> json_string_field(std::string_view body, std::string_view key) {
  std::string pat = "\"" + std::string(key) + "\":\"";
  auto p = body.find(pat);
  if (p == std::string_view::npos) return std::nullopt;
  p += pat.size();
  auto e = body.find('"', p);
  if (e == std::string_view::npos) return std::nullopt;
  return std::string(body.substr(p, e - p));
}

// ---------------------------------------------------------------- HTTP client

struct Result {
  error_code ec;          // transport error (or protocol error mapped to one)
  int status = 0;         // HTTP status when !ec
  std::string_view body;  // valid only during the callback
};

struct Conn;
using Callback = std::function<void(Conn&, const Result&)>;

struct Conn {
  explicit Conn(asio::io_context& io) : sock(io), timer(io) {}
  tcp::socket sock;
  asio::steady_timer timer;  // reconnect back-off, per-connection use
  bool connected = false;
  bool busy = false;
  std::string wbuf;
  std::vector<char> rbuf = std::vector<char>(16384);
  size_t rlen = 0;
  Callback cb;
  // Per-connection workload state.
  size_t id = 0;
  size_t counter = 0;
  Clock::time_point t_start;  // when the current request was scheduled/sent
  size_t user = 0;            // open loop: user of the current request
};

// Parses one response at the front of rbuf. Returns 0 when more bytes are
// needed, -1 on a malformed response, otherwise the total response length.
long parse_response(const char* p, size_t n, int& status, size_t& body_off, size_t& body_len,
                    bool& close) {
  std::string_view v(p, n);
  auto hdr_end = v.find("\r\n\r\n");
  if (hdr_end == std::string_view::npos) return n > (1 << 16) ? -1 : 0;
  if (v.size() < 12 || v.substr(0, 5) != "HTTP/") return -1;
  auto sp = v.find(' ');
  if (sp == std::string_view::npos || sp + 4 > hdr_end) return -1;
  status = 0;
  auto [ptr, ec] = std::from_chars(p + sp + 1, p + sp + 4, status);
  if (ec != std::errc() || ptr != p + sp + 4) return -1;
  size_t cl = 0;
  close = v.substr(0, sp) == "HTTP/1.0";
  size_t line = v.find("\r\n") + 2;
  while (line < hdr_end) {
    size_t eol = v.find("\r\n", line);
    std::string_view h = v.substr(line, eol - line);
    auto colon = h.find(':');
    if (colon != std::string_view::npos) {
      std::string_view name = h.substr(0, colon);
      std::string_view value = h.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
      auto ieq = [](std::string_view a, std::string_view b) {
        return a.size() == b.size() &&
               std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
                 return std::tolower(static_cast<unsigned char>(x)) == y;
               });
      };
      if (ieq(name, "content-length")) {
        auto [q, e2] = std::from_chars(value.data(), value.data() + value.size(), cl);
        if (e2 != std::errc()) return -1;
      } else if (ieq(name, "connection")) {
        std::string lower(value);
        for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (lower.find("close") != std::string::npos) close = true;
        if (lower.find("keep-alive") != std::string::npos) close = false;
      } else if (ieq(name, "transfer-encoding")) {
        return -1;  // not supported (persona never sends chunked bodies)
      }
    }
    line = eol + 2;
  }
  body_off = hdr_end + 4;
  body_len = cl;
  if (n < body_off + cl) return 0;
  return static_cast<long>(body_off + cl);
}

class Client {
 public:
  Client(asio::io_context& io, tcp::resolver::results_type eps) : io_(io), eps_(std::move(eps)) {}

  // Sends c.wbuf on c (connecting first if needed) and calls c.cb once.
  void send(Conn& c) {
    c.busy = true;
    if (!c.connected) {
      error_code ignore;
      c.sock.close(ignore);
      c.sock = tcp::socket(io_);
      asio::async_connect(c.sock, eps_, [this, &c](const error_code& ec, const tcp::endpoint&) {
        if (ec) return finish(c, ec, 0, {}, true);
        error_code ig;
        c.sock.set_option(tcp::no_delay(true), ig);
        c.connected = true;
        write(c);
      });
      return;
    }
    write(c);
  }

  void close(Conn& c) {
    error_code ig;
    c.sock.close(ig);
    c.timer.cancel();
    c.connected = false;
    c.rlen = 0;
  }

 private:
  void write(Conn& c) {
    asio::async_write(c.sock, asio::buffer(c.wbuf), [this, &c](const error_code& ec, size_t) {
      if (ec) return finish(c, ec, 0, {}, true);
      read(c);
    });
  }

  void read(Conn& c) {
    if (c.rbuf.size() - c.rlen < 4096) c.rbuf.resize(c.rbuf.size() * 2);
    c.sock.async_read_some(
        asio::buffer(c.rbuf.data() + c.rlen, c.rbuf.size() - c.rlen),
        [this, &c](const error_code& ec, size_t n) {
          if (ec) return finish(c, ec, 0, {}, true);
          c.rlen += n;
          int status = 0;
          size_t off = 0, len = 0;
          bool close = false;
          long total = parse_response(c.rbuf.data(), c.rlen, status, off, len, close);
          if (total < 0)
            return finish(c, asio::error::make_error_code(asio::error::invalid_argument), 0, {},
                          true);
          if (total == 0) {
            if (c.rlen > (64u << 20))
              return finish(c, asio::error::make_error_code(asio::error::message_size), 0, {},
                            true);
            return read(c);
          }
          std::string body(c.rbuf.data() + off, len);
          // No pipelining: anything after the response is unexpected.
          bool extra = c.rlen > static_cast<size_t>(total);
          c.rlen = 0;
          finish(c, {}, status, body, close || extra);
        });
  }

  void finish(Conn& c, const error_code& ec, int status, std::string_view body, bool close_conn) {
    if (close_conn) close(c);
    c.busy = false;
    Result r{ec, status, body};
    c.cb(c, r);
  }

  asio::io_context& io_;
  tcp::resolver::results_type eps_;
};

// ---------------------------------------------------------------- stats

struct Stats {
  uint64_t requests = 0;          // responses (any status) counted in the window
  uint64_t ok = 0;                // 2xx responses in the window
  uint64_t errors = 0;            // transport errors + timeouts during warmup and window
  uint64_t timeouts = 0;          // in flight (or queued) when the drain deadline hit
  uint64_t non_2xx = 0;           // non-2xx responses during warmup and window
  std::vector<uint64_t> lat_ns;   // 2xx latencies in the window
  std::vector<uint64_t> shed_ns;  // 429/503 latencies in the window (time to the refusal)
  std::vector<std::pair<int, uint64_t>> statuses;
  std::string first_error;

  void status_seen(int s) {
    for (auto& [k, v] : statuses)
      if (k == s) {
        ++v;
        return;
      }
    statuses.emplace_back(s, 1);
  }
  void error_seen(const error_code& ec) {
    ++errors;
    if (first_error.empty()) first_error = ec.message();
  }
  void merge(const Stats& o) {
    requests += o.requests;
    ok += o.ok;
    errors += o.errors;
    timeouts += o.timeouts;
    non_2xx += o.non_2xx;
    lat_ns.insert(lat_ns.end(), o.lat_ns.begin(), o.lat_ns.end());
    shed_ns.insert(shed_ns.end(), o.shed_ns.begin(), o.shed_ns.end());
    for (auto& [k, v] : o.statuses) {
      bool found = false;
      for (auto& [k2, v2] : statuses)
        if (k2 == k) {
          v2 += v;
          found = true;
        }
      if (!found) statuses.emplace_back(k, v);
    }
    if (first_error.empty()) first_error = o.first_error;
  }
};

struct MetricsSample {
  bool ok = false;
  double appends = 0, fsyncs = 0;
  double applied = 0, intake_depth = 0;  // async write mode
  Clock::time_point at;                  // when the answer arrived
};

MetricsSample parse_metrics(std::string_view text) {
  MetricsSample m;
  bool a = false, f = false;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    auto take = [&](std::string_view name, double& out) {
      if (line.size() > name.size() && line.substr(0, name.size()) == name &&
          (line[name.size()] == ' ' || line[name.size()] == '{')) {
        auto sp = line.rfind(' ');
        out += std::strtod(std::string(line.substr(sp + 1)).c_str(), nullptr);
        return true;
      }
      return false;
    };
    if (take("persona_store_appends_total", m.appends)) a = true;
    if (take("persona_store_fsyncs_total", m.fsyncs)) f = true;
    take("persona_intake_applied_total", m.applied);
    take("persona_intake_depth", m.intake_depth);
  }
  m.ok = a && f;
  return m;
}

// Scrapes /metrics once on its own connection; calls done(sample).
class MetricsScraper {
 public:
  MetricsScraper(asio::io_context& io, Client& client, const Options& o)
      : conn_(io), client_(client) {
    conn_.wbuf = make_request(o, "GET", "/metrics", {});
  }
  void scrape(std::function<void(MetricsSample)> done) {
    if (conn_.busy) return done({});
    conn_.cb = [done = std::move(done)](Conn&, const Result& r) {
      if (r.ec || r.status != 200) return done({});
      MetricsSample m = parse_metrics(r.body);
      m.at = Clock::now();
      done(m);
    };
    client_.send(conn_);
  }
  void close() { client_.close(conn_); }

 private:
  Conn conn_;
  Client& client_;
};

// ---------------------------------------------------------------- setup

// Runs `count` tasks over up to `concurrency` connections. make(i) builds the
// request of task i; check(i, status, body) says whether it succeeded. A
// failed task is retried up to 5 times. Returns false on timeout or when a
// task fails for good.
bool run_tasks(const Options& o, const tcp::resolver::results_type& eps, size_t count,
               int concurrency, const std::function<std::string(size_t)>& make,
               const std::function<bool(size_t, int, std::string_view)>& check,
               Clock::time_point deadline, std::string& why) {
  if (count == 0) return true;
  asio::io_context io;
  Client client(io, eps);
  size_t next = 0, done = 0;
  bool failed = false;
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<int> tries(count, 0);
  asio::steady_timer guard(io);
  std::function<void(Conn&)> start;
  start = [&](Conn& c) {
    if (failed) return;
    if (c.user == SIZE_MAX) {
      if (next >= count) return;
      c.user = next++;
    }
    c.wbuf = make(c.user);
    client.send(c);
  };
  auto on_done = [&](Conn& c, const Result& r) {
    size_t i = c.user;
    bool ok = !r.ec && check(i, r.status, r.body);
    if (ok) {
      c.user = SIZE_MAX;
      if (++done == count) {
        guard.cancel();
        for (auto& x : conns) client.close(*x);
        return;
      }
      return start(c);
    }
    if (++tries[i] >= 5) {
      failed = true;
      why = "setup request failed 5 times: " +
            (r.ec ? r.ec.message()
                  : "HTTP " + std::to_string(r.status) + " " + std::string(r.body.substr(0, 200)));
      guard.cancel();
      for (auto& x : conns) client.close(*x);
      io.stop();
      return;
    }
    c.timer.expires_after(std::chrono::milliseconds(20));
    c.timer.async_wait([&, cp = &c](const error_code& ec) {
      if (!ec) start(*cp);
    });
  };
  int n = static_cast<int>(std::min<size_t>(count, concurrency));
  for (int k = 0; k < n; ++k) {
    conns.push_back(std::make_unique<Conn>(io));
    conns.back()->user = SIZE_MAX;
    conns.back()->cb = on_done;
  }
  guard.expires_at(deadline);
  guard.async_wait([&](const error_code& ec) {
    if (ec) return;
    failed = true;
    why = "setup timed out (" + std::to_string(done) + "/" + std::to_string(count) + " done)";
    io.stop();
  });
  for (auto& c : conns) start(*c);
  io.run();
  return !failed && done == count;
}

bool create_sessions(const Options& o, const tcp::resolver::results_type& eps, size_t n,
                     std::vector<std::string>& ids, Clock::time_point deadline, std::string& why) {
  ids.assign(n, {});
  bool ok = run_tasks(
      o, eps, n, o.setup_concurrency, [&](size_t i) { return create_request(o, i); },
      [&](size_t i, int status, std::string_view body) {
        if (status / 100 != 2) return false;
        auto id = json_string_field(body, "session_id");
        if (!id) return false;
        ids[i] = *id;
        return true;
      },
      deadline, why);
  if (!ok || o.prefill <= 0) return ok;
  size_t k = static_cast<size_t>(o.prefill);
  return run_tasks(
      o, eps, n * k, o.setup_concurrency,
      // Task i: step (i / n) of session (i % n), so a session's steps are not concurrent
      // with each other unless n < concurrency (harmless either way).
      [&](size_t i) { return step_request(o, ids[i % n], i / n); },
      [&](size_t, int status, std::string_view) { return status / 100 == 2; }, deadline, why);
}

// ---------------------------------------------------------------- closed loop

struct Window {
  Clock::time_point t0, warm_end, end, hard_end;
};

class ClosedWorker {
 public:
  ClosedWorker(const Options& o, tcp::resolver::results_type eps, Window w,
               std::vector<std::vector<std::string>> conn_sessions, bool scrape)
      : o_(o), client_(io_, std::move(eps)), w_(w), guard_(io_), scrape_timer_(io_) {
    for (auto& s : conn_sessions) {
      auto c = std::make_unique<Conn>(io_);
      c->id = conns_.size();
      c->counter = c->id;  // different utterances on different connections
      c->cb = [this](Conn& c, const Result& r) { on_done(c, r); };
      conns_.push_back(std::move(c));
      sessions_.push_back(std::move(s));
    }
    if (scrape) scraper_.emplace(io_, client_, o_);
  }

  void run() {
    for (auto& c : conns_) {
      c->timer.expires_at(w_.t0);
      c->timer.async_wait([this, cp = c.get()](const error_code& ec) {
        if (!ec) issue(*cp);
      });
      ++active_;
    }
    if (scraper_) {
      scrape_timer_.expires_at(w_.warm_end);
      scrape_timer_.async_wait([this](const error_code& ec) {
        if (ec) return;
        scraper_->scrape([this](MetricsSample m) {
          m_begin = m;
          scrape_timer_.expires_at(w_.end);
          scrape_timer_.async_wait([this](const error_code& ec) {
            if (ec) return;
            scraper_->scrape([this](MetricsSample m) {
              m_end = m;
              end_scraped_ = true;
              scraper_->close();
            });
          });
        });
      });
    }
    guard_.expires_at(w_.hard_end);
    guard_.async_wait([this](const error_code& ec) {
      if (ec) return;
      for (auto& c : conns_) {
        if (c->busy) {
          ++stats.timeouts;
          ++stats.errors;
          if (stats.first_error.empty())
            stats.first_error = "timeout (no response before drain deadline)";
        }
        client_.close(*c);
      }
      if (scraper_) scraper_->close();
      io_.stop();
    });
    io_.run();
  }

  Stats stats;
  MetricsSample m_begin, m_end;

 private:
  void issue(Conn& c) {
    auto now = Clock::now();
    if (now >= w_.end) return retire();
    const auto& ss = sessions_[c.id];
    const std::string& sid = ss[c.counter % ss.size()];
    if (o_.workload == "step")
      c.wbuf = step_request(o_, sid, c.counter / ss.size() + c.id, o_.prefer_async);
    else
      c.wbuf = profile_request(o_, sid);
    ++c.counter;
    c.t_start = now;
    client_.send(c);
  }

  void on_done(Conn& c, const Result& r) {
    auto now = Clock::now();
    bool in_window = now >= w_.warm_end && now <= w_.end;
    if (r.ec) {
      if (now <= w_.end) stats.error_seen(r.ec);
      // Back off a little so a dead server is not hammered in a hot loop.
      c.timer.expires_after(std::chrono::milliseconds(50));
      c.timer.async_wait([this, cp = &c](const error_code& ec) {
        if (!ec) issue(*cp);
      });
      return;
    }
    if (now <= w_.end) stats.status_seen(r.status);
    bool ok = r.status / 100 == 2;
    if (!ok && now <= w_.end) ++stats.non_2xx;
    if (in_window) {
      ++stats.requests;
      const auto ns = static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(now - c.t_start).count());
      if (ok) {
        ++stats.ok;
        stats.lat_ns.push_back(ns);
      } else if (r.status == 429 || r.status == 503) {
        stats.shed_ns.push_back(ns);
      }
    }
    issue(c);
  }

  void retire() {
    if (--active_ == 0) {
      // Every connection is idle: finish once the end scrape is in.
      auto finish = [this] {
        guard_.cancel();
        for (auto& c : conns_) client_.close(*c);
        if (scraper_) scraper_->close();
        scrape_timer_.cancel();
      };
      if (scraper_ && !end_scraped_ && Clock::now() < w_.hard_end) {
        // Let the scraper finish (it closes its own connection); the guard stops us otherwise.
        auto t = std::make_shared<asio::steady_timer>(io_);
        auto poll = std::make_shared<std::function<void()>>();
        *poll = [this, t, poll, finish] {
          if (end_scraped_ || Clock::now() >= w_.hard_end) return finish();
          t->expires_after(std::chrono::milliseconds(5));
          t->async_wait([poll](const error_code& ec) {
            if (!ec) (*poll)();
          });
        };
        (*poll)();
        return;
      }
      finish();
    }
  }

  const Options& o_;
  asio::io_context io_;
  Client client_;
  Window w_;
  asio::steady_timer guard_;
  asio::steady_timer scrape_timer_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<std::vector<std::string>> sessions_;
  std::optional<MetricsScraper> scraper_;
  int active_ = 0;
  bool end_scraped_ = false;
};

// ---------------------------------------------------------------- open loop

class OpenLoop {
 public:
  OpenLoop(const Options& o, tcp::resolver::results_type eps, std::vector<std::string> ids)
      : o_(o),
        eps_(eps),
        client_(io_, std::move(eps)),
        ids_(std::move(ids)),
        guard_(io_),
        tick_(io_),
        scrape_timer_(io_),
        rng_(o.seed),
        user_counter_(ids_.size(), 0) {
    for (int i = 0; i < o.connections; ++i) {
      auto c = std::make_unique<Conn>(io_);
      c->id = static_cast<size_t>(i);
      c->cb = [this](Conn& c, const Result& r) { on_done(c, r); };
      free_.push_back(c.get());
      conns_.push_back(std::move(c));
    }
    if (o.metrics) scraper_.emplace(io_, client_, o_);
    period_ = 1.0 / o.rate_per_user;
  }

  // Pre-connects the pool (part of setup, not measured).
  bool connect_pool(Clock::time_point deadline, std::string& why) {
    size_t pending = conns_.size(), failed = 0;
    for (auto& c : conns_) {
      c->sock = tcp::socket(io_);
      asio::async_connect(c->sock, eps_,
                          [&, cp = c.get()](const error_code& ec, const tcp::endpoint&) {
                            if (ec) {
                              ++failed;
                              if (why.empty()) why = "connect: " + ec.message();
                            } else {
                              error_code ig;
                              cp->sock.set_option(tcp::no_delay(true), ig);
                              cp->connected = true;
                            }
                            --pending;
                          });
    }
    io_.run_until(deadline);
    io_.restart();
    if (pending != 0 && why.empty()) why = "connect timed out";
    return pending == 0 && failed == 0;
  }

  void run(Window w) {
    w_ = w;
    // Schedule: user u's first step. Uniform: users evenly staggered over one
    // period (in random order), then exactly one period apart. Poisson:
    // exponential gaps with mean one period.
    size_t n = ids_.size();
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng_);
    for (size_t k = 0; k < n; ++k) {
      double first = o_.arrival == "uniform"
                         ? period_ * (static_cast<double>(k) + 0.5) / static_cast<double>(n)
                         : exp_(rng_) * period_;
      heap_.push({w_.t0 + to_dur(first), order[k]});
      user_counter_[order[k]] = order[k];
    }
    arm_tick();
    if (scraper_) {
      scrape_timer_.expires_at(w_.warm_end);
      scrape_timer_.async_wait([this](const error_code& ec) {
        if (ec) return;
        scraper_->scrape([this](MetricsSample m) {
          m_begin = m;
          scrape_timer_.expires_at(w_.end);
          scrape_timer_.async_wait([this](const error_code& ec) {
            if (ec) return;
            scraper_->scrape([this](MetricsSample m) {
              m_end = m;
              end_scraped_ = true;
              scraper_->close();
              maybe_finish();
            });
          });
        });
      });
    }
    guard_.expires_at(w_.hard_end);
    guard_.async_wait([this](const error_code& ec) {
      if (ec) return;
      // Requests still unanswered at the deadline are errors; those scheduled
      // in the window also enter the latency samples with their (lower-bound)
      // latency so far, so an overload cannot hide from the percentiles.
      auto now = Clock::now();
      auto censor = [&](Clock::time_point t) {
        ++stats.timeouts;
        ++stats.errors;
        if (t >= w_.warm_end && t < w_.end) {
          ++stats.requests;
          stats.lat_ns.push_back(static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::nanoseconds>(now - t).count()));
        }
      };
      for (auto& c : conns_) {
        if (c->busy) {
          --inflight_;
          censor(c->t_start);
        }
        client_.close(*c);
      }
      for (auto& p : queue_) censor(p.t);
      unsent_at_deadline = queue_.size();
      if (stats.timeouts && stats.first_error.empty())
        stats.first_error = "timeout (no response before the drain deadline)";
      queue_.clear();
      if (scraper_) scraper_->close();
      io_.stop();
    });
    io_.run();
  }

  Stats stats;
  MetricsSample m_begin, m_end;
  uint64_t issued = 0;
  uint64_t unsent_at_deadline = 0;      // of the timeouts: still queued here, never sent
  uint64_t ok_completed_in_window = 0;  // 2xx answers that arrived inside the window
  size_t max_queue = 0;

 private:
  struct Ev {
    Clock::time_point t;
    size_t user;
    bool operator>(const Ev& o) const { return t > o.t; }
  };

  static Clock::duration to_dur(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

  void arm_tick() {
    if (heap_.empty()) return;
    auto t = heap_.top().t;
    if (t >= w_.end) {
      done_scheduling_ = true;
      maybe_finish();
      return;
    }
    tick_.expires_at(t);
    tick_.async_wait([this](const error_code& ec) {
      if (ec) return;
      auto now = Clock::now();
      while (!heap_.empty() && heap_.top().t <= now && heap_.top().t < w_.end) {
        Ev e = heap_.top();
        heap_.pop();
        double gap = o_.arrival == "uniform" ? period_ : exp_(rng_) * period_;
        heap_.push({e.t + to_dur(gap), e.user});
        dispatch(e);
      }
      arm_tick();
    });
  }

  void dispatch(const Ev& e) {
    ++issued;
    if (free_.empty()) {
      queue_.push_back(e);
      max_queue = std::max(max_queue, queue_.size());
      return;
    }
    Conn* c = free_.back();
    free_.pop_back();
    send(*c, e);
  }

  void send(Conn& c, const Ev& e) {
    c.t_start = e.t;
    c.user = e.user;
    c.wbuf = step_request(o_, ids_[e.user], user_counter_[e.user]++, o_.prefer_async);
    ++inflight_;
    client_.send(c);
  }

  void on_done(Conn& c, const Result& r) {
    --inflight_;
    auto now = Clock::now();
    bool in_window = c.t_start >= w_.warm_end && c.t_start < w_.end;
    if (r.ec) {
      stats.error_seen(r.ec);
    } else {
      stats.status_seen(r.status);
      bool ok = r.status / 100 == 2;
      if (!ok) ++stats.non_2xx;
      if (ok && now >= w_.warm_end && now <= w_.end) ++ok_completed_in_window;
      if (in_window) {
        ++stats.requests;
        const auto ns = static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - c.t_start).count());
        if (ok) {
          ++stats.ok;
          stats.lat_ns.push_back(ns);
        } else if (r.status == 429 || r.status == 503) {
          stats.shed_ns.push_back(ns);
        }
      }
    }
    if (!queue_.empty()) {
      Ev e = queue_.front();
      queue_.pop_front();
      return send(c, e);
    }
    free_.push_back(&c);
    maybe_finish();
  }

  void maybe_finish() {
    if (!done_scheduling_ || inflight_ != 0 || !queue_.empty()) return;
    // Wait for the end-of-window scrape; it calls maybe_finish again (and the
    // guard ends the run at the drain deadline in any case).
    if (scraper_ && !end_scraped_) return;
    guard_.cancel();
    tick_.cancel();
    scrape_timer_.cancel();
    for (auto& c : conns_) client_.close(*c);
    if (scraper_) scraper_->close();
  }

 private:
  const Options& o_;
  asio::io_context io_;
  tcp::resolver::results_type eps_;
  Client client_;
  Window w_;
  std::vector<std::string> ids_;
  asio::steady_timer guard_, tick_, scrape_timer_;
  std::mt19937_64 rng_;
  std::exponential_distribution<double> exp_{1.0};
  std::vector<size_t> user_counter_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> free_;
  std::deque<Ev> queue_;
  std::priority_queue<Ev, std::vector<Ev>, std::greater<Ev>> heap_;
  std::optional<MetricsScraper> scraper_;
  double period_ = 2;
  size_t inflight_ = 0;
  bool done_scheduling_ = false;
  bool end_scraped_ = false;
};

// ---------------------------------------------------------------- output

double pct_ms(const std::vector<uint64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t idx = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  idx = idx == 0 ? 0 : idx - 1;
  idx = std::min(idx, sorted.size() - 1);
  return static_cast<double>(sorted[idx]) / 1e6;
}

std::string jstr(std::string_view s) {
  std::string r = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      r += '\\';
      r += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", ch);
      r += b;
    } else {
      r += ch;
    }
  }
  return r + "\"";
}

std::string fmt(double v, int prec = 3) {
  if (!std::isfinite(v)) return "null";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}

void print_result(const Options& o, Stats& s, double setup_s, size_t sessions,
                  const MetricsSample& mb, const MetricsSample& me, const std::string& extra,
                  const std::string& fatal, const Window* w = nullptr) {
  std::sort(s.lat_ns.begin(), s.lat_ns.end());
  double mean = 0;
  for (auto v : s.lat_ns) mean += static_cast<double>(v);
  mean = s.lat_ns.empty() ? 0 : mean / static_cast<double>(s.lat_ns.size()) / 1e6;
  std::string out = "{";
  out += "\"mode\":" + jstr(o.kind);
  out += ",\"workload\":" + jstr(o.workload);
  out += ",\"connections\":" + std::to_string(o.connections);
  out += ",\"threads\":" + std::to_string(o.threads);
  out += ",\"duration_s\":" + fmt(o.duration, 1);
  out += ",\"warmup_s\":" + fmt(o.warmup, 1);
  out += ",\"sessions\":" + std::to_string(sessions);
  out += ",\"setup_s\":" + fmt(setup_s, 2);
  out += ",\"requests\":" + std::to_string(s.requests);
  out += ",\"ok\":" + std::to_string(s.ok);
  out += ",\"errors\":" + std::to_string(s.errors);
  out += ",\"timeouts\":" + std::to_string(s.timeouts);
  out += ",\"non_2xx\":" + std::to_string(s.non_2xx);
  out += ",\"rps\":" + fmt(static_cast<double>(s.ok) / o.duration, 1);
  out += ",\"mean_ms\":" + fmt(mean);
  out += ",\"p50_ms\":" + fmt(pct_ms(s.lat_ns, 0.50));
  out += ",\"p90_ms\":" + fmt(pct_ms(s.lat_ns, 0.90));
  out += ",\"p99_ms\":" + fmt(pct_ms(s.lat_ns, 0.99));
  out += ",\"p999_ms\":" + fmt(pct_ms(s.lat_ns, 0.999));
  out += ",\"max_ms\":" + fmt(s.lat_ns.empty() ? 0 : static_cast<double>(s.lat_ns.back()) / 1e6);
  std::sort(s.shed_ns.begin(), s.shed_ns.end());
  out += ",\"shed\":" + std::to_string(s.shed_ns.size());
  out += ",\"shed_p50_ms\":" + fmt(pct_ms(s.shed_ns, 0.50));
  out += ",\"shed_p99_ms\":" + fmt(pct_ms(s.shed_ns, 0.99));
  out += ",\"shed_max_ms\":" +
         fmt(s.shed_ns.empty() ? 0 : static_cast<double>(s.shed_ns.back()) / 1e6);
  out += ",\"status_counts\":{";
  std::sort(s.statuses.begin(), s.statuses.end());
  for (size_t i = 0; i < s.statuses.size(); ++i) {
    if (i) out += ",";
    out +=
        "\"" + std::to_string(s.statuses[i].first) + "\":" + std::to_string(s.statuses[i].second);
  }
  out += "}";
  if (mb.ok && me.ok) {
    double da = me.appends - mb.appends, df = me.fsyncs - mb.fsyncs;
    out += ",\"window_appends\":" + fmt(da, 0);
    out += ",\"window_fsyncs\":" + fmt(df, 0);
    out += ",\"appends_per_fsync\":" + (df > 0 ? fmt(da / df, 2) : std::string("null"));
    out += ",\"window_async_applied\":" + fmt(me.applied - mb.applied, 0);
    out += ",\"intake_depth_end\":" + fmt(me.intake_depth, 0);
    if (w) {
      // How late the scrapes answered after the window edges (a slow /metrics
      // under load blurs the window).
      out += ",\"metrics_begin_late_ms\":" + fmt(seconds_between(w->warm_end, mb.at) * 1e3, 1);
      out += ",\"metrics_end_late_ms\":" + fmt(seconds_between(w->end, me.at) * 1e3, 1);
    }
  } else {
    out += ",\"appends_per_fsync\":null";
  }
  out += extra;
  if (!s.first_error.empty()) out += ",\"first_error\":" + jstr(s.first_error);
  if (!fatal.empty()) out += ",\"fatal\":" + jstr(fatal);
  out += "}";
  std::printf("%s\n", out.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_args(argc, argv);
  tcp::resolver::results_type eps;
  {
    asio::io_context io;
    tcp::resolver res(io);
    error_code ec;
    eps = res.resolve(o.host, o.port, ec);
    if (ec) {
      Stats s;
      print_result(o, s, 0, 0, {}, {}, "",
                   "resolve " + o.host + ":" + o.port + ": " + ec.message());
      return 1;
    }
  }
  auto setup_start = Clock::now();
  auto setup_deadline = setup_start + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(o.setup_timeout));
  size_t nsessions = o.kind == "open" ? static_cast<size_t>(o.users)
                                      : static_cast<size_t>(o.connections) * o.sessions_per_conn;
  std::vector<std::string> ids;
  std::string why;
  if (!create_sessions(o, eps, nsessions, ids, setup_deadline, why)) {
    Stats s;
    print_result(o, s, seconds_between(setup_start, Clock::now()), 0, {}, {}, "", why);
    return 1;
  }

  auto make_window = [&](Clock::time_point t0) {
    auto d = [](double s) {
      return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
    };
    Window w;
    w.t0 = t0;
    w.warm_end = t0 + d(o.warmup);
    w.end = w.warm_end + d(o.duration);
    w.hard_end = w.end + d(o.drain);
    return w;
  };

  if (o.kind == "closed") {
    double setup_s = seconds_between(setup_start, Clock::now());
    Window w = make_window(Clock::now() + std::chrono::milliseconds(20));
    // Spread connections over sessions: connection c owns sessions
    // [c*spc, (c+1)*spc), workers own contiguous ranges of connections.
    std::vector<std::unique_ptr<ClosedWorker>> workers;
    for (int t = 0; t < o.threads; ++t) {
      std::vector<std::vector<std::string>> cs;
      for (int c = t; c < o.connections; c += o.threads) {
        std::vector<std::string> s(ids.begin() + static_cast<long>(c) * o.sessions_per_conn,
                                   ids.begin() + static_cast<long>(c + 1) * o.sessions_per_conn);
        cs.push_back(std::move(s));
      }
      workers.push_back(
          std::make_unique<ClosedWorker>(o, eps, w, std::move(cs), o.metrics && t == 0));
    }
    std::vector<std::thread> th;
    for (auto& wk : workers) th.emplace_back([&wk] { wk->run(); });
    for (auto& t : th) t.join();
    Stats total;
    for (auto& wk : workers) total.merge(wk->stats);
    print_result(o, total, setup_s, nsessions, workers[0]->m_begin, workers[0]->m_end, "", "", &w);
    return 0;
  }

  // open loop
  OpenLoop ol(o, eps, std::move(ids));
  if (!ol.connect_pool(setup_deadline, why)) {
    Stats s;
    print_result(o, s, seconds_between(setup_start, Clock::now()), nsessions, {}, {}, "", why);
    return 1;
  }
  double setup_s = seconds_between(setup_start, Clock::now());
  Window w = make_window(Clock::now() + std::chrono::milliseconds(20));
  ol.run(w);
  std::string extra =
      ",\"users\":" + std::to_string(o.users) + ",\"rate_per_user\":" + fmt(o.rate_per_user, 3) +
      ",\"offered_rps\":" + fmt(o.users * o.rate_per_user, 1) + ",\"arrival\":" + jstr(o.arrival) +
      ",\"issued\":" + std::to_string(ol.issued) +
      ",\"max_queue\":" + std::to_string(ol.max_queue) +
      ",\"timeouts_unsent\":" + std::to_string(ol.unsent_at_deadline) +
      ",\"throughput_rps\":" + fmt(static_cast<double>(ol.ok_completed_in_window) / o.duration, 1);
  print_result(o, ol.stats, setup_s, nsessions, ol.m_begin, ol.m_end, extra, "", &w);
  return 0;
}
