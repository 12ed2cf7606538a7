// The CLI subcommands; main.cc parses flags and calls one of these.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "auth/jwt.h"
#include "config/config.h"
#include "store/event_store.h"

namespace persona::app {

struct ServeFlags {
  std::string config_file;
  std::map<std::string, std::string> overrides;  // key path → value
};

// The configuration from file, environment and flags.
StatusOr<config::Config> LoadConfig(const ServeFlags& flags);
// Opens the configured store: RocksDB under cfg.data_dir (read-only for
// replay/export), or PostgreSQL at cfg.store.url.
// `node_fingerprint`: for `serve` on a shared store, what every node must
// agree on (see PostgresOptions); empty for the other commands.
StatusOr<std::unique_ptr<store::EventStore>> OpenStore(const config::Config& cfg, bool read_only,
                                                       const std::string& node_fingerprint = "");

// The JWT settings of cfg.auth.jwt, with the secret read from its variable.
StatusOr<auth::JwtOptions> JwtOptionsFrom(const config::Config& cfg);

int Serve(const ServeFlags& flags);

struct TokenFlags {
  std::string user;
  std::string ttl = "1h";
  bool admin = false;
  std::vector<std::string> sessions;
};
// `persona token`: prints an HS256 token signed with auth.jwt's secret.
int Token(const ServeFlags& flags, const TokenFlags& t);

struct MigrateFlags {
  std::string from;  // rocksdb:DIR (a data_dir, or its events/ directory)
  std::string to;    // postgresql://…
  bool verify = false;
  int passes = 5;  // copy passes at most (stops early once a pass copies nothing)
};
// `persona migrate`: copies every session and event from RocksDB to PostgreSQL.
int Migrate(const ServeFlags& flags, const MigrateFlags& m);
int Replay(const ServeFlags& flags, const std::string& session_id);

struct GateEvalFlags {
  std::string data;  // a CLINC150-format JSON file
  std::string split = "test";
  std::string oos_split = "oos_test";
};
// `persona gate eval`: the gate configured by ai.gate (model, threshold) on
// a CLINC150-format file.
int GateEval(const ServeFlags& flags, const GateEvalFlags& g);
// The gate model serve loads when ai.gate.model is empty.
std::string DefaultGateModel();
int Export(const ServeFlags& flags, const std::string& out_file);
int Import(const ServeFlags& flags, const std::string& in_file);

}  // namespace persona::app
