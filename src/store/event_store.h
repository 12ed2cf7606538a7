// EventStore: durable, ordered storage of session events.
//
// Each session has a gapless sequence of events (seq 1, 2, 3 …), a small
// metadata record and, from time to time, a snapshot of the projection so
// that loading never replays more than a bounded number of events. Appends
// are atomic (all events of one request or none) and checked against the
// expected version; implementations group-commit concurrent appends so many
// requests share one fsync. All methods are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "model/event.h"

namespace persona::store {

// AI usage: calls, tokens and cost, summed (per session in its metadata,
// per user in a separate record).
struct Usage {
  uint64_t calls = 0;
  uint64_t tokens_in = 0;
  uint64_t tokens_out = 0;
  double cost_usd = 0;
  // Of the above, what cheap-tier models answered (SPEC §12); the rest was
  // the primary tier.
  uint64_t cheap_calls = 0;
  uint64_t cheap_tokens_in = 0;
  uint64_t cheap_tokens_out = 0;
  double cheap_cost_usd = 0;
  // Steps answered without a model call: by the intent gate, by the
  // response cache.
  uint64_t avoided_gate = 0;
  uint64_t avoided_cache = 0;
  void Add(const Usage& o) {
    calls += o.calls;
    tokens_in += o.tokens_in;
    tokens_out += o.tokens_out;
    cost_usd += o.cost_usd;
    cheap_calls += o.cheap_calls;
    cheap_tokens_in += o.cheap_tokens_in;
    cheap_tokens_out += o.cheap_tokens_out;
    cheap_cost_usd += o.cheap_cost_usd;
    avoided_gate += o.avoided_gate;
    avoided_cache += o.avoided_cache;
  }
  bool empty() const { return calls == 0 && avoided_gate == 0 && avoided_cache == 0; }
};
json::object UsageToJson(const Usage& u);
Usage UsageFromJson(const json::value& v);

struct SessionMeta {
  std::string session_id;
  std::string user_id;
  std::string schema;
  int64_t created_at_ms = 0;
  json::object metadata;       // client-supplied, opaque
  uint64_t version = 0;        // seq of the last event
  uint64_t message_count = 0;  // message.user + message.assistant events
  Usage usage;                 // AI calls that answered this session's steps
};

json::object SessionMetaToJson(const SessionMeta& m);
StatusOr<SessionMeta> SessionMetaFromJson(const json::value& v);

// What a read needs to know of a session before loading it: its version
// (for cache validation) and its owner (for authorization).
struct SessionHead {
  uint64_t version = 0;
  std::string user_id;
};

struct Snapshot {
  uint64_t seq = 0;    // the state includes every event up to and including seq
  json::object state;  // opaque to the store (the engine's projection)
};

// A snapshot as the stores keep it: {"seq", "state"}. DataLoss if corrupt.
std::string SnapshotToJson(const Snapshot& s);
StatusOr<Snapshot> SnapshotFromJson(std::string_view text);

struct LoadedSession {
  SessionMeta meta;
  std::optional<Snapshot> snapshot;
  std::vector<model::Event> tail;  // events after the snapshot (or all), in seq order
};

// A request accepted in async write mode and not yet applied.
//
// On a store that one process opens (RocksDB) the engine numbers entries and
// `seq` is that number. On a shared store (PostgreSQL) the database numbers
// them as they are written, so the order is the order of acceptance across
// every process, and the engine's number is ignored: entries are told apart
// by `request_id`, which is unique everywhere.
struct IntakeEntry {
  uint64_t seq = 0;
  std::string payload;     // opaque to the store (the engine's request JSON)
  std::string session_id;  // the session the request writes to
  std::string request_id;  // unique across processes
};

// The refusal of an append whose intake entry another process took over
// (ClaimIntake): that process applies it, this one must drop it.
Status IntakeTakenError();
bool IsIntakeTaken(const Status& st);

struct AppendRequest {
  std::string session_id;
  // The session's version before this append; 0 creates the session. A
  // mismatch fails the append with Aborted and writes nothing.
  uint64_t expected_version = 0;
  SessionMeta meta;                  // stored as the new metadata (meta.version = last seq)
  std::vector<model::Event> events;  // seqs expected_version+1, +2, …
  // Optional: each event as model::EventToJsonString made it, one per event,
  // when the caller already serialised them (the engine does, once, for the
  // store and the bus). Stores store these bytes instead of serialising again.
  std::vector<std::shared_ptr<const std::string>> event_json;
  std::optional<Snapshot> snapshot;
  // Idempotency record, written atomically with the events.
  struct Idempotency {
    std::string scope;     // the session id, or "_" for requests that create one
    std::string key;       // the client's Idempotency-Key (with the route)
    std::string response;  // returned verbatim to retries
  };
  std::optional<Idempotency> idempotency;
  // Async intake bookkeeping, written in the same batch (see IntakeEntry):
  // `intake_add` stores a newly accepted request and `request_status` its
  // status record; `intake_done` deletes an applied (or failed) request's
  // entry, and `request_status` holds its final status. With an empty
  // session_id the request touches no session (no version check, no meta).
  //
  // On a shared store the entry must still be this process's (see
  // ClaimIntake): if another process took it over, the append writes nothing
  // and fails with IntakeTakenError(). And a session's entries are applied
  // in seq order: while an older entry of the same session is still in the
  // intake (owned by another process), the append fails with Aborted and is
  // retried later.
  std::optional<IntakeEntry> intake_add;
  struct IntakeDone {
    uint64_t seq = 0;        // the entry's seq (single-process stores)
    std::string request_id;  // the entry's request id (shared stores)
  };
  std::optional<IntakeDone> intake_done;
  struct RequestStatus {
    std::string session_id;  // erasing the session erases its request statuses
    std::string request_id;
    std::string record;  // opaque to the store (the engine's status JSON)
  };
  std::optional<RequestStatus> request_status;
  // Added to the user's usage total in the same batch (a merge: concurrent
  // steps of one user's sessions never lose each other's additions).
  struct UserUsage {
    std::string user_id;
    Usage delta;
  };
  std::optional<UserUsage> user_usage;
  // Erase the session instead: every key of the session is deleted
  // (events, meta, snapshot, its idempotency records and request
  // statuses).
  bool erase = false;
};

class EventStore {
 public:
  using Done = std::function<void(Status)>;
  virtual ~EventStore() = default;

