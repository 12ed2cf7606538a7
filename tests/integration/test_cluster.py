"""Several persona processes on one PostgreSQL database (SPEC §11): any node
serves any session. Runs in the PostgreSQL suite (PERSONA_TEST_STORE=postgres)."""
import http.client
import json
import threading
import time
import unittest

from mqtt_client import Client
from persona_server import Redis, Server, postgres_only
from persona_server import metric as _metric


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


class ClusterBusTest(unittest.TestCase):
    """Three nodes with the Redis bus: real-time across nodes."""

    @classmethod
    def setUpClass(cls):
        cls.redis = None
        cls.nodes = []
        if not _on_postgres():
            return
        cls.redis = Redis().start()
        cls.nodes = nodes(3, ["--set", "bus.backend=redis", "--set", "bus.url=" + cls.redis.url()])

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes:
            n.cleanup()
        if cls.redis:
            cls.redis.cleanup()

    def watch(self, node, sid):
        c = Client(node.mqtt_port, client_id="watch-%s-%d" % (sid[:8], node.port))
        self.assertEqual(c.subscribe("session/%s/events" % sid), [1])
        return c

    def collect(self, client, sid, upto, timeout=15, after=0):
        """Events on the session's topic until seq `upto`: their seqs in arrival order
        (those up to `after`, published before the subscription, left out)."""
        seqs = []
        deadline = time.time() + timeout
        while (not seqs or seqs[-1] < upto) and time.time() < deadline:
            for topic, payload, *_ in client.messages(1, timeout=0.5):
                seq = json.loads(payload)["seq"] if topic.endswith("/events") else 0
                if topic == "session/%s/events" % sid and seq > after:
                    seqs.append(seq)
        return seqs

    def write(self, node, sid, text):
        st, _, body = node.request("POST", "/v1/sessions/%s/messages" % sid, {"text": text})
        self.assertEqual(st, 200, body)
        return body["version"]

    @postgres_only
    def test_a_subscriber_on_one_node_sees_writes_through_the_others_in_order(self):
        a, b, c = self.nodes
        st, _, body = a.request("POST", "/v1/sessions", {"user_id": "bus"})
        sid = body["session_id"]
        start = body["version"]
        watcher = self.watch(c, sid)
        version = start
        for i in range(30):
            version = self.write((a, b)[i % 2], sid, "note %d" % i)
        seqs = self.collect(watcher, sid, version, after=start)
        watcher.drop()
        self.assertEqual(seqs, list(range(start + 1, version + 1)))
        self.assertGreater(_metric(c, "persona_bus_received_total"), 0)  # through Redis

    @postgres_only
    def test_a_redis_that_answers_slowly_neither_slows_writes_nor_loses_events(self):
        a, b, c = self.nodes
        st, _, body = a.request("POST", "/v1/sessions", {"user_id": "bus-slow"})
        sid, start = body["session_id"], body["version"]
        watcher = self.watch(c, sid)
        # Redis stops answering anyone for 3 s (DEBUG SLEEP blocks its one
        # thread), as a Redis swapping or saving a huge snapshot would.
        def sleep_redis():
            try:
                self.redis.command("DEBUG", "SLEEP", "3")
            except OSError:
                pass  # the reply comes after this client's 2 s timeout

        sleeper = threading.Thread(target=sleep_redis)
        sleeper.start()
        time.sleep(0.2)
        version, slowest = start, 0.0
        for i in range(20):
            t = time.time()
            version = self.write((a, b)[i % 2], sid, "slow %d" % i)
            slowest = max(slowest, time.time() - t)
        sleeper.join()
        seqs = self.collect(watcher, sid, version, after=start, timeout=20)
        watcher.drop()
        self.assertEqual(seqs, list(range(start + 1, version + 1)))
        self.assertLess(slowest, 1.0, "a write waited for Redis")

    @postgres_only
    def test_redis_killed_and_restarted_mid_run_loses_nothing(self):
        a, b, c = self.nodes
        st, _, body = a.request("POST", "/v1/sessions", {"user_id": "bus-outage"})
        sid = body["session_id"]
        start = body["version"]
        watcher = self.watch(c, sid)
        version = start
        for i in range(5):
            version = self.write(a, sid, "before %d" % i)
        self.redis.kill()
        for i in range(10):  # Redis down: C polls the store
            version = self.write((a, b)[i % 2], sid, "during %d" % i)
        during = self.collect(watcher, sid, version, after=start)
        self.assertEqual(_metric(c, "persona_bus_up"), 0.0)
        self.redis.start()
        deadline = time.time() + 10
        while time.time() < deadline and _metric(c, "persona_bus_up") != 1.0:
            time.sleep(0.1)
        self.assertEqual(_metric(c, "persona_bus_up"), 1.0)
        after = []
        for i in range(5):
            version = self.write(b, sid, "after %d" % i)
        after = self.collect(watcher, sid, version, after=during[-1] if during else start)
        watcher.drop()
        self.assertEqual(during + after, list(range(start + 1, version + 1)))
        self.assertGreater(_metric(c, "persona_bus_filled_events_total"), 0)


