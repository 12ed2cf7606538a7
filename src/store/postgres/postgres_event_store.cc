#include "store/postgres/postgres_event_store.h"

#include <libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <unordered_map>

#include "core/clock.h"
#include "core/ids.h"
#include "core/logging.h"

namespace persona::store {

// ---------------------------------------------------------------- libpq

namespace {

using Result = PostgresEventStore::Result;

// The SQLSTATE classes that mean "the database is not there right now":
// connection exceptions (08), resources (53: disk full, out of memory),
// operator intervention (57: shutdown, crash recovery).
bool Transient(std::string_view sqlstate) {
  return sqlstate.starts_with("08") || sqlstate.starts_with("53") || sqlstate.starts_with("57");
}

// libpq's messages span lines ("…\n\tThis probably means…"): one line for logs
// and problem details.
std::string OneLine(std::string_view m) {
  std::string out;
  for (char c : m) {
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// A PostgreSQL text array literal: {"a","b\"c"} (every element quoted).
std::string TextArray(const std::vector<std::string>& v) {
  std::string out = "{";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : v[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::string IntArray(const std::vector<int64_t>& v) {
  std::string out = "{";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(v[i]);
  }
  out += '}';
  return out;
}

// A double as text that reads back as the same double.
std::string ExactDecimal(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

std::string DoubleArray(const std::vector<double>& v) {
  std::string out = "{";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    out += ExactDecimal(v[i]);
  }
  out += '}';
  return out;
}

}  // namespace

void PostgresEventStore::ResultFree::operator()(pg_result* r) const { PQclear(r); }

// One libpq connection, used by one thread at a time.
class PostgresEventStore::Connection {
 public:
  static StatusOr<std::unique_ptr<Connection>> Connect(const PostgresOptions& o) {
    // Parameters beside the URL: a connect timeout, and errors in English
    // so that they can be logged and matched.
    const char* keys[] = {"dbname", "connect_timeout", "options", "application_name", nullptr};
    const std::string timeout = std::to_string(o.connect_timeout_s);
    const char* values[] = {o.url.c_str(), timeout.c_str(), "-c lc_messages=C", "persona", nullptr};
    PGconn* c = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
    if (c == nullptr) return absl::UnavailableError("PostgreSQL: out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
      const std::string msg = OneLine(PQerrorMessage(c));
      PQfinish(c);
      return absl::UnavailableError("cannot connect to PostgreSQL: " + msg);
    }
    // Server notices ("relation … already exists, skipping") are not errors.
    PQsetNoticeProcessor(
        c, [](void*, const char*) {}, nullptr);
    return std::unique_ptr<Connection>(new Connection(c));
  }
  ~Connection() { PQfinish(conn_); }

  bool ok() const { return PQstatus(conn_) == CONNECTION_OK; }

  // Runs a script of several statements without parameters.
  Status Script(const char* sql) {
    Result r(PQexec(conn_, sql));
    if (r && PQresultStatus(r.get()) == PGRES_COMMAND_OK) return absl::OkStatus();
    const std::string msg = OneLine(r ? PQresultErrorMessage(r.get()) : PQerrorMessage(conn_));
    if (!ok()) return absl::UnavailableError("PostgreSQL: " + msg);
    return absl::InternalError("PostgreSQL: " + msg);
  }

  // Runs `sql` with text parameters; the result of a statement that
  // succeeded, else a status: Unavailable for a lost connection or a
  // transient server state, AlreadyExists for a unique violation, Internal
  // otherwise (with the server's message).
  StatusOr<Result> Exec(const char* sql, const std::vector<std::string>& params = {}) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p.c_str());
    Result r(PQexecParams(conn_, sql, static_cast<int>(values.size()), nullptr, values.data(),
                          nullptr, nullptr, 0));
    const ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
    const std::string msg = OneLine(r ? PQresultErrorMessage(r.get()) : PQerrorMessage(conn_));
    const char* code = r ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
    const std::string sqlstate = code ? code : "";
    if (!ok() || Transient(sqlstate)) return absl::UnavailableError("PostgreSQL: " + msg);
    // 25006: the database was made read-only (an operator's answer to a
    // full disk): writes wait for it, as for a full disk on RocksDB.
    if (sqlstate == "25006")
      return absl::UnavailableError("PostgreSQL refuses writes (read-only): " + msg);
    if (sqlstate == "23505") return absl::AlreadyExistsError("PostgreSQL: " + msg);
    return absl::InternalError("PostgreSQL: " + msg);
  }

 private:
  explicit Connection(PGconn* c) : conn_(c) {}
  PGconn* conn_;
};

class PostgresEventStore::Lease {
 public:
  Lease(PostgresEventStore* store, std::unique_ptr<Connection> c)
      : store_(store), conn_(std::move(c)) {}
  Lease(Lease&&) = default;
  ~Lease() {
    if (!conn_) return;
    const bool healthy = conn_->ok();  // before the move below empties conn_
    store_->GiveBack(std::move(conn_), healthy);
  }
  Connection* operator->() { return conn_.get(); }

