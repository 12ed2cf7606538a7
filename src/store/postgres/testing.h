// Tests only: a real PostgreSQL server for the tests of this process,
// started on first use in a temporary directory on a free port (initdb +
// pg_ctl, as the `postgres` user when running as root, as CI does) and
// stopped when the process exits. Each test takes a fresh database.
//
// The server binaries come from $PERSONA_PG_BIN, or the newest
// /usr/lib/postgresql/<version>/bin (Debian's postgresql package, installed
// by scripts/install-deps.sh).
#pragma once

#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>

#include "core/status.h"

namespace persona::store::testing {

class PgServer {
 public:
  // The server, started once; an error (no binaries, initdb failed) names why.
  static StatusOr<PgServer*> Get() {
    static std::mutex mu;
    static PgServer* server = nullptr;
    static Status failed;
    std::lock_guard<std::mutex> l(mu);
    if (server != nullptr) return server;
    if (!failed.ok()) return failed;
    auto s = std::unique_ptr<PgServer>(new PgServer());
    failed = s->Start();
    if (!failed.ok()) return failed;
    server = s.release();
    std::atexit([] { server->Stop(); });
    return server;
  }

  int port() const { return port_; }
  std::string Url(const std::string& db) const {
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + db;
  }

  // A new, empty database; returns its URL.
  StatusOr<std::string> NewDatabase() {
    static std::atomic<int> n{0};
    const std::string name = "t" + std::to_string(::getpid()) + "_" + std::to_string(++n);
    PGconn* c = PQconnectdb(Url("postgres").c_str());
    std::string err;
    if (PQstatus(c) != CONNECTION_OK) {
      err = PQerrorMessage(c);
    } else {
      PGresult* r = PQexec(c, ("CREATE DATABASE " + name).c_str());
      if (PQresultStatus(r) != PGRES_COMMAND_OK) err = PQresultErrorMessage(r);
      PQclear(r);
    }
    PQfinish(c);
    if (!err.empty()) return absl::InternalError("create database: " + err);
    return Url(name);
  }

  // Runs one SQL statement on `url` (tests that tamper with the database).
  static Status Exec(const std::string& url, const std::string& sql) {
    PGconn* c = PQconnectdb(url.c_str());
    std::string err;
    if (PQstatus(c) != CONNECTION_OK) {
      err = PQerrorMessage(c);
    } else {
      PGresult* r = PQexec(c, sql.c_str());
      const auto st = PQresultStatus(r);
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) err = PQresultErrorMessage(r);
      PQclear(r);
    }
    PQfinish(c);
    return err.empty() ? absl::OkStatus() : absl::InternalError(err);
  }

  // The first column of the first row of `sql`'s result on `url`.
  static StatusOr<std::string> Value(const std::string& url, const std::string& sql) {
    PGconn* c = PQconnectdb(url.c_str());
    std::string err, out;
    if (PQstatus(c) != CONNECTION_OK) {
      err = PQerrorMessage(c);
    } else {
      PGresult* r = PQexec(c, sql.c_str());
      if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        err = PQresultErrorMessage(r);
      } else if (PQntuples(r) == 0) {
        err = "no rows";
      } else {
        out = PQgetvalue(r, 0, 0);
      }
      PQclear(r);
    }
    PQfinish(c);
    if (!err.empty()) return absl::InternalError(err);
    return out;
  }

  // Stops the server (fast shutdown) and starts it again on the same port:
  // what a database restart looks like to persona.
  Status Restart() {
    if (Status st = Halt(); !st.ok()) return st;
    return Resume();
  }
  // The two halves of a restart: the database is down in between.
  Status Halt() { return Ctl("stop -m fast -w"); }
  Status Resume() { return Ctl(StartArgs()); }

 private:
  PgServer() = default;

  Status Start() {
    bin_ = FindBin();
    if (bin_.empty())
      return absl::FailedPreconditionError(
          "PostgreSQL server binaries not found (apt-get install postgresql, or set "
          "PERSONA_PG_BIN)");
    char tmpl[] = "/tmp/persona-pg-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
    dir_ = tmpl;
    as_root_ = geteuid() == 0;
    if (as_root_) {
      // initdb refuses to run as root: the cluster belongs to `postgres`.
      struct passwd* pw = getpwnam("postgres");
      if (pw == nullptr)
        return absl::FailedPreconditionError("no 'postgres' user to run the server");
      if (chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0)
        return absl::InternalError("chown " + dir_ + " failed");
    }
    port_ = FreePort();
    if (Status st = Run(bin_ + "/initdb -D " + dir_ +
                        "/data -U postgres -A trust -E UTF8 "
                        "--no-locale -N > " +
                        dir_ + "/initdb.log 2>&1");
        !st.ok())
      return absl::InternalError("initdb failed; see " + dir_ + "/initdb.log");
    return Ctl(StartArgs());
  }

  std::string StartArgs() const {
    return "start -w -t 60 -l " + dir_ + "/server.log -o \"-p " + std::to_string(port_) + " -k " +
           dir_ + " -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on " +
           "-c max_connections=300\"";
  }

  Status Ctl(const std::string& args) {
    if (Status st = Run(bin_ + "/pg_ctl -D " + dir_ + "/data " + args + " > /dev/null 2>&1");
        !st.ok())
      return absl::InternalError("pg_ctl " + args.substr(0, 5) + " failed; see " + dir_ +
                                 "/server.log");
    return absl::OkStatus();
  }

  void Stop() {
    Run(bin_ + "/pg_ctl -D " + dir_ + "/data stop -m immediate > /dev/null 2>&1").IgnoreError();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  Status Run(const std::string& cmd) const {
    const std::string full = as_root_ ? "runuser -u postgres -- sh -c '" + cmd + "'" : cmd;
    return std::system(full.c_str()) == 0 ? absl::OkStatus()
                                          : absl::InternalError("command failed: " + cmd);
  }

  static std::string FindBin() {
    if (const char* b = std::getenv("PERSONA_PG_BIN"); b && *b) return b;
    std::string best;
    int best_version = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
      const int v = std::atoi(e.path().filename().c_str());
      if (v > best_version && std::filesystem::exists(e.path() / "bin" / "initdb")) {
        best_version = v;
        best = (e.path() / "bin").string();
      }
    }
    return best;
  }

  static int FreePort() {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
    const int port = ntohs(a.sin_port);
    close(s);
    return port;
  }

  std::string bin_;
  std::string dir_;
  int port_ = 0;
  bool as_root_ = false;
};

}  // namespace persona::store::testing
