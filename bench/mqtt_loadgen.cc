// persona_mqtt_loadgen: an MQTT 3.1.1 load generator for any broker (persona, Mosquitto,
// nats-server in MQTT mode). bench/run_realtime.sh drives it (`make bench-realtime`).
//
// Raw Asio sockets (header-only, one io_context per thread), persona's own MQTT codec
// (src/realtime/mqtt/codec.cc, compiled into this executable) for encoding and for
// validating everything the broker sends. Plain topics (bench/…), so every broker sees
// exactly the same traffic. Every mode prints ONE JSON object on stdout; progress and
// problems go to stderr. Never crashes on broker misbehaviour: it is counted.
//
// Modes
//   fanout   saturation: P publisher connections publish QoS 1 to T topics, each keeping up
//            to W unacknowledged PUBLISHes in flight; S subscriber connections subscribe QoS 1
//            so that every topic has F subscribers (S/F groups; topic t goes to group t % (S/F)),
//            and PUBACK every delivery. Reports deliveries/s at the subscribers and acked
//            publishes/s over the measured window (after warmup), plus publish→deliver latency.
//   latency  sessions × devices subscriber connections, device k of session s subscribed QoS 1
//            to bench/s{s}/p; an open-loop publisher sends --rate updates/s spread round-robin
//            over the sessions, each carrying its CLOCK_MONOTONIC send time; subscribers
//            record publish→deliver latency (histogram) and every sequence number received.
//   resume   like latency, but every device has a persistent session (clean_session=0, fixed
//            client id). When the publisher reaches --kill-at it creates --kill-file; every
//            subscriber process then resets all its device connections (SO_LINGER 0 → RST),
//            waits --down seconds while publishing goes on, and reconnects them all with
//            clean_session=0 (no resubscribe; CONNACK session_present is checked). Reports
//            lost / reordered / duplicate deliveries and the time until all devices resumed.
//   idle     --sessions × --devices subscribed connections that then sit idle (keep-alive
//            PINGREQs only) until --done-file appears; the runner measures the broker's RSS.
//   probe    connect, subscribe, publish one QoS 1 message to ourselves, receive it: exit 0
//            when the broker works (the runner's readiness and availability check).
//
// latency/resume/idle are split into processes so that each stays far below the per-process
// file-descriptor limit: `--role sub --shard i/n` runs devices i, i+n, i+2n, … (connections
// only); `--role pub` runs the publisher; `--role both` (default) runs everything in one
// process (small smoke runs). Processes coordinate through files: a sub writes --ready-file
// once all its devices are subscribed; the pub creates --kill-file at --kill-at (resume) and
// writes the number of updates it sent to --done-file when it has finished; subs then drain
// (up to --drain s) until every device has every update, and report.
//
// Update i (0-based) goes to session s = i % sessions with per-session sequence number
// i / sessions + 1, on publisher connection s % pub-conns, so each topic's updates travel one
// connection in order. Payload: int64 send time (steady_clock ns; CLOCK_MONOTONIC, shared by
// every process on the host), uint32 session, uint32 seq, uint8 flags (1 = measured: sent
// after warmup), padding to --payload bytes.
//
//   persona_mqtt_loadgen fanout --port 1883 --publishers 4 --subscribers 64 --topics 64
//       --fanout 8 --window 64 --duration 10 --warmup 2
//   persona_mqtt_loadgen latency --role sub --shard 0/3 --sessions 5000 --devices 3
//       --ready-file r0 --done-file done
//   persona_mqtt_loadgen latency --role pub --sessions 5000 --rate 5000 --duration 15
//       --warmup 3 --done-file done
//   persona_mqtt_loadgen resume --role both --sessions 100 --devices 3 --rate 1000
//       --duration 10 --kill-at 4 --down 1

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "realtime/mqtt/codec.h"

namespace {

namespace asio = boost::asio;
namespace mqtt = persona::realtime::mqtt;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using error_code = boost::system::error_code;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}
double secs(int64_t ns) { return static_cast<double>(ns) / 1e9; }

// ---------------------------------------------------------------- options

struct Options {
  std::string mode;
  std::string role = "both";  // sub | pub | both (latency, resume, idle)
  std::string host = "127.0.0.1";
  uint16_t port = 1883;
  int threads = 1;  // fanout only
  // fanout
  int publishers = 4;
  int subscribers = 64;
  int topics = 64;
  int fanout = 8;
  int window = 64;
  // latency / resume / idle
  int sessions = 5000;
  int devices = 3;
  int shard_i = 0;
  int shard_n = 1;
  double rate = 5000;  // updates/s, all sessions together
  int pub_conns = 4;
  double kill_at = -1;  // s after the publisher starts (resume); default duration/3
  double down = 1.0;    // s between reset and reconnect (resume)
  std::string ready_file, done_file, kill_file;
  // common
  double duration = 10;
  double warmup = 2;
  double drain = 10;
  double setup_timeout = 120;
  double max_time = 900;  // hard bound on a process's lifetime
  int payload = 64;
  int keepalive = 60;
  int connect_concurrency = 128;
  std::string prefix = "bench";  // topic prefix and client-id prefix
  std::string client_tag;        // distinguishes client ids of concurrent runs
};

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr,
               "persona_mqtt_loadgen: %s\n"
               "usage: persona_mqtt_loadgen fanout|latency|resume|idle|probe [--port N] "
               "[--host H] [options]\n(see the comment at the top of bench/mqtt_loadgen.cc)\n",
               msg.c_str());
  std::exit(64);
}

Options parse_args(int argc, char** argv) {
  if (argc < 2) usage("missing mode");
  Options o;
  o.mode = argv[1];
  if (o.mode != "fanout" && o.mode != "latency" && o.mode != "resume" && o.mode != "idle" &&
      o.mode != "probe")
    usage("unknown mode " + o.mode);
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value for " + a);
      return argv[++i];
    };
    auto num = [&]() -> double {
      std::string v = val();
      char* end = nullptr;
      double d = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0') usage("bad number for " + a + ": " + v);
      return d;
    };
    if (a == "--role")
      o.role = val();
    else if (a == "--host")
      o.host = val();
    else if (a == "--port")
      o.port = static_cast<uint16_t>(num());
    else if (a == "--threads")
      o.threads = static_cast<int>(num());
    else if (a == "--publishers")
      o.publishers = static_cast<int>(num());
    else if (a == "--subscribers")
      o.subscribers = static_cast<int>(num());
    else if (a == "--topics")
      o.topics = static_cast<int>(num());
    else if (a == "--fanout")
      o.fanout = static_cast<int>(num());
    else if (a == "--window")
      o.window = static_cast<int>(num());
    else if (a == "--sessions")
      o.sessions = static_cast<int>(num());
    else if (a == "--devices")
      o.devices = static_cast<int>(num());
    else if (a == "--shard") {
      std::string v = val();
      auto slash = v.find('/');
      if (slash == std::string::npos) usage("--shard wants i/n");
      o.shard_i = std::atoi(v.substr(0, slash).c_str());
      o.shard_n = std::atoi(v.substr(slash + 1).c_str());
      if (o.shard_n < 1 || o.shard_i < 0 || o.shard_i >= o.shard_n) usage("bad --shard " + v);
    } else if (a == "--rate")
      o.rate = num();
    else if (a == "--pub-conns")
      o.pub_conns = static_cast<int>(num());
    else if (a == "--kill-at")
      o.kill_at = num();
    else if (a == "--down")
      o.down = num();
    else if (a == "--ready-file")
      o.ready_file = val();
    else if (a == "--done-file")
      o.done_file = val();
    else if (a == "--kill-file")
      o.kill_file = val();
    else if (a == "--duration")
      o.duration = num();
    else if (a == "--warmup")
      o.warmup = num();
    else if (a == "--drain")
      o.drain = num();
    else if (a == "--setup-timeout")
      o.setup_timeout = num();
    else if (a == "--max-time")
      o.max_time = num();
    else if (a == "--payload")
      o.payload = static_cast<int>(num());
    else if (a == "--keepalive")
      o.keepalive = static_cast<int>(num());
    else if (a == "--connect-concurrency")
      o.connect_concurrency = static_cast<int>(num());
    else if (a == "--prefix")
      o.prefix = val();
    else if (a == "--client-tag")
      o.client_tag = val();
    else
      usage("unknown option " + a);
  }
  if (o.role != "sub" && o.role != "pub" && o.role != "both") usage("--role sub|pub|both");
  if (o.payload < 17) o.payload = 17;
  if (o.threads < 1) o.threads = 1;
  if (o.publishers < 1 || o.subscribers < 1 || o.topics < 1 || o.fanout < 1 || o.window < 1)
    usage("fanout sizes must be >= 1");
  if (o.fanout > o.subscribers) usage("--fanout exceeds --subscribers");
  if (o.subscribers % o.fanout != 0) usage("--subscribers must be a multiple of --fanout");
  if (o.sessions < 1 || o.devices < 1 || o.pub_conns < 1) usage("sizes must be >= 1");
  if (o.window > 60000) o.window = 60000;
  if (o.connect_concurrency < 1) o.connect_concurrency = 1;
  if (o.kill_at < 0) o.kill_at = o.duration / 3;
  if (o.client_tag.empty()) o.client_tag = std::to_string(::getpid());
  return o;
}

