"""Limits and load shedding (SPEC §10): token buckets per user and per client
address on HTTP requests, MQTT publishes and connection attempts, and
admission control that answers 503 at once instead of queueing."""
import os
import socket
import threading
import time
import unittest

from fake_openai import FakeOpenAI
from mqtt_client import Client
from persona_server import Server, user_token

SECRET = "limits-secret-0123456789abcdef-0123456"


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RateLimitTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server(extra_args=[
            "--set", "auth.enabled=true", "--set", "auth.jwt.hs256_secret=" + SECRET,
            "--set", "limits.http_per_user.rate=2", "--set", "limits.http_per_user.burst=5",
            "--set", "limits.mqtt_publish_per_user.rate=1",
            "--set", "limits.mqtt_publish_per_user.burst=3",
            "--set", "limits.connections_per_address.rate=0"]).start()

    @classmethod
    def tearDownClass(cls):
        assert cls.s.stop() == 0
        cls.s.cleanup()

    def test_per_user_http_limit_answers_429_with_retry_after(self):
        alice, bob = user_token(SECRET, "rl-alice"), user_token(SECRET, "rl-bob")
        codes = []
        for _ in range(8):
            st, h, body = self.s.request("POST", "/v1/sessions", {},
                                         headers={"Authorization": "Bearer " + alice})
            codes.append(st)
            if st == 429:
                self.assertGreaterEqual(int(h["retry-after"]), 1)
                self.assertEqual(h["content-type"], "application/problem+json")
                self.assertIn("too many requests for this user", body["detail"])
        self.assertEqual(codes[:5], [201] * 5)
        self.assertIn(429, codes[5:])
        # Another user is not affected; probes are never limited.
        st, _, _ = self.s.request("POST", "/v1/sessions", {},
                                  headers={"Authorization": "Bearer " + bob})
        self.assertEqual(st, 201)
        for _ in range(20):
            self.assertEqual(self.s.request("GET", "/healthz")[0], 200)
        time.sleep(1.2)  # the bucket refills at 2/s
        st, _, _ = self.s.request("POST", "/v1/sessions", {},
                                  headers={"Authorization": "Bearer " + alice})
        self.assertEqual(st, 201)

    def test_per_user_mqtt_publish_limit(self):
        tok = user_token(SECRET, "rl-carol")
        time.sleep(2.5)  # the HTTP bucket (shared key, separate limiter) plays no part
        st, _, body = self.s.request("POST", "/v1/sessions", {},
                                     headers={"Authorization": "Bearer " + tok})
        self.assertEqual(st, 201)
        sid = body["session_id"]
        c = Client(self.s.mqtt_port, token=tok)
        self.assertEqual(c.subscribe("session/%s/errors" % sid), [1])
        for i in range(6):
            c.publish("session/%s/profile/set" % sid, '{"fields":{"goals":"g%d"}}' % i, qos=1)
        errors = c.messages(3, timeout=3)
        self.assertTrue(errors, "publishes past the bucket get a problem on …/errors")
        self.assertIn('"status":429', errors[0][1])
        self.assertIn('"retry_after"', errors[0][1])
        c.disconnect()


class ConnectionFloodTest(unittest.TestCase):
    def test_flood_from_one_address_is_refused_and_others_are_served(self):
        # A slow refill (1 per second): the check after the flood must not find a
        # token that refilled meanwhile (at 20/s one came back every 50 ms).
        s = Server(extra_args=["--set", "limits.connections_per_address.rate=1",
                               "--set", "limits.connections_per_address.burst=50"]).start()
        try:
            rss0 = rss_kb(s.proc.pid)
            refused = accepted = 0
            for _ in range(400):
                sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                data = sock.recv(4096)
                if data.startswith(b"HTTP/1.1 429"):
                    refused += 1
                    self.assertIn(b"Retry-After: 1", data)
                elif data.startswith(b"HTTP/1.1 200"):
                    accepted += 1
                sock.close()
            self.assertGreater(refused, 300)
            self.assertGreaterEqual(accepted, 50)
            # MQTT connections from the flooding address are refused with CONNACK 3.
            c = Client(s.mqtt_port)
            self.assertEqual(c.return_code, 3)
            # A client at another address is served (loopback accepts 127.0.0.2).
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=5,
                                            source_address=("127.0.0.2", 0))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(sock.recv(4096).startswith(b"HTTP/1.1 200"))
            sock.close()
            m = Client(s.mqtt_port, source="127.0.0.2")
            self.assertEqual(m.return_code, 0)
            m.disconnect()
            # 400 attempts later, memory has not grown with them.
            self.assertLess(rss_kb(s.proc.pid) - rss0, 20000)
        finally:
            s.cleanup()


