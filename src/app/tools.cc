// `persona replay`, `persona export` and `persona import`.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <set>
#include <sstream>

#include "ai/gate/intent_gate.h"
#include "app/commands.h"
#include "core/ids.h"
#include "engine/session_state.h"
#include "model/schema.h"
#include "store/postgres/postgres_event_store.h"
#include "store/rocksdb/rocksdb_event_store.h"

namespace persona::app {
namespace {

struct Opened {
  config::Config cfg;
  std::unique_ptr<store::EventStore> store;
  std::map<std::string, std::shared_ptr<const model::Schema>> schemas;
};

StatusOr<Opened> Open(const ServeFlags& flags, bool read_only) {
  Opened o;
  auto cfg = LoadConfig(flags);
  if (!cfg.ok()) return cfg.status();
  o.cfg = *cfg;
  auto schemas = model::LoadSchemas(o.cfg.schemas_dir);
  if (!schemas.ok()) return schemas.status();
  o.schemas = *schemas;
  auto store = OpenStore(o.cfg, read_only);
  if (!store.ok()) return store.status();
  o.store = std::move(*store);
  return o;
}

int Fail(std::string_view what, const Status& st) {
  std::cerr << "persona " << what << ": " << st.message() << "\n";
  return 2;
}

}  // namespace

// Three checks, each of which can fail on a damaged store:
//   - the log: seqs 1 … N with no gap, N the session's version;
//   - the snapshot (if any, at seq k): its state equals a projection of
//     events 1 … k computed from nothing;
//   - the projection served (the snapshot plus the events after it) equals
//     a projection of every event from seq 1.
// (Before, only the last was compared, and for a session without a snapshot
// both sides were the same computation.)
int Replay(const ServeFlags& flags, const std::string& session_id) {
  auto o = Open(flags, true);
  if (!o.ok()) return Fail("replay", o.status());
  auto loaded = o->store->Load(session_id);
  if (!loaded.ok()) return Fail("replay", loaded.status());
  auto schema_it = o->schemas.find(loaded->meta.schema);
  std::shared_ptr<const model::Schema> schema =
      schema_it == o->schemas.end() ? nullptr : schema_it->second;
  auto events = o->store->ReadEvents(session_id, 0, SIZE_MAX);
  if (!events.ok()) return Fail("replay", events.status());
  auto render = [&](const engine::SessionState& s) {
    json::object out;
    out["profile"] = s.profile.ValuesJson(schema.get());
    out["meta"] = s.profile.MetaJson();
    return json::serialize(out);
  };
  auto from_events = [&](size_t count) -> StatusOr<std::string> {
    store::LoadedSession part;
    part.meta = loaded->meta;
    part.tail.assign(events->begin(), events->begin() + std::min(count, events->size()));
    auto p = engine::Project(part, schema, 0);
    if (!p.ok()) return p.status();
    return render(*p);
  };
  json::object report;
  report["session_id"] = session_id;
  report["events"] = events->size();
  report["version"] = loaded->meta.version;
  report["snapshot_seq"] = loaded->snapshot ? loaded->snapshot->seq : 0;
  json::object checks;
  // The log.
  bool log_ok = true;
  for (size_t i = 0; i < events->size(); ++i) {
    if ((*events)[i].seq != i + 1) {
      log_ok = false;
      report["first_gap_at_seq"] = i + 1;
      break;
    }
  }
  if (log_ok && events->size() != loaded->meta.version) log_ok = false;
  checks["log"] = log_ok;
  // The snapshot.
  bool snapshot_ok = true;
  if (loaded->snapshot) {
    store::LoadedSession just;
    just.meta = loaded->meta;
    just.snapshot = loaded->snapshot;
    auto at_snapshot = engine::Project(just, schema, 0);
    auto replayed_to = from_events(loaded->snapshot->seq);
    snapshot_ok = at_snapshot.ok() && replayed_to.ok() && render(*at_snapshot) == *replayed_to;
    checks["snapshot"] = snapshot_ok;
    if (!snapshot_ok && at_snapshot.ok()) report["snapshot"] = json::parse(render(*at_snapshot));
  } else {
    checks["snapshot"] = nullptr;  // none yet (one is written every store.snapshot_every events)
  }
  // The projection served against every event from seq 1.
  auto stored = engine::Project(*loaded, schema, 0);
  if (!stored.ok()) return Fail("replay", stored.status());
  auto replayed = from_events(events->size());
  if (!replayed.ok()) return Fail("replay", replayed.status());
  const std::string served = render(*stored);
  const bool projection_ok = served == *replayed;
  checks["projection"] = projection_ok;
  const bool equal = log_ok && snapshot_ok && projection_ok;
  report["checks"] = std::move(checks);
  report["equal"] = equal;
  report["replayed"] = json::parse(*replayed);
  if (!projection_ok) report["stored"] = json::parse(served);
  std::cout << json::serialize(report) << "\n";
  return equal ? 0 : 1;
}

int Export(const ServeFlags& flags, const std::string& out_file) {
  auto o = Open(flags, true);
  if (!o.ok()) return Fail("export", o.status());
  std::ofstream file;
  if (out_file != "-") {
    file.open(out_file);
    if (!file) return Fail("export", absl::UnavailableError("cannot write " + out_file));
  }
  std::ostream& out = out_file == "-" ? std::cout : file;
  Status inner = absl::OkStatus();
  size_t sessions = 0, events = 0;
  Status st = o->store->ForEachSession([&](const store::SessionMeta& m) {
    json::object line;
    line["kind"] = "session";
    line["session"] = store::SessionMetaToJson(m);
    out << json::serialize(line) << "\n";
    auto evs = o->store->ReadEvents(m.session_id, 0, SIZE_MAX);
    if (!evs.ok()) {
      inner = evs.status();
      return false;
    }
    for (const auto& e : *evs) {
      json::object el;
      el["kind"] = "event";
      el["session_id"] = m.session_id;
      el["event"] = model::EventToJson(e);
      out << json::serialize(el) << "\n";
    }
    ++sessions;
    events += evs->size();
    return true;
  });
  if (!st.ok()) return Fail("export", st);
  if (!inner.ok()) return Fail("export", inner);
  std::cerr << "exported " << sessions << " sessions, " << events << " events\n";
  return 0;
}

int Import(const ServeFlags& flags, const std::string& in_file) {
  auto o = Open(flags, false);
  if (!o.ok()) return Fail("import", o.status());
  std::ifstream file;
  if (in_file != "-") {
    file.open(in_file);
    if (!file) return Fail("import", absl::NotFoundError("cannot read " + in_file));
  }
  std::istream& in = in_file == "-" ? std::cin : file;

  std::optional<store::SessionMeta> meta;
  std::vector<model::Event> events;
  size_t sessions = 0, total = 0, line_no = 0;
  auto flush = [&]() -> Status {
    if (!meta) return absl::OkStatus();
    store::AppendRequest req;
    req.session_id = meta->session_id;
    req.expected_version = 0;  // the session must not exist yet
    req.meta = *meta;
    req.meta.version = events.empty() ? 0 : events.back().seq;
    req.events = std::move(events);
    events.clear();
    std::promise<Status> done;
    o->store->Append(std::move(req), [&done](Status st) { done.set_value(std::move(st)); });
    Status st = done.get_future().get();
    if (!st.ok())
      return absl::Status(st.code(),
                          "session " + meta->session_id + ": " + std::string(st.message()));
    ++sessions;
    meta.reset();
    return absl::OkStatus();
  };
  std::string line;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    auto v = ParseJson(line);
    const std::string at = "line " + std::to_string(line_no) + ": ";
    if (!v.ok() || !v->is_object())
      return Fail("import", absl::InvalidArgumentError(at + "not a JSON object"));
    auto kind = GetString(v->get_object(), "kind");
    if (kind == "session") {
      if (auto st = flush(); !st.ok()) return Fail("import", st);
      const json::value* s = Find(v->get_object(), "session");
      if (!s) return Fail("import", absl::InvalidArgumentError(at + "missing 'session'"));
      auto m = store::SessionMetaFromJson(*s);
      if (!m.ok())
        return Fail("import", absl::InvalidArgumentError(at + std::string(m.status().message())));
      if (!o->schemas.count(m->schema))
        return Fail("import", absl::InvalidArgumentError(at + "unknown schema " + m->schema));
      meta = std::move(*m);
    } else if (kind == "event") {
      const json::value* e = Find(v->get_object(), "event");
      auto sid = GetString(v->get_object(), "session_id");
      if (!meta || !e || !sid || *sid != meta->session_id)
        return Fail("import", absl::InvalidArgumentError(at + "event outside its session"));
      auto ev = model::EventFromJson(*e);
      if (!ev.ok())
        return Fail("import", absl::InvalidArgumentError(at + std::string(ev.status().message())));
      if (ev->seq != events.size() + 1)
        return Fail("import", absl::InvalidArgumentError(at + "events must be gapless from seq 1"));
      events.push_back(std::move(*ev));
      ++total;
    } else {
      return Fail("import", absl::InvalidArgumentError(at + "'kind' must be session or event"));
    }
  }
  if (auto st = flush(); !st.ok()) return Fail("import", st);
  o->store->Close();
  std::cerr << "imported " << sessions << " sessions, " << total << " events\n";
  return 0;
}

}  // namespace persona::app

