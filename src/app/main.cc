// persona: the composition root. Parses the command line and runs a subcommand.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "absl/synchronization/mutex.h"
#include "app/commands.h"
#include "config/config.h"
#include "core/logging.h"

int main(int argc, char** argv) {
  // absl::Mutex's deadlock detection (on in Debian's build of absl) keeps a
  // graph node of about 512 bytes for every mutex it has seen, allocated
  // outside malloc: two per MQTT connection, a third of an idle connection's
  // memory. It is a debugging aid: the unit tests keep it, the server does not.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  using persona::app::ServeFlags;
  CLI::App app{"persona — personalized AI conversations with a live, durable profile"};
  app.set_version_flag("--version", std::string("persona ") + PERSONA_VERSION);
  app.require_subcommand(1);

  ServeFlags flags;
  std::string http_listen, mqtt_listen, data_dir, write_mode, schemas_dir, log_level;
  std::vector<std::string> sets;
  auto add_common = [&](CLI::App* cmd) {
    cmd->add_option("--config", flags.config_file, "YAML configuration file")
        ->envname("PERSONA_CONFIG");
    cmd->add_option("--data-dir", data_dir, "data directory (data_dir)");
    cmd->add_option("--schemas-dir", schemas_dir, "schema directory (schemas_dir)");
    cmd->add_option("--set", sets, "override any key: --set http.max_body_bytes=2048");
  };

  CLI::App* serve = app.add_subcommand("serve", "run the server");
  add_common(serve);
  serve->add_option("--http-listen", http_listen, "HTTP address (http.listen), port 0 = any");
  serve->add_option("--mqtt-listen", mqtt_listen, "MQTT address (mqtt.listen)");
  serve->add_option("--write-mode", write_mode, "sync | async (write_mode)");
  serve->add_option("--log-level", log_level, "trace|debug|info|warn|error|off (log_level)");
  serve->footer(persona::config::KeysHelp());

  std::string session_id;
  CLI::App* replay = app.add_subcommand(
      "replay", "rebuild a session's profile from its events and compare with the stored one");
  add_common(replay);
  replay->add_option("SESSION", session_id, "session id")->required();

  std::string file = "-";
  CLI::App* exp = app.add_subcommand("export", "write every session and event as JSON lines");
  add_common(exp);
  exp->add_option("-o,--output", file, "output file (- for stdout)");
  CLI::App* imp = app.add_subcommand("import", "read sessions and events from JSON lines");
  add_common(imp);
  imp->add_option("-i,--input", file, "input file (- for stdin)");

  persona::app::TokenFlags token;
  CLI::App* tok = app.add_subcommand(
      "token", "print a development token (HS256, signed with auth.jwt.hs256_secret[_env])");
  add_common(tok);
  tok->add_option("--user", token.user, "the token's subject (sub): the user id")->required();
  tok->add_option("--ttl", token.ttl, "lifetime: 3600, 90s, 30m, 1h (default) or 7d");
  tok->add_flag("--admin", token.admin, "persona_admin: every session, metrics, admin routes");
  tok->add_option("--session", token.sessions,
                  "limit the token to this session (repeat for several): a device link");

  persona::app::MigrateFlags migrate;
  CLI::App* mig = app.add_subcommand(
      "migrate",
      "copy every session and event from a RocksDB data directory to PostgreSQL; resumable, "
      "can run while the source serves, run it again to catch up; prints a JSON report");
  add_common(mig);
  mig->add_option("--from", migrate.from, "rocksdb:DIR (a data_dir)")->required();
  mig->add_option("--to", migrate.to, "postgresql://… (libpq URI)")->required();
  mig->add_flag("--verify", migrate.verify,
                "then compare counts, event bytes and replayed profiles (exit 1 if different)");
  mig->add_option("--passes", migrate.passes, "copy passes at most (5)")->check(CLI::Range(1, 100));

  persona::app::GateEvalFlags gate_eval;
  CLI::App* gate = app.add_subcommand("gate", "the intent gate (ai.gate)");
  CLI::App* gate_ev = gate->add_subcommand(
      "eval",
      "report the gate's precision, in-scope coverage and out-of-scope acceptance on a "
      "CLINC150-format file (its test and oos_test splits); prints a table and JSON");
  add_common(gate_ev);
  gate_ev->add_option("--data", gate_eval.data, "CLINC150-format JSON file")->required();
  gate_ev->add_option("--split", gate_eval.split, "in-scope split (test)");
  gate_ev->add_option("--oos-split", gate_eval.oos_split, "out-of-scope split (oos_test)");
  gate->require_subcommand(1);

  CLI::App* bench = app.add_subcommand(
      "bench",
      "run a load generator: `persona bench http …` (persona_loadgen: chat steps, profile reads, "
      "async writes) or `persona bench mqtt …` (persona_mqtt_loadgen); `persona bench http` "
      "without arguments prints its usage. make bench runs the full comparisons.");
  std::string bench_kind;
  bench->add_option("KIND", bench_kind, "http | mqtt")
      ->required()
      ->check(CLI::IsMember({"http", "mqtt"}));
  bench->allow_extras();
  bench->prefix_command();

  CLI11_PARSE(app, argc, argv);

  if (bench->parsed()) {
    // The load generators are separate programs (they must not share the
    // server's process); find them beside this binary, then on PATH.
    const std::string name = bench_kind == "http" ? "persona_loadgen" : "persona_mqtt_loadgen";
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
    std::string path = name;
    for (const auto& dir : {self / ".." / "bench", self, self / ".." / "libexec" / "persona"}) {
      if (std::filesystem::exists(dir / name, ec)) {
        path = (dir / name).string();
        break;
      }
    }
    std::vector<std::string> rest = bench->remaining();
    std::vector<char*> args;
    args.push_back(path.data());
    for (auto& a : rest) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(path.c_str(), args.data());
    std::cerr << "persona: cannot run " << name
              << " (build it with `make build`): " << std::strerror(errno) << "\n";
    return 2;
  }

  auto put = [&](const char* key, const std::string& v) {
    if (!v.empty()) flags.overrides[key] = v;
  };
  put("http.listen", http_listen);
  put("mqtt.listen", mqtt_listen);
  put("data_dir", data_dir);
  put("write_mode", write_mode);
  put("schemas_dir", schemas_dir);
  put("log_level", log_level);
  for (const auto& s : sets) {
    const size_t eq = s.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "persona: --set expects key=value, got '" << s << "'\n";
      return 2;
    }
    flags.overrides[s.substr(0, eq)] = s.substr(eq + 1);
  }

  if (serve->parsed()) return persona::app::Serve(flags);
  // The other commands print their results on stdout: logs go to stderr.
  persona::InitLogging("warn", /*to_stderr=*/true);
  if (replay->parsed()) return persona::app::Replay(flags, session_id);
  if (exp->parsed()) return persona::app::Export(flags, file);
  if (imp->parsed()) return persona::app::Import(flags, file);
  if (tok->parsed()) return persona::app::Token(flags, token);
  if (mig->parsed()) return persona::app::Migrate(flags, migrate);
  if (gate_ev->parsed()) return persona::app::GateEval(flags, gate_eval);
  return 2;
}