 private:
  PostgresEventStore* store_;
  std::unique_ptr<Connection> conn_;
};

// ---------------------------------------------------------------- schema

namespace {

constexpr int64_t kMigrationLock = 0x7065727330001;  // "pers" 0001: one migrator at a time

// Migration N brings the schema from version N-1 to N. Never edit one that
// has shipped; add the next.
const char* const kMigrations[] = {
    // 1
    "CREATE TABLE persona_sessions (session_id text PRIMARY KEY, user_id text NOT NULL, "
    "  version bigint NOT NULL, meta text NOT NULL);"
    "CREATE TABLE persona_events (session_id text NOT NULL, seq bigint NOT NULL, "
    "  type text NOT NULL, body text NOT NULL, PRIMARY KEY (session_id, seq));"
    "CREATE TABLE persona_snapshots (session_id text PRIMARY KEY, seq bigint NOT NULL, "
    "  state text NOT NULL);"
    "CREATE TABLE persona_idempotency (scope text NOT NULL, key text NOT NULL, "
    "  response text NOT NULL, created_at_ms bigint NOT NULL, PRIMARY KEY (scope, key));"
    "CREATE TABLE persona_usage (user_id text PRIMARY KEY, calls bigint NOT NULL, "
    "  tokens_in bigint NOT NULL, tokens_out bigint NOT NULL, cost_usd double precision NOT NULL);"
    "CREATE TABLE persona_intake (seq bigint PRIMARY KEY, payload text NOT NULL);"
    "CREATE TABLE persona_requests (session_id text NOT NULL, request_id text NOT NULL, "
    "  record text NOT NULL, created_at_ms bigint NOT NULL, PRIMARY KEY (session_id, request_id));",
    // 2: an intake that several processes share. The database numbers
    // entries (in the order they are written, across processes); each is
    // owned by the process that accepted or claimed it, alive while its row
    // in persona_nodes is.
    "ALTER TABLE persona_intake ADD COLUMN session_id text NOT NULL DEFAULT '', "
    "  ADD COLUMN request_id text NOT NULL DEFAULT '', ADD COLUMN owner text NOT NULL DEFAULT '';"
    "UPDATE persona_intake SET session_id = coalesce(payload::json->>'session_id', ''), "
    "  request_id = coalesce(payload::json->>'request_id', '');"
    "CREATE SEQUENCE persona_intake_seq OWNED BY persona_intake.seq;"
    "SELECT setval('persona_intake_seq', coalesce((SELECT max(seq) FROM persona_intake), 0) + 1, "
    "  false);"
    "ALTER TABLE persona_intake ALTER COLUMN seq SET DEFAULT nextval('persona_intake_seq');"
    "CREATE INDEX persona_intake_session ON persona_intake (session_id, seq);"
    "CREATE INDEX persona_intake_request ON persona_intake (request_id);"
    "CREATE INDEX persona_intake_owner ON persona_intake (owner, seq);"
    "CREATE TABLE persona_nodes (node_id text PRIMARY KEY, alive_until timestamptz NOT NULL);",
    // 3: what each node runs, so that a node with another schema set is refused.
    "ALTER TABLE persona_nodes ADD COLUMN fingerprint text NOT NULL DEFAULT '';",
    // 4: each node's number in HLC stamps, and the shared budget ledger. A
    // reservation locks the user's ledger row, so concurrent reservations of
    // one user (from any node) are checked one after the other.
    "ALTER TABLE persona_nodes ADD COLUMN number integer NOT NULL DEFAULT -1;"
    "CREATE TABLE persona_budget (user_id text PRIMARY KEY, spent_usd double precision NOT NULL);"
    "CREATE TABLE persona_budget_holds (hold_id text PRIMARY KEY, user_id text NOT NULL, "
    "  node_id text NOT NULL, amount_usd double precision NOT NULL);"
    "CREATE INDEX persona_budget_holds_user ON persona_budget_holds (user_id);"
    "CREATE INDEX persona_budget_holds_node ON persona_budget_holds (node_id);"
    "CREATE FUNCTION persona_budget_reserve(p_user text, p_hold text, p_node text, "
    "    p_amount double precision, p_limit double precision) RETURNS boolean "
    "LANGUAGE plpgsql AS $$ "
    "DECLARE spent double precision; held double precision; "
    "BEGIN "
    "  INSERT INTO persona_budget (user_id, spent_usd) VALUES (p_user, "
    "      coalesce((SELECT cost_usd FROM persona_usage WHERE user_id = p_user), 0)) "
    "    ON CONFLICT (user_id) DO NOTHING; "
    "  SELECT spent_usd INTO spent FROM persona_budget WHERE user_id = p_user FOR UPDATE; "
    "  SELECT coalesce(sum(amount_usd), 0) INTO held FROM persona_budget_holds "
    "    WHERE user_id = p_user; "
    "  IF spent + held + p_amount > p_limit THEN RETURN false; END IF; "
    "  INSERT INTO persona_budget_holds VALUES (p_hold, p_user, p_node, p_amount); "
    "  RETURN true; "
    "END $$;",
    // 5: persistent MQTT sessions, so that they follow a device that moves
    // to another node.
    "CREATE TABLE persona_mqtt_sessions (client_key text PRIMARY KEY, node_id text NOT NULL, "
    "  record text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());",
    // 6: usage by tier, and the calls the gate and the cache avoided (the
    // cost router's KPIs, SPEC §12).
    "ALTER TABLE persona_usage ADD COLUMN cheap_calls bigint NOT NULL DEFAULT 0, "
    "  ADD COLUMN cheap_tokens_in bigint NOT NULL DEFAULT 0, "
    "  ADD COLUMN cheap_tokens_out bigint NOT NULL DEFAULT 0, "
    "  ADD COLUMN cheap_cost_usd double precision NOT NULL DEFAULT 0, "
    "  ADD COLUMN avoided_gate bigint NOT NULL DEFAULT 0, "
    "  ADD COLUMN avoided_cache bigint NOT NULL DEFAULT 0;",
};
static_assert(std::size(kMigrations) == PostgresEventStore::kSchemaVersion);

Status Migrate(PostgresEventStore::Connection& c) {
  auto run = [&c](const char* sql, const std::vector<std::string>& p = {}) {
    return c.Exec(sql, p).status();
  };
  if (Status st = run("CREATE TABLE IF NOT EXISTS persona_schema (version integer NOT NULL)");
      !st.ok())
    return st;
  const std::string lock = std::to_string(kMigrationLock);
  if (Status st = run("SELECT pg_advisory_lock($1)", {lock}); !st.ok()) return st;
  auto applied = [&]() -> Status {
    auto r = c.Exec("SELECT coalesce(max(version), 0) FROM persona_schema");
    if (!r.ok()) return r.status();
    const int have = std::atoi(PQgetvalue(r->get(), 0, 0));
    if (have > PostgresEventStore::kSchemaVersion)
      return absl::FailedPreconditionError(
          "the database's persona schema is version " + std::to_string(have) +
          ", newer than this persona knows (" + std::to_string(PostgresEventStore::kSchemaVersion) +
          "): upgrade persona");
    for (int v = have + 1; v <= PostgresEventStore::kSchemaVersion; ++v) {
      if (Status st = run("BEGIN"); !st.ok()) return st;
      Status st = c.Script(kMigrations[v - 1]);
      if (st.ok())
        st = run("INSERT INTO persona_schema (version) VALUES ($1)", {std::to_string(v)});
      if (st.ok()) st = run("COMMIT");
      if (!st.ok()) {
        run("ROLLBACK").IgnoreError();
        return absl::Status(st.code(),
                            "migration " + std::to_string(v) + ": " + std::string(st.message()));
      }
      LogInfo("postgres schema migrated", {{"version", v}});
    }
    return absl::OkStatus();
  }();
  run("SELECT pg_advisory_unlock($1)", {lock}).IgnoreError();
  return applied;
}

}  // namespace

// ---------------------------------------------------------------- appends

struct PostgresEventStore::Pending {
  std::string session_id;  // "" for intake bookkeeping only
  uint64_t expected_version = 0;
  uint64_t new_version = 0;
  bool erase = false;
  std::string user_id;
  std::string meta;                                                              // SessionMeta JSON
  std::vector<std::pair<uint64_t, std::pair<std::string, std::string>>> events;  // seq, type, body
  std::optional<std::pair<uint64_t, std::string>> snapshot;
  std::optional<AppendRequest::Idempotency> idempotency;
  std::optional<IntakeEntry> intake_add;
  std::optional<AppendRequest::IntakeDone> intake_done;
  std::optional<AppendRequest::RequestStatus> request_status;
  std::optional<AppendRequest::UserUsage> usage;
  Done done;
};

namespace {

// The rows of the accepted appends of one batch (up to an erase), one
// multi-row statement per table. Later writes to the same row win, as they
// would have one after the other.
struct Rows {
  std::vector<std::string> ev_sid, ev_type, ev_body;
  std::vector<int64_t> ev_seq;
  std::map<std::string, std::pair<std::string, std::pair<int64_t, std::string>>> sessions;
  std::map<std::string, std::pair<int64_t, std::string>> snapshots;
  std::map<std::pair<std::string, std::string>, std::string> idem;
  std::map<std::string, Usage> usage;
  std::vector<std::string> intake_sid, intake_rid, intake_payload;
  std::map<std::string, size_t> intake_done;  // request id → the append's index
  std::map<std::pair<std::string, std::string>, std::string> requests;
  bool empty() const {
    return ev_seq.empty() && sessions.empty() && snapshots.empty() && idem.empty() &&
           usage.empty() && intake_sid.empty() && intake_done.empty() && requests.empty();
  }
};

void AddRows(const PostgresEventStore::Pending& p, size_t index, Rows* r) {
  if (!p.session_id.empty()) {
    for (const auto& [seq, tb] : p.events) {
      r->ev_sid.push_back(p.session_id);
      r->ev_seq.push_back(static_cast<int64_t>(seq));
      r->ev_type.push_back(tb.first);
      r->ev_body.push_back(tb.second);
    }
    r->sessions[p.session_id] = {p.user_id, {static_cast<int64_t>(p.new_version), p.meta}};
    if (p.snapshot)
      r->snapshots[p.session_id] = {static_cast<int64_t>(p.snapshot->first), p.snapshot->second};
  }
  if (p.idempotency) r->idem[{p.idempotency->scope, p.idempotency->key}] = p.idempotency->response;
  if (p.usage && !p.usage->delta.empty()) r->usage[p.usage->user_id].Add(p.usage->delta);
  if (p.intake_add) {
    r->intake_sid.push_back(p.intake_add->session_id);
    r->intake_rid.push_back(p.intake_add->request_id);
    r->intake_payload.push_back(p.intake_add->payload);
  }
  if (p.intake_done) r->intake_done[p.intake_done->request_id] = index;
  if (p.request_status)
    r->requests[{p.request_status->session_id, p.request_status->request_id}] =
        p.request_status->record;
}

}  // namespace

PostgresEventStore::PostgresEventStore(const PostgresOptions& options)
    : options_(options),
      clock_offset_gauge_(metrics::Default().GetGauge(
          "persona_clock_offset_ms",
          "How far this node's wall clock is ahead of the database server's (negative: behind)")),
      number_collisions_(metrics::Default().GetCounter(
          "persona_node_number_collisions_total",
          "Times another live node was found with this node's number (HLC tie-breaker)")),
      budget_errors_(metrics::Default().GetCounter(
          "persona_budget_ledger_errors_total",
          "Shared budget reservations or settlements that failed (a reservation that fails is "
          "refused)")) {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  node_id_ = std::string(host) + ":" + std::to_string(getpid()) + ":" + NewId();
}

StatusOr<std::unique_ptr<PostgresEventStore>> PostgresEventStore::Open(
    const PostgresOptions& options) {
  std::unique_ptr<PostgresEventStore> store(new PostgresEventStore(options));
  auto c = Connection::Connect(options);
  if (!c.ok()) return c.status();
  if (Status st = Migrate(**c); !st.ok()) return st;
  store->writer_ = std::move(*c);
  if (!options.node_fingerprint.empty()) {
    auto other = store->Query(
        "SELECT node_id, fingerprint FROM persona_nodes WHERE alive_until >= now() "
        "AND fingerprint <> '' AND fingerprint <> $1 LIMIT 1",
        {options.node_fingerprint});
    if (!other.ok()) return other.status();
    if (PQntuples(other->get()) > 0)
      return absl::FailedPreconditionError(
          "node " + std::string(PQgetvalue(other->get(), 0, 0)) + " serves this database with " +
          std::string(PQgetvalue(other->get(), 0, 1)) + ", this node has " +
          options.node_fingerprint + ": every node must run the same profile schemas");
  }
  // Alive from now on: what this process accepts into the intake is its own.
  if (Status st = store->TakeNodeNumber(); !st.ok()) return st;
  if (Status st = store->Heartbeat(); !st.ok()) return st;
  const int64_t offset = store->clock_offset_ms_.load();
  if (options.max_clock_skew_ms > 0 && std::abs(offset) > options.max_clock_skew_ms) {
    store->Query("DELETE FROM persona_nodes WHERE node_id = $1", {store->node_id_}).IgnoreError();
    return absl::FailedPreconditionError(
        "this machine's clock is " + std::to_string(std::abs(offset)) + " ms " +
        (offset > 0 ? "ahead of" : "behind") +
        " the database server's, more than store.max_clock_skew_ms (" +
        std::to_string(options.max_clock_skew_ms) +
        "): synchronise the clocks (NTP) before starting this node");
  }
  store->committer_ = std::thread([s = store.get()] { s->CommitLoop(); });
  store->keeper_ = std::thread([s = store.get()] { s->KeeperLoop(); });
  LogInfo("postgres store open", {{"node", store->node_id_},
                                  {"number", static_cast<int64_t>(store->node_number_)},
                                  {"clock_offset_ms", offset}});
  return store;
}

Status PostgresEventStore::TakeNodeNumber() {
  // On the writer connection, before the commit thread starts. The advisory
  // lock makes two nodes starting at once pick one after the other.
  Connection& c = *writer_;
  constexpr int64_t kNumberLock = 0x7065727330002;
  if (Status st = c.Exec("BEGIN").status(); !st.ok()) return st;
  auto picked = [&]() -> StatusOr<uint32_t> {
    if (auto r = c.Exec("SELECT pg_advisory_xact_lock($1)", {std::to_string(kNumberLock)}); !r.ok())
      return r.status();
    auto r = c.Exec(
        "SELECT n FROM generate_series(0, $1) n WHERE n NOT IN (SELECT number FROM "
        "persona_nodes WHERE alive_until >= now()) ORDER BY n LIMIT 1",
        {std::to_string(kHlcMaxNodes - 1)});
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) == 0)
      return absl::ResourceExhaustedError("this database already serves " +
                                          std::to_string(kHlcMaxNodes) +
                                          " live nodes, the most there can be");
    const uint32_t n = static_cast<uint32_t>(std::atoi(PQgetvalue(r->get(), 0, 0)));
    if (auto w = c.Exec("INSERT INTO persona_nodes (node_id, alive_until, fingerprint, number) "
                        "VALUES ($1, now() + $2 * interval '1 millisecond', $3, $4)",
                        {node_id_, std::to_string(options_.intake_lease_ms),
                         options_.node_fingerprint, std::to_string(n)});
        !w.ok())
      return w.status();
    return n;
  }();
  if (!picked.ok()) {
    c.Exec("ROLLBACK").IgnoreError();
    return picked.status();
  }
  if (Status st = c.Exec("COMMIT").status(); !st.ok()) return st;
  node_number_ = *picked;
  return absl::OkStatus();
}