namespace persona::app {

StatusOr<int64_t> ParseDuration(std::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("empty duration");
  int64_t unit = 1;
  switch (text.back()) {
    case 's':
      text.remove_suffix(1);
      break;
    case 'm':
      unit = 60;
      text.remove_suffix(1);
      break;
    case 'h':
      unit = 3600;
      text.remove_suffix(1);
      break;
    case 'd':
      unit = 86400;
      text.remove_suffix(1);
      break;
    default:
      break;
  }
  int64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || p != text.data() + text.size() || n <= 0 || n > 10LL * 365 * 86400)
    return absl::InvalidArgumentError("expected a duration such as 3600, 90s, 30m, 1h or 7d");
  return n * unit;
}

int Token(const ServeFlags& flags, const TokenFlags& t) {
  auto cfg = LoadConfig(flags);
  if (!cfg.ok()) return Fail("token", cfg.status());
  auto jwt = JwtOptionsFrom(*cfg);
  if (!jwt.ok()) return Fail("token", jwt.status());
  if (jwt->hs256_secret.size() < 32)
    return Fail("token", absl::FailedPreconditionError(
                             "needs auth.jwt.hs256_secret or auth.jwt.hs256_secret_env (at least "
                             "32 bytes): persona token signs with HS256"));
  auto ttl = ParseDuration(t.ttl);
  if (!ttl.ok()) return Fail("token --ttl", ttl.status());
  if (t.user.empty() || t.user.size() > 256)
    return Fail("token --user", absl::InvalidArgumentError("1 to 256 bytes"));
  const int64_t now = std::time(nullptr);
  json::object claims;
  claims["sub"] = t.user;
  if (!jwt->audience.empty()) claims["aud"] = jwt->audience;
  if (!jwt->issuer.empty()) claims["iss"] = jwt->issuer;
  claims["iat"] = now;
  claims["exp"] = now + *ttl;
  if (t.admin) claims["persona_admin"] = true;
  if (!t.sessions.empty()) {
    json::array s;
    for (const auto& id : t.sessions) {
      if (!IsValidId(id))
        return Fail("token --session",
                    absl::InvalidArgumentError("'" + id + "' is not a session id"));
      s.push_back(json::string(id));
    }
    claims["sessions"] = std::move(s);
  }
  std::cout << auth::MintHs256(jwt->hs256_secret, claims) << "\n";
  return 0;
}

}  // namespace persona::app

