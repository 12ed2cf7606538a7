"""Async write mode: 202 Accepted, the intake log, /v1/requests/{id}, and
exactly-once application across kill -9."""
import http.client
import json
import threading
import time
import unittest
import uuid

from mqtt_client import Client
from persona_server import Server, postgres_only

ASYNC = {"Prefer": "respond-async"}


def wait_applied(test, s, location, timeout=20):
    """Polls a request's status until it is no longer pending."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        st, _, b = s.request("GET", location)
        test.assertEqual(st, 200, b)
        if b["status"] != "pending":
            return b
        time.sleep(0.02)
    test.fail("request %s still pending after %s s" % (location, timeout))


def metric(s, name):
    _, _, text = s.request("GET", "/metrics")
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def wait_all_applied(test, s, request_ids, timeout=120):
    """Polls until none of `request_ids` is pending on server `s`."""
    left = list(request_ids)
    deadline = time.time() + timeout
    conn = s.conn()
    while left and time.time() < deadline:
        still = []
        for rid in left:
            st, _, b = s.request("GET", "/v1/requests/" + rid, conn=conn)
            test.assertEqual(st, 200, b)
            if b["status"] == "pending":
                still.append(rid)
        left = still
        if left:
            time.sleep(0.2)
    conn.close()
    test.assertEqual(left, [], "requests still pending after %s s" % timeout)


def user_messages(test, s, sids):
    """{(sid, text): how many message.user events} over the sessions' whole
    logs, checking each log is gapless."""
    counts = {}
    for sid in sids:
        after = 0
        while True:
            st, _, page = s.request("GET", "/v1/sessions/%s/events?after=%d&limit=1000" %
                                    (sid, after))
            test.assertEqual(st, 200)
            evs = page["events"]
            if not evs:
                break
            for i, e in enumerate(evs):
                test.assertEqual(e["seq"], after + i + 1)  # gapless
                if e["type"] == "message.user":
                    key = (sid, e["data"]["text"])
                    counts[key] = counts.get(key, 0) + 1
            after = evs[-1]["seq"]
    return counts


class AsyncApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server().start()

    @classmethod
    def tearDownClass(cls):
        cls.s.cleanup()

    def new_session(self):
        st, _, b = self.s.request("POST", "/v1/sessions", {"user_id": "async"})
        self.assertEqual(st, 201)
        return b["session_id"]

    def test_message_202_then_applied_with_full_result(self):
        sid = self.new_session()
        st, h, b = self.s.request("POST", "/v1/sessions/%s/messages" % sid,
                                  {"text": "My name is Ada and I live in Paris"}, headers=ASYNC)
        self.assertEqual(st, 202, b)
        self.assertEqual(h["location"], "/v1/requests/" + b["request_id"])
        self.assertEqual(h.get("preference-applied"), "respond-async")
        self.assertEqual(b["status"], "pending")
        self.assertEqual(b["session_id"], sid)
        done = wait_applied(self, self.s, h["location"])
        self.assertEqual(done["status"], "applied")
        self.assertEqual(done["http_status"], 200)
        result = done["result"]
        self.assertEqual(result["profile"]["name"], "Ada")
        self.assertEqual(result["profile"]["city"], "Paris")
        self.assertIn("text", result["reply"])
        self.assertEqual({c["field"] for c in result["changes"]}, {"name", "city"})
        # The profile and the event log agree with the result.
        st, h2, p = self.s.request("GET", "/v1/sessions/%s/profile" % sid)
        self.assertEqual(p["version"], result["version"])
        self.assertEqual(p["profile"]["name"], "Ada")
        st, _, ev = self.s.request("GET", "/v1/sessions/%s/events" % sid)
        users = [e for e in ev["events"] if e["type"] == "message.user"]
        self.assertEqual(users[-1]["data"]["request_id"], b["request_id"])

    def test_patch_async_and_failures_become_problems(self):
        sid = self.new_session()
        st, h, b = self.s.request("PATCH", "/v1/sessions/%s/profile" % sid,
                                  {"fields": {"age": 41}}, headers=ASYNC)
        self.assertEqual(st, 202, b)
        self.assertEqual(wait_applied(self, self.s, h["location"])["result"]["profile"]["age"], 41)
        # A field the schema lacks fails at apply time with the sync problem.
        st, h, b = self.s.request("PATCH", "/v1/sessions/%s/profile" % sid,
                                  {"fields": {"shoe_size": 44}}, headers=ASYNC)
        self.assertEqual(st, 202)
        failed = wait_applied(self, self.s, h["location"])
        self.assertEqual(failed["status"], "failed")
        self.assertEqual(failed["problem"]["status"], 422)
        self.assertIn("shoe_size", failed["problem"]["detail"])
        # A stale If-Match fails with 412.
        st, h, b = self.s.request("PATCH", "/v1/sessions/%s/profile" % sid,
                                  {"fields": {"age": 42}}, headers=dict(ASYNC, **{"If-Match": '"1"'}))
        self.assertEqual(st, 202)
        self.assertEqual(wait_applied(self, self.s, h["location"])["problem"]["status"], 412)
        # A no-op PATCH is applied without events.
        st, h, b = self.s.request("PATCH", "/v1/sessions/%s/profile" % sid,
                                  {"fields": {"age": 41}}, headers=ASYNC)
        done = wait_applied(self, self.s, h["location"])
        self.assertEqual(done["status"], "applied")
        self.assertEqual(done["result"]["changes"], [])

    def test_refusals_are_immediate(self):
        st, _, b = self.s.request("POST", "/v1/sessions/nosuchsession/messages", {"text": "hi"},
                                  headers=ASYNC)
        self.assertEqual(st, 404, b)
        sid = self.new_session()
        st, _, b = self.s.request("POST", "/v1/sessions/%s/messages" % sid, {"text": " "},
                                  headers=ASYNC)
        self.assertEqual(st, 422)
        st, _, b = self.s.request("POST", "/v1/sessions/%s/messages" % sid, raw=b"{nope",
                                  headers=ASYNC)
        self.assertEqual(st, 400)
        for rid in ["nope", sid + ".AAAAAAAAAAAAAAAAAAAAAA", "a/b", "%s.x" % sid]:
            st, h, b = self.s.request("GET", "/v1/requests/" + rid)
            self.assertEqual(st, 404, rid)
            self.assertEqual(h["content-type"], "application/problem+json")
        st, _, _ = self.s.request("POST", "/v1/requests/x", {})
        self.assertEqual(st, 405)

    def test_per_session_order(self):
        sid = self.new_session()
        conn = self.s.conn()
        locations = []
        for i in range(60):
            st, h, b = self.s.request("POST", "/v1/sessions/%s/messages" % sid,
                                      {"text": "note number %d" % i}, headers=ASYNC, conn=conn)
            self.assertEqual(st, 202)
            locations.append(h["location"])
        conn.close()
        wait_applied(self, self.s, locations[-1])
        st, _, ev = self.s.request("GET", "/v1/sessions/%s/events?limit=1000" % sid)
        texts = [e["data"]["text"] for e in ev["events"] if e["type"] == "message.user"]
        self.assertEqual(texts, ["note number %d" % i for i in range(60)])
        for loc in locations:
            self.assertEqual(wait_applied(self, self.s, loc)["status"], "applied")

    def test_idempotency_key_holds_across_modes(self):
        sid = self.new_session()
        key = uuid.uuid4().hex
        path = "/v1/sessions/%s/messages" % sid
        st, h, first = self.s.request("POST", path, {"text": "I am 30 years old"},
                                      headers=dict(ASYNC, **{"Idempotency-Key": key}))
        self.assertEqual(st, 202)
        # The same key again, async or sync, names the same request (or its result).
        st2, h2, again = self.s.request("POST", path, {"text": "I am 30 years old"},
                                        headers=dict(ASYNC, **{"Idempotency-Key": key}))
        self.assertIn(st2, (200, 202))
        if st2 == 202:
            self.assertEqual(again["request_id"], first["request_id"])
        done = wait_applied(self, self.s, h["location"])
        st3, h3, sync = self.s.request("POST", path, {"text": "I am 30 years old"},
                                       headers={"Idempotency-Key": key})
        self.assertEqual(st3, 200)
        self.assertEqual(h3.get("idempotent-replayed"), "true")
        self.assertEqual(sync["message_id"], done["result"]["message_id"])
        # Exactly one message.user for the key.
        st, _, ev = self.s.request("GET", "/v1/sessions/%s/events" % sid)
        users = [e for e in ev["events"] if e["type"] == "message.user"]
        self.assertEqual(len(users), 1)
        # A key first used synchronously answers an async retry with the result.
        key2 = uuid.uuid4().hex
        st, _, b1 = self.s.request("POST", path, {"text": "I live in Rome"},
                                   headers={"Idempotency-Key": key2})
        self.assertEqual(st, 200)
        st, _, b2 = self.s.request("POST", path, {"text": "I live in Rome"},
                                   headers=dict(ASYNC, **{"Idempotency-Key": key2}))
        self.assertEqual(st, 200)
        self.assertEqual(b2["message_id"], b1["message_id"])

    def test_subscribers_are_notified_when_applied(self):
        sid = self.new_session()
        c = Client(self.s.mqtt_port, client_id="async-sub")
        c.subscribe("session/%s/events" % sid)
        st, h, b = self.s.request("POST", "/v1/sessions/%s/messages" % sid,
                                  {"text": "I work as a pilot"}, headers=ASYNC)
        self.assertEqual(st, 202)
        msgs = c.messages(4, timeout=10)
        c.disconnect()
        events = [json.loads(m[1]) for m in msgs]
        self.assertEqual([e["type"] for e in events][0], "message.user")
        self.assertEqual(events[0]["data"]["request_id"], b["request_id"])
        self.assertIn("profile.field_set", [e["type"] for e in events])

    def test_erasure_removes_request_status(self):
        sid = self.new_session()
        st, h, b = self.s.request("POST", "/v1/sessions/%s/messages" % sid,
                                  {"text": "my email is ada@example.com"}, headers=ASYNC)
        wait_applied(self, self.s, h["location"])
        st, _, _ = self.s.request("DELETE", "/v1/sessions/%s" % sid)
        self.assertEqual(st, 204)
        st, _, _ = self.s.request("GET", h["location"])
        self.assertEqual(st, 404)


class AsyncDefaultModeTest(unittest.TestCase):
    def test_write_mode_async_and_respond_sync(self):
        s = Server(extra_args=["--write-mode", "async"]).start()
        try:
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "u"})
            self.assertEqual(st, 201)  # creating a session is always synchronous
            sid = b["session_id"]
            st, h, b = s.request("POST", "/v1/sessions/%s/messages" % sid, {"text": "I am 25"})
            self.assertEqual(st, 202)
            self.assertNotIn("preference-applied", h)
            self.assertEqual(wait_applied(self, s, h["location"])["result"]["profile"]["age"], 25)
            st, _, b = s.request("POST", "/v1/sessions/%s/messages" % sid, {"text": "I am 26"},
                                 headers={"Prefer": "respond-sync"})
            self.assertEqual(st, 200)
            self.assertEqual(b["profile"]["age"], 26)
            self.assertGreaterEqual(metric(s, "persona_intake_applied_total"), 1)
            self.assertIsNotNone(metric(s, "persona_intake_depth"))
            self.assertIsNotNone(metric(s, "persona_intake_apply_lag_seconds_count"))
        finally:
            s.cleanup()

    def test_full_intake_is_refused_with_503(self):
        # A tiny intake bound and an applier that waits 3 s for a batch of 100
        # to fill: the sixth request finds the intake full and gets 503.
        s = Server(extra_args=["--set", "async.max_pending=5", "--set", "async.batch_size=100",
                               "--set", "async.max_delay_ms=3000"]).start()
        try:
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "u"})
            sid = b["session_id"]
            statuses = []
            conn = s.conn()
            for i in range(40):
                st, h, b = s.request("POST", "/v1/sessions/%s/messages" % sid, {"text": "x %d" % i},
                                     headers=ASYNC, conn=conn)
                statuses.append(st)
                if st == 503:
                    self.assertIn("retry-after", h)
            conn.close()
            self.assertEqual(statuses[:5], [202] * 5)
            self.assertIn(503, statuses)
            self.assertEqual(set(statuses), {202, 503})
        finally:
            s.cleanup()


WORKERS = 32
SESSIONS = 64
TARGET_ACCEPTED = 10000


class AsyncCrashTest(unittest.TestCase):
    def test_kill9_applies_every_accepted_write_exactly_once(self):
        # Batches that wait up to 200 ms to fill keep a backlog in the intake.
        s = Server(extra_args=["--set", "async.max_delay_ms=200",
                               "--set", "async.batch_size=5000"]).start()
        try:
            sids = []
            for i in range(SESSIONS):
                st, _, b = s.request("POST", "/v1/sessions", {"user_id": "crash-%d" % i})
                sids.append(b["session_id"])
            accepted = []  # (sid, text, request_id)
            lock = threading.Lock()
            stop = threading.Event()

            def worker(w):
                conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
                n = 0
                while not stop.is_set():
                    n += 1
                    sid = sids[(w * 7 + n) % SESSIONS]
                    text = "note w%dn%d" % (w, n)
                    try:
                        conn.request("POST", "/v1/sessions/%s/messages" % sid,
                                     body=json.dumps({"text": text}),
                                     headers={"Content-Type": "application/json",
                                              "Prefer": "respond-async"})
                        r = conn.getresponse()
                        data = r.read()
                    except (OSError, http.client.HTTPException):
                        return  # the server died; this one may or may not be accepted
                    if r.status == 202:
                        with lock:
                            accepted.append((sid, text, json.loads(data)["request_id"]))

            threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
            for t in threads:
                t.start()
            deadline = time.time() + 120
            while time.time() < deadline:
                with lock:
                    if len(accepted) >= TARGET_ACCEPTED:
                        break
                time.sleep(0.01)
            pending_before = metric(s, "persona_intake_depth")
            s.kill9()  # with requests in flight and accepted ones not yet applied
            stop.set()
            for t in threads:
                t.join()
            self.assertGreaterEqual(len(accepted), TARGET_ACCEPTED)

            s.start()
            # The applier resumes (on PostgreSQL once the killed run's lease
            # has run out); wait until every accepted request is applied.
            wait_all_applied(self, s, [a[2] for a in accepted])
            self.assertEqual(metric(s, "persona_intake_depth"), 0)

            counts = user_messages(self, s, sids)
            missing = [a for a in accepted if counts.get((a[0], a[1]), 0) == 0]
            dupes = [k for k, v in counts.items() if v > 1]
            self.assertEqual(missing, [], "accepted writes lost")
            self.assertEqual(dupes, [], "writes applied twice")
            conn = s.conn()
            for sid, text, rid in accepted[:: max(1, len(accepted) // 500)]:
                st, _, b = s.request("GET", "/v1/requests/" + rid, conn=conn)
                self.assertEqual((st, b["status"]), (200, "applied"))
            conn.close()
            print("\nasync crash: %d accepted, %s pending at kill -9, 0 lost, 0 duplicated"
                  % (len(accepted), pending_before))
        finally:
            s.cleanup()


if __name__ == "__main__":
    unittest.main()


class SharedIntakeTest(unittest.TestCase):
    @postgres_only
    def test_a_node_killed_leaves_its_requests_to_another(self):
        # Two persona processes on one database. A accepts with a backlog
        # (batches wait 300 ms to fill) and is killed; B shows A's pending
        # requests, claims them once A's lease runs out, and applies each once.
        args = ["--set", "async.max_delay_ms=300", "--set", "async.batch_size=5000"]
        a = Server(extra_args=args).start()
        b = Server(extra_args=args)
        b.store_args = a.store_args  # the same database
        b.start()
        try:
            sids = []
            for i in range(8):
                st, _, body = a.request("POST", "/v1/sessions", {"user_id": "shared-%d" % i})
                self.assertEqual(st, 201)
                sids.append(body["session_id"])
            accepted = []
            conn = a.conn()
            for n in range(600):
                sid = sids[n % len(sids)]
                text = "note %d" % n
                st, _, body = a.request("POST", "/v1/sessions/%s/messages" % sid, {"text": text},
                                        headers=ASYNC, conn=conn)
                self.assertEqual(st, 202, body)
                accepted.append((sid, text, body["request_id"]))
            conn.close()
            a.kill9()
            # B answers for A's requests: pending ones from the shared intake.
            seen = set()
            conn = b.conn()
            for _, _, rid in accepted[-50:]:
                st, _, body = b.request("GET", "/v1/requests/" + rid, conn=conn)
                self.assertEqual(st, 200, body)
                seen.add(body["status"])
            conn.close()
            self.assertIn("pending", seen)
            wait_all_applied(self, b, [x[2] for x in accepted], timeout=60)
            self.assertGreater(metric(b, "persona_intake_claimed_total"), 0)
            counts = user_messages(self, b, sids)
            missing = [x for x in accepted if counts.get((x[0], x[1]), 0) == 0]
            dupes = [k for k, v in counts.items() if v > 1]
            self.assertEqual(missing, [], "accepted writes lost")
            self.assertEqual(dupes, [], "writes applied twice")
            # Each session's requests were applied in the order accepted.
            for sid in sids:
                st, _, page = b.request("GET", "/v1/sessions/%s/events?limit=1000" % sid)
                texts = [e["data"]["text"] for e in page["events"] if e["type"] == "message.user"]
                self.assertEqual(texts, [x[1] for x in accepted if x[0] == sid])
        finally:
            a.cleanup()
            b.cleanup()