class NodeKillTest(unittest.TestCase):
    @postgres_only
    def test_kill9_of_a_node_under_load_loses_nothing_and_its_devices_resume_elsewhere(self):
        redis = Redis().start()
        a, b, c = nodes(3, ["--set", "bus.backend=redis", "--set", "bus.url=" + redis.url()])
        try:
            sids = []
            for i in range(4):
                st, _, body = c.request("POST", "/v1/sessions", {"user_id": "kill-%d" % i})
                sids.append(body["session_id"])
                if i == 0:
                    watched_from = body["version"]
            # A device on A watches the first session.
            device = Client(a.mqtt_port, client_id="device-on-a")
            self.assertEqual(device.subscribe("session/%s/events" % sids[0]), [1])
            acked = []
            lock = threading.Lock()
            stop = threading.Event()

            def worker(node, w):
                conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
                n = 0
                while not stop.is_set():
                    n += 1
                    sid = sids[(w + n) % len(sids)]
                    text = "w%d-%d-%d" % (node.port, w, n)
                    try:
                        conn.request("POST", "/v1/sessions/%s/messages" % sid,
                                     body=json.dumps({"text": text}),
                                     headers={"Content-Type": "application/json"})
                        r = conn.getresponse()
                        r.read()
                    except (OSError, http.client.HTTPException):
                        return  # the node died: this one may or may not be stored
                    if r.status == 200:
                        with lock:
                            acked.append((sid, text))

            threads = [threading.Thread(target=worker, args=(node, w))
                       for node in (a, b) for w in range(4)]
            for t in threads:
                t.start()
            deadline = time.time() + 60
            while time.time() < deadline:
                with lock:
                    if len(acked) >= 600:
                        break
                time.sleep(0.01)
            seen = [json.loads(p)["seq"] for t, p, *_ in device.messages(10000, timeout=0.2)
                    if t.endswith("/events")]
            a.kill9()
            time.sleep(0.5)  # B's workers keep writing after A is gone
            stop.set()
            for t in threads:
                t.join()
            self.assertGreaterEqual(len(acked), 600)
            # The device resumes on C: subscribe, then fill from its last seq.
            device.drop()
            device = Client(c.mqtt_port, client_id="device-on-a")
            self.assertEqual(device.subscribe("session/%s/events" % sids[0]), [1])
            last = max(seen) if seen else watched_from
            st, _, page = c.request("GET", "/v1/sessions/%s/events?after=%d&limit=1000"
                                    % (sids[0], last))
            resumed = seen + [e["seq"] for e in page["events"]]
            _, _, body = c.request("POST", "/v1/sessions/%s/messages" % sids[0],
                                   {"text": "after the kill"})
            live = [json.loads(p)["seq"] for t, p, *_ in device.messages(3, timeout=5)]
            device.drop()
            self.assertEqual(sorted(set(resumed + live)),
                             list(range(watched_from + 1, body["version"] + 1)))
            # Every acknowledged write is there exactly once, logs gapless.
            counts = {}
            for sid in sids:
                for e in all_events(self, c, sid):
                    if e["type"] == "message.user":
                        k = (sid, e["data"]["text"])
                        counts[k] = counts.get(k, 0) + 1
            self.assertEqual([x for x in acked if counts.get(x, 0) == 0], [], "acknowledged writes lost")
            self.assertEqual([k for k, v in counts.items() if v > 1], [], "writes duplicated")
        finally:
            for n in (a, b, c):
                n.cleanup()
            redis.cleanup()

    @postgres_only
    def test_a_persistent_mqtt_session_follows_its_device_to_another_node(self):
        # A plain MQTT client (no HTTP catch-up): clean session off on node A,
        # subscribed to one session's events. A is killed; the device
        # connects to C with the same client id and does not subscribe
        # again. Its session is there, and every event it had not
        # acknowledged arrives, in order, then the live ones.
        redis = Redis().start()
        a, b, c = nodes(3, ["--set", "bus.backend=redis", "--set", "bus.url=" + redis.url()])
        try:
            st, _, body = b.request("POST", "/v1/sessions", {"user_id": "phone"})
            sid, start = body["session_id"], body["version"]
            topic = "session/%s/events" % sid
            device = Client(a.mqtt_port, client_id="phone-1", clean=False)
            self.assertEqual(device.session_present, False)
            self.assertEqual(device.subscribe(topic), [1])
            stop = threading.Event()
            acked = []

            def writer():
                conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=10)
                n = 0
                while not stop.is_set():
                    n += 1
                    st, _, _ = b.request("POST", "/v1/sessions/%s/messages" % sid,
                                         {"text": "note %d" % n}, conn=conn)
                    if st == 200:
                        acked.append(n)
                    time.sleep(0.01)

            t = threading.Thread(target=writer)
            t.start()
            seen = []
            deadline = time.time() + 3  # past the mirror's 1 s writes
            while time.time() < deadline:
                seen += [json.loads(p)["seq"] for _, p, *_ in device.messages(100, timeout=0.2)]
            a.kill9()
            device.drop()
            time.sleep(1.0)  # B keeps writing while the device is away
            device = Client(c.mqtt_port, client_id="phone-1", clean=False)
            self.assertTrue(device.session_present)
            after = []
            deadline = time.time() + 2
            while time.time() < deadline:
                after += [json.loads(p)["seq"] for _, p, *_ in device.messages(100, timeout=0.2)]
            stop.set()
            t.join()
            head = b.request("GET", "/v1/sessions/%s/profile" % sid)[2]["version"]
            after += [json.loads(p)["seq"] for _, p, *_ in device.messages(10000, timeout=1.5)]
            device.drop()
            # Events from before the subscription may still arrive through
            # Redis just after it (a slow bus): they are not the test's.
            seen = [q for q in seen if q > start]
            after = [q for q in after if q > start]
            self.assertGreater(len(seen), 5)
            self.assertTrue(after, "nothing arrived on the restored session")
            # In order, each once, on the new node (what the device had
            # acknowledged within the last second may come again).
            self.assertEqual(after, sorted(set(after)))
            self.assertLessEqual(after[0], max(seen) + 1)
            self.assertEqual(sorted(set(seen + after)), list(range(start + 1, head + 1)))
            self.assertGreaterEqual(_metric(c, "persona_mqtt_sessions_restored_total"), 1)
            print("\nsession follows device: %d events before the kill, %d after on another "
                  "node (%d again)" % (len(seen), len(after), len(set(seen) & set(after))))
        finally:
            for n in (a, b, c):
                n.cleanup()
            redis.cleanup()

    @postgres_only
    def test_a_postgres_restart_mid_run_loses_nothing_and_every_node_recovers(self):
        from persona_server import Postgres
        a, b = nodes(2)
        try:
            st, _, body = a.request("POST", "/v1/sessions", {"user_id": "pg-restart"})
            sid = body["session_id"]
            acked, statuses = [], set()
            restarted = threading.Event()

            def restart():
                time.sleep(0.3)
                Postgres.get().restart()
                restarted.set()

            t = threading.Thread(target=restart)
            t.start()
            n = 0
            deadline = time.time() + 60
            while time.time() < deadline and not restarted.is_set():  # writes across the restart
                n += 1
                node = (a, b)[n % 2]
                text = "pg %d" % n
                try:
                    st, h, body = node.request("POST", "/v1/sessions/%s/messages" % sid,
                                               {"text": text})
                except OSError:
                    continue
                statuses.add(st)
                if st == 200:
                    acked.append(text)
                elif st == 503:
                    self.assertIn("retry-after", h)
                    time.sleep(0.05)
                else:
                    self.fail("unexpected %d: %s" % (st, body))
            t.join()
            # After the restart both nodes write again.
            for node in (a, b):
                st, _, body = node.request("POST", "/v1/sessions/%s/messages" % sid,
                                           {"text": "after %d" % node.port})
                self.assertEqual(st, 200, body)
                acked.append("after %d" % node.port)
            events = all_events(self, b, sid)
            texts = [e["data"]["text"] for e in events if e["type"] == "message.user"]
            self.assertEqual(sorted(t for t in texts if t in set(acked)), sorted(acked))
            self.assertEqual(len(texts), len(set(texts)))
        finally:
            a.cleanup()
            b.cleanup()


