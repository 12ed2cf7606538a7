"""Several persona processes on one PostgreSQL database (SPEC §11): any node
serves any session. Runs in the PostgreSQL suite (PERSONA_TEST_STORE=postgres)."""
import http.client
import json
import threading
import unittest

from persona_server import Server, postgres_only


def nodes(n, extra_args=()):
    """`n` persona processes sharing the first one's database."""
    first = Server(extra_args=list(extra_args)).start()
    out = [first]
    for _ in range(n - 1):
        s = Server(extra_args=list(extra_args))
        s.store_args = first.store_args
        out.append(s.start())
    return out


class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.nodes = nodes(3) if _on_postgres() else []

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes:
            n.cleanup()

    def session(self, node):
        st, _, b = node.request("POST", "/v1/sessions", {"user_id": "cluster"})
        self.assertEqual(st, 201, b)
        return b["session_id"]

    @postgres_only
    def test_a_read_on_any_node_returns_a_write_acknowledged_by_any_node(self):
        a, b, c = self.nodes
        sid = self.session(a)
        for writer, reader, text, field, value in [
                (a, b, "my name is Alice", "name", "Alice"),
                (b, c, "I live in Seoul", "city", "Seoul"),
                (c, a, "I am 34 years old", "age", 34)]:
            st, _, body = writer.request("POST", "/v1/sessions/%s/messages" % sid, {"text": text})
            self.assertEqual(st, 200, body)
            st, h, prof = reader.request("GET", "/v1/sessions/%s/profile" % sid)
            self.assertEqual(st, 200, prof)
            self.assertEqual(prof["profile"].get(field), value)
            self.assertEqual(prof["version"], body["version"])
        # An edit through one node with the version read on another.
        st, h, prof = b.request("GET", "/v1/sessions/%s/profile" % sid)
        st, _, body = a.request("PATCH", "/v1/sessions/%s/profile" % sid,
                                {"fields": {"city": "Busan"}}, headers={"If-Match": h["etag"]})
        self.assertEqual(st, 200, body)
        st, _, prof = c.request("GET", "/v1/sessions/%s/profile" % sid)
        self.assertEqual(prof["profile"]["city"], "Busan")
        # A stale If-Match is still refused, on any node.
        st, _, body = c.request("PATCH", "/v1/sessions/%s/profile" % sid,
                                {"fields": {"city": "Incheon"}}, headers={"If-Match": h["etag"]})
        self.assertEqual(st, 412, body)

    @postgres_only
    def test_one_session_written_through_two_nodes_at_once_loses_nothing(self):
        a, b, _ = self.nodes
        sid = self.session(a)
        acked, statuses = [], []
        lock = threading.Lock()

        def worker(node, w):
            conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
            for n in range(25):
                text = "note %s-%d-%d" % (node.port, w, n)
                if n % 3 == 2:
                    st, _, body = node.request("PATCH", "/v1/sessions/%s/profile" % sid,
                                               {"fields": {"goals": text}}, conn=conn)
                else:
                    st, _, body = node.request("POST", "/v1/sessions/%s/messages" % sid,
                                               {"text": text}, conn=conn)
                with lock:
                    statuses.append(st)
                    if st == 200 and n % 3 != 2:
                        acked.append(text)
            conn.close()

        threads = [threading.Thread(target=worker, args=(node, w))
                   for node in (a, b) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # No 409/412 reaches a client that sent no precondition.
        self.assertEqual(set(statuses), {200}, statuses)
        events, after = [], 0
        while True:
            st, _, page = b.request("GET", "/v1/sessions/%s/events?after=%d&limit=1000"
                                    % (sid, after))
            self.assertEqual(st, 200)
            if not page["events"]:
                break
            events += page["events"]
            after = page["events"][-1]["seq"]
        self.assertEqual([e["seq"] for e in events], list(range(1, len(events) + 1)))
        texts = [e["data"]["text"] for e in events if e["type"] == "message.user"]
        self.assertEqual(sorted(texts), sorted(acked))  # each once
        self.assertGreater(_metric(a, "persona_conflict_retries_total") +
                           _metric(b, "persona_conflict_retries_total"), 0)


def _on_postgres():
    from persona_server import STORE
    return STORE == "postgres"


def _metric(s, name):
    _, _, text = s.request("GET", "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


if __name__ == "__main__":
    unittest.main()
