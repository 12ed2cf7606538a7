// `persona replay`, `persona export` and `persona import`.
#include <charconv>
#include <ctime>
#include <fstream>
#include <future>
#include <iostream>

#include "app/commands.h"
#include "core/ids.h"
#include "engine/session_state.h"
#include "model/schema.h"

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

int Replay(const ServeFlags& flags, const std::string& session_id) {
  auto o = Open(flags, true);
  if (!o.ok()) return Fail("replay", o.status());
  auto loaded = o->store->Load(session_id);
  if (!loaded.ok()) return Fail("replay", loaded.status());
  auto schema_it = o->schemas.find(loaded->meta.schema);
  std::shared_ptr<const model::Schema> schema =
      schema_it == o->schemas.end() ? nullptr : schema_it->second;
  // The stored projection: latest snapshot plus the events after it.
  auto stored = engine::Project(*loaded, schema, 0);
  if (!stored.ok()) return Fail("replay", stored.status());
  // The replayed projection: every event from seq 1, no snapshot.
  store::LoadedSession all;
  all.meta = loaded->meta;
  auto events = o->store->ReadEvents(session_id, 0, SIZE_MAX);
  if (!events.ok()) return Fail("replay", events.status());
  all.tail = std::move(*events);
  auto replayed = engine::Project(all, schema, 0);
  if (!replayed.ok()) return Fail("replay", replayed.status());

  auto render = [&](const engine::SessionState& s) {
    json::object out;
    out["profile"] = s.profile.ValuesJson(schema.get());
    out["meta"] = s.profile.MetaJson();
    return json::serialize(out);
  };
  const std::string a = render(*stored);
  const std::string b = render(*replayed);
  json::object report;
  report["session_id"] = session_id;
  report["events"] = all.tail.size();
  report["version"] = loaded->meta.version;
  report["snapshot_seq"] = loaded->snapshot ? loaded->snapshot->seq : 0;
  report["equal"] = a == b;
  report["replayed"] = json::parse(b);
  if (a != b) report["stored"] = json::parse(a);
  std::cout << json::serialize(report) << "\n";
  return a == b ? 0 : 1;
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