  // Queues `req` for the next group commit. `done` runs exactly once, on the
  // store's commit thread (or on the caller's thread for an immediate
  // refusal), after the append is durable or has failed. Errors: Aborted
  // (version conflict), ResourceExhausted (commit queue full), Unavailable
  // (storage failing, e.g. disk full), Internal.
  virtual void Append(AppendRequest req, Done done) = 0;

  // NotFound if the session does not exist (or was erased).
  virtual StatusOr<LoadedSession> Load(std::string_view session_id) = 0;

  // Up to `limit` events with seq > after, oldest first.
  virtual StatusOr<std::vector<model::Event>> ReadEvents(std::string_view session_id,
                                                         uint64_t after, size_t limit) = 0;
  // Up to `limit` events with seq < before whose type is in `types` (all
  // types if empty), newest first.
  virtual StatusOr<std::vector<model::Event>> ReadEventsBackward(
      std::string_view session_id, uint64_t before, size_t limit,
      const std::vector<std::string_view>& types) = 0;

  // The response stored under an idempotency key, if any and not expired.
  virtual StatusOr<std::optional<std::string>> GetIdempotent(std::string_view session_scope,
                                                             std::string_view key) = 0;

  // The session's version and owner without loading it; NotFound if it does
  // not exist.
  virtual StatusOr<SessionHead> Head(std::string_view session_id) = 0;
  StatusOr<uint64_t> SessionVersion(std::string_view session_id) {
    auto h = Head(session_id);
    if (!h.ok()) return h.status();
    return h->version;
  }
  // The versions of several sessions at once (sessions that do not exist
  // are left out). A shared store answers with one query.
  virtual StatusOr<std::unordered_map<std::string, uint64_t>> SessionVersions(
      const std::vector<std::string>& session_ids) {
    std::unordered_map<std::string, uint64_t> out;
    for (const auto& id : session_ids) {
      auto h = Head(id);
      if (h.ok()) {
        out.emplace(id, h->version);
      } else if (!absl::IsNotFound(h.status())) {
        return h.status();
      }
    }
    return out;
  }