// ---------------------------------------------------------------- JSON output

class Json {
 public:
  Json& num(std::string_view k, double v, int prec = 3) {
    key(k);
    if (!std::isfinite(v)) {
      s_ += "null";
    } else {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.*f", prec, v);
      s_ += buf;
    }
    return *this;
  }
  Json& integer(std::string_view k, int64_t v) {
    key(k);
    s_ += std::to_string(v);
    return *this;
  }
  Json& boolean(std::string_view k, bool v) {
    key(k);
    s_ += v ? "true" : "false";
    return *this;
  }
  Json& str(std::string_view k, std::string_view v) {
    key(k);
    s_ += '"';
    for (char c : v) {
      if (c == '"' || c == '\\') {
        s_ += '\\';
        s_ += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        s_ += buf;
      } else {
        s_ += c;
      }
    }
    s_ += '"';
    return *this;
  }
  Json& raw(std::string_view k, std::string_view json) {
    key(k);
    s_ += json;
    return *this;
  }
  std::string done() const { return "{" + s_ + "}"; }

 private:
  void key(std::string_view k) {
    if (!s_.empty()) s_ += ',';
    s_ += '"';
    s_ += k;
    s_ += "\":";
  }
  std::string s_;
};

// ---------------------------------------------------------------- latency histogram

// Log-linear histogram of nanosecond values: exact below 256 ns, then 128 sub-buckets per
// power of two (< 0.8 % relative error). Mergeable across processes via to_json().
class Hist {
 public:
  static constexpr int kSub = 128;
  static constexpr int kBuckets = 256 + 56 * kSub;

  Hist() : b_(kBuckets, 0) {}
  void add(int64_t v) {
    if (v < 0) v = 0;
    ++b_[index(static_cast<uint64_t>(v))];
    ++n_;
    if (v > max_) max_ = v;
  }
  void merge(const Hist& o) {
    for (int i = 0; i < kBuckets; ++i) b_[i] += o.b_[i];
    n_ += o.n_;
    max_ = std::max(max_, o.max_);
  }
  uint64_t count() const { return n_; }
  int64_t max() const { return max_; }
  // Midpoint of the bucket holding the q-quantile (0 when empty).
  double quantile(double q) const {
    if (n_ == 0) return 0;
    uint64_t want = static_cast<uint64_t>(std::ceil(q * static_cast<double>(n_)));
    if (want < 1) want = 1;
    uint64_t cum = 0;
    for (int i = 0; i < kBuckets; ++i) {
      cum += b_[i];
      if (cum >= want) return std::min(mid(i), static_cast<double>(max_));
    }
    return static_cast<double>(max_);
  }
  // [[bucket_lo_ns, bucket_hi_ns, count], ...] for the non-empty buckets.
  std::string to_json() const {
    std::string s = "[";
    for (int i = 0; i < kBuckets; ++i) {
      if (!b_[i]) continue;
      if (s.size() > 1) s += ',';
      s += "[" + std::to_string(lo(i)) + "," + std::to_string(hi(i)) + "," + std::to_string(b_[i]) +
           "]";
    }
    return s + "]";
  }

 private:
  static int index(uint64_t v) {
    if (v < 256) return static_cast<int>(v);
    int e = 63 - __builtin_clzll(v);  // >= 8
    int shift = e - 7;
    uint64_t mant = v >> shift;  // [128, 256)
    int idx = 256 + (e - 8) * kSub + static_cast<int>(mant - 128);
    return std::min(idx, kBuckets - 1);
  }
  static uint64_t lo(int i) {
    if (i < 256) return static_cast<uint64_t>(i);
    int e = (i - 256) / kSub + 8;
    uint64_t mant = static_cast<uint64_t>((i - 256) % kSub + 128);
    return mant << (e - 7);
  }
  static uint64_t hi(int i) {
    if (i < 256) return static_cast<uint64_t>(i) + 1;
    int e = (i - 256) / kSub + 8;
    return lo(i) + (uint64_t{1} << (e - 7));
  }
  static double mid(int i) { return (static_cast<double>(lo(i)) + static_cast<double>(hi(i))) / 2; }

  std::vector<uint64_t> b_;
  uint64_t n_ = 0;
  int64_t max_ = 0;
};

// ---------------------------------------------------------------- payload

struct Update {
  int64_t sent_ns = 0;
  uint32_t session = 0;
  uint32_t seq = 0;
  uint8_t flags = 0;
};
constexpr uint8_t kMeasured = 1;

void put_update(const Update& u, char* p) {
  std::memcpy(p, &u.sent_ns, 8);
  std::memcpy(p + 8, &u.session, 4);
  std::memcpy(p + 12, &u.seq, 4);
  p[16] = static_cast<char>(u.flags);
}
bool get_update(std::string_view payload, Update* u) {
  if (payload.size() < 17) return false;
  std::memcpy(&u->sent_ns, payload.data(), 8);
  std::memcpy(&u->session, payload.data() + 8, 4);
  std::memcpy(&u->seq, payload.data() + 12, 4);
  u->flags = static_cast<uint8_t>(payload[16]);
  return true;
}

// ---------------------------------------------------------------- connection

// One TCP connection to the broker. Owned through shared_ptr so that completion handlers
// of a connection that has been reset (resume) find it marked dead instead of a reused one.
class Link : public std::enable_shared_from_this<Link> {
 public:
  struct Handler {
    virtual ~Handler() = default;
    virtual void on_packets(Link& link, std::vector<mqtt::Packet>& packets) = 0;
    // Connection failed or ended (not called after abort()). `what` says why.
    virtual void on_closed(Link& link, const std::string& what) = 0;
  };

  Link(asio::io_context& io, Handler* h)
      : sock_(io), parser_(1 << 20, mqtt::Parser::Role::kClient), h_(h) {}

  void connect(const tcp::endpoint& ep, std::string first_packet) {
    auto self = shared_from_this();
    sock_.async_connect(ep, [this, self, first = std::move(first_packet)](const error_code& ec) {
      if (dead_) return;
      if (ec) return fail("connect: " + ec.message());
      error_code ig;
      sock_.set_option(tcp::no_delay(true), ig);
      connected_ = true;
      last_send_ns_ = now_ns();
      send(first);
      read();
    });
  }

  void send(std::string_view bytes) {
    if (dead_) return;
    pending_.append(bytes.data(), bytes.size());
    last_send_ns_ = now_ns();
    if (!writing_ && connected_) flush();
  }
  std::string& pending_buffer() { return pending_; }
  void flush_pending() {
    if (!dead_ && !writing_ && connected_ && !pending_.empty()) flush();
  }

  // Abrupt close: SO_LINGER 0 makes close() send a RST; no callback follows.
  void abort() {
    if (dead_) return;
    dead_ = true;
    error_code ig;
    if (sock_.is_open()) {
      sock_.set_option(asio::socket_base::linger(true, 0), ig);
      sock_.close(ig);
    }
  }
  bool dead() const { return dead_; }
  bool connected() const { return connected_ && !dead_; }
  int64_t last_send_ns() const { return last_send_ns_; }
  size_t pending_bytes() const { return pending_.size() + inflight_.size(); }

