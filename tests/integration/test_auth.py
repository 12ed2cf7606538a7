"""Identity and access (SPEC §10) against the real binary: the BOLA matrix.

Every route and every topic is walked with user A's token against user B's
session, with an admin token, a device token limited to one session, no
token, and expired, forged, alg-none, wrong-audience and malformed tokens.
Each case asserts the exact status and that not one byte of B's data comes
back. Tokens are minted here in Python (persona_server.mint), independently
of persona's own signing code, and once with `persona token`.
"""
import json
import os
import socket
import struct
import time
import unittest
import urllib.parse

from mqtt_client import Client, packet, _str
from persona_server import Server, b64url, mint, user_token

SECRET = "integration-secret-0123456789abcdef-xyz"
WRONG = "another-secret-0123456789abcdef-0000000"

# Values only B's session holds: none of them may appear in any answer to A.
B_NAME = "Zebulon Quixote"
B_CITY = "Reykjavik"


class AuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # This suite opens a connection per request, hundreds in a few
        # seconds: the per-address connection limit and the per-user request
        # limit are lifted here (test_limits.py tests them).
        cls.s = Server(extra_args=["--set", "auth.enabled=true",
                                   "--set", "auth.jwt.hs256_secret_env=TEST_JWT_SECRET",
                                   "--set", "limits.http_per_user.rate=0",
                                   "--set", "limits.connections_per_address.rate=0"],
                       env={"TEST_JWT_SECRET": SECRET}).start()
        cls.alice = user_token(SECRET, "alice")
        cls.bob = user_token(SECRET, "bob")
        cls.admin = user_token(SECRET, "ops", persona_admin=True)
        cls.a1 = cls.create(cls.alice)
        cls.a2 = cls.create(cls.alice)
        cls.b1 = cls.create(cls.bob)
        st, _, body = cls.call("POST", "/v1/sessions/%s/messages" % cls.b1, cls.bob,
                               {"text": "My name is %s and I live in %s" % (B_NAME, B_CITY)})
        assert st == 200, body
        assert body["profile"].get("city") == B_CITY, body
        # An async request of B's, for /v1/requests.
        st, _, body = cls.call("POST", "/v1/sessions/%s/messages" % cls.b1, cls.bob,
                               {"text": "I am 41"}, {"Prefer": "respond-async"})
        assert st == 202, body
        cls.b_request = body["request_id"]
        deadline = time.time() + 10
        while time.time() < deadline:  # let the applier finish, so B stays still from here
            st, _, body = cls.call("GET", "/v1/requests/%s" % cls.b_request, cls.bob)
            if body.get("status") == "applied":
                break
            time.sleep(0.05)
        assert body.get("status") == "applied", body
        cls.device = user_token(SECRET, "alice", sessions=[cls.a1])
        now = int(time.time())
        cls.bad_tokens = {
            "none": None,
            "expired": user_token(SECRET, "alice", ttl=-120),
            "forged": user_token(WRONG, "alice"),
            "alg_none": b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + "." +
            b64url(json.dumps({"sub": "alice", "aud": "persona", "exp": now + 600}).encode()) + ".",
            "wrong_audience": mint(SECRET, {"sub": "alice", "aud": "other", "exp": now + 600}),
            "no_exp": mint(SECRET, {"sub": "alice", "aud": "persona"}),
            "not_yet_valid": mint(SECRET, {"sub": "alice", "aud": "persona", "exp": now + 900,
                                           "nbf": now + 600}),
            "hs512": mint(SECRET, {"sub": "alice", "aud": "persona", "exp": now + 600},
                          {"alg": "HS512"}),
            "truncated": cls.alice[:-10],
            "garbage": "not-a-token",
            "bad_base64": "eyJhbGciOiJIUzI1NiJ9.e30+.abc",
            "three_dots": cls.alice + ".x",
            "admin_string": mint(SECRET, {"sub": "alice", "aud": "persona", "exp": now + 600,
                                          "persona_admin": "true"}),
            "sub_number": mint(SECRET, {"sub": 7, "aud": "persona", "exp": now + 600}),
            "bomb": mint(SECRET, {"sub": "a", "aud": "persona", "exp": now + 600,
                                  "x": json.loads("[" * 100 + "]" * 100)}),
            "huge": "a" * 9000,
        }

    @classmethod
    def tearDownClass(cls):
        rc = cls.s.stop()
        cls.s.cleanup()
        assert rc == 0, rc

    @classmethod
    def call(cls, method, path, token, body=None, headers=None, raw=None):
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        return cls.s.request(method, path, body, headers=h, raw=raw)

    @classmethod
    def create(cls, token):
        st, _, body = cls.call("POST", "/v1/sessions", token, {})
        assert st == 201, body
        return body["session_id"]

    def raw(self, method, path, token=None, body=None, headers=None):
        """(status, headers, raw bytes of the whole answer)."""
        c = self.s.conn()
        h = {"Content-Type": "application/json"} if body is not None else {}
        if token is not None:
            h["Authorization"] = "Bearer " + token
        h.update(headers or {})
        c.request(method, path, body=None if body is None else json.dumps(body).encode(),
                  headers=h)
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        whole = "".join("%s: %s\n" % kv for kv in r.getheaders()
                        if kv[0].lower() != "x-request-id").encode() + data
        return r.status, hdrs, whole

    def assertNoBData(self, whole):
        for secret in (B_NAME, B_CITY, "Zebulon", "bob", self.b_request.split(".")[1]):
            self.assertNotIn(secret.encode(), whole)

    def b_version(self):
        st, _, body = self.call("GET", "/v1/sessions/%s" % self.b1, self.bob)
        self.assertEqual(st, 200)
        return body["version"], body["profile"]

    def session_routes(self, sid):
        """Every route of SPEC §4 that names a session: (method, path, body, headers)."""
        return [
            ("GET", "/v1/sessions/%s" % sid, None, {}),
            ("GET", "/v1/sessions/%s/messages" % sid, None, {}),
            ("POST", "/v1/sessions/%s/messages" % sid, {"text": "I live in Paris"}, {}),
            ("POST", "/v1/sessions/%s/messages" % sid, {"text": "I live in Paris"},
             {"Prefer": "respond-async"}),
            ("POST", "/v1/sessions/%s/messages" % sid, {"text": "I live in Paris"},
             {"Accept": "text/event-stream"}),
            ("POST", "/v1/sessions/%s/messages" % sid, {"text": "I live in Paris"},
             {"Idempotency-Key": "k-shared-1"}),
            ("GET", "/v1/sessions/%s/profile" % sid, None, {}),
            ("GET", "/v1/sessions/%s/profile" % sid, None, {"If-None-Match": '"1"'}),
            ("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"city": "Paris"}}, {}),
            ("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"city": "Paris"}},
             {"Prefer": "respond-async"}),
            ("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"city": "Paris"}},
             {"If-Match": '"3"'}),
            ("GET", "/v1/sessions/%s/events" % sid, None, {}),
            ("GET", "/v1/sessions/%s/events?after=0&limit=5" % sid, None, {}),
            ("GET", "/v1/sessions/%s/events" % sid, None, {"Accept": "text/event-stream"}),
            ("DELETE", "/v1/sessions/%s" % sid, None, {}),
        ]

    # ------------------------------------------------------------ HTTP

    def test_a_against_b_is_answered_exactly_like_a_missing_session(self):
        before = self.b_version()
        # Bob uses the same Idempotency-Key first: Alice must not get his answer.
        st, _, _ = self.call("POST", "/v1/sessions/%s/messages" % self.b1, self.bob,
                             {"text": "hello"}, {"Idempotency-Key": "k-shared-1"})
        self.assertEqual(st, 200)
        before = self.b_version()
        missing = "AAAAAAAAAAAAAAAAAAAAAA"
        refused = 0
        for (method, path, body, headers), (_, missing_path, _, _) in zip(
                self.session_routes(self.b1), self.session_routes(missing)):
            with self.subTest(route=method + " " + path.replace(self.b1, "{B}"), h=headers):
                st, h, whole = self.raw(method, path, self.alice, body, headers)
                st_m, h_m, whole_m = self.raw(method, missing_path, self.alice, body, headers)
                self.assertEqual(st, 404, whole)
                self.assertEqual(st, st_m)
                body_of = lambda w: w.split(b"\n")[-1]
                self.assertEqual(body_of(whole), body_of(whole_m))
                self.assertNotIn("etag", h)
                self.assertNoBData(whole)
                refused += 1
        self.assertEqual(refused, len(self.session_routes(self.b1)))
        self.assertEqual(self.b_version(), before, "B's session must be untouched")

    def test_requests_and_usage_of_another_user(self):
        st, _, whole = self.raw("GET", "/v1/requests/%s" % self.b_request, self.alice)
        self.assertEqual(st, 404)
        self.assertNoBData(whole)
        st_m, _, whole_m = self.raw("GET", "/v1/requests/%s.AAAAAAAAAAAAAAAAAAAAAA" % self.a1,
                                    self.alice)
        self.assertEqual(st_m, 404)
        self.assertEqual(whole.split(b"\n")[-1], whole_m.split(b"\n")[-1])
        st, _, body = self.call("GET", "/v1/requests/%s" % self.b_request, self.bob)
        self.assertEqual(st, 200)
        st, _, whole = self.raw("GET", "/v1/users/bob/usage", self.alice)
        self.assertEqual(st, 403)
        self.assertNotIn(b"tokens_in", whole)
        st, _, body = self.call("GET", "/v1/users/alice/usage", self.alice)
        self.assertEqual((st, body["user_id"]), (200, "alice"))

    def test_create_takes_the_user_from_the_token(self):
        st, _, body = self.call("POST", "/v1/sessions", self.alice, {"user_id": "bob"})
        self.assertEqual(st, 403, body)
        st, _, body = self.call("POST", "/v1/sessions", self.alice, {"user_id": "alice"})
        self.assertEqual((st, body["user_id"]), (201, "alice"))
        st, _, body = self.call("POST", "/v1/sessions", self.alice, {})
        self.assertEqual((st, body["user_id"]), (201, "alice"))
        st, _, body = self.call("POST", "/v1/sessions", self.admin, {"user_id": "carol"})
        self.assertEqual((st, body["user_id"]), (201, "carol"))

    def test_own_session_works_on_every_route(self):
        sid = self.create(self.alice)
        for method, path, body, headers in self.session_routes(sid):
            if "If-Match" in headers or "If-None-Match" in headers:
                continue
            if method == "GET" and headers.get("Accept") == "text/event-stream":
                continue  # a live tail of one's own session never ends
            with self.subTest(route=method + " " + path.replace(sid, "{A}"), h=headers):
                st, _, _ = self.call(method, path, self.alice, body, headers)
                self.assertIn(st, (200, 202, 204), (method, path))

    def test_bad_tokens_are_401_on_every_route(self):
        routes = self.session_routes(self.a1) + [
            ("POST", "/v1/sessions", {}, {}),
            ("GET", "/v1/users/alice/usage", None, {}),
            ("GET", "/v1/requests/%s.AAAAAAAAAAAAAAAAAAAAAA" % self.a1, None, {}),
            ("GET", "/v1/no/such/route", None, {}),
        ]
        for name, token in self.bad_tokens.items():
            for method, path, body, headers in routes:
                with self.subTest(token=name, route=method + " " + path):
                    st, h, whole = self.raw(method, path, token, body, headers)
                    self.assertEqual(st, 401, whole[-200:])
                    self.assertIn('error="invalid_token"', h.get("www-authenticate", ""))
                    self.assertNotIn(b"profile", whole.split(b"\n")[-1])
        # Alice's session survived all of it.
        st, _, _ = self.call("GET", "/v1/sessions/%s" % self.a1, self.alice)
        self.assertEqual(st, 200)

    def test_create_idempotency_keys_are_per_user(self):
        # Alice's answer to a key is never Bob's: the same key makes him his own session.
        h = {"Idempotency-Key": "shared-create-key-1"}
        st, _, a = self.call("POST", "/v1/sessions", self.alice, {}, h)
        self.assertEqual(st, 201)
        st, hb, b = self.call("POST", "/v1/sessions", self.bob, {}, h)
        self.assertEqual(st, 201, b)
        self.assertEqual(b["user_id"], "bob")
        self.assertNotEqual(b["session_id"], a["session_id"])
        self.assertNotIn("idempotent-replayed", hb)
        st, ha, again = self.call("POST", "/v1/sessions", self.alice, {}, h)
        self.assertEqual((st, again["session_id"]), (201, a["session_id"]))
        self.assertEqual(ha.get("idempotent-replayed"), "true")

    def test_device_links_do_not_outlive_the_token_that_asks(self):
        st, _, link = self.call("POST", "/v1/sessions/%s/links" % self.a1, self.alice,
                                {"ttl_s": 600})
        self.assertEqual(st, 201, link)
        claims = json.loads(__import__("base64").urlsafe_b64decode(
            link["token"].split(".")[1] + "=="))
        self.assertEqual((claims["sub"], claims["sessions"]), ("alice", [self.a1]))
        self.assertLessEqual(claims["exp"] - time.time(), 601)
        st, _, _ = self.call("GET", "/v1/sessions/%s" % self.a1, link["token"])
        self.assertEqual(st, 200)
        st, _, _ = self.call("GET", "/v1/sessions/%s" % self.a2, link["token"])
        self.assertEqual(st, 404)
        # A short-lived device token cannot mint itself a longer one.
        short = user_token(SECRET, "alice", ttl=120, sessions=[self.a1])
        st, _, renewed = self.call("POST", "/v1/sessions/%s/links" % self.a1, short,
                                   {"ttl_s": 86400})
        self.assertEqual(st, 201)
        c = json.loads(__import__("base64").urlsafe_b64decode(renewed["token"].split(".")[1] + "=="))
        self.assertLessEqual(c["exp"], int(time.time()) + 121)
        # Nobody mints links for someone else's session.
        st, _, whole = self.raw("POST", "/v1/sessions/%s/links" % self.b1, self.alice, {})
        self.assertEqual(st, 404)
        self.assertNoBData(whole)
        st, _, _ = self.call("POST", "/v1/sessions/%s/links" % self.a1, self.alice, {"ttl_s": 5})
        self.assertEqual(st, 422)

    def test_a_sessions_claim_limits_an_admin_token_too(self):
        r = self.s.cli("token", "--user", "ops", "--admin", "--session", self.b1,
                       "--set", "auth.jwt.hs256_secret=" + SECRET)
        self.assertEqual(r.returncode, 0, r.stderr)
        tok = r.stdout.strip()
        st, _, _ = self.call("GET", "/v1/sessions/%s" % self.b1, tok)
        self.assertEqual(st, 200)
        st, _, _ = self.call("GET", "/v1/sessions/%s" % self.a1, tok)
        self.assertEqual(st, 404)
        st, _, _ = self.call("GET", "/metrics", tok)
        self.assertEqual(st, 403)
        st, _, _ = self.call("POST", "/v1/sessions", tok, {})
        self.assertEqual(st, 403)

    def test_admin_and_open_routes(self):
        st, _, body = self.call("GET", "/v1/sessions/%s" % self.b1, self.admin)
        self.assertEqual((st, body["profile"]["name"]), (200, B_NAME))
        st, _, body = self.call("GET", "/v1/users/bob/usage", self.admin)
        self.assertEqual(st, 200)
        st, _, text = self.call("GET", "/metrics", self.admin)
        self.assertEqual(st, 200)
        self.assertIn("persona_steps_total", text)
        st, h, _ = self.call("GET", "/metrics", self.alice)
        self.assertEqual(st, 403)
        self.assertIn("insufficient_scope", h["www-authenticate"])
        st, _, _ = self.call("GET", "/metrics", None)
        self.assertEqual(st, 401)
        for path in ("/healthz", "/readyz", "/", "/openapi.json", "/assets/persona-client.js"):
            st, _, _ = self.call("GET", path, None)
            self.assertEqual(st, 200, path)

    def test_device_token_is_limited_to_its_session(self):
        st, _, _ = self.call("GET", "/v1/sessions/%s" % self.a1, self.device)
        self.assertEqual(st, 200)
        st, _, body = self.call("POST", "/v1/sessions/%s/messages" % self.a1, self.device,
                                {"text": "I like chess"})
        self.assertEqual(st, 200, body)
        for method, path, body, headers in self.session_routes(self.a2):
            with self.subTest(route=method + " " + path.replace(self.a2, "{A2}")):
                st, _, _ = self.call(method, path, self.device, body, headers)
                self.assertEqual(st, 404)
        st, _, _ = self.call("POST", "/v1/sessions", self.device, {})
        self.assertEqual(st, 403)
        st, _, _ = self.call("GET", "/v1/users/alice/usage", self.device)
        self.assertEqual(st, 403)
        # A device token naming Bob's session grants nothing: it is not Alice's.
        sneaky = user_token(SECRET, "alice", sessions=[self.b1])
        st, _, whole = self.raw("GET", "/v1/sessions/%s" % self.b1, sneaky)
        self.assertEqual(st, 404)
        self.assertNoBData(whole)

    def test_persona_token_cli_mints_a_working_token(self):
        r = self.s.cli("token", "--user", "alice", "--ttl", "10m", "--session", self.a1,
                       "--set", "auth.jwt.hs256_secret=" + SECRET)
        self.assertEqual(r.returncode, 0, r.stderr)
        tok = r.stdout.strip()
        st, _, _ = self.call("GET", "/v1/sessions/%s" % self.a1, tok)
        self.assertEqual(st, 200)
        st, _, _ = self.call("GET", "/v1/sessions/%s" % self.a2, tok)
        self.assertEqual(st, 404)
        r = self.s.cli("token", "--user", "alice")
        self.assertEqual(r.returncode, 2)
        self.assertIn("hs256_secret", r.stderr)

    def test_sse_with_access_token_query(self):
        path = "/v1/sessions/%s/events?access_token=%s" % (self.a1, self.alice)
        c = self.s.conn()
        c.request("GET", path, headers={"Accept": "text/event-stream"})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        data = b""
        while b"session.created" not in data:
            chunk = r.fp.read1(65536)
            if not chunk:
                break
            data += chunk
        self.assertIn(b"session.created", data)
        c.close()
        for token in (self.bob, self.bad_tokens["forged"]):
            path = "/v1/sessions/%s/events?access_token=%s" % (self.a1, token)
            st, _, _ = self.call("GET", path, None, headers={"Accept": "text/event-stream"})
            self.assertEqual(st, 404 if token == self.bob else 401)
        # The query parameter is only for event streams (RFC 6750 §2.3 is a last resort).
        st, _, _ = self.call("GET", "/v1/sessions/%s?access_token=%s" % (self.a1, self.alice), None)
        self.assertEqual(st, 401)
        # Both ways at once is a bad request (RFC 6750 §2: one method only).
        st, _, _ = self.call("GET", "/v1/sessions/%s/events?access_token=%s" % (self.a1, self.alice),
                             self.alice, headers={"Accept": "text/event-stream"})
        self.assertEqual(st, 400)
        # The token never reaches the log.
        self.assertFalse(any(self.alice in line for line in self.s.log))

    def test_sse_stream_ends_when_its_token_expires(self):
        short = user_token(SECRET, "alice", ttl=2)
        c = self.s.conn(timeout=15)
        c.request("GET", "/v1/sessions/%s/events" % self.a1,
                  headers={"Accept": "text/event-stream", "Authorization": "Bearer " + short})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        time.sleep(3.5)
        # The next event after expiry closes the stream instead of being sent.
        st, _, _ = self.call("PATCH", "/v1/sessions/%s/profile" % self.a1, self.alice,
                             {"fields": {"goals": "expire-test-%d" % time.time()}})
        self.assertEqual(st, 200)
        data = b""
        deadline = time.time() + 10
        while time.time() < deadline:
            chunk = r.fp.read1(65536)
            if not chunk:
                break
            data += chunk
        self.assertNotIn(b"expire-test", data)
        c.close()

    def test_oversized_and_hostile_authorization_headers(self):
        st, _, _ = self.call("GET", "/v1/sessions/%s" % self.a1, "x" * 20000)
        self.assertEqual(st, 431)  # beyond http.max_header_bytes
        for h in ("Basic YWxpY2U6cHc=", "Bearer", "Bearer  ", "bearer\t" + self.alice,
                  "Bearer " + self.alice + " extra"):
            st, _, _ = self.s.request("GET", "/v1/sessions/%s" % self.a1, headers={"Authorization": h})
            self.assertEqual(st, 401, h)
        st, _, _ = self.call("GET", "/healthz", None)
        self.assertEqual(st, 200)

    def test_ids_come_from_a_csprng(self):
        # Not a proof of unpredictability: the ids are 128 bits, distinct and
        # with every character position varying, and the code reads getrandom(2).
        ids = [self.create(self.alice) for _ in range(50)]
        self.assertEqual(len(set(ids)), 50)
        self.assertTrue(all(len(i) == 22 for i in ids))
        for pos in range(21):
            self.assertGreater(len({i[pos] for i in ids}), 10, pos)

    # ------------------------------------------------------------ MQTT

    def mqtt(self, token, client_id="", clean=True):
        return Client(self.s.mqtt_port, client_id=client_id, clean=clean, token=token)

    def test_mqtt_connect_needs_a_valid_token(self):
        for name, token in self.bad_tokens.items():
            with self.subTest(token=name):
                c = self.mqtt(token)
                self.assertEqual(c.return_code, 5)
                self.assertTrue(c.closed(timeout=5))
        # A 64 KB password (the most an MQTT string holds): refused, and the
        # server keeps serving.
        c = self.mqtt("p" * 65535)
        self.assertEqual(c.return_code, 5)
        c = self.mqtt(self.alice)
        self.assertEqual(c.return_code, 0)
        self.assertTrue(c.ping())
        c.disconnect()

    def test_mqtt_wildcards_and_foreign_topics_are_refused(self):
        bob = self.mqtt(self.bob)
        self.assertEqual(bob.subscribe("session/%s/events" % self.b1,
                                       "session/%s/profile" % self.b1), [1, 1])
        bob.messages(1, timeout=2)  # the retained profile
        alice = self.mqtt(self.alice)
        refused = ["#", "session/#", "session/+/events", "session/+/profile", "+/+/events",
                   "+/#", "session/%s/events" % self.b1, "session/%s/#" % self.b1,
                   "session/%s/profile" % self.b1, "session", "session/", "plain/topic",
                   "session/AAAAAAAAAAAAAAAAAAAAAA/events"]
        self.assertEqual(alice.subscribe(*refused), [0x80] * len(refused))
        self.assertEqual(alice.subscribe("session/%s/events" % self.a1,
                                         "session/%s/#" % self.a1), [1, 1])
        alice.messages(1, timeout=2)  # her own retained profile
        before = self.b_version()
        # Alice's publishes on Bob's topics are dropped, not delivered.
        alice.publish("session/%s/profile/set" % self.b1, '{"fields":{"city":"Paris"}}', qos=1)
        alice.publish("session/%s/messages" % self.b1, '{"text":"I live in Paris"}', qos=1)
        alice.publish("session/%s/events" % self.b1, '{"forged":true}', qos=1)
        alice.publish("session/%s/custom" % self.b1, 'hello bob', qos=1)
        alice.publish("plain/topic", "hi", qos=1)
        time.sleep(0.5)
        self.assertEqual(self.b_version(), before)
        self.assertEqual(bob.messages(1, timeout=1), [])
        # A change by Bob reaches Bob, and not Alice.
        st, _, _ = self.call("PATCH", "/v1/sessions/%s/profile" % self.b1, self.bob,
                             {"fields": {"goals": "sail"}})
        self.assertEqual(st, 200)
        got = bob.messages(2, timeout=3)
        self.assertEqual(len(got), 2)
        leaked = alice.messages(1, timeout=1)
        self.assertEqual(leaked, [])
        admin = self.mqtt(self.admin)
        self.assertEqual(admin.subscribe("session/+/events"), [1])
        for c in (alice, bob, admin):
            c.disconnect()

    def test_mqtt_device_token_and_client_id_takeover(self):
        dev = self.mqtt(self.device)
        self.assertEqual(dev.subscribe("session/%s/events" % self.a1,
                                       "session/%s/events" % self.a2), [1, 0x80])
        dev.disconnect()
        # Bob's persistent session under client id "phone" …
        bob = self.mqtt(self.bob, client_id="phone", clean=False)
        self.assertEqual(bob.subscribe("session/%s/events" % self.b1), [1])
        bob.drop()
        time.sleep(0.2)
        st, _, _ = self.call("PATCH", "/v1/sessions/%s/profile" % self.b1, self.bob,
                             {"fields": {"goals": "queued-for-bob"}})
        self.assertEqual(st, 200)
        # … is not Alice's when she connects with the same client id.
        alice = self.mqtt(self.alice, client_id="phone", clean=False)
        self.assertFalse(alice.session_present)
        self.assertEqual(alice.messages(1, timeout=1.5), [])
        alice.disconnect()
        bob = self.mqtt(self.bob, client_id="phone", clean=False)
        self.assertTrue(bob.session_present)
        got = bob.messages(1, timeout=3)
        self.assertTrue(got and "queued-for-bob" in got[0][1])
        bob.disconnect()

    def test_mqtt_connection_closes_when_the_token_expires(self):
        c = self.mqtt(user_token(SECRET, "alice", ttl=2))
        self.assertEqual(c.return_code, 0)
        t0 = time.time()
        self.assertTrue(c.closed(timeout=8))
        self.assertLess(time.time() - t0, 6)

    def test_mqtt_over_websocket_with_access_token(self):
        def upgrade(token):
            sock = socket.create_connection(("127.0.0.1", self.s.port), timeout=5)
            q = "?access_token=" + urllib.parse.quote(token) if token else ""
            sock.sendall(("GET /mqtt%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n" % q)
                         .encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
            return sock, head

        sock, head = upgrade(self.bad_tokens["forged"])
        self.assertTrue(head.startswith(b"HTTP/1.1 401"), head[:60])
        sock.close()
        sock, head = upgrade(self.alice)
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head[:60])
        # CONNECT without a password: the upgrade's token stands in for it.
        body = _str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 30) + _str("")
        frame = packet(0x10, body)
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(frame))
        sock.sendall(bytes([0x82, 0x80 | len(frame)]) + mask + masked)
        reply = sock.recv(64)
        self.assertEqual(reply[-4:], b"\x20\x02\x00\x00")  # CONNACK accepted
        sock.close()
        sock, head = upgrade(None)  # no token at all: CONNECT must carry one
        self.assertTrue(head.startswith(b"HTTP/1.1 101"))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(frame))
        sock.sendall(bytes([0x82, 0x80 | len(frame)]) + mask + masked)
        reply = sock.recv(64)
        self.assertEqual(reply[-4:], b"\x20\x02\x00\x05")  # not authorized
        sock.close()