namespace persona::app {
namespace {

// The stored projection of `loaded` rendered as replay compares it.
StatusOr<std::string> Rendered(
    const store::LoadedSession& loaded,
    const std::map<std::string, std::shared_ptr<const model::Schema>>& schemas) {
  auto it = schemas.find(loaded.meta.schema);
  std::shared_ptr<const model::Schema> schema = it == schemas.end() ? nullptr : it->second;
  auto state = engine::Project(loaded, schema, 0);
  if (!state.ok()) return state.status();
  json::object out;
  out["profile"] = state->profile.ValuesJson(schema.get());
  out["meta"] = state->profile.MetaJson();
  return json::serialize(out);
}

Status AppendAndWait(store::EventStore& s, store::AppendRequest req) {
  std::promise<Status> done;
  s.Append(std::move(req), [&done](Status st) { done.set_value(std::move(st)); });
  return done.get_future().get();
}

}  // namespace

int Migrate(const ServeFlags& flags, const MigrateFlags& m) {
  auto cfg = LoadConfig(flags);
  if (!cfg.ok()) return Fail("migrate", cfg.status());
  auto schemas = model::LoadSchemas(cfg->schemas_dir);
  if (!schemas.ok()) return Fail("migrate", schemas.status());
  if (!m.from.starts_with("rocksdb:"))
    return Fail("migrate --from", absl::InvalidArgumentError("expected rocksdb:DIR"));
  std::filesystem::path dir = m.from.substr(8);
  if (std::filesystem::exists(dir / "events")) dir /= "events";  // a data_dir was given
  if (!m.to.starts_with("postgresql://") && !m.to.starts_with("postgres://"))
    return Fail("migrate --to", absl::InvalidArgumentError("expected postgresql://…"));
  store::PostgresOptions popt;
  popt.url = m.to;
  auto target = store::PostgresEventStore::Open(popt);
  if (!target.ok()) return Fail("migrate --to", target.status());
  auto open_source = [&]() {
    store::RocksDbOptions ropt;
    ropt.path = dir.string();
    ropt.read_only = true;  // the source may keep serving
    return store::RocksDbEventStore::Open(ropt);
  };

  // Copy passes: each copies what the target lacks (new sessions, events
  // after the target's version, erasures), so a run can be interrupted and
  // run again, and a last pass after the source stops catches up.
  json::array passes;
  size_t total_sessions = 0, total_events = 0;
  for (int pass = 1; pass <= m.passes; ++pass) {
    auto source = open_source();
    if (!source.ok()) return Fail("migrate --from", source.status());
    size_t sessions = 0, events = 0, erased = 0;
    Status inner;
    std::set<std::string> seen;
    Status st = (*source)->ForEachSession([&](const store::SessionMeta& meta) {
      seen.insert(meta.session_id);
      uint64_t have = 0;
      if (auto head = (*target)->Head(meta.session_id); head.ok()) {
        have = head->version;
      } else if (!absl::IsNotFound(head.status())) {
        inner = head.status();
        return false;
      }
      if (have == meta.version) return true;
      if (have > meta.version) {
        inner = absl::FailedPreconditionError(
            "session " + meta.session_id + ": the target is ahead of the source (version " +
            std::to_string(have) + " > " + std::to_string(meta.version) + ")");
        return false;
      }
      auto loaded = (*source)->Load(meta.session_id);
      auto evs = (*source)->ReadEvents(meta.session_id, have, SIZE_MAX);
      if (!loaded.ok() || !evs.ok()) {
        inner = !loaded.ok() ? loaded.status() : evs.status();
        return false;
      }
      // In chunks, so that no single append is huge; the snapshot goes with
      // the last one.
      constexpr size_t kChunk = 1000;
      for (size_t i = 0; i < evs->size(); i += kChunk) {
        store::AppendRequest req;
        req.session_id = meta.session_id;
        req.expected_version = have;
        req.meta = loaded->meta;
        req.events.assign(evs->begin() + static_cast<long>(i),
                          evs->begin() + static_cast<long>(std::min(evs->size(), i + kChunk)));
        have = req.events.back().seq;
        req.meta.version = have;
        if (have == loaded->meta.version && loaded->snapshot) req.snapshot = loaded->snapshot;
        if (Status a = AppendAndWait(**target, std::move(req)); !a.ok()) {
          inner = absl::Status(a.code(),
                               "session " + meta.session_id + ": " + std::string(a.message()));
          return false;
        }
      }
      ++sessions;
      events += evs->size();
      return true;
    });
    if (!st.ok()) return Fail("migrate", st);
    if (!inner.ok()) return Fail("migrate", inner);
    // Sessions erased at the source since an earlier pass.
    std::vector<std::string> gone;
    st = (*target)->ForEachSession([&](const store::SessionMeta& meta) {
      if (!seen.count(meta.session_id)) gone.push_back(meta.session_id);
      return true;
    });
    if (!st.ok()) return Fail("migrate", st);
    for (const auto& sid : gone) {
      store::AppendRequest erase;
      erase.session_id = sid;
      erase.erase = true;
      if (Status a = AppendAndWait(**target, std::move(erase)); !a.ok()) return Fail("migrate", a);
      ++erased;
    }
    json::object p;
    p["pass"] = pass;
    p["sessions_copied"] = sessions;
    p["events_copied"] = events;
    p["sessions_erased"] = erased;
    passes.push_back(std::move(p));
    total_sessions += sessions;
    total_events += events;
    std::cerr << "migrate: pass " << pass << ": " << sessions << " sessions, " << events
              << " events copied, " << erased << " erased\n";
    if (sessions == 0 && erased == 0) break;  // caught up
  }

  json::object report;
  report["passes"] = std::move(passes);
  report["sessions_copied"] = total_sessions;
  report["events_copied"] = total_events;
  bool equal = true;
  if (m.verify) {
    // Counts, event bytes and replayed profiles, session by session.
    auto source = open_source();
    if (!source.ok()) return Fail("migrate --from", source.status());
    size_t checked = 0, mismatched = 0, source_events = 0, target_events = 0;
    json::array bad;
    Status inner;
    Status st = (*source)->ForEachSession([&](const store::SessionMeta& meta) {
      ++checked;
      auto a = (*source)->ReadEvents(meta.session_id, 0, SIZE_MAX);
      auto b = (*target)->ReadEvents(meta.session_id, 0, SIZE_MAX);
      auto la = (*source)->Load(meta.session_id);
      auto lb = (*target)->Load(meta.session_id);
      if (!a.ok() || !b.ok() || !la.ok()) {
        inner = !a.ok() ? a.status() : !b.ok() ? b.status() : la.status();
        return false;
      }
      source_events += a->size();
      target_events += b->size();
      bool same = lb.ok() && a->size() == b->size() && la->meta.version == lb->meta.version;
      for (size_t i = 0; same && i < a->size(); ++i)
        same = model::EventToJsonString((*a)[i]) == model::EventToJsonString((*b)[i]);
      if (same) {
        auto ra = Rendered(*la, *schemas);
        auto rb = Rendered(*lb, *schemas);
        same = ra.ok() && rb.ok() && *ra == *rb;
      }
      if (!same) {
        ++mismatched;
        if (bad.size() < 20) bad.push_back(json::string(meta.session_id));
      }
      return true;
    });
    if (!st.ok()) return Fail("migrate --verify", st);
    if (!inner.ok()) return Fail("migrate --verify", inner);
    size_t target_sessions = 0;
    st = (*target)->ForEachSession(
        [&](const store::SessionMeta&) { return ++target_sessions, true; });
    if (!st.ok()) return Fail("migrate --verify", st);
    json::object v;
    v["sessions_source"] = checked;
    v["sessions_target"] = target_sessions;
    v["events_source"] = source_events;
    v["events_target"] = target_events;
    v["mismatched"] = mismatched;
    if (!bad.empty()) v["mismatched_sessions"] = std::move(bad);
    equal = mismatched == 0 && checked == target_sessions && source_events == target_events;
    v["equal"] = equal;
    report["verify"] = std::move(v);
  }
  (*target)->Close();
  std::cout << json::serialize(report) << "\n";
  return equal ? 0 : 1;
}

}  // namespace persona::app