Status PostgresEventStore::Heartbeat() {
  const auto now = options_.now_ms ? options_.now_ms : &NowMillis;
  const int64_t before = now();
  auto r = Query(
      "INSERT INTO persona_nodes (node_id, alive_until, fingerprint, number) "
      "VALUES ($1, now() + $2 * interval '1 millisecond', $3, $4) "
      "ON CONFLICT (node_id) DO UPDATE SET alive_until = excluded.alive_until "
      "RETURNING (extract(epoch from clock_timestamp()) * 1000)::bigint",
      {node_id_, std::to_string(options_.intake_lease_ms), options_.node_fingerprint,
       std::to_string(node_number_)});
  if (!r.ok()) return r.status();
  const int64_t after = now();
  // The server read its clock somewhere within the round trip: its middle is
  // the best guess, wrong by at most half the round trip.
  const int64_t server = std::atoll(PQgetvalue(r->get(), 0, 0));
  const int64_t offset = (before + after) / 2 - server;
  clock_offset_ms_.store(offset);
  clock_offset_gauge_->Set(offset);
  return absl::OkStatus();
}

void PostgresEventStore::KeeperLoop() {
  const auto every = std::chrono::milliseconds(std::max<int64_t>(options_.intake_lease_ms / 5, 1));
  auto last_cleanup = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> l(mu_);
  while (!keeper_cv_.wait_for(l, every, [&] { return stopping_; })) {
    l.unlock();
    if (Status st = Heartbeat(); !st.ok()) {
      LogWarn("postgres heartbeat failed", {{"error", std::string(st.message())}});
    } else if (options_.max_clock_skew_ms > 0) {
      const int64_t offset = clock_offset_ms_.load();
      const bool over = std::abs(offset) > options_.max_clock_skew_ms;
      if (over != skew_reported_) {
        if (over)
          LogWarn(
              "this node's clock drifted from the database server's past "
              "store.max_clock_skew_ms; stamps stay ordered (the clock observes every stamp "
              "it reads) but event times are off: synchronise the clocks",
              {{"clock_offset_ms", offset}, {"limit_ms", options_.max_clock_skew_ms}});
        else
          LogInfo("this node's clock is back within store.max_clock_skew_ms",
                  {{"clock_offset_ms", offset}});
        skew_reported_ = over;
      }
    }
    // Another live node with this node's number (one of them stalled past
    // its lease and the other took the number meanwhile): their stamps may
    // tie, and ties fall back to the event id. Said once, and counted.
    if (auto dup = Query("SELECT count(*) FROM persona_nodes WHERE number = $1 AND node_id <> $2 "
                         "AND alive_until >= now()",
                         {std::to_string(node_number_), node_id_});
        dup.ok()) {
      const bool shared_number = std::atoi(PQgetvalue(dup->get(), 0, 0)) > 0;
      if (shared_number && !number_shared_reported_) {
        number_collisions_->Inc();
        LogWarn(
            "another live node has this node's number: ties between their stamps fall back "
            "to the event id until one of them restarts",
            {{"number", static_cast<int64_t>(node_number_)}, {"node", node_id_}});
      }
      number_shared_reported_ = shared_number;
    }
    // Holds of processes that died before settling them: the calls may have
    // been billed, so they count as spent.
    Query(
        "WITH d AS (DELETE FROM persona_budget_holds h WHERE NOT EXISTS (SELECT 1 FROM "
        "persona_nodes n WHERE n.node_id = h.node_id AND n.alive_until >= now()) "
        "RETURNING user_id, amount_usd), s AS (SELECT user_id, sum(amount_usd) AS a FROM d "
        "GROUP BY user_id) UPDATE persona_budget b SET spent_usd = b.spent_usd + s.a FROM s "
        "WHERE b.user_id = s.user_id")
        .IgnoreError();
    if (std::chrono::steady_clock::now() - last_cleanup > std::chrono::minutes(1)) {
      // Rows of processes gone long ago (their entries were claimed).
      Query("DELETE FROM persona_nodes WHERE alive_until < now() - interval '1 hour'")
          .IgnoreError();
      Query(
          "DELETE FROM persona_mqtt_sessions WHERE updated_at < now() - $1 * interval '1 "
          "millisecond'",
          {std::to_string(options_.mqtt_session_ttl_ms)})
          .IgnoreError();
      last_cleanup = std::chrono::steady_clock::now();
    }
    l.lock();
  }
}

