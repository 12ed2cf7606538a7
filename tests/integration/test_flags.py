"""Feature flags (SPEC §13, issue 13): a flagd flag file, GET /v1/flags/{key},
rollout shares on 10,000 users, stability across restarts, independence of two
flags, hot reload (a bad file keeps the last good flags), and the flags that
switch persona's own features per user: the gate, the cache, the write mode
and a model canary."""
import http.client
import json
import os
import tempfile
import time
import unittest

from fake_openai import FakeOpenAI
from persona_server import Server, metric, user_token

SECRET = "flags-test-secret-0123456789abcdef-xyz"


def rollout(key, percent):
    return {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
            "targeting": {"fractional": [["on", percent], ["off", 100 - percent]]}}


def only_for(key, users):
    return {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
            "targeting": {"if": [{"in": [{"var": "targetingKey"}, users]}, "on", "off"]}}


class FlagsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="persona-flags-")
        self.path = os.path.join(self.dir, "flags.json")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.cleanup()

    def write(self, flags, raw=None):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(raw if raw is not None else json.dumps({"flags": flags}))
        os.replace(tmp, self.path)

    def persona(self, extra=(), env=None):
        s = Server(extra_args=["--set", "flags.file=" + self.path,
                               "--set", "limits.http_per_user.rate=0"] + list(extra),
                   env=env).start()
        self.servers.append(s)
        return s

    def resolve_all(self, s, key, n):
        """Variant per user u0 … u{n-1}, over one keep-alive connection."""
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        out = []
        for i in range(n):
            c.request("GET", "/v1/flags/%s?targeting_key=u%d" % (key, i))
            r = c.getresponse()
            body = json.loads(r.read())
            self.assertEqual(r.status, 200, body)
            out.append(body["variant"])
        c.close()
        return out

    def test_rollout_shares_stability_independence_and_reload(self):
        self.write({"persona.gate": rollout("persona.gate", 5),
                    "other.feature": rollout("other.feature", 5)})
        s = self.persona()
        st, _, body = s.request("GET", "/v1/flags/persona.gate?targeting_key=alice")
        self.assertEqual(st, 200, body)
        self.assertEqual(set(body), {"key", "value", "variant", "reason"})
        self.assertEqual(body["key"], "persona.gate")
        self.assertEqual(body["reason"], "TARGETING_MATCH")
        self.assertIn(body["value"], (True, False))
        n = 10000
        gate = self.resolve_all(s, "persona.gate", n)
        other = self.resolve_all(s, "other.feature", n)
        share = gate.count("on") / n
        print("\nrollout: persona.gate on for %.2f %% of %d users (goal 5 ± 1), other.feature "
              "%.2f %%, both %d" % (100 * share, n, 100 * other.count("on") / n,
                                    sum(1 for a, b in zip(gate, other) if a == b == "on")))
        self.assertLess(abs(share - 0.05), 0.01)
        self.assertLess(abs(other.count("on") / n - 0.05), 0.01)
        # Salted per flag: the two 5 % groups are not the same users (the same
        # users would overlap 500 times; independent ones about 25).
        both = sum(1 for a, b in zip(gate, other) if a == b == "on")
        self.assertLess(both, 75)
        # Stable across restarts.
        s.stop()
        s.start()
        self.assertEqual(self.resolve_all(s, "persona.gate", 2000), gate[:2000])
        # Hot reload: 20 %; then a bad file keeps the last good flags.
        self.write({"persona.gate": rollout("persona.gate", 20)})
        deadline = time.time() + 10
        while time.time() < deadline and self.resolve_all(s, "persona.gate", 200).count("on") < 20:
            time.sleep(0.2)
        share20 = self.resolve_all(s, "persona.gate", n).count("on") / n
        self.assertLess(abs(share20 - 0.20), 0.01)
        # Growing the rollout keeps everyone who had it.
        now = self.resolve_all(s, "persona.gate", 2000)
        self.assertTrue(all(b == "on" for a, b in zip(gate[:2000], now) if a == "on"))
        self.write(None, raw='{"flags": {"persona.gate": {"state": "ENABLED", "variants": {}}}}')
        time.sleep(2.5)
        self.assertTrue(any("keeping the last good flags" in l for l in s.log), s.log[-5:])
        self.assertEqual(self.resolve_all(s, "persona.gate", 2000), now)
        # Bad requests.
        st, _, body = s.request("GET", "/v1/flags/no.such.flag?targeting_key=u1")
        self.assertEqual(st, 404, body)
        st, _, body = s.request("GET", "/v1/flags/persona.gate")
        self.assertEqual(st, 422, body)  # auth off: no caller, so a targeting key is needed
        st, _, body = s.request("GET", "/v1/flags/persona.gate?targeting_key=" + "x" * 300)
        self.assertEqual(st, 422, body)
        st, _, _ = s.request("POST", "/v1/flags/persona.gate?targeting_key=u1", {})
        self.assertEqual(st, 405)

    def test_a_bad_flag_file_refuses_start(self):
        self.write(None, raw="{ not json")
        s = Server(extra_args=["--set", "flags.file=" + self.path])
        with self.assertRaises(RuntimeError):
            s.start(timeout=10)
        self.assertTrue(any("flags.file" in l for l in s.log), s.log[-5:])
        s.cleanup()

    def test_flags_switch_the_gate_the_cache_the_write_mode_and_the_model(self):
        big, small = FakeOpenAI().start(), FakeOpenAI().start()
        try:
            self.write({"persona.gate": only_for("persona.gate", ["gina"]),
                        "persona.cache": only_for("persona.cache", ["carl"]),
                        "persona.write_mode": {
                            "state": "ENABLED", "variants": {"sync": "sync", "async": "async"},
                            "defaultVariant": "sync",
                            "targeting": {"if": [{"==": [{"var": "targetingKey"}, "ann"]},
                                                 "async", "sync"]}},
                        "persona.model": {
                            "state": "ENABLED",
                            "variants": {"canary": "small", "stable": "big"},
                            "defaultVariant": "stable",
                            "targeting": {"if": [{"starts_with": [{"var": "targetingKey"}, "beta-"]},
                                                 "canary", "stable"]}}})
            cfg = {"ai": {"deadline_ms": 3000, "providers": [
                {"name": "big", "kind": "openai", "base_url": big.base_url, "model": "b",
                 "timeout_ms": 1000},
                {"name": "small", "kind": "openai", "base_url": small.base_url, "model": "s",
                 "timeout_ms": 1000},
                {"name": "offline", "kind": "builtin"}]}}
            cfg_path = os.path.join(self.dir, "persona.yaml")
            json.dump(cfg, open(cfg_path, "w"))
            s = self.persona(["--config", cfg_path])

            def step(user, text, expect=200):
                st, _, b = s.request("POST", "/v1/sessions", {"user_id": user})
                self.assertEqual(st, 201, b)
                st, _, r = s.request("POST", "/v1/sessions/%s/messages" % b["session_id"],
                                     {"text": text})
                self.assertEqual(st, expect, r)
                return r

            # The gate is off by configuration, on for gina by the flag.
            self.assertEqual(step("gina", "hello there")["source"], "gate")
            r = step("gary", "hello there")
            self.assertEqual(r["source"], "llm")
            self.assertNotIn("intent", r)
            # The cache: carl's repeated question is answered from it; dora's is not.
            for user, second in (("carl", "cache"), ("dora", "llm")):
                st, _, b = s.request("POST", "/v1/sessions", {"user_id": user})
                sid = b["session_id"]
                for want in ("llm", second):
                    st, _, r = s.request("POST", "/v1/sessions/%s/messages" % sid,
                                         {"text": "what can you do"})
                    self.assertEqual((st, r["source"]), (200, want), (user, r))
            # The model canary: beta- users are answered by the small model first.
            calls = (big.calls(), small.calls())
            step("beta-1", "what time is it")
            self.assertEqual((big.calls(), small.calls()), (calls[0], calls[1] + 1))
            step("rc-1", "what time is it")
            self.assertEqual((big.calls(), small.calls()), (calls[0] + 1, calls[1] + 1))
            # The write mode: ann's steps are accepted (202), others' applied (200).
            r = step("ann", "hi", expect=202)
            self.assertIn("request_id", r)
            step("bert", "hi", expect=200)
            # Every resolution is counted by flag and variant.
            self.assertGreaterEqual(
                metric(s, 'persona_flag_evaluations_total{flag="persona.model",variant="canary"}'), 1)
            self.assertGreaterEqual(
                metric(s, 'persona_flag_evaluations_total{flag="persona.gate",variant="on"}'), 1)
            self.assertGreaterEqual(metric(
                s, 'persona_flag_evaluations_total{flag="persona.write_mode",variant="async"}'), 1)
            # Replies are counted under the variants that decided them, so a
            # canary can be judged on its own: one canary step, answered by a
            # model, with its tokens; gina's greeting answered by the gate.
            v = 'flag="persona.model",variant="canary"'
            self.assertEqual(metric(s, 'persona_variant_replies_total{%s,source="llm"}' % v), 1)
            self.assertEqual(metric(s, 'persona_variant_ai_seconds_count{%s}' % v), 1)
            self.assertGreater(metric(s, 'persona_variant_tokens_total{%s}' % v), 0)
            self.assertEqual(metric(s, 'persona_variant_replies_total{flag="persona.gate",'
                                       'variant="on",source="gate"}'), 1)
            # And the HTTP responses and their latency, by the variant of the
            # session owner's user: each message step lands in exactly one
            # variant of each flag (the session creations carry no user here,
            # auth being off, and are not counted).
            route = 'route="/v1/sessions/{id}/messages"'
            def http(flag, variant, code):
                return metric(s, 'persona_variant_http_responses_total{flag="%s",variant="%s",%s,'
                                 'code="%s"}' % (flag, variant, route, code))
            self.assertEqual(http("persona.model", "canary", "2xx"), 1)  # beta-1
            self.assertEqual(http("persona.model", "stable", "2xx"), 9)  # the other nine steps
            self.assertEqual(http("persona.write_mode", "async", "2xx"), 1)  # ann's 202
            self.assertEqual(metric(s, 'persona_variant_http_request_duration_seconds_count{'
                                       'flag="persona.model",variant="canary",%s}' % route), 1)
        finally:
            big.stop()
            small.stop()

    def test_with_auth_a_user_reads_only_their_own_flags(self):
        self.write({"persona.gate": rollout("persona.gate", 50)})
        s = self.persona(["--set", "auth.enabled=true",
                          "--set", "auth.jwt.hs256_secret_env=TEST_JWT_SECRET"],
                         env={"TEST_JWT_SECRET": SECRET})
        alice = user_token(SECRET, "alice")
        admin = user_token(SECRET, "ops", persona_admin=True)

        def get(path, token=None):
            return s.request("GET", path, headers={"Authorization": "Bearer " + token} if token
                             else None)
        st, _, body = get("/v1/flags/persona.gate", alice)  # the caller's own user
        self.assertEqual(st, 200, body)
        st2, _, body2 = get("/v1/flags/persona.gate?targeting_key=alice", alice)
        self.assertEqual((st2, body2["variant"]), (200, body["variant"]))
        st, _, body = get("/v1/flags/persona.gate?targeting_key=bob", alice)
        self.assertEqual(st, 403, body)
        self.assertNotIn("variant", body)
        st, _, body = get("/v1/flags/persona.gate?targeting_key=bob", admin)
        self.assertEqual(st, 200, body)
        st, _, _ = get("/v1/flags/persona.gate?targeting_key=alice")
        self.assertEqual(st, 401)


if __name__ == "__main__":
    unittest.main()
