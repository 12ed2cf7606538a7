// Zero-downtime upgrade (SPEC §13): a second `persona serve` on the same
// data directory takes the listening sockets over from the running one.
//
// The running process listens on <data_dir>/upgrade.sock (a Unix socket).
// A new process connects and asks to take over; the old one passes its
// listening sockets (SCM_RIGHTS, as HAProxy and nginx do: the kernel's
// accept queue lives on, where closing a SO_REUSEPORT listener would drop
// it), stops accepting, finishes its in-flight work, closes its connections,
// closes the store, says "released" and exits 0. The new process then opens
// the store and accepts on the same sockets; connections that arrive
// meanwhile wait in the accept queue. <data_dir>/upgrade.lock (flock) is
// held by a process from start until it serves, so a second upgrade started
// during one is refused.
//
// Written against POSIX directly: Asio has no descriptor passing.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "core/status.h"

namespace persona::app {

// Listening sockets handed from one process to the next; -1 for none.
struct Listeners {
  int http = -1;
  int mqtt = -1;
};

// Holds <data_dir>/upgrade.lock while this process starts up.
class StartLock {
 public:
  // FailedPrecondition if another process holds it (starting or upgrading).
  static StatusOr<std::unique_ptr<StartLock>> Acquire(const std::string& data_dir);
  ~StartLock();

 private:
  explicit StartLock(int fd) : fd_(fd) {}
  int fd_;
};

// The new process's side. If a server answers on the data directory's
// upgrade socket, asks it to hand over and returns its listeners once it has
// released the store (or died), waiting at most `timeout_ms`; nullopt if no
// server runs there (a stale socket file is removed). Unavailable if the
// running server did not answer or release in time.
StatusOr<std::optional<Listeners>> TakeOver(const std::string& data_dir, int timeout_ms);

// The running process's side: answers one takeover on <data_dir>/upgrade.sock
// from a thread of its own.
class Handover {
 public:
  // `listeners` are passed to the taker. `drain` runs on the handover thread
  // after they are sent: it must stop this process's serving and close the
  // store; then the taker is told "released" and `done` runs (it should end
  // the process, exit 0).
  static StatusOr<std::unique_ptr<Handover>> Start(const std::string& data_dir, Listeners listeners,
                                                   std::function<void()> drain,
                                                   std::function<void()> done);
  // Stops answering (a normal shutdown) and removes the socket file, unless
  // a takeover is under way.
  ~Handover();

  // True once a takeover began: a shutdown signal then leaves it to finish.
  bool taking_over() const { return taking_over_.load(); }

 private:
  Handover() = default;
  void Loop();

  std::string path_;
  int listen_fd_ = -1;
  Listeners listeners_;
  std::function<void()> drain_;
  std::function<void()> done_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> taking_over_{false};
  std::thread thread_;
};

}  // namespace persona::app
