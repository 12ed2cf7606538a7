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
// The new process says "SERVING" on the same Unix connection once it serves;
// only then does the old one exit. If the connection closes first (the new
// process could not open the store, failed to start, or crashed), the old
// process takes its listeners back: it kept a duplicate of each, and it
// executes its own binary again (/proc/self/exe, the same arguments) with
// them inherited (PERSONA_INHERITED_LISTENERS), so the sockets and their
// accept queues never close. A taker of an earlier version, which does not
// confirm, is recognised by its request and handed over to as before.
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
  // The taker's connection to the process it took over from: ConfirmServing
  // tells it to exit. -1 when not taken over (or confirmed).
  int confirm = -1;
};

// The taker's side, once it serves: the old process may exit now.
void ConfirmServing(Listeners* listeners);

// The listeners a process that takes them back passes to itself across
// exec (PERSONA_INHERITED_LISTENERS), checked to be listening sockets; the
// variable is removed. nullopt when it is not set (or names no listener).
std::optional<Listeners> InheritedListeners();

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
  // store; then the taker is told "released", and once it says it serves
  // `done` runs (it should end the process, exit 0). If the taker goes away
  // without saying so, this process executes itself again on the listeners
  // (see above) and `done` does not run.
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
  // Executes this binary again on `kept` (never returns).
  [[noreturn]] static void TakeBack(Listeners kept);

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