 private:
  void flush() {
    writing_ = true;
    inflight_.swap(pending_);
    pending_.clear();
    auto self = shared_from_this();
    asio::async_write(sock_, asio::buffer(inflight_), [this, self](const error_code& ec, size_t) {
      writing_ = false;
      if (dead_) return;
      if (ec) return fail("write: " + ec.message());
      inflight_.clear();
      if (!pending_.empty()) flush();
    });
  }
  void read() {
    auto self = shared_from_this();
    sock_.async_read_some(asio::buffer(rbuf_), [this, self](const error_code& ec, size_t n) {
      if (dead_) return;
      if (ec) return fail(ec == asio::error::eof ? "closed by broker" : "read: " + ec.message());
      packets_.clear();
      mqtt::ParseResult r = parser_.Feed(rbuf_.data(), n, &packets_);
      if (!packets_.empty()) h_->on_packets(*this, packets_);
      if (dead_) return;
      if (!r.ok) return fail("protocol error from broker: " + r.reason);
      read();
    });
  }
  void fail(const std::string& what) {
    if (dead_) return;
    dead_ = true;
    error_code ig;
    sock_.set_option(asio::socket_base::linger(true, 0), ig);
    sock_.close(ig);
    h_->on_closed(*this, what);
  }

  tcp::socket sock_;
  mqtt::Parser parser_;
  Handler* h_;
  std::array<char, 8192> rbuf_;
  std::vector<mqtt::Packet> packets_;
  std::string pending_, inflight_;
  bool writing_ = false;
  bool connected_ = false;
  bool dead_ = false;
  int64_t last_send_ns_ = 0;
};

std::string connect_packet(const std::string& client_id, bool clean, int keepalive) {
  mqtt::Connect c;
  c.client_id = client_id;
  c.clean_session = clean;
  c.keep_alive_s = static_cast<uint16_t>(keepalive);
  std::string out;
  if (!mqtt::EncodeConnect(c, &out)) {
    std::fprintf(stderr, "cannot encode CONNECT\n");
    std::exit(70);
  }
  return out;
}
std::string subscribe_packet(uint16_t id, const std::vector<std::string>& filters, uint8_t qos) {
  mqtt::Subscribe s;
  s.packet_id = id;
  for (const auto& f : filters) s.filters.emplace_back(f, qos);
  std::string out;
  if (!mqtt::EncodeSubscribe(s, &out)) {
    std::fprintf(stderr, "cannot encode SUBSCRIBE\n");
    std::exit(70);
  }
  return out;
}
void append_puback(uint16_t id, std::string* out) {
  mqtt::EncodePacketId(mqtt::PacketType::kPuback, id, out);
}
// Appends a whole QoS `qos` PUBLISH of `payload` to *out.
void append_publish(const std::string& topic, std::string_view payload, uint8_t qos, uint16_t id,
                    std::string* out) {
  if (!mqtt::EncodePublishHeader(topic, payload.size(), qos, false, false, id, out)) {
    std::fprintf(stderr, "cannot encode PUBLISH\n");
    std::exit(70);
  }
  out->append(payload.data(), payload.size());
}

// Allocates QoS 1 packet ids 1..65535 that are not in flight.
class PacketIds {
 public:
  PacketIds() : used_(65536, 0) {}
  // 0 when all are in flight.
  uint16_t take() {
    if (in_flight_ >= 65535) return 0;
    for (;;) {
      next_ = static_cast<uint16_t>(next_ + 1);
      if (next_ == 0) continue;
      if (!used_[next_]) break;
    }
    used_[next_] = 1;
    ++in_flight_;
    return next_;
  }
  // False when `id` was not in flight.
  bool release(uint16_t id) {
    if (!used_[id]) return false;
    used_[id] = 0;
    --in_flight_;
    return true;
  }
  int in_flight() const { return in_flight_; }
  void reset() {
    std::fill(used_.begin(), used_.end(), 0);
    in_flight_ = 0;
  }

 private:
  std::vector<uint8_t> used_;
  uint16_t next_ = 0;
  int in_flight_ = 0;
};

// Limits concurrent connection handshakes (CONNECT..SUBACK) so that a broker's accept
// backlog never overflows (a dropped SYN costs a 1 s retransmit).
class Gate {
 public:
  explicit Gate(int limit) : limit_(limit) {}
  void run(std::function<void()> f) {
    if (active_ < limit_) {
      ++active_;
      f();
    } else {
      q_.push_back(std::move(f));
    }
  }
  void release() {
    if (!q_.empty()) {
      auto f = std::move(q_.front());
      q_.pop_front();
      f();
    } else if (active_ > 0) {
      --active_;
    }
  }
  size_t queued() const { return q_.size(); }

 private:
  int limit_;
  int active_ = 0;
  std::deque<std::function<void()>> q_;
};

