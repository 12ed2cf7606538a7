"""The profile cache: in-process and a real redis-server started by the test.

Reads never return a profile older than an acknowledged write, and a Redis
outage costs misses, never an error to the user."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from persona_server import Redis, Server, free_port




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
            st, h, p = s.request("GET", "/v1/sessions/%s/profile" % sid, conn=conn)
            self.assertEqual(st, 200)
            self.assertEqual(p["version"], w["version"])
            self.assertEqual(p["profile"]["age"], 20 + i)
            self.assertEqual(h["etag"], '"%d"' % w["version"])
        conn.close()
        return sid

    def many_sessions(self, s, n):
        """n sessions, each with a distinct age; returns [(sid, age, version)]."""
        out = []
        conn = s.conn()
        for i in range(n):
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "many"}, conn=conn)
            st, _, w = s.request("PATCH", "/v1/sessions/%s/profile" % b["session_id"],
                                 {"fields": {"age": i % 100}}, conn=conn)
            out.append((b["session_id"], i % 100, w["version"]))
        conn.close()
        return out

    def read_all(self, s, sessions):
        conn = s.conn()
        for sid, age, version in sessions:
            st, _, p = s.request("GET", "/v1/sessions/%s/profile" % sid, conn=conn)
            self.assertEqual((st, p["profile"]["age"], p["version"]), (200, age, version))
        conn.close()


# Sessions in memory answer from their state; the cache serves sessions that
# are not (after a restart, or evicted past engine.max_cached_sessions).
SMALL_MEMORY = ["--set", "engine.max_cached_sessions=1"]


class MemoryCacheTest(unittest.TestCase, CacheFreshnessMixin):
    def test_sessions_not_in_memory_are_served_from_the_cache(self):
        s = Server(extra_args=SMALL_MEMORY).start()
        try:
            self.check_read_your_writes(s)
            sessions = self.many_sessions(s, 300)
            self.read_all(s, sessions)  # mostly misses: loads (and evicts others)
            hits = metric(s, "persona_cache_hits_total", 'backend="memory"')
            self.read_all(s, sessions)  # evicted ones now come from the cache
            self.assertGreater(metric(s, "persona_cache_hits_total", 'backend="memory"') - hits, 100)
            self.assertGreater(metric(s, "persona_cache_misses_total", 'backend="memory"'), 0)
            # A write after caching: the entry is never served again.
            sid, age, version = sessions[0]
            st, _, w = s.request("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"age": 99}})
            self.read_all(s, [(sid, 99, w["version"])] + sessions[1:])
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

    def wait_key(self, sid):
        deadline = time.time() + 5
        while time.time() < deadline and self.redis.command("EXISTS", "profile:" + sid) != ":1":
            time.sleep(0.05)
        return self.redis.command("EXISTS", "profile:" + sid) == ":1"

    def test_profiles_are_cached_in_redis_across_restarts(self):
        sid = self.check_read_your_writes(self.s)
        self.s.stop()
        self.s.start()  # nothing in memory: the first read loads and fills Redis
        st, _, p = self.s.request("GET", "/v1/sessions/%s/profile" % sid)
        self.assertEqual((p["profile"]["age"], p["version"]), (59, 42))
        self.assertTrue(self.wait_key(sid))
        ttl = int(self.redis.command("TTL", "profile:" + sid)[1:])
        self.assertTrue(0 < ttl <= 3600, ttl)
        self.s.stop()
        self.s.start()  # the next instance reads it from Redis without loading the session
        st, _, p = self.s.request("GET", "/v1/sessions/%s/profile" % sid)
        self.assertEqual((p["profile"]["age"], p["version"]), (59, 42))
        self.assertEqual(metric(self.s, "persona_cache_hits_total", 'backend="redis"'), 1)
        # A write, then a new instance: the older entry is not served.
        st, _, w = self.s.request("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"age": 70}})
        self.s.stop()
        self.s.start()
        st, _, p = self.s.request("GET", "/v1/sessions/%s/profile" % sid)
        self.assertEqual((p["profile"]["age"], p["version"]), (70, w["version"]))
        # Erasure removes the cached profile too.
        st, _, _ = self.s.request("DELETE", "/v1/sessions/%s" % sid)
        self.assertEqual(st, 204)
        st, _, _ = self.s.request("GET", "/v1/sessions/%s/profile" % sid)
        self.assertEqual(st, 404)

    def test_a_stale_entry_in_redis_is_never_served(self):
        st, _, b = self.s.request("POST", "/v1/sessions", {"user_id": "stale"})
        sid = b["session_id"]
        st, _, w = self.s.request("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"age": 33}})
        # An entry from an older version (a lost invalidation, another instance).
        forged = "\x00\x00\x00\x00\x00\x00\x00\x01" + json.dumps({"profile": {"age": 99}})
        self.redis.command("SET", "profile:" + sid, forged)
        self.s.stop()
        self.s.start()
        st, _, p = self.s.request("GET", "/v1/sessions/%s/profile" % sid)
        self.assertEqual((p["profile"]["age"], p["version"]), (33, w["version"]))
        self.assertEqual(metric(self.s, "persona_cache_hits_total", 'backend="redis"'), 0)

    def test_redis_outage_degrades_to_the_store(self):
        self.s.stop()
        self.s = Server(data_dir=self.s.data_dir,
                        extra_args=["--set", "cache.backend=redis", "--set",
                                    "cache.url=" + self.redis.url()] + SMALL_MEMORY).start()
        sessions = self.many_sessions(self.s, 60)
        errors = []
        done = []
        stop = threading.Event()

        def client(k):
            conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=10)
            i = 0
            while not stop.is_set():
                i += 1
                sid = sessions[(k * 13 + i) % len(sessions)][0]
                for method, path, body in (
                        ("POST", "/v1/sessions/%s/messages" % sid, {"text": "I am %d" % (i % 90 + 10)}),
                        ("GET", "/v1/sessions/%s/profile" % sessions[(k * 7 + i * 3) % len(sessions)][0],
                         None)):
                    conn.request(method, path, body=json.dumps(body) if body else None,
                                 headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    data = r.read()
                    if r.status != 200:
                        errors.append((method, r.status, data[:200]))
                    else:
                        done.append(method)
            conn.close()

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
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
        time.sleep(2.5)  # past the cache's retry interval: Redis is used again
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertGreater(during, 50, "steps stalled while Redis was down")
        self.assertGreater(metric(self.s, "persona_cache_errors_total", 'backend="redis"'), 0)
        self.assertEqual(metric(self.s, "persona_cache_up", 'backend="redis"'), 1)
        self.assertTrue(any("redis cache unavailable" in l for l in self.s.log), self.s.log[-5:])
        # After recovery the cache is written and read again.
        self.read_all(self.s, [])
        hits = metric(self.s, "persona_cache_hits_total", 'backend="redis"')
        misses = metric(self.s, "persona_cache_misses_total", 'backend="redis"')
        conn = self.s.conn()
        for _ in range(3):
            for sid, _, _ in sessions:
                self.s.request("GET", "/v1/sessions/%s/profile" % sid, conn=conn)
        conn.close()
        used = (metric(self.s, "persona_cache_hits_total", 'backend="redis"') - hits +
                metric(self.s, "persona_cache_misses_total", 'backend="redis"') - misses)
        self.assertGreater(used, 0)
        self.assertGreater(metric(self.s, "persona_cache_hits_total", 'backend="redis"'), hits)

    def test_a_hung_redis_does_not_hold_up_the_io_threads(self):
        # Profile reads that wait on a Redis that answers nothing (SIGSTOP)
        # run on threads of their own: meanwhile the I/O threads (2 here)
        # answer other requests at once. Before, the waiting reads held both
        # I/O threads, and /healthz waited behind them.
        self.s.stop()
        self.s = Server(data_dir=self.s.data_dir,
                        extra_args=["--set", "cache.backend=redis", "--set",
                                    "cache.url=" + self.redis.url(), "--set", "threads=2",
                                    "--set", "cache.timeout_ms=1500"]).start()
        sessions = [sid for sid, _, _ in self.many_sessions(self.s, 4)]
        self.s.stop()
        self.s.start()  # nothing in memory: reads go to the cache
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        done = []
        try:
            def read(sid):
                st, _, p = self.s.request("GET", "/v1/sessions/%s/profile" % sid)
                done.append(st)
            threads = [threading.Thread(target=read, args=(sid,)) for sid in sessions]
            for t in threads:
                t.start()
            time.sleep(0.3)  # the four reads are waiting on Redis
            st, _, _ = self.s.request("GET", "/healthz")
            answered_while_waiting = len(done)
            self.assertEqual(st, 200)
            self.assertEqual(answered_while_waiting, 0, "healthz waited for the profile reads")
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        for t in threads:
            t.join()
        self.assertEqual(done, [200] * 4)  # the reads fell back to the store

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