class AuthConfigTest(unittest.TestCase):
    def start_fails(self, *args, env=None):
        s = Server(extra_args=list(args), env=env)
        with self.assertRaises(RuntimeError):
            s.start(timeout=10)
        rc = s.proc.wait(timeout=10)
        out = "\n".join(s.log)
        s.cleanup()
        return rc, out

    def test_bad_auth_configuration_stops_start_up(self):
        rc, out = self.start_fails("--set", "auth.enabled=true")
        self.assertEqual(rc, 2)
        self.assertIn("auth.jwt.hs256_secret", out)
        rc, out = self.start_fails("--set", "auth.enabled=true", "--set",
                                   "auth.jwt.algorithms=[none]")
        self.assertIn("never allowed", out)
        rc, out = self.start_fails("--set", "auth.enabled=true", "--set",
                                   "auth.jwt.hs256_secret=short")
        self.assertIn("at least 32 bytes", out)
        rc, out = self.start_fails("--set", "auth.enabled=true", "--set",
                                   "auth.jwt.hs256_secret_env=NOT_SET_ANYWHERE")
        self.assertIn("NOT_SET_ANYWHERE", out)
        rc, out = self.start_fails("--set", "auth.enabled=true", "--set",
                                   "auth.jwt.algorithms=[RS256]")
        self.assertIn("no key for algorithm RS256", out)

    def test_sighup_reloads_the_keys(self):
        import tempfile
        d = tempfile.mkdtemp()
        cfg = os.path.join(d, "persona.yaml")
        with open(cfg, "w") as f:
            f.write("auth:\n  enabled: true\n  jwt: {hs256_secret: %s}\n" % SECRET)
        s = Server(extra_args=["--config", cfg]).start()
        try:
            old, new = user_token(SECRET, "alice"), user_token(WRONG, "alice")
            st, _, _ = s.request("POST", "/v1/sessions", {}, headers={"Authorization": "Bearer " + old})
            self.assertEqual(st, 201)
            with open(cfg, "w") as f:
                f.write("auth:\n  enabled: true\n  jwt: {hs256_secret: %s}\n" % WRONG)
            s.proc.send_signal(1)  # SIGHUP
            deadline = time.time() + 5
            while time.time() < deadline and not any('"reloaded"' in l for l in s.log):
                time.sleep(0.05)
            st, _, _ = s.request("POST", "/v1/sessions", {}, headers={"Authorization": "Bearer " + new})
            self.assertEqual(st, 201)
            st, _, _ = s.request("POST", "/v1/sessions", {}, headers={"Authorization": "Bearer " + old})
            self.assertEqual(st, 401)
            # A broken file keeps the last good keys.
            with open(cfg, "w") as f:
                f.write("auth:\n  enabled: true\n  jwt: {hs256_secret: short}\n")
            s.proc.send_signal(1)
            deadline = time.time() + 5
            while time.time() < deadline and not any("reload failed" in l for l in s.log):
                time.sleep(0.05)
            self.assertTrue(any("reload failed" in l for l in s.log))
            st, _, _ = s.request("POST", "/v1/sessions", {}, headers={"Authorization": "Bearer " + new})
            self.assertEqual(st, 201)
        finally:
            self.assertEqual(s.stop(), 0)
            s.cleanup()


if __name__ == "__main__":
    unittest.main()