bool file_exists(const std::string& p) { return !p.empty() && ::access(p.c_str(), F_OK) == 0; }
void write_file_atomic(const std::string& p, const std::string& content) {
  if (p.empty()) return;
  std::string tmp = p + ".tmp";
  {
    std::ofstream f(tmp);
    f << content;
  }
  std::rename(tmp.c_str(), p.c_str());
}
std::string read_file(const std::string& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Calls `f` now and then every `period` until it returns false (or the io_context stops).
class Repeater : public std::enable_shared_from_this<Repeater> {
 public:
  Repeater(asio::io_context& io, std::chrono::nanoseconds period, std::function<bool()> f)
      : t_(io), period_(period), f_(std::move(f)) {}
  void fire() {
    if (!f_()) return;
    t_.expires_after(period_);
    t_.async_wait([self = shared_from_this()](const error_code& ec) {
      if (!ec) self->fire();
    });
  }

 private:
  asio::steady_timer t_;
  std::chrono::nanoseconds period_;
  std::function<bool()> f_;
};
void every(asio::io_context& io, std::chrono::nanoseconds period, std::function<bool()> f) {
  std::make_shared<Repeater>(io, period, std::move(f))->fire();
}

// ================================================================ subscribers (latency, resume,
// idle)

struct Device;

struct SubStats {
  int64_t connect_failures = 0;
  int64_t connack_refused = 0;
  int64_t suback_refused = 0;
  int64_t granted_qos_below_1 = 0;
  int64_t unexpected_disconnects = 0;
  int64_t protocol_errors = 0;
  int64_t deliveries = 0;
  int64_t bad_payload = 0;
  int64_t wrong_topic = 0;
  int64_t duplicates = 0;
  int64_t dup_flagged = 0;
  int64_t qos0_deliveries = 0;
  int64_t reordered = 0;
  int64_t resumed = 0;
  int64_t session_present_missing = 0;  // resume: CONNACK session_present = 0
  int64_t reconnect_attempts = 0;
  std::string last_error;
  Hist latency;      // measured updates, publish→deliver
  Hist all_latency;  // every update
};

class SubRunner;

struct Device : Link::Handler {
  SubRunner* r = nullptr;
  int index = 0;    // global device index
  int session = 0;  // topic bench/s{session}/p
  std::string client_id;
  std::string topic;
  std::shared_ptr<Link> link;
  enum State { kIdle, kConnecting, kSubscribing, kReady } state = kIdle;
  bool holds_gate = false;
  bool subscribed_once = false;  // later CONNECTs (persistent) must find session_present
  bool count_resume = false;     // next ready counts towards `resumed`
  int attempts = 0;
  // Sequence numbers seen (index seq, 1-based), highest seen.
  std::vector<uint8_t> seen;
  uint32_t max_seq = 0;
  int64_t distinct = 0;

  void on_packets(Link& l, std::vector<mqtt::Packet>& packets) override;
  void on_closed(Link& l, const std::string& what) override;
};

class SubRunner {
 public:
  SubRunner(asio::io_context& io, const Options& o, tcp::endpoint ep)
      : io_(io), o_(o), ep_(ep), gate_(o.connect_concurrency) {
    persistent_ = o.mode == "resume";
    int total = o.sessions * o.devices;
    for (int g = o.shard_i; g < total; g += o.shard_n) {
      auto d = std::make_unique<Device>();
      d->r = this;
      d->index = g;
      d->session = g / o.devices;
      d->client_id = o.prefix + "-" + o.mode.substr(0, 1) + "-" +
                     (persistent_ ? std::string() : o.client_tag + "-") +
                     std::to_string(d->session) + "-" + std::to_string(g % o.devices);
      d->topic = o.prefix + "/s" + std::to_string(d->session) + "/p";
      devices_.push_back(std::move(d));
    }
  }

  size_t size() const { return devices_.size(); }
  SubStats& stats() { return st_; }
  bool persistent() const { return persistent_; }
  const Options& opts() const { return o_; }

  // Connects and subscribes every device; calls `done(ok)` once all are ready or setup failed.
  void setup(std::function<void(bool)> done) {
    setup_start_ = now_ns();
    on_setup_ = std::move(done);
    for (auto& d : devices_) start_device(d.get(), /*resume=*/false);
    every(io_, std::chrono::milliseconds(50), [this] {
      if (!on_setup_) return false;
      if (ready_ == static_cast<int64_t>(devices_.size())) {
        setup_s_ = secs(now_ns() - setup_start_);
        auto f = std::move(on_setup_);
        on_setup_ = nullptr;
        f(true);
        return false;
      }
      if (secs(now_ns() - setup_start_) > o_.setup_timeout) {
        setup_s_ = secs(now_ns() - setup_start_);
        auto f = std::move(on_setup_);
        on_setup_ = nullptr;
        f(false);
        return false;
      }
      return true;
    });
    start_keepalive();
  }

  // resume: reset every device connection, wait o.down s, reconnect them all.
  void kill_and_resume() {
    kill_ns_ = now_ns();
    for (auto& d : devices_) {
      if (d->link) d->link->abort();
      d->link.reset();
      if (d->holds_gate) {
        d->holds_gate = false;
        gate_.release();
      }
      d->state = Device::kIdle;
    }
    ready_ = 0;
    killed_ = static_cast<int64_t>(devices_.size());
    std::fprintf(stderr, "[sub %d/%d] reset %zu device connections\n", o_.shard_i, o_.shard_n,
                 devices_.size());
    auto t = std::make_shared<asio::steady_timer>(
        io_, std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.down)));
    t->async_wait([this, t](const error_code&) {
      reconnect_ns_ = now_ns();
      for (auto& d : devices_) start_device(d.get(), /*resume=*/true);
    });
  }

  void device_ready(Device* d) {
    if (d->holds_gate) {
      d->holds_gate = false;
      gate_.release();
    }
    d->state = Device::kReady;
    d->subscribed_once = true;
    ++ready_;
    if (d->count_resume) {
      d->count_resume = false;
      ++st_.resumed;
      if (st_.resumed == killed_) all_resumed_ns_ = now_ns();
    }
  }

  void device_failed(Device* d, const std::string& what) {
    bool was_ready = d->state == Device::kReady;
    if (was_ready) --ready_;
    if (d->holds_gate) {
      d->holds_gate = false;
      gate_.release();
    }
    d->state = Device::kIdle;
    d->link.reset();
    st_.last_error = what;
    if (finished_) return;
    if (was_ready)
      ++st_.unexpected_disconnects;
    else
      ++st_.connect_failures;
    // Retry: during setup a few times, later (persistent sessions) always.
    if (persistent_ || ++d->attempts <= 5) {
      auto t = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(200));
      t->async_wait([this, t, d](const error_code&) {
        if (!finished_ && d->state == Device::kIdle) start_device(d, false);
      });
    }
  }

  void start_device(Device* d, bool count_resume) {
    d->state = Device::kConnecting;
    if (count_resume) d->count_resume = true;
    gate_.run([this, d] {
      if (finished_ || d->state != Device::kConnecting) {
        gate_.release();
        return;
      }
      d->holds_gate = true;
      ++st_.reconnect_attempts;
      d->link = std::make_shared<Link>(io_, d);
      d->link->connect(ep_, connect_packet(d->client_id, !persistent_, o_.keepalive));
    });
  }

  // Every device that has received every update (expected per session known).
  bool all_complete() const {
    for (const auto& d : devices_)
      if (d->distinct < expected_for(d->session)) return false;
    return true;
  }
  int64_t expected_for(int session) const {
    if (published_ < 0) return 0;
    int64_t s = o_.sessions;
    return published_ / s + (session < published_ % s ? 1 : 0);
  }
  void set_published(int64_t n) { published_ = n; }

  void record(Device* d, const mqtt::Publish& p) {
    ++st_.deliveries;
    if (p.dup) ++st_.dup_flagged;
    if (p.qos == 0) ++st_.qos0_deliveries;
    if (p.topic != d->topic) {
      ++st_.wrong_topic;
      return;
    }
    Update u;
    if (!get_update(p.payload, &u) || u.seq == 0 || u.seq > 100'000'000 ||
        static_cast<int>(u.session) != d->session) {
      ++st_.bad_payload;
      return;
    }
    int64_t now = now_ns();
    int64_t lat = now - u.sent_ns;
    st_.all_latency.add(lat);
    if (u.flags & kMeasured) st_.latency.add(lat);
    if (reconnect_ns_ && u.sent_ns < reconnect_ns_ && now > last_backlog_ns_)
      last_backlog_ns_ = now;  // an update published before the reconnect, delivered after it
    if (d->seen.size() <= u.seq) d->seen.resize(std::max<size_t>(u.seq + 1, d->seen.size() * 2), 0);
    if (d->seen[u.seq]) {
      ++st_.duplicates;
      return;
    }
    d->seen[u.seq] = 1;
    ++d->distinct;
    if (u.seq < d->max_seq)
      ++st_.reordered;
    else
      d->max_seq = u.seq;
  }

  void finish() {
    finished_ = true;
    for (auto& d : devices_) {
      if (d->link) d->link->abort();
      d->link.reset();
    }
  }

  std::string report_json(bool setup_ok, double drain_s) const {
    Json j;
    int64_t expected = 0, got = 0, incomplete = 0;
    for (const auto& d : devices_) {
      int64_t e = expected_for(d->session);
      expected += e;
      got += std::min<int64_t>(d->distinct, e);
      if (d->distinct < e) ++incomplete;
    }
    int64_t ready_now = ready_;
    j.str("mode", o_.mode)
        .str("role", "sub")
        .integer("shard", o_.shard_i)
        .integer("shards", o_.shard_n)
        .integer("connections", static_cast<int64_t>(devices_.size()))
        .boolean("setup_ok", setup_ok)
        .num("setup_s", setup_s_)
        .integer("ready_at_end", ready_now)
        .integer("published", published_)
        .integer("expected", expected)
        .integer("delivered_distinct", got)
        .integer("missing", expected - got)
        .integer("devices_incomplete", incomplete)
        .integer("deliveries", st_.deliveries)
        .integer("duplicates", st_.duplicates)
        .integer("dup_flagged", st_.dup_flagged)
        .integer("qos0_deliveries", st_.qos0_deliveries)
        .integer("reordered", st_.reordered)
        .integer("wrong_topic", st_.wrong_topic)
        .integer("bad_payload", st_.bad_payload)
        .integer("connect_failures", st_.connect_failures)
        .integer("connack_refused", st_.connack_refused)
        .integer("suback_refused", st_.suback_refused)
        .integer("granted_qos_below_1", st_.granted_qos_below_1)
        .integer("unexpected_disconnects", st_.unexpected_disconnects)
        .integer("protocol_errors", st_.protocol_errors)
        .num("drain_s", drain_s)
        .integer("latency_count", static_cast<int64_t>(st_.latency.count()))
        .num("p50_ms", st_.latency.quantile(0.50) / 1e6, 4)
        .num("p90_ms", st_.latency.quantile(0.90) / 1e6, 4)
        .num("p99_ms", st_.latency.quantile(0.99) / 1e6, 4)
        .num("p999_ms", st_.latency.quantile(0.999) / 1e6, 4)
        .num("max_ms", static_cast<double>(st_.latency.max()) / 1e6, 4);
    if (persistent_) {
      j.integer("killed", killed_)
          .integer("resumed", st_.resumed)
          .integer("session_present_missing", st_.session_present_missing)
          .num("resume_s",
               all_resumed_ns_ && reconnect_ns_ ? secs(all_resumed_ns_ - reconnect_ns_) : NAN)
          .num("kill_to_resumed_s",
               all_resumed_ns_ && kill_ns_ ? secs(all_resumed_ns_ - kill_ns_) : NAN)
          .num("backlog_delivered_s",
               last_backlog_ns_ && reconnect_ns_ ? secs(last_backlog_ns_ - reconnect_ns_) : NAN)
          .integer("kill_ns", kill_ns_)
          .integer("reconnect_ns", reconnect_ns_)
          .integer("all_resumed_ns", all_resumed_ns_);
    }
    if (!st_.last_error.empty()) j.str("last_error", st_.last_error);
    j.raw("hist_ns", st_.latency.to_json());
    return j.done();
  }

 private:
  void start_keepalive() {
    if (o_.keepalive <= 0) return;
    int64_t half = static_cast<int64_t>(o_.keepalive) * 500'000'000;
    every(io_, std::chrono::seconds(1), [this, half] {
      if (finished_) return false;
      int64_t now = now_ns();
      std::string ping;
      mqtt::EncodePingreq(&ping);
      for (auto& d : devices_)
        if (d->state == Device::kReady && d->link && now - d->link->last_send_ns() > half)
          d->link->send(ping);
      return true;
    });
  }

  asio::io_context& io_;
  const Options& o_;
  tcp::endpoint ep_;
  Gate gate_;
  bool persistent_ = false;
  bool finished_ = false;
  std::vector<std::unique_ptr<Device>> devices_;
  std::function<void(bool)> on_setup_;
  int64_t setup_start_ = 0;
  double setup_s_ = 0;
  int64_t ready_ = 0;
  int64_t published_ = -1;
  int64_t killed_ = 0;
  int64_t kill_ns_ = 0, reconnect_ns_ = 0, all_resumed_ns_ = 0, last_backlog_ns_ = 0;
  SubStats st_;

  friend struct Device;
};