PostgresEventStore::~PostgresEventStore() { Close(); }

void PostgresEventStore::Close() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  keeper_cv_.notify_all();
  if (committer_.joinable()) committer_.join();
  if (keeper_.joinable()) {
    keeper_.join();
    // Stopped: what this process leaves in the intake may be claimed at once.
    Query("DELETE FROM persona_nodes WHERE node_id = $1", {node_id_}).IgnoreError();
  }
  std::lock_guard<std::mutex> l(pool_mu_);
  idle_.clear();
}

Status PostgresEventStore::Health() const {
  std::lock_guard<std::mutex> l(mu_);
  return health_;
}

void PostgresEventStore::Append(AppendRequest req, Done done) {
  Pending p;
  p.session_id = std::move(req.session_id);
  p.expected_version = req.expected_version;
  p.erase = req.erase;
  if (!p.erase) {
    uint64_t seq = req.expected_version;
    if (!req.event_json.empty() && req.event_json.size() != req.events.size())
      return done(absl::InvalidArgumentError("append: event_json does not match events"));
    for (size_t i = 0; i < req.events.size(); ++i) {
      const model::Event& e = req.events[i];
      if (e.seq != seq + 1)
        return done(absl::InvalidArgumentError("append: events are not contiguous"));
      seq = e.seq;
      p.events.push_back(
          {e.seq,
           {e.type, req.event_json.empty() ? model::EventToJsonString(e) : *req.event_json[i]}});
    }
    if (p.session_id.empty() && !p.events.empty())
      return done(absl::InvalidArgumentError("append: events without a session"));
    p.new_version = seq;
    p.user_id = req.meta.user_id;
    if (!p.session_id.empty()) p.meta = json::serialize(SessionMetaToJson(req.meta));
    if (req.snapshot) p.snapshot = std::make_pair(req.snapshot->seq, SnapshotToJson(*req.snapshot));
    p.idempotency = std::move(req.idempotency);
    if (req.intake_done && req.intake_done->request_id.empty())
      return done(absl::InvalidArgumentError("append: intake_done without a request id"));
    p.intake_add = std::move(req.intake_add);
    p.intake_done = std::move(req.intake_done);
    p.request_status = std::move(req.request_status);
    p.usage = std::move(req.user_usage);
  }
  p.done = std::move(done);
  Status refused;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) {
      refused = absl::UnavailableError("store is shutting down");
    } else if (queue_.size() >= options_.queue_limit) {
      refused = absl::ResourceExhaustedError("commit queue is full");
    } else {
      queue_.push_back(std::move(p));
      metrics_.queue_depth->Set(static_cast<int64_t>(queue_.size()));
      cv_.notify_one();
      return;
    }
  }
  p.done(std::move(refused));
}

void PostgresEventStore::CommitLoop() {
  auto last_expiry = std::chrono::steady_clock::now();
  for (;;) {
    std::vector<Pending> batch;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait_for(l, std::chrono::seconds(10), [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        if (stopping_) return;
        l.unlock();
        if (std::chrono::steady_clock::now() - last_expiry > std::chrono::minutes(1)) {
          ExpireRecords();
          last_expiry = std::chrono::steady_clock::now();
        }
        continue;
      }
      const size_t n = std::min(queue_.size(), options_.max_batch);
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      metrics_.queue_depth->Set(static_cast<int64_t>(queue_.size()));
    }
    const auto start = std::chrono::steady_clock::now();
    std::vector<Status> results;
    Status st = CommitBatch(batch, &results);
    if (st.ok()) {
      metrics_.fsyncs->Inc();
      metrics_.batch_size->Observe(static_cast<double>(batch.size()));
      metrics_.commit_seconds->Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    } else {
      metrics_.commit_errors->Inc();
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      if (st.ok() && !health_.ok()) LogInfo("postgres store writable again");
      if (!st.ok() && health_.ok())
        LogWarn("postgres store refusing writes", {{"error", std::string(st.message())}});
      health_ = st.ok() ? absl::OkStatus() : st;
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      Status r = st.ok() ? results[i] : st;
      if (r.ok()) metrics_.appends->Inc();
      // A refused or unknown commit is retryable by the client: Retry-After.
      batch[i].done(absl::IsUnavailable(r) ? WithRetryAfter(r, 1) : r);
    }
  }
}

