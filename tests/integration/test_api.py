"""The HTTP API of SPEC §4 against the real binary over real sockets."""
import json
import os
import socket
import threading
import time
import unittest
import uuid

from persona_server import Server, metric


class ApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server().start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.s.stop()
        cls.s.cleanup()
        assert rc == 0, "graceful shutdown should exit 0, got %r" % rc

    def create(self, user="u-" + uuid.uuid4().hex[:8], **kw):
        body = {"user_id": user}
        body.update(kw)
        status, h, b = self.s.request("POST", "/v1/sessions", body)
        self.assertEqual(status, 201, b)
        return b

    def say(self, sid, text, headers=None):
        return self.s.request("POST", "/v1/sessions/%s/messages" % sid, {"text": text},
                              headers=headers)

    def assertProblem(self, status, headers, body, expected):
        self.assertEqual(status, expected, body)
        self.assertEqual(headers["content-type"], "application/problem+json")
        for k in ("type", "title", "status", "detail"):
            self.assertIn(k, body)
        self.assertEqual(body["status"], expected)

    def test_numbers_beyond_a_double_are_refused_not_stored(self):
        # Found by fuzzing: 1e400 used to be stored as `Infinity`, after which
        # the session's events could not be read (500) ever again.
        st, h, b = self.s.request("POST", "/v1/sessions", raw=b'{"user_id":"u","metadata":{"x":1e400}}')
        self.assertEqual(st, 400, b)
        self.assertIn("out of range", b["detail"])
        st, _, b = self.s.request("POST", "/v1/sessions", {"user_id": "u", "metadata": {"x": 1e300}})
        self.assertEqual(st, 201)
        st, _, ev = self.s.request("GET", "/v1/sessions/%s/events" % b["session_id"])
        self.assertEqual(st, 200)

    def test_create_session_asks_the_first_question(self):
        b = self.create(user="alice")
        self.assertEqual(len(b["session_id"]), 22)
        self.assertEqual(b["user_id"], "alice")
        self.assertEqual(b["profile"], {})
        self.assertIn("name", b["reply"]["text"].lower())
        self.assertEqual(b["schema"]["name"], "default")
        self.assertEqual([f["name"] for f in b["schema"]["fields"]][:2], ["name", "age"])

    def test_step_extracts_facts_and_updates_the_profile(self):
        sid = self.create()["session_id"]
        status, h, b = self.say(sid, "Hi, I'm Alice Kim and I'm 34")
        self.assertEqual(status, 200, b)
        self.assertEqual(b["source"], "builtin")
        self.assertEqual(b["profile"], {"name": "Alice Kim", "age": 34})
        self.assertEqual({c["field"]: c["value"] for c in b["changes"]}, {"name": "Alice Kim", "age": 34})
        self.assertTrue(all(c["previous"] is None for c in b["changes"]))
        self.assertTrue(b["reply"]["text"])
        v1 = b["version"]
        status, h, b = self.say(sid, "actually I'm 35, and I live in Busan")
        self.assertEqual(status, 200, b)
        self.assertEqual(b["profile"]["age"], 35)
        self.assertEqual(b["profile"]["city"], "Busan")
        self.assertIn({"field": "age", "value": 35, "previous": 34}, b["changes"])
        self.assertGreater(b["version"], v1)
        # Korean in, Korean out.
        status, h, b = self.say(sid, "저는 간호사예요")
        self.assertEqual(status, 200, b)
        self.assertTrue(any("\uac00" <= ch <= "\ud7a3" for ch in b["reply"]["text"]), b["reply"])

    def test_profile_get_etag_and_if_none_match(self):
        sid = self.create()["session_id"]
        self.say(sid, "my email is a@example.com")
        status, h, b = self.s.request("GET", "/v1/sessions/%s/profile" % sid)
        self.assertEqual(status, 200)
        self.assertEqual(b["profile"], {"email": "a@example.com"})
        self.assertEqual(h["etag"], '"%d"' % b["version"])
        self.assertEqual(b["meta"]["email"]["source"], "ai")
        status, h2, _ = self.s.request("GET", "/v1/sessions/%s/profile" % sid,
                                       headers={"If-None-Match": h["etag"]})
        self.assertEqual(status, 304)
        status, _, _ = self.s.request("GET", "/v1/sessions/%s/profile" % sid,
                                      headers={"If-None-Match": '"1"'})
        self.assertEqual(status, 200)

    def test_patch_validates_and_honours_if_match(self):
        sid = self.create()["session_id"]
        path = "/v1/sessions/%s/profile" % sid
        status, h, b = self.s.request("PATCH", path, {"fields": {"city": "Seoul", "age": 40}})
        self.assertEqual(status, 200, b)
        self.assertEqual(b["profile"], {"age": 40, "city": "Seoul"})
        version = b["version"]
        status, h, b = self.s.request("PATCH", path, {"fields": {"city": "Jeju"}},
                                      headers={"If-Match": '"%d"' % (version - 1)})
        self.assertProblem(status, h, b, 412)
        status, h, b = self.s.request("PATCH", path, {"fields": {"shoe_size": 9}})
        self.assertProblem(status, h, b, 422)
        self.assertIn("shoe_size", b["detail"])
        status, h, b = self.s.request("PATCH", path, {"fields": {"age": 500}})
        self.assertProblem(status, h, b, 422)
        status, h, b = self.s.request("PATCH", path, {"fields": {"age": "forty"}})
        self.assertProblem(status, h, b, 422)
        # A rejected PATCH is all-or-nothing.
        status, h, b = self.s.request("PATCH", path, {"fields": {"city": "Jeju", "age": -1}})
        self.assertProblem(status, h, b, 422)
        status, h, b = self.s.request("GET", path)
        self.assertEqual(b["profile"], {"age": 40, "city": "Seoul"})
        self.assertEqual(b["version"], version)
        status, h, b = self.s.request("PATCH", path, {"fields": {"city": None}},
                                      headers={"If-Match": '"%d"' % version})
        self.assertEqual(status, 200, b)
        self.assertEqual(b["profile"], {"age": 40})
        self.assertEqual(b["meta"] if "meta" in b else {}, b.get("meta", {}))

    def test_idempotency_key_replays_the_first_response(self):
        sid = self.create()["session_id"]
        key = {"Idempotency-Key": "k-" + uuid.uuid4().hex}
        s1, h1, b1 = self.say(sid, "I'm 30", headers=key)
        s2, h2, b2 = self.say(sid, "I'm 30", headers=key)
        self.assertEqual((s1, s2), (200, 200))
        self.assertEqual(b1, b2)
        self.assertEqual(h2.get("idempotent-replayed"), "true")
        status, _, b = self.s.request("GET", "/v1/sessions/%s/events?limit=1000" % sid)
        users = [e for e in b["events"] if e["type"] == "message.user"]
        self.assertEqual(len(users), 1)
        # The same key on create returns the same session.
        ck = {"Idempotency-Key": "c-" + uuid.uuid4().hex}
        a = self.s.request("POST", "/v1/sessions", {"user_id": "x"}, headers=ck)
        b = self.s.request("POST", "/v1/sessions", {"user_id": "x"}, headers=ck)
        self.assertEqual(a[0], 201)
        self.assertEqual(a[2]["session_id"], b[2]["session_id"])

    def test_history_and_event_pages(self):
        sid = self.create()["session_id"]
        for t in ("I'm Bob", "I'm 41", "I live in Tokyo"):
            self.assertEqual(self.say(sid, t)[0], 200)
        status, _, b = self.s.request("GET", "/v1/sessions/%s/messages?limit=3" % sid)
        self.assertEqual(status, 200)
        self.assertEqual([m["role"] for m in b["messages"]], ["assistant", "user", "assistant"])
        self.assertEqual(b["messages"][1]["text"], "I live in Tokyo")
        status, _, older = self.s.request(
            "GET", "/v1/sessions/%s/messages?limit=100&before=%d" % (sid, b["next_before"]))
        self.assertEqual(len(older["messages"]), 4)  # greeting + 3 earlier turns
        self.assertEqual(older["messages"][0]["role"], "assistant")
        status, _, ev = self.s.request("GET", "/v1/sessions/%s/events?after=0&limit=5" % sid)
        seqs = [e["seq"] for e in ev["events"]]
        self.assertEqual(seqs, [1, 2, 3, 4, 5])
        self.assertEqual(ev["events"][0]["type"], "session.created")
        for e in ev["events"]:
            for k in ("seq", "id", "type", "at", "hlc", "origin", "data"):
                self.assertIn(k, e)
        status, _, ev2 = self.s.request("GET", "/v1/sessions/%s/events?after=%d" % (sid, ev["next_after"]))
        self.assertEqual(ev2["events"][0]["seq"], 6)
        status, h, b = self.s.request("GET", "/v1/sessions/%s/events?after=abc" % sid)
        self.assertProblem(status, h, b, 400)

    def test_get_and_delete_session(self):
        sid = self.create(metadata={"plan": "pro"})["session_id"]
        self.say(sid, "I'm Carol")
        status, h, b = self.s.request("GET", "/v1/sessions/" + sid)
        self.assertEqual(status, 200)
        self.assertEqual(b["profile"], {"name": "Carol"})
        self.assertEqual(b["metadata"], {"plan": "pro"})
        self.assertEqual(b["counts"]["messages"], 3)
        status, _, _ = self.s.request("DELETE", "/v1/sessions/" + sid)
        self.assertEqual(status, 204)
        for path in ("", "/profile", "/messages", "/events"):
            status, h, b = self.s.request("GET", "/v1/sessions/" + sid + path)
            self.assertProblem(status, h, b, 404)
        status, h, b = self.say(sid, "hello?")
        self.assertProblem(status, h, b, 404)

    def test_sse_live_tail_resumes_from_last_event_id(self):
        sid = self.create()["session_id"]
        sock = socket.create_connection(("127.0.0.1", self.s.port), timeout=10)
        sock.sendall(("GET /v1/sessions/%s/events HTTP/1.1\r\nHost: x\r\n"
                      "Accept: text/event-stream\r\nLast-Event-ID: 1\r\n\r\n" % sid).encode())
        buf = b""
        def read_until(pred, timeout=10):
            nonlocal buf
            end = time.time() + timeout
            while not pred(buf) and time.time() < end:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
            return buf
        read_until(lambda b: b"id: 2\n" in b)
        self.assertIn(b"text/event-stream", buf)
        self.assertNotIn(b"id: 1\n", buf)  # resumed after Last-Event-ID
        self.say(sid, "I'm Dana and I live in Paris")
        read_until(lambda b: b"id: 6\n" in b)
        text = buf.decode()
        self.assertIn("event: profile.field_set", text)
        self.assertIn('"Dana"', text)
        ids = [int(l[4:]) for l in text.splitlines() if l.startswith("id: ")]
        self.assertEqual(ids, list(range(2, 2 + len(ids))))  # in order, no gaps
        sock.close()

    def test_bad_input_gets_problem_json(self):
        sid = self.create()["session_id"]
        path = "/v1/sessions/%s/messages" % sid
        status, h, b = self.s.request("POST", path, raw=b'{"text": ')
        self.assertProblem(status, h, b, 400)
        status, h, b = self.s.request("POST", path, raw=b'{"text": "\xff\xfe"}')
        self.assertProblem(status, h, b, 400)
        status, h, b = self.s.request("POST", path, raw=b'[1,2]')
        self.assertProblem(status, h, b, 400)
        status, h, b = self.s.request("POST", path, {"text": 42})
        self.assertProblem(status, h, b, 422)
        status, h, b = self.s.request("POST", path, {"text": "hi", "extra": 1})
        self.assertProblem(status, h, b, 422)
        status, h, b = self.s.request("POST", path, {"text": "   "})
        self.assertProblem(status, h, b, 422)
        status, h, b = self.s.request("POST", path, raw=b'text=hi',
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertProblem(status, h, b, 415)
        status, h, b = self.s.request("POST", "/v1/sessions", {"user_id": ""})
        self.assertProblem(status, h, b, 422)
        status, h, b = self.s.request("POST", "/v1/sessions", {"user_id": "u", "schema": "nope"})
        self.assertProblem(status, h, b, 422)
        status, h, b = self.s.request("GET", "/v1/sessions/doesnotexist")
        self.assertProblem(status, h, b, 404)
        status, h, b = self.s.request("GET", "/v1/sessions/bad:id/profile")
        self.assertProblem(status, h, b, 404)
        status, h, b = self.s.request("GET", "/nope")
        self.assertProblem(status, h, b, 404)
        status, h, b = self.s.request("PUT", "/v1/sessions/" + sid)
        self.assertProblem(status, h, b, 405)
        self.assertIn("GET", h["allow"])
        # Body over the 1 MiB limit.
        status, h, b = self.s.request("POST", path, raw=b'{"text":"' + b"a" * (1 << 20) + b'"}')
        self.assertProblem(status, h, b, 413)
        # Headers over the limit.
        status, h, b = self.s.request("GET", "/healthz", headers={"X-Big": "a" * 20000})
        self.assertProblem(status, h, b, 431)
        # The server still serves, and nothing was stored by the bad requests.
        status, _, b = self.s.request("GET", "/v1/sessions/%s/events" % sid)
        self.assertEqual(status, 200)
        self.assertEqual([e["type"] for e in b["events"]], ["session.created", "message.assistant"])

    def test_probing_unknown_sessions_costs_no_memory(self):
        def cached():
            _, _, text = self.s.request("GET", "/metrics")
            line = [l for l in text.splitlines() if l.startswith("persona_sessions_cached ")]
            return int(line[0].split()[1]) if line else 0
        before = cached()
        c = self.s.conn()
        for i in range(300):
            st, _, _ = self.s.request("GET", "/v1/sessions/nosuch%d/profile" % i, conn=c)
            self.assertEqual(st, 404)
            st, _, _ = self.s.request("POST", "/v1/sessions/nosuch%d/messages" % i,
                                      {"text": "hi"}, conn=c)
            self.assertEqual(st, 404)
        c.close()
        self.assertLessEqual(cached(), before + 1)

    def test_request_id_is_returned(self):
        status, h, _ = self.s.request("GET", "/healthz", headers={"X-Request-Id": "abc-123"})
        self.assertEqual(h["x-request-id"], "abc-123")
        status, h, _ = self.s.request("GET", "/healthz")
        self.assertEqual(len(h["x-request-id"]), 22)

    def test_operational_endpoints(self):
        self.assertEqual(self.s.request("GET", "/healthz")[0], 200)
        self.assertEqual(self.s.request("GET", "/readyz")[0], 200)
        status, h, body = self.s.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertIn("text/html", h["content-type"])
        self.assertIn("<html", body.lower())
        status, h, doc = self.s.request("GET", "/openapi.json")
        self.assertEqual(status, 200)
        self.assertTrue(doc["openapi"].startswith("3.1"))
        for p in ("/v1/sessions", "/v1/sessions/{id}/messages", "/v1/sessions/{id}/profile"):
            self.assertTrue(any(k.replace("{session_id}", "{id}") == p for k in doc["paths"]), p)
        sid = self.create()["session_id"]
        self.say(sid, "I'm Eve")
        status, h, text = self.s.request("GET", "/metrics")
        self.assertEqual(status, 200)
        for name in ('persona_http_request_duration_seconds_bucket{route="/v1/sessions/{id}/messages"',
                     'persona_http_responses_total{route="/v1/sessions/{id}/messages",code="2xx"}',
                     "persona_store_fsyncs_total", "persona_store_batch_size_bucket",
                     "persona_concurrent_users_peak", "persona_steps_total"):
            self.assertIn(name, text)

    def test_keep_alive_and_pipelining(self):
        sid = self.create()["session_id"]
        sock = socket.create_connection(("127.0.0.1", self.s.port), timeout=10)
        req = ("GET /v1/sessions/%s/profile HTTP/1.1\r\nHost: x\r\n\r\n" % sid).encode()
        sock.sendall(req * 5)
        data = b""
        end = time.time() + 10
        while data.count(b"HTTP/1.1 200") < 5 and time.time() < end:
            data += sock.recv(65536)
        self.assertEqual(data.count(b"HTTP/1.1 200"), 5)
        sock.close()

    def test_concurrent_steps_on_one_session_stay_gapless(self):
        sid = self.create()["session_id"]
        errors = []

        def worker(i):
            c = self.s.conn()
            for j in range(10):
                st, _, b = self.s.request("POST", "/v1/sessions/%s/messages" % sid,
                                          {"text": "I like topic%d_%d" % (i, j)}, conn=c)
                if st != 200:
                    errors.append((st, b))
            c.close()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        self.assertEqual(errors, [])
        status, _, b = self.s.request("GET", "/v1/sessions/%s/events?limit=1000" % sid)
        seqs = [e["seq"] for e in b["events"]]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))
        self.assertEqual(sum(e["type"] == "message.user" for e in b["events"]), 80)


class ConcurrentUsersTest(unittest.TestCase):
    """persona_concurrent_users: users active in the last 60 s (README)."""

    def test_counts_distinct_active_users(self):
        s = Server().start()
        try:
            for user in ("ann", "ben", "ann"):
                st, _, b = s.request("POST", "/v1/sessions", {"user_id": user})
                self.assertEqual(st, 201, b)
                st, _, _ = s.request("POST", "/v1/sessions/%s/messages" % b["session_id"],
                                     {"text": "hi"})
                self.assertEqual(st, 200)
            deadline = time.time() + 5
            while time.time() < deadline and metric(s, "persona_concurrent_users") != 2:
                time.sleep(0.2)
            self.assertEqual(metric(s, "persona_concurrent_users"), 2)
            self.assertEqual(metric(s, "persona_concurrent_users_peak"), 2)
        finally:
            s.cleanup()


if __name__ == "__main__":
    unittest.main()