void Device::on_packets(Link& l, std::vector<mqtt::Packet>& packets) {
  SubStats& st = r->stats();
  for (auto& pk : packets) {
    if (auto* ca = std::get_if<mqtt::Connack>(&pk)) {
      if (ca->return_code != mqtt::ConnackCode::kAccepted) {
        ++st.connack_refused;
        l.abort();
        r->device_failed(
            this, "CONNACK refused, code " + std::to_string(static_cast<int>(ca->return_code)));
        return;
      }
      if (r->persistent() && subscribed_once) {
        if (!ca->session_present) {
          // Session lost: resubscribe so the run can go on, and count it.
          ++st.session_present_missing;
          state = kSubscribing;
          l.send(subscribe_packet(1, {topic}, 1));
        } else {
          r->device_ready(this);
        }
      } else {
        state = kSubscribing;
        l.send(subscribe_packet(1, {topic}, 1));
      }
    } else if (auto* sa = std::get_if<mqtt::Suback>(&pk)) {
      if (state != kSubscribing) continue;
      if (sa->codes.empty() || sa->codes[0] == mqtt::kSubackFailure) {
        ++st.suback_refused;
        l.abort();
        r->device_failed(this, "SUBACK refused");
        return;
      }
      if (sa->codes[0] < 1) ++st.granted_qos_below_1;
      r->device_ready(this);
    } else if (auto* p = std::get_if<mqtt::Publish>(&pk)) {
      if (p->qos == 1)
        append_puback(p->packet_id, &l.pending_buffer());
      else if (p->qos == 2)
        mqtt::EncodePacketId(mqtt::PacketType::kPubrec, p->packet_id, &l.pending_buffer());
      r->record(this, *p);
    } else if (auto* pid = std::get_if<mqtt::PacketIdOnly>(&pk)) {
      if (pid->type == mqtt::PacketType::kPubrel)
        mqtt::EncodePacketId(mqtt::PacketType::kPubcomp, pid->packet_id, &l.pending_buffer());
    }
  }
  l.flush_pending();
}

void Device::on_closed(Link& l, const std::string& what) {
  if (what.rfind("protocol error", 0) == 0) ++r->stats().protocol_errors;
  r->device_failed(this, what);
}

// ================================================================ open-loop publisher

struct PubConn : Link::Handler {
  class PubRunner* r = nullptr;
  int index = 0;
  std::shared_ptr<Link> link;
  PacketIds ids;
  bool ready = false;
  void on_packets(Link& l, std::vector<mqtt::Packet>& packets) override;
  void on_closed(Link& l, const std::string& what) override;
};

class PubRunner {
 public:
  PubRunner(asio::io_context& io, const Options& o, tcp::endpoint ep) : io_(io), o_(o), ep_(ep) {
    for (int i = 0; i < o.pub_conns; ++i) {
      auto c = std::make_unique<PubConn>();
      c->r = this;
      c->index = i;
      conns_.push_back(std::move(c));
    }
    for (int s = 0; s < o.sessions; ++s)
      topics_.push_back(o.prefix + "/s" + std::to_string(s) + "/p");
    payload_.assign(static_cast<size_t>(o.payload), 'x');
  }

  void setup(std::function<void(bool)> done) {
    on_setup_ = std::move(done);
    int64_t start = now_ns();
    for (auto& c : conns_) {
      c->link = std::make_shared<Link>(io_, c.get());
      c->link->connect(
          ep_, connect_packet(o_.prefix + "-pub-" + o_.client_tag + "-" + std::to_string(c->index),
                              true, o_.keepalive));
    }
    every(io_, std::chrono::milliseconds(20), [this, start] {
      if (!on_setup_) return false;
      bool all = true;
      for (auto& c : conns_) all = all && c->ready;
      if (all || failed_ || secs(now_ns() - start) > o_.setup_timeout) {
        auto f = std::move(on_setup_);
        on_setup_ = nullptr;
        f(all && !failed_);
        return false;
      }
      return true;
    });
  }

  // Publishes for o.duration s, then waits (up to o.drain s) for the acks; calls done().
  void run(std::function<void()> done) {
    on_done_ = std::move(done);
    t0_ = now_ns();
    measure_from_ = t0_ + static_cast<int64_t>(o_.warmup * 1e9);
    end_ = t0_ + static_cast<int64_t>(o_.duration * 1e9);
    kill_ns_ = o_.mode == "resume" ? t0_ + static_cast<int64_t>(o_.kill_at * 1e9) : 0;
    timer_ = std::make_unique<asio::steady_timer>(io_);
    tick();
  }

  void on_ack(PubConn* c, uint16_t id) {
    if (c->ids.release(id))
      ++acked_;
    else
      ++unexpected_acks_;
    if (stopped_ && acked_ + lost_conn_inflight_ >= sent_) finish();
  }
  void conn_failed(PubConn* c, const std::string& what) {
    ++conn_failures_;
    last_error_ = what;
    c->ready = false;
    lost_conn_inflight_ += c->ids.in_flight();
    c->ids.reset();
    failed_ = true;
  }
  void set_ready(PubConn* c) { c->ready = true; }

  std::string report_json() const {
    Json j;
    double window = secs((stop_ns_ ? stop_ns_ : now_ns()) - t0_);
    j.str("mode", o_.mode)
        .str("role", "pub")
        .integer("pub_conns", o_.pub_conns)
        .integer("sessions", o_.sessions)
        .num("rate_offered", o_.rate, 1)
        .num("duration_s", window)
        .integer("sent", sent_)
        .integer("acked", acked_)
        .integer("unacked", sent_ - acked_)
        .integer("unexpected_acks", unexpected_acks_)
        .integer("skipped_no_packet_id", skipped_)
        .num("rate_sent", window > 0 ? static_cast<double>(sent_) / window : 0, 1)
        .num("send_lag_p99_ms", lag_.quantile(0.99) / 1e6, 4)
        .num("send_lag_max_ms", static_cast<double>(lag_.max()) / 1e6, 4)
        .integer("max_in_flight", max_in_flight_)
        .integer("conn_failures", conn_failures_)
        .num("ack_wait_s", ack_wait_s_)
        .integer("t0_ns", t0_)
        .integer("kill_ns", kill_sent_ns_);
    if (!last_error_.empty()) j.str("last_error", last_error_);
    return j.done();
  }
  int64_t sent() const { return sent_; }

