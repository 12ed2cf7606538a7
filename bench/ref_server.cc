// persona_ref_server: the references of the step-loop benchmark (issue 14,
// part 1), run on the same load as persona in bench/run_steps.sh.
//
//   --mode plain    a bare Boost.Beast HTTP/1.1 server: the same threads and
//                   keep-alive as persona, answering POST /v1/sessions with a
//                   session id and any other POST with a small fixed JSON;
//   --mode durable  the same, plus one RocksDB WriteBatch with sync=true per
//                   batch of pending requests (group commit, as persona's
//                   store does), each request answered once its batch is
//                   durable.
//
// That is the limit this machine allows for an HTTP step and for a durable
// one; persona's steps/s are reported as a ratio to each.
//
// Usage: persona_ref_server --port N [--threads N] [--mode plain|durable] [--data DIR]
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

const std::string kReply =
    R"({"message_id":"m","reply":{"text":"Nice to meet you!","message_id":"r"},"changes":[],)"
    R"("profile":{},"version":3,"source":"builtin"})";

// Group commit: requests wait in `pending`; the commit thread writes all of
// them in one synced WriteBatch and then runs their completions.
class Committer {
 public:
  explicit Committer(const std::string& dir) {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    auto st = rocksdb::DB::Open(o, dir, &db);
    if (!st.ok()) {
      std::cerr << "rocksdb: " << st.ToString() << "\n";
      std::exit(2);
    }
    db_.reset(db);
    thread_ = std::thread([this] { Run(); });
  }
  ~Committer() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void Append(std::string key, std::string value, std::function<void()> done) {
    {
      std::lock_guard<std::mutex> l(mu_);
      pending_.push_back({std::move(key), std::move(value), std::move(done)});
    }
    cv_.notify_one();
  }

 private:
  struct Item {
    std::string key, value;
    std::function<void()> done;
  };
  void Run() {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      cv_.wait(l, [this] { return stop_ || !pending_.empty(); });
      if (stop_) return;
      std::deque<Item> batch;
      batch.swap(pending_);
      l.unlock();
      rocksdb::WriteBatch wb;
      for (const auto& it : batch) wb.Put(it.key, it.value);
      rocksdb::WriteOptions wo;
      wo.sync = true;
      db_->Write(wo, &wb);
      for (auto& it : batch) it.done();
      l.lock();
    }
  }
  std::unique_ptr<rocksdb::DB> db_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> pending_;
  bool stop_ = false;
  std::thread thread_;
};

std::atomic<uint64_t> next_id{0};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket s, Committer* committer) : stream_(std::move(s)), committer_(committer) {}
  void Start() { Read(); }

 private:
  void Read() {
    req_ = {};
    http::async_read(stream_, buf_, req_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return;
                       self->Handle();
                     });
  }
  void Handle() {
    auto res =
        std::make_shared<http::response<http::string_body>>(http::status::ok, req_.version());
    res->set(http::field::content_type, "application/json");
    res->keep_alive(req_.keep_alive());
    const std::string target(req_.target());
    if (req_.method() == http::verb::post && target == "/v1/sessions") {
      res->result(http::status::created);
      res->body() = R"({"session_id":"s)" + std::to_string(next_id++) + R"("})";
    } else if (req_.method() == http::verb::get) {
      res->result(http::status::not_found);  // no /metrics here
      res->body() = "{}";
    } else {
      res->body() = kReply;
    }
    res->prepare_payload();
    if (committer_ == nullptr || req_.method() != http::verb::post) return Write(res);
    // Durable: the request's body, keyed by its target and a counter.
    auto self = shared_from_this();
    committer_->Append(target + "#" + std::to_string(next_id++), req_.body(), [self, res] {
      asio::post(self->stream_.get_executor(), [self, res] { self->Write(res); });
    });
  }
  void Write(std::shared_ptr<http::response<http::string_body>> res) {
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec || !res->keep_alive()) return;
                        self->Read();
                      });
  }
  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  http::request<http::string_body> req_;
  Committer* committer_;
};

void Accept(tcp::acceptor& acceptor, asio::io_context& io, Committer* committer) {
  acceptor.async_accept(asio::make_strand(io),
                        [&acceptor, &io, committer](beast::error_code ec, tcp::socket s) {
                          if (!ec) {
                            s.set_option(tcp::no_delay(true));
                            std::make_shared<Session>(std::move(s), committer)->Start();
                          }
                          Accept(acceptor, io, committer);
                        });
}

std::string Arg(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == name) return argv[i + 1];
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  const int port = std::atoi(Arg(argc, argv, "--port", "0").c_str());
  int threads = std::atoi(Arg(argc, argv, "--threads", "0").c_str());
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::string mode = Arg(argc, argv, "--mode", "plain");
  if (port <= 0 || (mode != "plain" && mode != "durable")) {
    std::cerr << "usage: persona_ref_server --port N [--threads N] [--mode plain|durable] "
                 "[--data DIR]\n";
    return 2;
  }
  std::unique_ptr<Committer> committer;
  if (mode == "durable")
    committer = std::make_unique<Committer>(Arg(argc, argv, "--data", "ref-data"));
  asio::io_context io(threads);
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)});
  Accept(acceptor, io, committer.get());
  std::cout << "listening on 127.0.0.1:" << port << " (" << mode << ", " << threads << " threads)"
            << std::endl;
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  return 0;
}
