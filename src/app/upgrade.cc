#include "app/upgrade.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/logging.h"

namespace persona::app {
namespace {

constexpr char kRequest[] = "TAKEOVER 1\n";
// Sent in the same write as kRequest by a taker that confirms: a server of
// an earlier version reads the request's line and ignores the rest.
constexpr char kConfirms[] = "CONFIRMS 1\n";
constexpr char kReleased[] = "RELEASED\n";
constexpr char kServing[] = "SERVING\n";
constexpr char kInheritedEnv[] = "PERSONA_INHERITED_LISTENERS";

std::string SocketPath(const std::string& data_dir) {
  return (std::filesystem::path(data_dir) / "upgrade.sock").string();
}

StatusOr<sockaddr_un> Address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path))
    return absl::InvalidArgumentError("the upgrade socket's path is too long for a Unix socket (" +
                                      path + ")");
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Reads from `fd` until `buf` holds a '\n' or the peer closes, for at most
// `timeout_ms`. False on timeout or error.
bool ReadLine(int fd, std::string* buf, int timeout_ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (buf->find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          until - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    char chunk[256];
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;  // closed: the caller looks at what arrived
    buf->append(chunk, static_cast<size_t>(n));
  }
  return true;
}

void WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

StatusOr<std::unique_ptr<StartLock>> StartLock::Acquire(const std::string& data_dir) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  const std::string path = (std::filesystem::path(data_dir) / "upgrade.lock").string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return absl::FailedPreconditionError(Errno(path.c_str()));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return absl::FailedPreconditionError("another persona is starting or taking over in '" +
                                         data_dir + "'");
  }
  return std::unique_ptr<StartLock>(new StartLock(fd));
}

StartLock::~StartLock() { ::close(fd_); }  // closing releases the flock

StatusOr<std::optional<Listeners>> TakeOver(const std::string& data_dir, int timeout_ms) {
  const std::string path = SocketPath(data_dir);
  auto addr = Address(path);
  if (!addr.ok()) {
    LogWarn("no zero-downtime upgrade", {{"reason", std::string(addr.status().message())}});
    return std::optional<Listeners>();
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(Errno("upgrade socket"));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    // No server here; a socket file nobody listens on is a crashed one's.
    if (errno == ECONNREFUSED) ::unlink(path.c_str());
    return std::optional<Listeners>();
  }
  LogInfo("taking over from the running server", {{"socket", path}});
  WriteAll(fd, std::string(kRequest) + kConfirms);

  // The listeners come with the first bytes (SCM_RIGHTS).
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 5000) <= 0)
    return absl::UnavailableError("the running server did not answer the takeover");
  char data[128];
  iovec iov{data, sizeof(data)};
  alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  const ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  if (n <= 0) return absl::UnavailableError("the running server refused the takeover");
  std::vector<int> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int f;
      std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.push_back(f);
    }
  }
  std::string text(data, static_cast<size_t>(n));
  // "LISTENERS http mqtt\n": which descriptors came, in that order.
  Listeners got;
  size_t next = 0;
  const std::string head = text.substr(0, text.find('\n'));
  for (const char* name : {"http", "mqtt"}) {
    if (head.find(std::string(" ") + name) == std::string::npos) continue;
    if (next >= fds.size()) break;
    (std::string_view(name) == "http" ? got.http : got.mqtt) = fds[next++];
  }
  for (; next < fds.size(); ++next) ::close(fds[next]);
  if (!head.starts_with("LISTENERS") || got.http < 0) {
    for (int f : {got.http, got.mqtt})
      if (f >= 0) ::close(f);
    return absl::UnavailableError("the running server sent no listeners");
  }
  // Then "RELEASED" once its store is closed; a server that dies instead
  // has released it too (the store's own lock is the judge).
  std::string rest = text.substr(text.find('\n') + 1);
  if (!ReadLine(fd, &rest, timeout_ms)) {
    for (int f : {got.http, got.mqtt})
      if (f >= 0) ::close(f);
    return absl::UnavailableError("the running server did not release the store within " +
                                  std::to_string(timeout_ms) + " ms");
  }
  if (!rest.starts_with(kReleased))
    LogWarn("the running server closed the upgrade socket without releasing; going on");
  got.confirm = closer.fd;
  closer.fd = -1;  // kept open until ConfirmServing
  return std::optional<Listeners>(got);
}

void ConfirmServing(Listeners* listeners) {
  if (listeners->confirm < 0) return;
  WriteAll(listeners->confirm, kServing);
  ::close(listeners->confirm);
  listeners->confirm = -1;
}

std::optional<Listeners> InheritedListeners() {
  const char* value = std::getenv(kInheritedEnv);
  if (value == nullptr) return std::nullopt;
  const std::string text = value;
  ::unsetenv(kInheritedEnv);
  // "http=FD,mqtt=FD" (either may be missing)
  Listeners got;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, end - pos);
    pos = end + 1;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) continue;
    int fd = -1;
    try {
      fd = std::stoi(item.substr(eq + 1));
    } catch (const std::exception&) {
      continue;
    }
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (fd < 0 || ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
        listening == 0) {
      LogWarn("ignoring an inherited descriptor that is not a listening socket",
              {{"listener", item}});
      continue;
    }
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    const std::string name = item.substr(0, eq);
    if (name == "http") got.http = fd;
    if (name == "mqtt") got.mqtt = fd;
  }
  if (got.http < 0 && got.mqtt < 0) return std::nullopt;
  return got;
}