 private:
  void tick() {
    int64_t now = now_ns();
    if (kill_ns_ && !kill_sent_ns_ && now >= kill_ns_) {
      kill_sent_ns_ = now;
      write_file_atomic(o_.kill_file, std::to_string(now) + "\n");
      std::fprintf(stderr, "[pub] kill signal at %.2f s (%lld sent)\n", secs(now - t0_),
                   static_cast<long long>(sent_));
    }
    // Updates due by now (open loop: update i is due at t0 + i / rate).
    int64_t due =
        std::min<int64_t>(static_cast<int64_t>(secs(std::min(now, end_) - t0_) * o_.rate) + 1,
                          static_cast<int64_t>(o_.duration * o_.rate));
    while (next_ < due) {
      int64_t i = next_++;
      int s = static_cast<int>(i % o_.sessions);
      PubConn* c = conns_[static_cast<size_t>(s % o_.pub_conns)].get();
      int64_t sched = t0_ + static_cast<int64_t>(static_cast<double>(i) / o_.rate * 1e9);
      if (!c->ready) {
        ++skipped_;
        continue;
      }
      uint16_t id = c->ids.take();
      if (id == 0) {
        ++skipped_;
        continue;
      }
      Update u;
      u.sent_ns = now_ns();
      u.session = static_cast<uint32_t>(s);
      u.seq = static_cast<uint32_t>(i / o_.sessions + 1);
      u.flags = u.sent_ns >= measure_from_ ? kMeasured : 0;
      lag_.add(u.sent_ns - sched);
      put_update(u, payload_.data());
      append_publish(topics_[static_cast<size_t>(s)], payload_, 1, id, &c->link->pending_buffer());
      ++sent_;
      max_in_flight_ = std::max<int64_t>(max_in_flight_, c->ids.in_flight());
    }
    for (auto& c : conns_)
      if (c->link) c->link->flush_pending();
    if (now >= end_ || next_ >= static_cast<int64_t>(o_.duration * o_.rate)) {
      stopped_ = true;
      stop_ns_ = now_ns();
      if (acked_ + lost_conn_inflight_ >= sent_) return finish();
      timer_->expires_after(
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.drain)));
      timer_->async_wait([this](const error_code& ec) {
        if (!ec) finish();
      });
      return;
    }
    int64_t next_due = t0_ + static_cast<int64_t>(static_cast<double>(next_) / o_.rate * 1e9);
    if (kill_ns_ && !kill_sent_ns_) next_due = std::min(next_due, kill_ns_);
    timer_->expires_at(Clock::time_point(std::chrono::nanoseconds(next_due)));
    timer_->async_wait([this](const error_code& ec) {
      if (!ec) tick();
    });
  }
  void finish() {
    if (!on_done_) return;
    ack_wait_s_ = secs(now_ns() - stop_ns_);
    timer_->cancel();
    auto f = std::move(on_done_);
    on_done_ = nullptr;
    f();
  }

 public:
  void close_all() {
    for (auto& c : conns_)
      if (c->link) c->link->abort();
  }

 private:
  asio::io_context& io_;
  const Options& o_;
  tcp::endpoint ep_;
  std::vector<std::unique_ptr<PubConn>> conns_;
  std::vector<std::string> topics_;
  std::string payload_;
  std::function<void(bool)> on_setup_;
  std::function<void()> on_done_;
  std::unique_ptr<asio::steady_timer> timer_;
  int64_t t0_ = 0, measure_from_ = 0, end_ = 0, kill_ns_ = 0, kill_sent_ns_ = 0, stop_ns_ = 0;
  int64_t next_ = 0, sent_ = 0, acked_ = 0, skipped_ = 0, unexpected_acks_ = 0, conn_failures_ = 0;
  int64_t lost_conn_inflight_ = 0, max_in_flight_ = 0;
  double ack_wait_s_ = 0;
  bool stopped_ = false, failed_ = false;
  std::string last_error_;
  Hist lag_;
};

void PubConn::on_packets(Link& l, std::vector<mqtt::Packet>& packets) {
  for (auto& pk : packets) {
    if (auto* ca = std::get_if<mqtt::Connack>(&pk)) {
      if (ca->return_code != mqtt::ConnackCode::kAccepted) {
        l.abort();
        r->conn_failed(this, "publisher CONNACK refused");
        return;
      }
      r->set_ready(this);
    } else if (auto* pid = std::get_if<mqtt::PacketIdOnly>(&pk)) {
      if (pid->type == mqtt::PacketType::kPuback) r->on_ack(this, pid->packet_id);
    }
  }
}
void PubConn::on_closed(Link&, const std::string& what) {
  r->conn_failed(this, "publisher: " + what);
}

// ---------------------------------------------------------------- latency / resume / idle driver

int run_sessions(const Options& o, const tcp::endpoint& ep) {
  asio::io_context io(1);
  bool want_sub = o.role != "pub";
  bool want_pub = o.role != "sub" && o.mode != "idle";
  std::string done_file = o.done_file, kill_file = o.kill_file;
  std::string tmp_base = "/tmp/persona_mqtt_loadgen." + std::to_string(::getpid());
  if (o.role == "both") {
    if (done_file.empty()) done_file = tmp_base + ".done";
    if (kill_file.empty()) kill_file = tmp_base + ".kill";
  }
  Options eo = o;
  eo.done_file = done_file;
  eo.kill_file = kill_file;

  std::unique_ptr<SubRunner> sub;
  std::unique_ptr<PubRunner> pub;
  if (want_sub) sub = std::make_unique<SubRunner>(io, eo, ep);
  if (want_pub) pub = std::make_unique<PubRunner>(io, eo, ep);
  int rc = 0;
  std::string sub_json, pub_json;
  bool sub_setup_ok = false;
  int64_t process_start = now_ns();

  auto finish_sub = [&](double drain_s) {
    sub_json = sub->report_json(sub_setup_ok, drain_s);
    sub->finish();
    if (!pub || !pub_json.empty()) io.stop();
  };

  // Subscriber side: wait for kill/done files, then drain.
  auto sub_wait = [&]() {
    bool killed = false;
    every(io, std::chrono::milliseconds(5), [&, killed]() mutable {
      if (o.mode == "resume" && !killed && file_exists(kill_file)) {
        killed = true;
        sub->kill_and_resume();
      }
      if (file_exists(done_file)) {
        std::string s = read_file(done_file);
        int64_t n = std::atoll(s.c_str());
        sub->set_published(n);
        int64_t drain_start = now_ns();
        every(io, std::chrono::milliseconds(10), [&, drain_start] {
          bool complete = sub->all_complete();
          // resume: also wait until every device is back (they may still be reconnecting).
          if (complete || secs(now_ns() - drain_start) > o.drain) {
            finish_sub(secs(now_ns() - drain_start));
            return false;
          }
          return true;
        });
        return false;
      }
      return true;
    });
  };

  auto start_pub = [&]() {
    pub->setup([&](bool ok) {
      if (!ok) {
        std::fprintf(stderr, "[pub] setup failed\n");
        rc = 2;
      }
      pub->run([&] {
        pub_json = pub->report_json();
        write_file_atomic(done_file, std::to_string(pub->sent()) + "\n");
        pub->close_all();
        if (!sub || !sub_json.empty()) io.stop();
      });
    });
  };

  if (sub) {
    sub->setup([&](bool ok) {
      sub_setup_ok = ok;
      std::fprintf(stderr, "[sub %d/%d] %zu connections %s in %.2f s\n", o.shard_i, o.shard_n,
                   sub->size(), ok ? "subscribed" : "NOT all subscribed (setup timeout)",
                   secs(now_ns() - process_start));
      if (!ok) {
        rc = 2;
        sub->set_published(0);
        finish_sub(0);
        if (pub) io.stop();
        return;
      }
      write_file_atomic(o.ready_file, "ready\n");
      sub_wait();
      if (pub) start_pub();
    });
  } else {
    start_pub();
  }

  // Hard bound.
  asio::steady_timer guard(
      io, std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.max_time)));
  guard.async_wait([&](const error_code& ec) {
    if (ec) return;
    std::fprintf(stderr, "max-time reached\n");
    rc = 3;
    if (sub && sub_json.empty()) {
      sub_json = sub->report_json(sub_setup_ok, -1);
      sub->finish();
    }
    if (pub && pub_json.empty()) pub_json = pub->report_json();
    io.stop();
  });
  asio::signal_set sigs(io, SIGINT, SIGTERM);
  sigs.async_wait([&](const error_code& ec, int) {
    if (ec) return;
    rc = 4;
    if (sub && sub_json.empty()) {
      sub_json = sub->report_json(sub_setup_ok, -1);
      sub->finish();
    }
    if (pub && pub_json.empty()) pub_json = pub->report_json();
    io.stop();
  });

  io.run();
  if (o.role == "both") {
    std::remove(done_file.c_str());
    std::remove(kill_file.c_str());
  }
  if (sub && pub) {
    std::printf("{\"mode\":\"%s\",\"role\":\"both\",\"sub\":%s,\"pub\":%s}\n", o.mode.c_str(),
                sub_json.c_str(), pub_json.empty() ? "null" : pub_json.c_str());
  } else {
    std::printf("%s\n", sub ? sub_json.c_str() : pub_json.c_str());
  }
  std::fflush(stdout);
  return rc;
}

