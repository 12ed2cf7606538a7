"""The profile cache: in-process and a real redis-server started by the test.

Reads never return a profile older than an acknowledged write, and a Redis
outage costs misses, never an error to the user."""
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from persona_server import Server

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


def metric(s, name, label=None):
    _, _, text = s.request("GET", "/metrics")
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (label is None or label in line):
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


class CacheFreshnessMixin:
    def check_read_your_writes(self, s):
        st, _, b = s.request("POST", "/v1/sessions", {"user_id": "cache"})
        sid = b["session_id"]
        conn = s.conn()
        for i in range(40):
            st, _, w = s.request("PATCH", "/v1/sessions/%s/profile" % sid,
                                 {"fields": {"age": 20 + i}}, conn=conn)
            self.assertEqual(st, 200)
            for _ in range(2):  # the second read is a hit
                st, h, p = s.request("GET", "/v1/sessions/%s/profile" % sid, conn=conn)
                self.assertEqual(st, 200)
                self.assertEqual(p["version"], w["version"])
                self.assertEqual(p["profile"]["age"], 20 + i)
                self.assertEqual(h["etag"], '"%d"' % w["version"])
        conn.close()
        return sid


class MemoryCacheTest(unittest.TestCase, CacheFreshnessMixin):
    def test_hits_and_read_your_writes(self):
        s = Server().start()
        try:
            self.check_read_your_writes(s)
            self.assertGreater(metric(s, "persona_cache_hits_total", 'backend="memory"'), 30)
            self.assertGreater(metric(s, "persona_cache_misses_total", 'backend="memory"'), 30)
        finally:
            s.cleanup()

    def test_cold_cache_after_restart_reads_the_store(self):
        s = Server().start()
        try:
            sid = self.check_read_your_writes(s)
            s.stop()
            s.start()
            st, _, p = s.request("GET", "/v1/sessions/%s/profile" % sid)
            self.assertEqual((st, p["profile"]["age"], p["version"]), (200, 59, 42))
            st, _, p = s.request("GET", "/v1/sessions/nosuch/profile")
            self.assertEqual(st, 404)
        finally:
            s.cleanup()


class RedisCacheTest(unittest.TestCase, CacheFreshnessMixin):
    def setUp(self):
        self.redis = Redis().start()
        self.s = Server(extra_args=["--set", "cache.backend=redis",
                                    "--set", "cache.url=" + self.redis.url()]).start()

    def tearDown(self):
        self.s.cleanup()
        self.redis.cleanup()

    def test_profiles_are_cached_in_redis(self):
        sid = self.check_read_your_writes(self.s)
        self.assertGreater(metric(self.s, "persona_cache_hits_total", 'backend="redis"'), 30)
        deadline = time.time() + 5
        while time.time() < deadline and self.redis.command("EXISTS", "profile:" + sid) != ":1":
            time.sleep(0.05)
        self.assertEqual(self.redis.command("EXISTS", "profile:" + sid), ":1")
        ttl = int(self.redis.command("TTL", "profile:" + sid)[1:])
        self.assertTrue(0 < ttl <= 3600, ttl)
        # Erasure removes the cached profile too.
        st, _, _ = self.s.request("DELETE", "/v1/sessions/%s" % sid)
        self.assertEqual(st, 204)
        st, _, _ = self.s.request("GET", "/v1/sessions/%s/profile" % sid)
        self.assertEqual(st, 404)

    def test_a_stale_entry_in_redis_is_never_served(self):
        st, _, b = self.s.request("POST", "/v1/sessions", {"user_id": "stale"})
        sid = b["session_id"]
        st, _, w = self.s.request("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"age": 33}})
        self.s.request("GET", "/v1/sessions/%s/profile" % sid)
        # An entry from an older version (a lost invalidation, another instance).
        forged = "\x00\x00\x00\x00\x00\x00\x00\x01" + json.dumps({"profile": {"age": 99}})
        self.redis.command("SET", "profile:" + sid, forged)
        st, _, p = self.s.request("GET", "/v1/sessions/%s/profile" % sid)
        self.assertEqual((p["profile"]["age"], p["version"]), (33, w["version"]))

    def test_redis_outage_degrades_to_the_store(self):
        st, _, b = self.s.request("POST", "/v1/sessions", {"user_id": "outage"})
        sid = b["session_id"]
        errors = []
        done = []
        stop = threading.Event()

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=10)
            i = 0
            while not stop.is_set():
                i += 1
                for method, path, body in (
                        ("POST", "/v1/sessions/%s/messages" % sid, {"text": "I am %d" % (i % 90 + 10)}),
                        ("GET", "/v1/sessions/%s/profile" % sid, None)):
                    conn.request(method, path, body=json.dumps(body) if body else None,
                                 headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    data = r.read()
                    if r.status != 200:
                        errors.append((method, r.status, data[:200]))
                    else:
                        done.append(method)
            conn.close()

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        before_kill = len(done)
        self.redis.kill()  # mid-run
        time.sleep(2.0)
        during = len(done) - before_kill
        restarted = Redis(port=self.redis.port)
        restarted.dir = self.redis.dir
        self.redis = restarted.start()
        time.sleep(2.5)  # past cache retry: reads go to Redis again
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertGreater(during, 50, "steps stalled while Redis was down")
        self.assertGreater(metric(self.s, "persona_cache_errors_total", 'backend="redis"'), 0)
        self.assertEqual(metric(self.s, "persona_cache_up", 'backend="redis"'), 1)
        self.assertTrue(any("redis cache unavailable" in l for l in self.s.log), self.s.log[-5:])
        # After recovery the cache is written and read again.
        hits = metric(self.s, "persona_cache_hits_total", 'backend="redis"')
        for _ in range(3):
            self.s.request("GET", "/v1/sessions/%s/profile" % sid)
        self.assertGreater(metric(self.s, "persona_cache_hits_total", 'backend="redis"'), hits)

    def test_bad_cache_configuration_is_refused(self):
        s = Server(extra_args=["--set", "cache.backend=redis"])
        with self.assertRaises(RuntimeError):
            s.start(timeout=5)
        self.assertTrue(any("cache.url" in l for l in s.log), s.log)
        s.cleanup()
        s = Server(extra_args=["--set", "cache.backend=redis", "--set", "cache.url=http://x"])
        with self.assertRaises(RuntimeError):
            s.start(timeout=5)
        self.assertTrue(any("cache" in l for l in s.log), s.log)
        s.cleanup()


if __name__ == "__main__":
    unittest.main()