  // True if several processes may open this store at once (each with its
  // own applier), false if one process owns it.
  virtual bool Shared() const { return false; }
  // Takes over intake entries that no running applier owns and returns them,
  // oldest first, at most `limit`: entries left by a previous run of this
  // process, and on a shared store entries of a process that stopped or
  // died (its lease ran out). They are this process's to apply from then on.
  // Entries this process accepts itself are its own from the start. Several
  // processes may claim at once (FOR UPDATE SKIP LOCKED): each entry goes to
  // one of them. On a single-process store the first calls return what the
  // previous run left, then nothing.
  virtual StatusOr<std::vector<IntakeEntry>> ClaimIntake(size_t limit) = 0;
  // The entry of a request still in the intake, whichever process accepted
  // it; nullopt if there is none.
  virtual StatusOr<std::optional<IntakeEntry>> FindIntake(std::string_view session_id,
                                                          std::string_view request_id) = 0;
  // The highest intake seq still stored (0 if none), so numbering continues.
  virtual StatusOr<uint64_t> LastIntakeSeq() = 0;
  // The status record of an async request, if any and not expired.
  virtual StatusOr<std::optional<std::string>> GetRequestStatus(std::string_view session_id,
                                                                std::string_view request_id) = 0;

  // A user's AI usage summed over all their sessions (erased sessions
  // included: usage is accounting, not conversation content).
  virtual StatusOr<Usage> UserUsage(std::string_view user_id) = 0;

  // The spending ledger of a shared store, for budgets that hold across
  // processes (a single-process store leaves it to the process: these answer
  // Unimplemented). ReserveBudget holds `amount_usd` of the user's budget
  // under `hold_id` if spent + held + amount stays within `limit_usd`, all
  // processes' holds counted, and answers whether it did. SettleBudget
  // releases the hold and adds `actual_usd` to what the user spent. A hold
  // of a process that died before settling counts as spent.
  virtual StatusOr<bool> ReserveBudget(std::string_view user_id, std::string_view hold_id,
                                       double amount_usd, double limit_usd) {
    return absl::UnimplementedError("this store keeps no shared budget ledger");
  }
  virtual Status SettleBudget(std::string_view hold_id, double actual_usd) {
    return absl::UnimplementedError("this store keeps no shared budget ledger");
  }

  // MQTT persistent sessions that follow a device to another process (a
  // shared store; a single-process store answers Unimplemented and the
  // broker's memory is all there is). Each record is the broker's own
  // description of one session (its subscriptions and, per persona events
  // topic, the last seq the device acknowledged), keyed by the session key.
  // SaveMqttSessions writes or (nullopt) deletes records this process owns;
  // a record another process took over is left alone. TakeMqttSession makes
  // this process the owner of a record another process (or an earlier run)
  // left and returns it; a record this process owns already (its broker
  // ended that session) or one past the session expiry is not returned.
  virtual Status SaveMqttSessions(
      const std::vector<std::pair<std::string, std::optional<std::string>>>& records) {
    return absl::UnimplementedError("this store keeps no MQTT sessions");
  }
  virtual StatusOr<std::optional<std::string>> TakeMqttSession(std::string_view key) {
    return absl::UnimplementedError("this store keeps no MQTT sessions");
  }

  // On a shared store: this process's number among the live ones (0 …
  // kHlcMaxNodes-1), which its hybrid clock puts in every stamp, and how far
  // its wall clock is ahead of the store's (negative: behind), as last
  // measured. 0 and 0 on a single-process store.
  virtual uint32_t NodeNumber() const { return 0; }
  virtual int64_t ClockOffsetMs() const { return 0; }

  // Calls `fn` for every session's metadata until it returns false.
  virtual Status ForEachSession(const std::function<bool(const SessionMeta&)>& fn) = 0;

  // Flushes and stops the commit thread after draining queued appends.
  virtual void Close() = 0;

  // OK while appends can succeed; the reason otherwise (e.g. the disk filled
  // and the store refuses writes until it is restarted).
  virtual Status Health() const { return absl::OkStatus(); }
};

}  // namespace persona::store