Status PostgresEventStore::CommitBatch(std::vector<Pending>& batch, std::vector<Status>* results,
                                       bool reconnected) {
  results->assign(batch.size(), absl::OkStatus());
  if (!writer_ || !writer_->ok()) {
    writer_.reset();
    auto c = Connection::Connect(options_);
    if (!c.ok()) return c.status();
    writer_ = std::move(*c);
  }
  Connection& c = *writer_;
  // A batch is tried again without the appends its statements refused (a
  // creation key already taken, an intake entry no longer this process's or
  // not next in its session); at most once per append.
  std::vector<char> refused(batch.size(), 0);
  for (size_t attempt = 0; attempt <= batch.size(); ++attempt) {
    bool retry = false;
    auto refuse = [&](size_t index, Status st) {
      (*results)[index] = std::move(st);
      refused[index] = 1;
      retry = true;
    };
    auto fail = [&](Status st) {
      c.Exec("ROLLBACK").IgnoreError();
      return st;
    };
    if (auto r = c.Exec("BEGIN"); !r.ok()) {
      // A connection that died while idle (a database restart): nothing of
      // this batch was sent, so it goes once more on a new connection.
      if (reconnected || attempt > 0 || c.ok()) return r.status();
      auto fresh = Connection::Connect(options_);
      if (!fresh.ok()) return fresh.status();
      writer_ = std::move(*fresh);
      return CommitBatch(batch, results, /*reconnected=*/true);
    }
    // Lock the batch's sessions and read their versions.
    std::set<std::string> sids;
    for (size_t i = 0; i < batch.size(); ++i)
      if (results->at(i).ok() && !batch[i].session_id.empty()) sids.insert(batch[i].session_id);
    std::unordered_map<std::string, uint64_t> versions;
    if (!sids.empty()) {
      auto r = c.Exec(
          "SELECT session_id, version FROM persona_sessions WHERE session_id = ANY($1::text[]) "
          "FOR UPDATE",
          {TextArray(std::vector<std::string>(sids.begin(), sids.end()))});
      if (!r.ok()) return fail(r.status());
      for (int row = 0; row < PQntuples(r->get()); ++row)
        versions[PQgetvalue(r->get(), row, 0)] =
            std::strtoull(PQgetvalue(r->get(), row, 1), nullptr, 10);
    }
    const int64_t now_ms = NowMillis();
    const std::string expired_before = std::to_string(now_ms - options_.idempotency_ttl_ms);
    std::map<std::pair<std::string, std::string>, size_t> creation_keys;  // → append index
    Rows rows;
    auto flush = [&]() -> Status {
      if (rows.empty()) return absl::OkStatus();
      if (!rows.ev_seq.empty()) {
        auto r = c.Exec(
            "INSERT INTO persona_events (session_id, seq, type, body) "
            "SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[])",
            {TextArray(rows.ev_sid), IntArray(rows.ev_seq), TextArray(rows.ev_type),
             TextArray(rows.ev_body)});
        if (!r.ok()) return r.status();
      }
      if (!rows.sessions.empty()) {
        std::vector<std::string> sid, user, meta;
        std::vector<int64_t> version;
        for (const auto& [k, v] : rows.sessions) {
          sid.push_back(k);
          user.push_back(v.first);
          version.push_back(v.second.first);
          meta.push_back(v.second.second);
        }
        auto r = c.Exec(
            "INSERT INTO persona_sessions (session_id, user_id, version, meta) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) "
            "ON CONFLICT (session_id) DO UPDATE SET user_id = excluded.user_id, "
            "version = excluded.version, meta = excluded.meta",
            {TextArray(sid), TextArray(user), IntArray(version), TextArray(meta)});
        if (!r.ok()) return r.status();
      }
      if (!rows.snapshots.empty()) {
        std::vector<std::string> sid, state;
        std::vector<int64_t> seq;
        for (const auto& [k, v] : rows.snapshots) {
          sid.push_back(k);
          seq.push_back(v.first);
          state.push_back(v.second);
        }
        auto r = c.Exec(
            "INSERT INTO persona_snapshots (session_id, seq, state) "
            "SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[]) "
            "ON CONFLICT (session_id) DO UPDATE SET seq = excluded.seq, state = excluded.state",
            {TextArray(sid), IntArray(seq), TextArray(state)});
        if (!r.ok()) return r.status();
      }
      if (!rows.idem.empty()) {
        std::vector<std::string> scope, key, response;
        std::vector<int64_t> at;
        for (const auto& [k, v] : rows.idem) {
          scope.push_back(k.first);
          key.push_back(k.second);
          response.push_back(v);
          at.push_back(now_ms);
        }
        // A session-creating key ("_" scope) that is still live belongs to
        // whoever wrote it first: it is not overwritten, and RETURNING shows
        // which keys this batch really wrote.
        auto r = c.Exec(
            "INSERT INTO persona_idempotency (scope, key, response, created_at_ms) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) "
            "ON CONFLICT (scope, key) DO UPDATE SET response = excluded.response, "
            "created_at_ms = excluded.created_at_ms "
            "WHERE persona_idempotency.scope <> '_' OR persona_idempotency.created_at_ms < $5 "
            "RETURNING scope, key",
            {TextArray(scope), TextArray(key), TextArray(response), IntArray(at), expired_before});
        if (!r.ok()) return r.status();
        std::set<std::pair<std::string, std::string>> written;
        for (int row = 0; row < PQntuples(r->get()); ++row)
          written.insert({PQgetvalue(r->get(), row, 0), PQgetvalue(r->get(), row, 1)});
        for (const auto& [k, index] : creation_keys)
          if (!written.count(k))
            refuse(index, absl::AlreadyExistsError(
                              "a session was already created for this Idempotency-Key"));
      }
      if (!rows.usage.empty()) {
        std::vector<std::string> user;
        std::vector<int64_t> calls, tin, tout, ccalls, ctin, ctout, agate, acache;
        std::vector<double> cost, ccost;
        for (const auto& [k, u] : rows.usage) {
          user.push_back(k);
          calls.push_back(static_cast<int64_t>(u.calls));
          tin.push_back(static_cast<int64_t>(u.tokens_in));
          tout.push_back(static_cast<int64_t>(u.tokens_out));
          cost.push_back(u.cost_usd);
          ccalls.push_back(static_cast<int64_t>(u.cheap_calls));
          ctin.push_back(static_cast<int64_t>(u.cheap_tokens_in));
          ctout.push_back(static_cast<int64_t>(u.cheap_tokens_out));
          ccost.push_back(u.cheap_cost_usd);
          agate.push_back(static_cast<int64_t>(u.avoided_gate));
          acache.push_back(static_cast<int64_t>(u.avoided_cache));
        }
        // An upsert that adds: concurrent writers never lose an addition.
        auto r = c.Exec(
            "INSERT INTO persona_usage (user_id, calls, tokens_in, tokens_out, cost_usd, "
            "cheap_calls, cheap_tokens_in, cheap_tokens_out, cheap_cost_usd, avoided_gate, "
            "avoided_cache) "
            "SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], "
            "$5::double precision[], $6::bigint[], $7::bigint[], $8::bigint[], "
            "$9::double precision[], $10::bigint[], $11::bigint[]) "
            "ON CONFLICT (user_id) DO UPDATE SET "
            "calls = persona_usage.calls + excluded.calls, "
            "tokens_in = persona_usage.tokens_in + excluded.tokens_in, "
            "tokens_out = persona_usage.tokens_out + excluded.tokens_out, "
            "cost_usd = persona_usage.cost_usd + excluded.cost_usd, "
            "cheap_calls = persona_usage.cheap_calls + excluded.cheap_calls, "
            "cheap_tokens_in = persona_usage.cheap_tokens_in + excluded.cheap_tokens_in, "
            "cheap_tokens_out = persona_usage.cheap_tokens_out + excluded.cheap_tokens_out, "
            "cheap_cost_usd = persona_usage.cheap_cost_usd + excluded.cheap_cost_usd, "
            "avoided_gate = persona_usage.avoided_gate + excluded.avoided_gate, "
            "avoided_cache = persona_usage.avoided_cache + excluded.avoided_cache",
            {TextArray(user), IntArray(calls), IntArray(tin), IntArray(tout), DoubleArray(cost),
             IntArray(ccalls), IntArray(ctin), IntArray(ctout), DoubleArray(ccost), IntArray(agate),
             IntArray(acache)});
        if (!r.ok()) return r.status();
      }
      if (!rows.intake_sid.empty()) {
        // The database numbers them (persona_intake_seq): across processes,
        // an entry accepted after another was acknowledged comes after it.
        auto r = c.Exec(
            "INSERT INTO persona_intake (session_id, request_id, payload, owner) "
            "SELECT s, r, p, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS u(s, r, p)",
            {TextArray(rows.intake_sid), TextArray(rows.intake_rid), TextArray(rows.intake_payload),
             node_id_});
        if (!r.ok()) return r.status();
      }
      if (!rows.intake_done.empty()) {
        std::vector<std::string> rids;
        for (const auto& [rid, index] : rows.intake_done) rids.push_back(rid);
        // Only entries this process still owns: one another process claimed
        // is that process's to apply (this append then writes nothing).
        auto r = c.Exec(
            "DELETE FROM persona_intake WHERE request_id = ANY($1::text[]) AND owner = $2 "
            "RETURNING request_id, session_id, seq",
            {TextArray(rids), node_id_});
        if (!r.ok()) return r.status();
        std::vector<std::string> del_rid, del_sid;
        std::vector<int64_t> del_seq;
        for (int row = 0; row < PQntuples(r->get()); ++row) {
          del_rid.push_back(PQgetvalue(r->get(), row, 0));
          del_sid.push_back(PQgetvalue(r->get(), row, 1));
          del_seq.push_back(std::strtoll(PQgetvalue(r->get(), row, 2), nullptr, 10));
        }
        std::set<std::string> deleted(del_rid.begin(), del_rid.end());
        for (const auto& [rid, index] : rows.intake_done)
          if (!deleted.count(rid)) refuse(index, IntakeTakenError());
        // A session's entries in seq order: one whose session still has an
        // older entry (another process's) waits for it.
        if (!del_rid.empty()) {
          auto older = c.Exec(
              "SELECT d.rid FROM unnest($1::text[], $2::text[], $3::bigint[]) AS d(rid, sid, seq) "
              "WHERE EXISTS (SELECT 1 FROM persona_intake i WHERE i.session_id = d.sid "
              "AND i.seq < d.seq)",
              {TextArray(del_rid), TextArray(del_sid), IntArray(del_seq)});
          if (!older.ok()) return older.status();
          for (int row = 0; row < PQntuples(older->get()); ++row)
            refuse(rows.intake_done.at(PQgetvalue(older->get(), row, 0)),
                   absl::AbortedError("an older request of this session waits in the intake"));
        }
      }
      if (!rows.requests.empty()) {
        std::vector<std::string> sid, rid, record;
        std::vector<int64_t> at;
        for (const auto& [k, v] : rows.requests) {
          sid.push_back(k.first);
          rid.push_back(k.second);
          record.push_back(v);
          at.push_back(now_ms);
        }
        auto r = c.Exec(
            "INSERT INTO persona_requests (session_id, request_id, record, created_at_ms) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) "
            "ON CONFLICT (session_id, request_id) DO UPDATE SET record = excluded.record, "
            "created_at_ms = excluded.created_at_ms",
            {TextArray(sid), TextArray(rid), TextArray(record), IntArray(at)});
        if (!r.ok()) return r.status();
      }
      rows = Rows();
      return absl::OkStatus();
    };

    for (size_t i = 0; i < batch.size(); ++i) {
      if (!results->at(i).ok()) continue;  // refused on an earlier attempt
      const Pending& p = batch[i];
      if (!p.session_id.empty()) {
        uint64_t& current = versions[p.session_id];  // 0 if the session has no row
        if (p.erase) {
          // Rows queued before the erase must be written before it.
          if (Status st = flush(); !st.ok()) return fail(st);
          auto r = c.Exec(
              "WITH e AS (DELETE FROM persona_events WHERE session_id = $1), "
              "s AS (DELETE FROM persona_snapshots WHERE session_id = $1), "
              "i AS (DELETE FROM persona_idempotency WHERE scope = $1), "
              "q AS (DELETE FROM persona_requests WHERE session_id = $1) "
              "DELETE FROM persona_sessions WHERE session_id = $1",
              {p.session_id});
          if (!r.ok()) return fail(r.status());
          current = 0;
          continue;
        }
        if (current != p.expected_version) {
          (*results)[i] = absl::AbortedError("version conflict: expected " +
                                             std::to_string(p.expected_version) + ", stored " +
                                             std::to_string(current));
          continue;
        }
        current = p.new_version;
      }
      if (p.idempotency && p.idempotency->scope == "_")
        creation_keys[{p.idempotency->scope, p.idempotency->key}] = i;
      AddRows(p, i, &rows);
    }
    if (Status st = flush(); !st.ok()) return fail(st);
    if (retry) {  // write the batch again without the refused appends
      c.Exec("ROLLBACK").IgnoreError();
      // Version refusals of this attempt are decided again next time.
      for (size_t i = 0; i < batch.size(); ++i)
        if (!refused[i]) (*results)[i] = absl::OkStatus();
      continue;
    }
    if (auto r = c.Exec("COMMIT"); !r.ok()) {
      // The outcome of a COMMIT whose answer was lost is unknown: nothing is
      // acknowledged (a retry with the same Idempotency-Key finds the truth).
      return r.status();
    }
    return absl::OkStatus();
  }
  return absl::InternalError("postgres: batch kept conflicting");
}