namespace persona::app {

int GateEval(const ServeFlags& flags, const GateEvalFlags& g) {
  auto cfg = LoadConfig(flags);
  if (!cfg.ok()) {
    std::cerr << "persona: invalid configuration: " << cfg.status().message() << "\n";
    return 2;
  }
  const std::string model = cfg->ai.gate.model.empty() ? DefaultGateModel() : cfg->ai.gate.model;
  auto gate = ai::IntentGate::Load(model, cfg->ai.gate.threshold);
  if (!gate.ok()) {
    std::cerr << "persona: " << gate.status().message() << "\n";
    return 2;
  }
  std::ifstream in(g.data);
  if (!in) {
    std::cerr << "persona: cannot read " << g.data << "\n";
    return 2;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  auto data = ParseJson(buf.str());
  if (!data.ok() || !data->is_object()) {
    std::cerr << "persona: " << g.data << ": not a CLINC150-format JSON object\n";
    return 2;
  }
  auto split = [&](const std::string& name) -> const json::array* {
    const json::value* v = data->get_object().if_contains(name);
    return v && v->is_array() ? &v->get_array() : nullptr;
  };
  const json::array* ins = split(g.split);
  const json::array* oos = split(g.oos_split);
  if (ins == nullptr || oos == nullptr) {
    std::cerr << "persona: " << g.data << " has no '" << g.split << "' or '" << g.oos_split
              << "' split\n";
    return 2;
  }
  // Each query's top intent and confidence once; every threshold from them.
  struct Row {
    std::string gold, label;
    double confidence;
  };
  auto classify = [&](const json::array& rows, std::vector<Row>* out,
                      std::vector<double>* micros) -> bool {
    for (const auto& r : rows) {
      if (!r.is_array() || r.get_array().size() != 2 || !r.get_array()[0].is_string() ||
          !r.get_array()[1].is_string())
        return false;
      const std::string text(r.get_array()[0].get_string());
      const auto t0 = std::chrono::steady_clock::now();
      ai::Intent at = (*gate)->Top(text);
      micros->push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      out->push_back({std::string(r.get_array()[1].get_string()), at.name, at.confidence});
    }
    return true;
  };
  std::vector<Row> in_rows, oos_rows;
  std::vector<double> micros;
  if (!classify(*ins, &in_rows, &micros) || !classify(*oos, &oos_rows, &micros)) {
    std::cerr << "persona: " << g.data << ": each query must be [text, label]\n";
    return 2;
  }
  const double chosen = (*gate)->threshold();
  auto at = [&](double th) {
    size_t accepted = 0, right = 0, oos_accepted = 0;
    for (const auto& r : in_rows) {
      if (r.confidence >= th && r.label != "oos") {
        ++accepted;
        right += r.label == r.gold;
      }
    }
    for (const auto& r : oos_rows) oos_accepted += r.confidence >= th && r.label != "oos";
    json::object o;
    o["threshold"] = th;
    o["precision"] = accepted ? static_cast<double>(right) / accepted : 1.0;
    o["coverage"] = in_rows.empty() ? 0.0 : static_cast<double>(accepted) / in_rows.size();
    o["oos_accepted"] =
        oos_rows.empty() ? 0.0 : static_cast<double>(oos_accepted) / oos_rows.size();
    return o;
  };
  std::sort(micros.begin(), micros.end());
  auto pct = [&](double q) {
    return micros[std::min(micros.size() - 1, size_t(q * micros.size()))];
  };
  json::array curve;
  std::printf("%9s %10s %9s %13s\n", "threshold", "precision", "coverage", "oos accepted");
  std::vector<double> grid = {0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99};
  if (std::find(grid.begin(), grid.end(), chosen) == grid.end()) grid.push_back(chosen);
  std::sort(grid.begin(), grid.end());
  for (double th : grid) {
    json::object o = at(th);
    std::printf("%9.2f %9.2f%% %8.2f%% %12.2f%%%s\n", th, 100 * o["precision"].as_double(),
                100 * o["coverage"].as_double(), 100 * o["oos_accepted"].as_double(),
                th == chosen ? "   (the gate's threshold)" : "");
    curve.push_back(std::move(o));
  }
  json::object report;
  report["data"] = g.data;
  report["model"] = model;
  report["in_scope"] = in_rows.size();
  report["out_of_scope"] = oos_rows.size();
  report["at_threshold"] = at(chosen);
  report["curve"] = std::move(curve);
  report["p50_us"] = micros.empty() ? 0 : pct(0.5);
  report["p99_us"] = micros.empty() ? 0 : pct(0.99);
  std::printf("classification: p50 %.1f µs, p99 %.1f µs per message\n", pct(0.5), pct(0.99));
  std::cout << json::serialize(report) << "\n";
  return 0;
}

}  // namespace persona::app