class BudgetAndClockTest(unittest.TestCase):
    """A per-user budget spent through two nodes, the nodes' numbers in their
    stamps, and a node whose clock is off by seconds."""

    def setUp(self):
        from fake_openai import FakeOpenAI
        self.fake = FakeOpenAI().start()
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.cleanup()
        self.fake.stop()

    def config(self, budget):
        import os
        import tempfile
        cfg = {"ai": {"deadline_ms": 3000, "budget_usd_per_user": budget, "providers": [
            {"name": "paid", "kind": "openai", "base_url": self.fake.base_url,
             "model": "fake-model-1", "timeout_ms": 2000, "price_in_per_mtok": 1.0,
             "price_out_per_mtok": 2.0, "max_tokens": 400},
            {"name": "offline", "kind": "builtin"}]}}
        fd, path = tempfile.mkstemp(suffix=".yaml", prefix="persona-budget-")
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f)  # JSON is YAML
        return ["--config", path]

    @postgres_only
    def test_two_nodes_spend_one_budget_and_stamp_their_own_number(self):
        # Each paid call costs 1,000 + 2 × 100 = 1,200 µ$; 60 of them would be
        # $0.072, so each node alone could have spent the whole $0.02.
        budget = 0.02
        args = self.config(budget)
        a = Server(extra_args=args).start()
        self.servers.append(a)
        b = Server(extra_args=args)
        b.store_args = a.store_args
        self.servers.append(b.start())
        self.fake.default = {"content": json.dumps({"reply": "paid answer", "changes": [],
                                                    "asks": ""}), "delay_ms": 50,
                             "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}
        sids = [(node, self.session(node)) for node in (a, b) for _ in range(30)]
        results = []
        lock = threading.Lock()
        gate = threading.Barrier(len(sids))

        def worker(node, sid):
            conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=20)
            conn.connect()
            gate.wait()
            st, _, body = node.request("POST", "/v1/sessions/%s/messages" % sid,
                                       {"text": "hello"}, conn=conn)
            with lock:
                results.append((st, body.get("source")))
            conn.close()

        threads = [threading.Thread(target=worker, args=p) for p in sids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertTrue(all(st == 200 for st, _ in results), results)
        paid = sum(1 for _, src in results if src == "llm")
        _, _, usage = b.request("GET", "/v1/users/budget/usage")
        self.assertEqual(usage["calls"], paid)
        self.assertGreater(paid, 0)
        self.assertLessEqual(usage["cost_usd"], budget + 1e-12)
        # Steps one after the other, alternating nodes, until neither pays:
        # still within the one budget.
        for i in range(40):
            node = (a, b)[i % 2]
            st, _, body = node.request("POST", "/v1/sessions/%s/messages" % sids[i][1],
                                       {"text": "one more"})
            self.assertEqual(st, 200, body)
        for node in (a, b):
            st, _, body = node.request("POST", "/v1/sessions/%s/messages" % self.session(node),
                                       {"text": "and another"})
            self.assertEqual((st, body["source"]), (200, "builtin"), body)
        _, _, usage = a.request("GET", "/v1/users/budget/usage")
        self.assertLessEqual(usage["cost_usd"], budget + 1e-12)
        self.assertEqual(_metric(a, "persona_budget_ledger_errors_total"), 0)
        # Each node puts its own number in the low bits of its stamps.
        numbers = set()
        for node, sid in (sids[0], sids[-1]):
            for e in all_events(self, node, sid):
                if e["origin"] != "device":
                    numbers.add(int(e["hlc"]) & 63)
        self.assertEqual(len(numbers), 2, numbers)
        print("\nbudget across two nodes: %d of %d concurrent steps paid, %d calls in all, "
              "$%.6f of $%.2f spent" % (paid, len(sids), usage["calls"], usage["cost_usd"], budget))

    @postgres_only
    def test_a_node_whose_clock_is_seconds_off_is_refused_at_start(self):
        # The database server runs 5 s behind: to it, this machine's clock is
        # 5 s ahead. (libfaketime cannot run persona itself: jemalloc reads
        # the clock while libfaketime is still starting.)
        import subprocess
        from persona_server import BIN, ROOT, Postgres
        a = Server().start()
        self.servers.append(a)
        self.assertLess(abs(_metric(a, "persona_clock_offset_ms")), 250)
        pg = Postgres(clock_offset="-5s")
        try:
            store = ["--set", "store.backend=postgres", "--set", "store.url=" + pg.new_database()]
            r = subprocess.run([BIN, "serve", "--http-listen", "127.0.0.1:0", "--mqtt-listen",
                                "off", "--data-dir", a.data_dir + "/skewed", "--schemas-dir",
                                ROOT + "/schemas"] + store,
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertRegex(r.stderr, r"this machine's clock is \d+ ms ahead of the database "
                             r"server's, more than store.max_clock_skew_ms \(1000\)")
            # A limit that tolerates it lets the node serve, and it reports
            # the offset.
            b = Server(extra_args=["--set", "store.max_clock_skew_ms=20000"])
            b.store_args = store
            self.servers.append(b.start())
            self.assertGreater(_metric(b, "persona_clock_offset_ms"), 4000)
            self.assertLess(_metric(b, "persona_clock_offset_ms"), 6000)
            b.cleanup()
        finally:
            pg.stop()

    def session(self, node):
        st, _, b = node.request("POST", "/v1/sessions", {"user_id": "budget"})
        self.assertEqual(st, 201, b)
        return b["session_id"]


class SchemaMismatchTest(unittest.TestCase):
    @postgres_only
    def test_a_node_with_another_schema_set_is_refused_at_start(self):
        import os
        import shutil
        import subprocess
        import tempfile
        from persona_server import BIN, ROOT
        a = Server().start()
        other = tempfile.mkdtemp(prefix="persona-schemas-")
        try:
            shutil.copytree(os.path.join(ROOT, "schemas"), other, dirs_exist_ok=True)
            with open(os.path.join(other, "extra.yaml"), "w") as f:
                f.write("name: extra\nfields:\n  - {name: nickname, type: string}\n")
            r = subprocess.run([BIN, "serve", "--http-listen", "127.0.0.1:0", "--mqtt-listen", "off",
                                "--data-dir", os.path.join(other, "data"), "--schemas-dir", other]
                               + a.store_args, capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn("every node must run the same profile schemas", r.stderr)
            # The same schema set joins.
            b = Server()
            b.store_args = a.store_args
            b.start()
            b.cleanup()
        finally:
            a.cleanup()
            shutil.rmtree(other, ignore_errors=True)


def all_events(test, node, sid):
    """A session's whole log through `node`, checked gapless."""
    events, after = [], 0
    while True:
        st, _, page = node.request("GET", "/v1/sessions/%s/events?after=%d&limit=1000"
                                   % (sid, after))
        test.assertEqual(st, 200, page)
        if not page["events"]:
            break
        events += page["events"]
        after = page["events"][-1]["seq"]
    test.assertEqual([e["seq"] for e in events], list(range(1, len(events) + 1)))
    return events


def _on_postgres():
    from persona_server import STORE
    return STORE == "postgres"




if __name__ == "__main__":
    unittest.main()
