"""Starts the real persona binary on port 0 and talks to it over real sockets.

Used by every integration test. The binary comes from $PERSONA_BIN (set by
CTest) or build/src/persona.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("PERSONA_BIN") or os.path.join(ROOT, "build", "src", "persona")
# Which store the suites run against: rocksdb (default) or postgres (CTest's
# integration-postgres sets it). Tests of one store only use rocksdb_only.
STORE = os.environ.get("PERSONA_TEST_STORE", "rocksdb")


REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A redis-server on a free port in a temp dir (no persistence)."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="persona-redis-")
        self.proc = None

    def start(self):
        if not os.path.exists(REDIS):
            raise RuntimeError("redis-server not found (scripts/install-deps.sh installs it)")
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if self.command("PING") == "+PONG":
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def command(self, *args):
        """One RESP command; returns the first reply line (enough for these tests)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            msg = "*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a.encode()), a)
                                                   for a in args)
            s.sendall(msg.encode())
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.split(b"\r\n", 1)[0].decode()

    def url(self):
        return "redis://127.0.0.1:%d" % self.port


def rocksdb_only(fn):
    """Skips a test of the RocksDB store itself when the suite runs on PostgreSQL."""
    import unittest
    return unittest.skipIf(STORE != "rocksdb", "a RocksDB-only test")(fn)


def postgres_only(fn):
    """Skips a test of a store several processes share unless the suite runs on PostgreSQL."""
    import unittest
    return unittest.skipIf(STORE != "postgres", "a test of a shared (PostgreSQL) store")(fn)


class Postgres:
    """A real PostgreSQL server for this test process, started on first use in
    a temp dir on a free port (initdb + pg_ctl, as the postgres user when root),
    stopped at exit. new_database() gives each persona its own database."""
    _instance = None

    @classmethod
    def get(cls):
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self, clock_offset=None):
        """`clock_offset` ("+5s", "-5s"): the server runs under libfaketime
        with its wall clock that far off, as on a machine whose clock is."""
        import atexit
        import glob
        import pwd
        import socket
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(p.split("/")[4]))
        pg_bin = os.environ.get("PERSONA_PG_BIN") or (os.path.dirname(bins[-1]) if bins else None)
        if not pg_bin:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bin = pg_bin
        self.dir = tempfile.mkdtemp(prefix="persona-pg-")
        self.as_root = os.geteuid() == 0
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self._run("%s/initdb -D %s/data -U postgres -A trust -E UTF8 --no-locale -N > %s/initdb.log 2>&1"
                  % (self.bin, self.dir, self.dir))
        skew = ""
        if clock_offset:
            libs = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
            if not libs:
                raise RuntimeError("libfaketime not found (apt-get install faketime)")
            skew = "env LD_PRELOAD=%s FAKETIME=%s FAKETIME_DONT_FAKE_MONOTONIC=1 " % (
                libs[0], clock_offset)
        self._run(('%s%s/pg_ctl -D %s/data -l %s/server.log -w -t 60 -o "-p %d -k %s '
                   '-c listen_addresses=127.0.0.1 -c max_connections=400" start > /dev/null')
                  % (skew, self.bin, self.dir, self.dir, self.port, self.dir))
        self.n = 0
        atexit.register(self.stop)

    def _run(self, cmd):
        if self.as_root:
            cmd = "runuser -u postgres -- sh -c '%s'" % cmd
        if subprocess.call(cmd, shell=True) != 0:
            raise RuntimeError("failed: " + cmd)

    def url(self, db):
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, db)

    def psql(self, sql, db="postgres"):
        """Runs SQL (statements separated by ;) as the postgres superuser."""
        subprocess.run([self.bin + "/psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                        "-p", str(self.port), "-U", "postgres", "-c", sql, db],
                       check=True, capture_output=True)

    def new_database(self):
        self.n += 1
        name = "it%d_%d" % (os.getpid(), self.n)
        self.psql("CREATE DATABASE %s" % name)
        return self.url(name)

    def restart(self):
        """A fast shutdown and a start on the same port: a database restart."""
        self._run("%s/pg_ctl -D %s/data restart -m fast -w > /dev/null" % (self.bin, self.dir))

    def stop(self):
        try:
            self._run("%s/pg_ctl -D %s/data stop -m immediate > /dev/null 2>&1" % (self.bin, self.dir))
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    """One persona process with its own data directory."""
    _databases = {}  # data_dir → PostgreSQL URL (PERSONA_TEST_STORE=postgres)

    def __init__(self, data_dir=None, extra_args=(), env=None):
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="persona-it-")
        self.extra_args = list(extra_args)
        self.env = env
        self.proc = None
        self.port = None
        self.log = []
        self.store_args = []
        if STORE == "postgres":
            # One database per data directory: a Server started again on the
            # same data_dir (a restart) finds its data.
            url = Server._databases.get(self.data_dir)
            if url is None:
                url = Server._databases[self.data_dir] = Postgres.get().new_database()
            self.store_args = ["--set", "store.backend=postgres", "--set", "store.url=" + url]

    def start(self, timeout=20):
        args = [BIN, "serve", "--http-listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0",
                "--data-dir",
                os.path.join(self.data_dir, "data"), "--schemas-dir",
                os.path.join(ROOT, "schemas")] + self.store_args + self.extra_args
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env)
        deadline = time.time() + timeout
        buf = b""
        while time.time() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if not r:
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self.log.append(line.decode("utf-8", "replace"))
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if obj.get("msg") == "listening":
                    self.port = int(obj["http"].rsplit(":", 1)[1])
                    mqtt = obj.get("mqtt", "off")
                    self.mqtt_port = None if mqtt == "off" else int(mqtt.rsplit(":", 1)[1])
                    self._drain_in_background()
                    return self
        raise RuntimeError("persona did not start: " + "\n".join(self.log[-20:]))

    def _drain_in_background(self):
        import threading

        def pump():
            for line in self.proc.stdout:
                self.log.append(line.decode("utf-8", "replace").rstrip("\n"))
        threading.Thread(target=pump, daemon=True).start()

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None, raw=None):
        """Returns (status, headers dict lower-cased, parsed JSON or text)."""
        own = conn is None
        c = conn or self.conn()
        h = {"Content-Type": "application/json"} if body is not None or raw is not None else {}
        h.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if own:
            c.close()
        ctype = hdrs.get("content-type", "")
        if "json" in ctype and payload:
            return r.status, hdrs, json.loads(payload)
        return r.status, hdrs, payload.decode("utf-8", "replace")

    def cli(self, *args, input_text=None):
        """Runs a persona subcommand against this server's data directory."""
        cmd = [BIN] + list(args) + ["--data-dir", os.path.join(self.data_dir, "data"),
                                   "--schemas-dir", os.path.join(ROOT, "schemas")] + self.store_args
        return subprocess.run(cmd, capture_output=True, text=True, input=input_text, timeout=60)


def metric(server, name):
    """The value of one sample on the server's /metrics (0 if absent)."""
    _, _, text = server.request("GET", "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(secret, claims, header=None):
    """An HS256 JWT, written here independently of persona's own code."""
    h = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    p = b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), (h + "." + p).encode(), hashlib.sha256).digest()
    return h + "." + p + "." + b64url(sig)


def user_token(secret, user, ttl=3600, **claims):
    c = {"sub": user, "aud": "persona", "iat": int(time.time()), "exp": int(time.time()) + ttl}
    c.update(claims)
    return mint(secret, c)
