"""Tracing (SPEC §13, issue 13): W3C traceparent in and out, spans for the
HTTP route, the AI call (its traceparent reaches the model API), the store
commit and the publish, exported as OTLP/HTTP JSON to a small receiver
started here; a malformed traceparent starts a new trace; a collector that
is down does not fail steps."""
import json
import os
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fake_openai import FakeOpenAI
from persona_server import Server, metric

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Receiver:
    """An OTLP/HTTP JSON traces endpoint: POST /v1/traces."""

    def __init__(self):
        self.spans, self.lock = [], threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = self.path == "/v1/traces" and \
                    self.headers.get("Content-Type") == "application/json"
                if ok:
                    doc = json.loads(body)
                    with outer.lock:
                        for rs in doc["resourceSpans"]:
                            svc = rs["resource"]["attributes"][0]["value"]["stringValue"]
                            for ss in rs["scopeSpans"]:
                                for s in ss["spans"]:
                                    outer.spans.append(dict(s, service=svc))
                self.send_response(200 if ok else 400)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/v1/traces" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, pred, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                found = [s for s in self.spans if pred(s)]
            if found:
                return found
            time.sleep(0.1)
        return []


class TracingTest(unittest.TestCase):
    def setUp(self):
        self.rx = Receiver()
        self.fake = FakeOpenAI().start()
        cfg = {"ai": {"deadline_ms": 3000, "providers": [
            {"name": "primary", "kind": "openai", "base_url": self.fake.base_url, "model": "m",
             "timeout_ms": 1000}, {"name": "offline", "kind": "builtin"}]}}
        fd, self.cfg = tempfile.mkstemp(suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f)
        self.s = None

    def tearDown(self):
        if self.s:
            self.s.cleanup()
        self.rx.stop()
        self.fake.stop()
        os.unlink(self.cfg)

    def start(self, endpoint):
        self.s = Server(extra_args=["--config", self.cfg, "--set",
                                    "tracing.otlp_endpoint=" + endpoint]).start()
        st, _, b = self.s.request("POST", "/v1/sessions", {"user_id": "t"})
        self.assertEqual(st, 201, b)
        return b["session_id"]

    def test_a_step_is_one_trace_from_the_caller_to_the_model(self):
        sid = self.start(self.rx.url)
        st, h, r = self.s.request("POST", "/v1/sessions/%s/messages" % sid, {"text": "hello"},
                                  headers={"traceparent": "00-%s-%s-01" % (TRACE, PARENT)})
        self.assertEqual(st, 200, r)
        # Out: the response names this request's span in the caller's trace.
        out = h.get("traceparent", "")
        self.assertTrue(out.startswith("00-%s-" % TRACE), out)
        server_span = out.split("-")[2]
        spans = self.rx.wait_for(lambda s: s["traceId"] == TRACE and s["name"] == "bus.publish")
        self.assertTrue(spans, "no spans arrived")
        time.sleep(1.5)  # the rest of the batch
        with self.rx.lock:
            mine = {s["name"]: s for s in self.rx.spans if s["traceId"] == TRACE}
        http = mine["POST /v1/sessions/{id}/messages"]
        self.assertEqual(http["spanId"], server_span)
        self.assertEqual(http["parentSpanId"], PARENT)
        self.assertEqual(http["kind"], 2)
        self.assertEqual(http["service"], "persona")
        attrs = {a["key"]: list(a["value"].values())[0] for a in http["attributes"]}
        self.assertEqual(attrs["http.response.status_code"], "200")
        for name in ("ai.respond", "store.commit", "bus.publish"):
            self.assertEqual(mine[name]["parentSpanId"], server_span, name)
            self.assertLessEqual(int(http["startTimeUnixNano"]), int(mine[name]["startTimeUnixNano"]))
            self.assertLessEqual(int(mine[name]["endTimeUnixNano"]), int(http["endTimeUnixNano"]))
        # The model call carried the AI span's context.
        headers, _ = self.fake.requests[-1]
        self.assertEqual(headers.get("traceparent"),
                         "00-%s-%s-01" % (TRACE, mine["ai.respond"]["spanId"]))

    def test_an_unsampled_parent_records_nothing_but_is_propagated(self):
        sid = self.start(self.rx.url)
        other = "5" * 32
        st, h, r = self.s.request("POST", "/v1/sessions/%s/messages" % sid, {"text": "hello"},
                                  headers={"traceparent": "00-%s-%s-00" % (other, PARENT)})
        self.assertEqual(st, 200, r)
        self.assertTrue(h["traceparent"].startswith("00-%s-" % other))
        self.assertTrue(h["traceparent"].endswith("-00"))
        headers, _ = self.fake.requests[-1]
        self.assertTrue(headers.get("traceparent", "").startswith("00-%s-" % other))
        self.assertTrue(headers["traceparent"].endswith("-00"))
        # A sampled request after it is exported, the unsampled one never.
        st, _, _ = self.s.request("POST", "/v1/sessions/%s/messages" % sid, {"text": "again"},
                                  headers={"traceparent": "00-%s-%s-01" % (TRACE, PARENT)})
        self.assertTrue(self.rx.wait_for(lambda s: s["traceId"] == TRACE))
        time.sleep(1.2)
        with self.rx.lock:
            self.assertFalse([s for s in self.rx.spans if s["traceId"] == other])

    def test_a_malformed_traceparent_starts_a_new_trace(self):
        sid = self.start(self.rx.url)
        for bad in ("garbage", "00-%s-%s-01" % (TRACE.upper(), PARENT), "ff-" + TRACE + "-x"):
            st, h, r = self.s.request("POST", "/v1/sessions/%s/messages" % sid, {"text": "hi"},
                                      headers={"traceparent": bad})
            self.assertEqual(st, 200, r)
            self.assertRegex(h["traceparent"], r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")
            self.assertNotIn(TRACE, h["traceparent"])
        self.assertEqual(metric(self.s, "persona_tracing_bad_traceparent_total"), 3)

    def test_a_collector_that_is_down_does_not_fail_steps(self):
        sid = self.start("http://127.0.0.1:9/v1/traces")  # nothing listens on port 9
        for i in range(20):
            st, _, r = self.s.request("POST", "/v1/sessions/%s/messages" % sid, {"text": "hi %d" % i})
            self.assertEqual(st, 200, r)
        deadline = time.time() + 10
        while time.time() < deadline and \
                metric(self.s, 'persona_tracing_spans_total{outcome="export_failed"}') == 0:
            time.sleep(0.2)
        self.assertGreater(metric(self.s, 'persona_tracing_spans_total{outcome="export_failed"}'), 0)

    def test_a_bad_endpoint_is_refused_at_start(self):
        s = Server(extra_args=["--set", "tracing.otlp_endpoint=collector:4318"])
        with self.assertRaises(RuntimeError):
            s.start(timeout=10)
        self.assertTrue(any("tracing.otlp_endpoint" in l for l in s.log), s.log[-3:])
        s.cleanup()


if __name__ == "__main__":
    unittest.main()