void PostgresEventStore::ExpireRecords() {
  const std::string cutoff = std::to_string(NowMillis() - options_.idempotency_ttl_ms);
  Query("DELETE FROM persona_idempotency WHERE created_at_ms < $1", {cutoff}).IgnoreError();
  Query("DELETE FROM persona_requests WHERE created_at_ms < $1", {cutoff}).IgnoreError();
}

// ---------------------------------------------------------------- reads

StatusOr<PostgresEventStore::Lease> PostgresEventStore::Borrow() {
  std::unique_lock<std::mutex> l(pool_mu_);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.pool_wait_ms);
  for (;;) {
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(c));
    }
    if (open_ < options_.pool_size) {
      ++open_;
      l.unlock();
      auto c = Connection::Connect(options_);
      if (!c.ok()) {
        std::lock_guard<std::mutex> relock(pool_mu_);
        --open_;
        pool_cv_.notify_one();
        return c.status();
      }
      return Lease(this, std::move(*c));
    }
    if (pool_cv_.wait_until(l, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= options_.pool_size)
      return absl::UnavailableError("PostgreSQL: no free connection in the pool");
  }
}

void PostgresEventStore::GiveBack(std::unique_ptr<Connection> c, bool healthy) {
  std::lock_guard<std::mutex> l(pool_mu_);
  if (healthy) {
    idle_.push_back(std::move(c));
  } else {
    --open_;  // a broken connection is closed; the next read opens a new one
  }
  pool_cv_.notify_one();
}