StatusOr<std::unique_ptr<Handover>> Handover::Start(const std::string& data_dir,
                                                    Listeners listeners,
                                                    std::function<void()> drain,
                                                    std::function<void()> done) {
  std::unique_ptr<Handover> h(new Handover());
  h->path_ = SocketPath(data_dir);
  auto addr = Address(h->path_);
  if (!addr.ok()) return addr.status();
  h->listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (h->listen_fd_ < 0) return absl::UnavailableError(Errno("upgrade socket"));
  ::unlink(h->path_.c_str());  // ours to replace: the start lock is held
  if (::bind(h->listen_fd_, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0 ||
      ::listen(h->listen_fd_, 4) != 0) {
    const std::string why = Errno(h->path_.c_str());
    ::close(h->listen_fd_);
    h->listen_fd_ = -1;
    return absl::UnavailableError(why);
  }
  ::chmod(h->path_.c_str(), 0600);
  h->listeners_ = listeners;
  h->drain_ = std::move(drain);
  h->done_ = std::move(done);
  h->thread_ = std::thread([raw = h.get()] { raw->Loop(); });
  return h;
}

Handover::~Handover() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(path_.c_str());
  }
}

void Handover::Loop() {
  while (!stop_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, 200);
    if (r <= 0) continue;
    const int conn = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    std::string line;
    if (!ReadLine(conn, &line, 2000) || !line.starts_with(kRequest)) {
      LogWarn("ignoring a malformed request on the upgrade socket", {{"socket", path_}});
      ::close(conn);
      continue;
    }
    const bool confirms = line.find(kConfirms) != std::string::npos;
    // One takeover: no one else can connect from here on.
    taking_over_.store(true);
    ::close(listen_fd_);
    listen_fd_ = -1;
    ::unlink(path_.c_str());
    std::string head = "LISTENERS";
    std::vector<int> fds;
    if (listeners_.http >= 0) {
      head += " http";
      fds.push_back(listeners_.http);
    }
    if (listeners_.mqtt >= 0) {
      head += " mqtt";
      fds.push_back(listeners_.mqtt);
    }
    head += "\n";
    iovec iov{head.data(), head.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
    // Our own copies, to take back if the taker fails: the acceptors close
    // theirs when this process stops accepting.
    Listeners kept;
    if (confirms) {
      if (listeners_.http >= 0) kept.http = ::fcntl(listeners_.http, F_DUPFD_CLOEXEC, 0);
      if (listeners_.mqtt >= 0) kept.mqtt = ::fcntl(listeners_.mqtt, F_DUPFD_CLOEXEC, 0);
    }
    if (::sendmsg(conn, &msg, MSG_NOSIGNAL) < 0) {
      LogError("cannot hand the listeners over; still serving", {{"error", Errno("sendmsg")}});
      ::close(conn);
      for (int fd : {kept.http, kept.mqtt})
        if (fd >= 0) ::close(fd);
      taking_over_.store(false);
      return;  // a failed handover leaves this process serving (without upgrades)
    }
    LogInfo("handing over to a new process: draining");
    const auto t0 = std::chrono::steady_clock::now();
    drain_();
    WriteAll(conn, kReleased);
    LogInfo("handed over", {{"drain_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::steady_clock::now() - t0)
                                             .count()}});
    if (confirms) {
      // Until the new process serves, or goes away (no timeout: while it
      // lives it holds the sockets, and two processes must not open the store).
      std::string verdict;
      while (verdict.find('\n') == std::string::npos) {
        const size_t before = verdict.size();
        if (!ReadLine(conn, &verdict, 60000)) continue;  // still starting
        if (verdict.size() == before) break;             // closed
      }
      ::close(conn);
      if (!verdict.starts_with(kServing)) TakeBack(kept);  // does not return
      for (int fd : {kept.http, kept.mqtt})
        if (fd >= 0) ::close(fd);
      LogInfo("the new process serves: exiting");
    } else {
      ::close(conn);
    }
    done_();
    return;
  }
}

void Handover::TakeBack(Listeners kept) {
  LogError("the new process went away before serving: taking the listeners back");
  std::string inherited;
  for (auto [name, fd] : {std::pair<const char*, int>{"http", kept.http}, {"mqtt", kept.mqtt}}) {
    if (fd < 0) continue;
    ::fcntl(fd, F_SETFD, 0);  // kept across exec
    if (!inherited.empty()) inherited += ",";
    inherited += std::string(name) + "=" + std::to_string(fd);
  }
  ::setenv(kInheritedEnv, inherited.c_str(), 1);
  // The same arguments, from the kernel's copy (NUL-separated).
  std::vector<std::string> args;
  if (FILE* f = std::fopen("/proc/self/cmdline", "rb")) {
    std::string arg;
    for (int c; (c = std::fgetc(f)) != EOF;) {
      if (c == 0) {
        args.push_back(std::move(arg));
        arg.clear();
      } else {
        arg.push_back(static_cast<char>(c));
      }
    }
    std::fclose(f);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // /proc/self/exe is this process's binary even if the file was replaced.
  if (!args.empty()) ::execv("/proc/self/exe", argv.data());
  LogError("cannot execute persona again: exiting", {{"error", Errno("execv")}});
  std::_Exit(1);
}

}  // namespace persona::app
