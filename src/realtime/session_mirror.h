// SessionMirror: writes the broker's persistent MQTT sessions to a shared
// store, so that a device whose node dies (or that moves) finds its session
// on the next node it connects to (PersonaBridge::RestoreSession).
//
// The broker notes which sessions changed (a subscription, or a cursor that
// moved because the device acknowledged an event); every `every_ms` this
// thread describes each changed session and writes them in one batch
// (SaveMqttSessions), deleting the records of sessions that ended. Writing
// at most once per interval keeps the cost per session, not per message: a
// node killed between two writes loses at most `every_ms` of cursor
// progress, and the events in it are replayed again (QoS 1 is
// at-least-once: the device sees them twice, never zero times).
//
// Bounded: at most `max_dirty` sessions wait for a write (more are counted
// as dropped and written at their next change).
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>

#include "absl/base/thread_annotations.h"
#include "metrics/metrics.h"
#include "realtime/broker.h"
#include "store/event_store.h"

namespace persona::realtime {

class SessionMirror final : public MirrorSink {
 public:
  // `broker` and `store` must outlive this; Stop() before they go.
  SessionMirror(Broker* broker, store::EventStore* store, int every_ms = 1000,
                size_t max_dirty = 100000);
  ~SessionMirror() override;

  void Changed(const std::string& key) override;
  // Writes what is pending and stops the thread.
  void Stop();

 private:
  void Loop();
  void Flush();

  Broker* broker_;
  store::EventStore* store_;
  const int every_ms_;
  const size_t max_dirty_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_set<std::string> dirty_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
  metrics::Counter* written_;
  metrics::Counter* errors_;
  metrics::Counter* dropped_;
};

}  // namespace persona::realtime