// ================================================================ fanout (saturation)

struct alignas(64) ThreadCounters {
  std::atomic<int64_t> deliveries{0};
  std::atomic<int64_t> acked{0};
  std::atomic<int64_t> sent{0};
  std::atomic<int64_t> ready{0};
  std::atomic<int64_t> errors{0};
  std::atomic<int64_t> dup_flagged{0};
  std::atomic<int64_t> qos0_deliveries{0};  // broker downgraded a QoS 1 subscription
  std::atomic<int64_t> granted_qos_below_1{0};
};

std::atomic<int> g_phase{
    0};  // 0 setup, 1 publishing (warmup), 2 measuring, 3 stop publishing, 4 quit

class FanoutThread {
 public:
  struct Sub : Link::Handler {
    FanoutThread* t = nullptr;
    std::vector<std::string> filters;
    std::shared_ptr<Link> link;
    std::string id;
    void on_packets(Link& l, std::vector<mqtt::Packet>& packets) override {
      for (auto& pk : packets) {
        if (auto* p = std::get_if<mqtt::Publish>(&pk)) {
          if (p->qos == 1)
            append_puback(p->packet_id, &l.pending_buffer());
          else if (p->qos == 0)
            t->c.qos0_deliveries.fetch_add(1, std::memory_order_relaxed);
          t->c.deliveries.fetch_add(1, std::memory_order_relaxed);
          if (p->dup) t->c.dup_flagged.fetch_add(1, std::memory_order_relaxed);
          Update u;
          if (g_phase.load(std::memory_order_relaxed) == 2 && get_update(p->payload, &u))
            t->lat.add(now_ns() - u.sent_ns);
        } else if (auto* ca = std::get_if<mqtt::Connack>(&pk)) {
          if (ca->return_code != mqtt::ConnackCode::kAccepted)
            return fail(l, "subscriber CONNACK refused");
          l.send(subscribe_packet(1, filters, 1));
        } else if (auto* sa = std::get_if<mqtt::Suback>(&pk)) {
          for (uint8_t code : sa->codes) {
            if (code == mqtt::kSubackFailure) return fail(l, "SUBACK refused");
            if (code < 1) t->c.granted_qos_below_1.fetch_add(1);
          }
          t->c.ready.fetch_add(1);
        }
      }
      l.flush_pending();
    }
    void fail(Link& l, const std::string& what) {
      l.abort();
      on_closed(l, what);
    }
    void on_closed(Link&, const std::string& what) override {
      if (g_phase.load() >= 3) return;
      t->c.errors.fetch_add(1);
      t->note(what);
    }
  };
  struct Pub : Link::Handler {
    FanoutThread* t = nullptr;
    std::shared_ptr<Link> link;
    std::string id;
    PacketIds ids;
    std::vector<int> my_topics;
    size_t next_topic = 0;
    bool ready = false;
    void pump() {
      if (!ready || g_phase.load(std::memory_order_relaxed) == 0 ||
          g_phase.load(std::memory_order_relaxed) >= 3)
        return;
      std::string& out = link->pending_buffer();
      while (ids.in_flight() < t->o.window) {
        uint16_t pid = ids.take();
        Update u;
        u.sent_ns = now_ns();
        put_update(u, t->payload.data());
        append_publish(t->topics[static_cast<size_t>(my_topics[next_topic])], t->payload, 1, pid,
                       &out);
        next_topic = (next_topic + 1) % my_topics.size();
        t->c.sent.fetch_add(1, std::memory_order_relaxed);
      }
      link->flush_pending();
    }
    void on_packets(Link& l, std::vector<mqtt::Packet>& packets) override {
      for (auto& pk : packets) {
        if (auto* pid = std::get_if<mqtt::PacketIdOnly>(&pk)) {
          if (pid->type == mqtt::PacketType::kPuback && ids.release(pid->packet_id))
            t->c.acked.fetch_add(1, std::memory_order_relaxed);
        } else if (auto* ca = std::get_if<mqtt::Connack>(&pk)) {
          if (ca->return_code != mqtt::ConnackCode::kAccepted) {
            l.abort();
            return on_closed(l, "publisher CONNACK refused");
          }
          ready = true;
          t->c.ready.fetch_add(1);
        }
      }
      pump();
    }
    void on_closed(Link&, const std::string& what) override {
      ready = false;
      if (g_phase.load() >= 3) return;
      t->c.errors.fetch_add(1);
      t->note(what);
    }
  };

  FanoutThread(const Options& opts, const tcp::endpoint& ep) : o(opts), ep_(ep), io_(1) {
    payload.assign(static_cast<size_t>(o.payload), 'x');
    for (int t = 0; t < o.topics; ++t) topics.push_back(o.prefix + "/f" + std::to_string(t));
  }
  void add_sub(int j) {
    auto s = std::make_unique<Sub>();
    s->t = this;
    s->id = o.prefix + "-fs-" + o.client_tag + "-" + std::to_string(j);
    int groups = o.subscribers / o.fanout;
    for (int t = 0; t < o.topics; ++t)
      if (t % groups == j % groups) s->filters.push_back(topics[static_cast<size_t>(t)]);
    subs_.push_back(std::move(s));
  }
  void add_pub(int p) {
    auto x = std::make_unique<Pub>();
    x->t = this;
    x->id = o.prefix + "-fp-" + o.client_tag + "-" + std::to_string(p);
    // Publisher p cycles over all topics starting at a different offset.
    for (int t = 0; t < o.topics; ++t) x->my_topics.push_back((t + p) % o.topics);
    pubs_.push_back(std::move(x));
  }
  void start_subs() {
    asio::post(io_, [this] {
      for (auto& s : subs_) {
        s->link = std::make_shared<Link>(io_, s.get());
        s->link->connect(ep_, connect_packet(s->id, true, o.keepalive));
      }
    });
  }
  void start_pubs() {
    asio::post(io_, [this] {
      for (auto& p : pubs_) {
        p->link = std::make_shared<Link>(io_, p.get());
        p->link->connect(ep_, connect_packet(p->id, true, o.keepalive));
      }
    });
  }
  void go() {
    asio::post(io_, [this] {
      for (auto& p : pubs_) p->pump();
    });
  }
  void stop() {
    asio::post(io_, [this] {
      for (auto& s : subs_)
        if (s->link) s->link->abort();
      for (auto& p : pubs_)
        if (p->link) p->link->abort();
      io_.stop();
    });
  }
  void run() {
    auto guard = asio::make_work_guard(io_);
    io_.run();
  }
  void note(const std::string& what) {
    std::lock_guard<std::mutex> lk(mu_);
    last_error = what;
  }
  std::string error() {
    std::lock_guard<std::mutex> lk(mu_);
    return last_error;
  }

  const Options& o;
  ThreadCounters c;
  Hist lat;  // written by this thread during phase 2, read after join
  std::string payload;
  std::vector<std::string> topics;

 private:
  tcp::endpoint ep_;
  asio::io_context io_;
  std::vector<std::unique_ptr<Sub>> subs_;
  std::vector<std::unique_ptr<Pub>> pubs_;
  std::mutex mu_;
  std::string last_error;
};