StatusOr<PostgresEventStore::Result> PostgresEventStore::Query(
    const char* sql, const std::vector<std::string>& params) {
  // A pooled connection may have died since it was last used (a database
  // restart): such a failure is tried once more on a fresh connection.
  for (int attempt = 0;; ++attempt) {
    auto lease = Borrow();
    if (!lease.ok()) return lease.status();
    auto r = (*lease)->Exec(sql, params);
    if (r.ok() || attempt > 0 || (*lease)->ok()) return r;
  }
}

namespace {

StatusOr<std::vector<model::Event>> EventsFrom(PGresult* r) {
  std::vector<model::Event> out;
  out.reserve(static_cast<size_t>(PQntuples(r)));
  for (int row = 0; row < PQntuples(r); ++row) {
    auto e = model::EventFromJsonString(
        std::string_view(PQgetvalue(r, row, 0), static_cast<size_t>(PQgetlength(r, row, 0))));
    if (!e.ok()) return absl::DataLossError("corrupt event: " + std::string(e.status().message()));
    out.push_back(std::move(*e));
  }
  return out;
}

std::string Str(PGresult* r, int row, int col) {
  return std::string(PQgetvalue(r, row, col), static_cast<size_t>(PQgetlength(r, row, col)));
}

}  // namespace

StatusOr<LoadedSession> PostgresEventStore::Load(std::string_view session_id) {
  const std::string sid(session_id);
  // One snapshot-consistent read of the three tables.
  auto r = Query(
      "SELECT s.meta, n.seq, n.state FROM persona_sessions s "
      "LEFT JOIN persona_snapshots n ON n.session_id = s.session_id WHERE s.session_id = $1",
      {sid});
  if (!r.ok()) return r.status();
  if (PQntuples(r->get()) == 0) return absl::NotFoundError("no such session");
  LoadedSession out;
  auto parsed = ParseJson(Str(r->get(), 0, 0));
  if (!parsed.ok()) return absl::DataLossError("session meta is corrupt");
  auto meta = SessionMetaFromJson(*parsed);
  if (!meta.ok()) return meta.status();
  out.meta = std::move(*meta);
  uint64_t after = 0;
  if (!PQgetisnull(r->get(), 0, 1)) {
    auto sn = SnapshotFromJson(Str(r->get(), 0, 2));
    if (!sn.ok()) return sn.status();
    after = sn->seq;
    out.snapshot = std::move(*sn);
  }
  // Events up to the version read above: a newer append's events (from
  // another writer, after that read) are not part of this state.
  auto ev = Query(
      "SELECT body FROM persona_events WHERE session_id = $1 AND seq > $2 AND seq <= $3 "
      "ORDER BY seq",
      {sid, std::to_string(after), std::to_string(out.meta.version)});
  if (!ev.ok()) return ev.status();
  auto tail = EventsFrom(ev->get());
  if (!tail.ok()) return tail.status();
  out.tail = std::move(*tail);
  const uint64_t last = out.tail.empty() ? after : out.tail.back().seq;
  if (last != out.meta.version) {
    return absl::DataLossError("session " + sid + ": events end at " + std::to_string(last) +
                               " but version is " + std::to_string(out.meta.version));
  }
  return out;
}

StatusOr<std::vector<model::Event>> PostgresEventStore::ReadEvents(std::string_view session_id,
                                                                   uint64_t after, size_t limit) {
  const std::string lim = limit >= static_cast<size_t>(INT64_MAX) ? "ALL" : std::to_string(limit);
  const std::string sql =
      "SELECT body FROM persona_events WHERE session_id = $1 AND seq > $2 "
      "ORDER BY seq LIMIT " +
      lim;
  auto r = Query(sql.c_str(), {std::string(session_id), std::to_string(after)});
  if (!r.ok()) return r.status();
  return EventsFrom(r->get());
}

StatusOr<std::vector<model::Event>> PostgresEventStore::ReadEventsBackward(
    std::string_view session_id, uint64_t before, size_t limit,
    const std::vector<std::string_view>& types) {
  std::vector<std::string> t(types.begin(), types.end());
  auto r = Query(
      "SELECT body FROM persona_events WHERE session_id = $1 AND seq < $2 "
      "AND (cardinality($3::text[]) = 0 OR type = ANY($3::text[])) ORDER BY seq DESC LIMIT $4",
      {std::string(session_id), std::to_string(before), TextArray(t),
       std::to_string(std::min<size_t>(limit, INT32_MAX))});
  if (!r.ok()) return r.status();
  return EventsFrom(r->get());
}

StatusOr<std::optional<std::string>> PostgresEventStore::GetIdempotent(
    std::string_view session_scope, std::string_view key) {
  auto r = Query(
      "SELECT response FROM persona_idempotency WHERE scope = $1 AND key = $2 "
      "AND created_at_ms >= $3",
      {std::string(session_scope), std::string(key),
       std::to_string(NowMillis() - options_.idempotency_ttl_ms)});
  if (!r.ok()) return r.status();
  if (PQntuples(r->get()) == 0) return std::optional<std::string>();
  return std::optional<std::string>(Str(r->get(), 0, 0));
}

StatusOr<SessionHead> PostgresEventStore::Head(std::string_view session_id) {
  auto r = Query("SELECT version, user_id FROM persona_sessions WHERE session_id = $1",
                 {std::string(session_id)});
  if (!r.ok()) return r.status();
  if (PQntuples(r->get()) == 0) return absl::NotFoundError("no such session");
  SessionHead h;
  h.version = std::strtoull(PQgetvalue(r->get(), 0, 0), nullptr, 10);
  h.user_id = Str(r->get(), 0, 1);
  return h;
}

namespace {
std::vector<IntakeEntry> IntakeFrom(PGresult* r) {  // seq, payload, session_id, request_id
  std::vector<IntakeEntry> out;
  for (int row = 0; row < PQntuples(r); ++row)
    out.push_back({std::strtoull(PQgetvalue(r, row, 0), nullptr, 10), Str(r, row, 1),
                   Str(r, row, 2), Str(r, row, 3)});
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
  return out;
}
}  // namespace

StatusOr<std::vector<IntakeEntry>> PostgresEventStore::ClaimIntake(size_t limit) {
  // Entries whose owner is not alive (it stopped, died, or was a previous
  // run of this process) become this process's. First the dead owners, then
  // their entries: the claim's condition must be on the entry's own columns,
  // because a row that another claimer just took is re-checked (READ
  // COMMITTED's EvalPlanQual) against its new version's columns only, not
  // against a join. SKIP LOCKED: processes claiming at once take different
  // entries; the owner check at apply time and the per-session order check
  // keep any split correct.
  auto dead = Query(
      "SELECT DISTINCT q.owner FROM persona_intake q WHERE q.owner <> $1 AND NOT EXISTS ("
      "  SELECT 1 FROM persona_nodes n WHERE n.node_id = q.owner AND n.alive_until >= now())",
      {node_id_});
  if (!dead.ok()) return dead.status();
  std::vector<std::string> owners;
  for (int row = 0; row < PQntuples(dead->get()); ++row) owners.push_back(Str(dead->get(), row, 0));
  if (owners.empty()) return std::vector<IntakeEntry>();
  auto r = Query(
      "WITH c AS (SELECT seq FROM persona_intake WHERE owner = ANY($2::text[]) "
      "  ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED) "
      "UPDATE persona_intake i SET owner = $1 FROM c "
      "WHERE i.seq = c.seq RETURNING i.seq, i.payload, i.session_id, i.request_id",
      {node_id_, TextArray(owners), std::to_string(std::min<size_t>(limit, INT32_MAX))});
  if (!r.ok()) return r.status();
  return IntakeFrom(r->get());
}