class AdmissionTest(unittest.TestCase):
    def test_work_beyond_the_admission_limit_is_refused_at_once(self):
        # A model that takes 1.5 s per call keeps one step in flight; with the
        # limit pinned at 1 the next step gets 503 + Retry-After immediately.
        fake = FakeOpenAI()
        fake.default = {"delay_ms": 1500,
                        "content": '{"reply": "slow hello", "changes": [], "asks": ""}'}
        fake.start()
        providers = ('[{name: slow, kind: openai, base_url: "%s", model: m, timeout_ms: 5000}, '
                     '{name: offline, kind: builtin}]' % fake.base_url)
        s = Server(extra_args=["--set", "ai.providers=" + providers,
                               "--set", "limits.admission.min_limit=1",
                               "--set", "limits.admission.max_limit=1",
                               "--set", "limits.admission.initial_limit=1"]).start()
        try:
            st, _, body = s.request("POST", "/v1/sessions", {"user_id": "u"})
            self.assertEqual(st, 201)
            sid = body["session_id"]
            st, _, body = s.request("POST", "/v1/sessions", {"user_id": "u"})
            sid2 = body["session_id"]
            results = {}

            def slow():
                results["slow"] = s.request("POST", "/v1/sessions/%s/messages" % sid,
                                            {"text": "hello"})[0]
            t = threading.Thread(target=slow)
            t.start()
            time.sleep(0.5)
            t0 = time.time()
            st, h, body = s.request("POST", "/v1/sessions/%s/messages" % sid2, {"text": "hi"})
            elapsed = time.time() - t0
            self.assertEqual(st, 503, body)
            self.assertEqual(h["retry-after"], "1")
            self.assertIn("overloaded", body["detail"])
            self.assertLess(elapsed, 0.3)
            # Reads never queue and are not refused.
            self.assertEqual(s.request("GET", "/v1/sessions/%s/profile" % sid2)[0], 200)
            t.join()
            self.assertEqual(results["slow"], 200)
            st, _, _ = s.request("POST", "/v1/sessions/%s/messages" % sid2, {"text": "hi"})
            self.assertEqual(st, 200)
            _, _, text = s.request("GET", "/metrics")
            shed = [l for l in text.splitlines() if l.startswith("persona_admission_shed_total")]
            self.assertGreaterEqual(int(shed[0].split()[1]), 1)
        finally:
            s.cleanup()
            fake.stop()


class SlowModelTest(unittest.TestCase):
    """Admission judges queueing, not a model's own latency; and a foreign
    session's request never waits behind the owner's step."""

    def test_model_time_is_not_queueing_and_foreign_requests_do_not_queue(self):
        fake = FakeOpenAI()
        fake.default = {"delay_ms": 250,
                        "content": '{"reply": "ok", "changes": [], "asks": ""}'}
        fake.start()
        providers = ('[{name: slow, kind: openai, base_url: "%s", model: m, timeout_ms: 5000}, '
                     '{name: offline, kind: builtin}]' % fake.base_url)
        s = Server(extra_args=["--set", "ai.providers=" + providers,
                               "--set", "auth.enabled=true",
                               "--set", "auth.jwt.hs256_secret=" + SECRET,
                               "--set", "limits.http_per_user.rate=0",
                               "--set", "limits.connections_per_address.rate=0",
                               "--set", "limits.admission.initial_limit=16",
                               "--set", "limits.admission.min_limit=8"]).start()
        try:
            owner, other = user_token(SECRET, "slow-owner"), user_token(SECRET, "slow-other")
            auth = lambda t: {"Authorization": "Bearer " + t}
            sids = []
            for _ in range(12):
                st, _, b = s.request("POST", "/v1/sessions", {}, headers=auth(owner))
                self.assertEqual(st, 201)
                sids.append(b["session_id"])
            # Three rounds of 12 concurrent 250 ms model calls: well past the
            # 20 ms target each, none of it queueing, so nothing is shed.
            codes = []
            lock = threading.Lock()

            def step(sid):
                st = s.request("POST", "/v1/sessions/%s/messages" % sid, {"text": "hello"},
                               headers=auth(owner), conn=s.conn(timeout=15))[0]
                with lock:
                    codes.append(st)
            for _ in range(3):
                ts = [threading.Thread(target=step, args=(sid,)) for sid in sids]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
            self.assertEqual(codes, [200] * 36)
            # While the owner's step waits on the model, someone else's request
            # for that session is answered at once, like a missing session.
            t = threading.Thread(target=step, args=(sids[0],))
            t.start()
            time.sleep(0.05)
            t0 = time.time()
            st, _, body = s.request("PATCH", "/v1/sessions/%s/profile" % sids[0],
                                    {"fields": {"city": "Oslo"}}, headers=auth(other))
            self.assertEqual(st, 404, body)
            self.assertLess(time.time() - t0, 0.2)
            t.join()
        finally:
            s.cleanup()
            fake.stop()


if __name__ == "__main__":
    unittest.main()