int run_fanout(const Options& o, const tcp::endpoint& ep) {
  std::vector<std::unique_ptr<FanoutThread>> ts;
  for (int i = 0; i < o.threads; ++i) ts.push_back(std::make_unique<FanoutThread>(o, ep));
  for (int j = 0; j < o.subscribers; ++j) ts[static_cast<size_t>(j % o.threads)]->add_sub(j);
  for (int p = 0; p < o.publishers; ++p) ts[static_cast<size_t>(p % o.threads)]->add_pub(p);
  std::vector<std::thread> th;
  for (auto& t : ts) th.emplace_back([&t] { t->run(); });

  auto sum = [&](std::atomic<int64_t> ThreadCounters::*f) {
    int64_t s = 0;
    for (auto& t : ts) s += (t->c.*f).load(std::memory_order_relaxed);
    return s;
  };
  auto first_error = [&]() {
    for (auto& t : ts) {
      std::string e = t->error();
      if (!e.empty()) return e;
    }
    return std::string();
  };
  auto wait_ready = [&](int64_t want, double timeout) {
    int64_t start = now_ns();
    while (sum(&ThreadCounters::ready) < want) {
      if (secs(now_ns() - start) > timeout || sum(&ThreadCounters::errors) > 0) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  };
  auto sleep_s = [](double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); };

  int64_t t_setup = now_ns();
  for (auto& t : ts) t->start_subs();
  bool ok = wait_ready(o.subscribers, o.setup_timeout);
  if (ok) {
    for (auto& t : ts) t->start_pubs();
    ok = wait_ready(o.subscribers + o.publishers, o.setup_timeout);
  }
  double setup_s = secs(now_ns() - t_setup);
  Json j;
  j.str("mode", "fanout")
      .integer("publishers", o.publishers)
      .integer("subscribers", o.subscribers)
      .integer("topics", o.topics)
      .integer("fanout", o.fanout)
      .integer("window", o.window)
      .integer("payload", o.payload)
      .integer("threads", o.threads)
      .num("setup_s", setup_s);
  int rc = 0;
  if (!ok) {
    j.boolean("setup_ok", false).str("fatal", "setup failed: " + first_error());
    rc = 2;
  } else {
    g_phase = 1;
    for (auto& t : ts) t->go();
    sleep_s(o.warmup);
    int64_t d0 = sum(&ThreadCounters::deliveries), a0 = sum(&ThreadCounters::acked), n0 = now_ns();
    g_phase = 2;
    // Sample once a second for a stability view.
    std::string per_s = "[";
    int64_t prev = d0;
    int64_t t_end = n0 + static_cast<int64_t>(o.duration * 1e9);
    while (now_ns() < t_end) {
      sleep_s(std::min(1.0, secs(t_end - now_ns())));
      int64_t d = sum(&ThreadCounters::deliveries);
      if (per_s.size() > 1) per_s += ',';
      per_s += std::to_string(d - prev);
      prev = d;
    }
    per_s += "]";
    int64_t d1 = sum(&ThreadCounters::deliveries), a1 = sum(&ThreadCounters::acked), n1 = now_ns();
    g_phase = 3;
    double w = secs(n1 - n0);
    // Let queued deliveries arrive (not counted in the window) before closing.
    sleep_s(std::min(o.drain, 1.0));
    Hist lat;
    double dps = static_cast<double>(d1 - d0) / w, aps = static_cast<double>(a1 - a0) / w;
    j.boolean("setup_ok", true)
        .num("window_s", w)
        .integer("deliveries", d1 - d0)
        .num("deliveries_per_s", dps, 1)
        .num("publishes_acked_per_s", aps, 1)
        .num("delivery_ratio", aps > 0 ? dps / (aps * o.fanout) : 0, 4)
        .integer("sent_total", sum(&ThreadCounters::sent))
        .integer("acked_total", sum(&ThreadCounters::acked))
        .integer("deliveries_total", sum(&ThreadCounters::deliveries))
        .integer("dup_flagged", sum(&ThreadCounters::dup_flagged))
        .integer("qos0_deliveries", sum(&ThreadCounters::qos0_deliveries))
        .integer("granted_qos_below_1", sum(&ThreadCounters::granted_qos_below_1))
        .integer("errors", sum(&ThreadCounters::errors))
        .raw("deliveries_each_s", per_s);
    g_phase = 4;
    for (auto& t : ts) t->stop();
    for (auto& x : th) x.join();
    th.clear();
    for (auto& t : ts) lat.merge(t->lat);
    j.integer("latency_count", static_cast<int64_t>(lat.count()))
        .num("p50_ms", lat.quantile(0.5) / 1e6, 4)
        .num("p99_ms", lat.quantile(0.99) / 1e6, 4)
        .num("max_ms", static_cast<double>(lat.max()) / 1e6, 4);
    std::string e = first_error();
    if (!e.empty()) j.str("last_error", e);
  }
  g_phase = 4;
  for (auto& t : ts) t->stop();
  for (auto& x : th) x.join();
  std::printf("%s\n", j.done().c_str());
  std::fflush(stdout);
  return rc;
}

// ================================================================ probe

struct ProbeConn : Link::Handler {
  asio::io_context* io = nullptr;
  std::string topic;
  int stage = 0;  // 0 CONNACK, 1 SUBACK, 2 PUBLISH back, 3 done
  bool ok = false;
  std::string why = "no answer";
  void on_packets(Link& l, std::vector<mqtt::Packet>& packets) override {
    for (auto& pk : packets) {
      if (auto* ca = std::get_if<mqtt::Connack>(&pk)) {
        if (ca->return_code != mqtt::ConnackCode::kAccepted) return done(l, "CONNACK refused");
        stage = 1;
        l.send(subscribe_packet(1, {topic}, 1));
      } else if (auto* sa = std::get_if<mqtt::Suback>(&pk)) {
        if (sa->codes.empty() || sa->codes[0] == mqtt::kSubackFailure)
          return done(l, "SUBACK refused");
        stage = 2;
        std::string out;
        append_publish(topic, "probe", 1, 2, &out);
        l.send(out);
      } else if (auto* p = std::get_if<mqtt::Publish>(&pk)) {
        if (p->qos == 1) {
          std::string out;
          append_puback(p->packet_id, &out);
          l.send(out);
        }
        if (p->topic == topic && p->payload == "probe") {
          ok = true;
          return done(l, "ok");
        }
      }
    }
  }
  void on_closed(Link&, const std::string& what) override {
    if (!ok) why = what;
    io->stop();
  }
  void done(Link& l, const std::string& w) {
    why = w;
    std::string out;
    mqtt::EncodeDisconnect(&out);
    l.send(out);
    // Give the DISCONNECT a moment to leave, then stop.
    auto t = std::make_shared<asio::steady_timer>(*io, std::chrono::milliseconds(20));
    t->async_wait([this, t](const error_code&) { io->stop(); });
  }
};

int run_probe(const Options& o, const tcp::endpoint& ep) {
  asio::io_context io(1);
  ProbeConn pc;
  pc.io = &io;
  pc.topic = o.prefix + "/probe/" + o.client_tag;
  auto link = std::make_shared<Link>(io, &pc);
  link->connect(ep, connect_packet(o.prefix + "-probe-" + o.client_tag, true, 10));
  asio::steady_timer guard(io, std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(std::min(o.setup_timeout, 5.0))));
  guard.async_wait([&](const error_code& ec) {
    if (!ec) {
      pc.why = "timeout at stage " + std::to_string(pc.stage);
      io.stop();
    }
  });
  io.run();
  link->abort();
  Json j;
  j.str("mode", "probe").boolean("ok", pc.ok).str("detail", pc.why);
  std::printf("%s\n", j.done().c_str());
  return pc.ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_args(argc, argv);
  error_code ec;
  auto addr = asio::ip::make_address(o.host, ec);
  if (ec) usage("--host must be an IP address");
  tcp::endpoint ep(addr, o.port);
  std::signal(SIGPIPE, SIG_IGN);
  if (o.mode == "fanout") return run_fanout(o, ep);
  if (o.mode == "probe") return run_probe(o, ep);
  return run_sessions(o, ep);
}