StatusOr<std::optional<IntakeEntry>> PostgresEventStore::FindIntake(std::string_view session_id,
                                                                    std::string_view request_id) {
  auto r = Query(
      "SELECT seq, payload, session_id, request_id FROM persona_intake "
      "WHERE request_id = $1 AND session_id = $2",
      {std::string(request_id), std::string(session_id)});
  if (!r.ok()) return r.status();
  auto v = IntakeFrom(r->get());
  if (v.empty()) return std::optional<IntakeEntry>();
  return std::optional<IntakeEntry>(std::move(v.front()));
}

StatusOr<uint64_t> PostgresEventStore::LastIntakeSeq() {
  auto r = Query("SELECT coalesce(max(seq), 0) FROM persona_intake");
  if (!r.ok()) return r.status();
  return std::strtoull(PQgetvalue(r->get(), 0, 0), nullptr, 10);
}

StatusOr<std::optional<std::string>> PostgresEventStore::GetRequestStatus(
    std::string_view session_id, std::string_view request_id) {
  auto r = Query("SELECT record FROM persona_requests WHERE session_id = $1 AND request_id = $2",
                 {std::string(session_id), std::string(request_id)});
  if (!r.ok()) return r.status();
  if (PQntuples(r->get()) == 0) return std::optional<std::string>();
  return std::optional<std::string>(Str(r->get(), 0, 0));
}

StatusOr<Usage> PostgresEventStore::UserUsage(std::string_view user_id) {
  auto r = Query(
      "SELECT calls, tokens_in, tokens_out, cost_usd, cheap_calls, cheap_tokens_in, "
      "cheap_tokens_out, cheap_cost_usd, avoided_gate, avoided_cache FROM persona_usage "
      "WHERE user_id = $1",
      {std::string(user_id)});
  if (!r.ok()) return r.status();
  Usage u;
  if (PQntuples(r->get()) == 0) return u;
  auto count = [&](int col) { return std::strtoull(PQgetvalue(r->get(), 0, col), nullptr, 10); };
  auto money = [&](int col) { return std::strtod(PQgetvalue(r->get(), 0, col), nullptr); };
  u.calls = count(0);
  u.tokens_in = count(1);
  u.tokens_out = count(2);
  u.cost_usd = money(3);
  u.cheap_calls = count(4);
  u.cheap_tokens_in = count(5);
  u.cheap_tokens_out = count(6);
  u.cheap_cost_usd = money(7);
  u.avoided_gate = count(8);
  u.avoided_cache = count(9);
  return u;
}

StatusOr<std::unordered_map<std::string, uint64_t>> PostgresEventStore::SessionVersions(
    const std::vector<std::string>& session_ids) {
  std::unordered_map<std::string, uint64_t> out;
  if (session_ids.empty()) return out;
  auto r =
      Query("SELECT session_id, version FROM persona_sessions WHERE session_id = ANY($1::text[])",
            {TextArray(session_ids)});
  if (!r.ok()) return r.status();
  for (int row = 0; row < PQntuples(r->get()); ++row)
    out.emplace(Str(r->get(), row, 0), std::strtoull(PQgetvalue(r->get(), row, 1), nullptr, 10));
  return out;
}

Status PostgresEventStore::SaveMqttSessions(
    const std::vector<std::pair<std::string, std::optional<std::string>>>& records) {
  std::vector<std::string> keys, values, gone;
  for (const auto& [key, record] : records) {
    if (record) {
      keys.push_back(key);
      values.push_back(*record);
    } else {
      gone.push_back(key);
    }
  }
  if (!keys.empty()) {
    // Only this node's records, or new ones: a session another node took
    // over is that node's now.
    auto r = Query(
        "INSERT INTO persona_mqtt_sessions (client_key, node_id, record) "
        "SELECT k, $3, v FROM unnest($1::text[], $2::text[]) AS u(k, v) "
        "ON CONFLICT (client_key) DO UPDATE SET record = excluded.record, updated_at = now() "
        "WHERE persona_mqtt_sessions.node_id = excluded.node_id",
        {TextArray(keys), TextArray(values), node_id_});
    if (!r.ok()) return r.status();
  }
  if (!gone.empty()) {
    auto r = Query(
        "DELETE FROM persona_mqtt_sessions WHERE client_key = ANY($1::text[]) "
        "AND node_id = $2",
        {TextArray(gone), node_id_});
    if (!r.ok()) return r.status();
  }
  return absl::OkStatus();
}

StatusOr<std::optional<std::string>> PostgresEventStore::TakeMqttSession(std::string_view key) {
  // A record this process owns describes a session its own broker ended
  // (expired, evicted, or taken over by a clean connection): not restored.
  // One untouched for the session expiry has expired.
  auto r = Query(
      "UPDATE persona_mqtt_sessions SET node_id = $2, updated_at = now() WHERE client_key = $1 "
      "AND node_id <> $2 AND updated_at >= now() - $3 * interval '1 millisecond' "
      "RETURNING record",
      {std::string(key), node_id_, std::to_string(options_.mqtt_session_ttl_ms)});
  if (!r.ok()) return r.status();
  if (PQntuples(r->get()) == 0) return std::optional<std::string>();
  return std::optional<std::string>(Str(r->get(), 0, 0));
}

StatusOr<bool> PostgresEventStore::ReserveBudget(std::string_view user_id, std::string_view hold_id,
                                                 double amount_usd, double limit_usd) {
  auto r = Query("SELECT persona_budget_reserve($1, $2, $3, $4, $5)",
                 {std::string(user_id), std::string(hold_id), node_id_, ExactDecimal(amount_usd),
                  ExactDecimal(limit_usd)});
  if (!r.ok()) {
    budget_errors_->Inc();
    return r.status();
  }
  return PQgetvalue(r->get(), 0, 0)[0] == 't';
}

Status PostgresEventStore::SettleBudget(std::string_view hold_id, double actual_usd) {
  // If the hold is gone (this process was taken for dead and its holds
  // counted as spent), there is nothing left to settle.
  auto r = Query(
      "WITH d AS (DELETE FROM persona_budget_holds WHERE hold_id = $1 RETURNING user_id) "
      "UPDATE persona_budget b SET spent_usd = b.spent_usd + $2 FROM d WHERE b.user_id = d.user_id",
      {std::string(hold_id), ExactDecimal(actual_usd)});
  if (!r.ok()) budget_errors_->Inc();
  return r.status();
}

Status PostgresEventStore::ForEachSession(const std::function<bool(const SessionMeta&)>& fn) {
  std::string last;
  for (;;) {
    std::vector<std::string> metas;
    {
      auto r = Query(
          "SELECT session_id, meta FROM persona_sessions WHERE session_id > $1 "
          "ORDER BY session_id LIMIT 1000",
          {last});
      if (!r.ok()) return r.status();
      for (int row = 0; row < PQntuples(r->get()); ++row) {
        last = Str(r->get(), row, 0);
        metas.push_back(Str(r->get(), row, 1));
      }
    }
    if (metas.empty()) return absl::OkStatus();
    for (const auto& m : metas) {
      auto parsed = ParseJson(m);
      if (!parsed.ok()) return absl::DataLossError("session meta is corrupt");
      auto meta = SessionMetaFromJson(*parsed);
      if (!meta.ok()) return meta.status();
      if (!fn(*meta)) return absl::OkStatus();
    }
  }
}

}  // namespace persona::store
