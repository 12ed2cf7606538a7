"""Start-up, restart, shutdown, the CLI tools and hostile connections."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from persona_server import BIN, ROOT, STORE, Postgres, Server, postgres_only, rocksdb_only


def steps(server, sid, texts):
    for t in texts:
        st, _, b = server.request("POST", "/v1/sessions/%s/messages" % sid, {"text": t})
        assert st == 200, b


class LifecycleTest(unittest.TestCase):
    def test_profile_survives_restart_and_replay_export_import_agree(self):
        s = Server().start()
        try:
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "u1"})
            sid = b["session_id"]
            # Enough events to cross several snapshots (every 64 events).
            for i in range(40):
                steps(s, sid, ["I'm %d" % (20 + i % 50), "I like hobby%d" % i])
            st, _, before = s.request("GET", "/v1/sessions/%s/profile" % sid)
            self.assertEqual(s.stop(), 0)
            s.start()
            st, _, after = s.request("GET", "/v1/sessions/%s/profile" % sid)
            self.assertEqual(before, after)
            self.assertGreater(after["version"], 128)
            s.stop()

            r = s.cli("replay", sid)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            report = json.loads(r.stdout)
            self.assertTrue(report["equal"])
            self.assertGreater(report["snapshot_seq"], 0)
            self.assertEqual(report["replayed"]["profile"], after["profile"])

            exp = s.cli("export")
            self.assertEqual(exp.returncode, 0, exp.stderr)
            lines = [json.loads(l) for l in exp.stdout.splitlines()]
            self.assertEqual(lines[0]["kind"], "session")
            self.assertEqual(sum(l["kind"] == "event" for l in lines), after["version"])

            other = Server()
            imp = other.cli("import", input_text=exp.stdout)
            self.assertEqual(imp.returncode, 0, imp.stderr)
            other.start()
            st, _, imported = other.request("GET", "/v1/sessions/%s/profile" % sid)
            self.assertEqual(imported, after)
            # Importing the same session again is refused, not duplicated.
            other.stop()
            again = other.cli("import", input_text=exp.stdout)
            self.assertNotEqual(again.returncode, 0)
            other.cleanup()
        finally:
            s.cleanup()

    @postgres_only
    def test_replay_finds_a_damaged_snapshot_and_a_gap_in_the_log(self):
        # Damage the store behind persona's back (PostgreSQL lets the test
        # edit rows); each check must say so, and exit 1.
        s = Server().start()
        try:
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "u1"})
            sid = b["session_id"]
            steps(s, sid, ["I'm Alice"])
            s.stop()
            # No snapshot yet: the log and the projection are still checked.
            r = s.cli("replay", sid)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            report = json.loads(r.stdout)
            self.assertEqual(report["checks"], {"log": True, "snapshot": None, "projection": True})
            s.start()
            for i in range(40):  # past the first snapshot (every 64 events)
                steps(s, sid, ["I like hobby%d" % i])
            s.stop()
            r = s.cli("replay", sid)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            report = json.loads(r.stdout)
            self.assertEqual(report["checks"], {"log": True, "snapshot": True, "projection": True})
            self.assertGreater(report["snapshot_seq"], 0)
            db = s.store_args[-1].rsplit("/", 1)[1]
            pg = Postgres.get()
            pg.psql("UPDATE persona_snapshots SET state = replace(state, 'Alice', 'Mallory')", db)
            r = s.cli("replay", sid)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            report = json.loads(r.stdout)
            self.assertFalse(report["checks"]["snapshot"])
            self.assertFalse(report["checks"]["projection"])  # served from the snapshot
            self.assertEqual(report["replayed"]["profile"]["name"], "Alice")
            pg.psql("UPDATE persona_snapshots SET state = replace(state, 'Mallory', 'Alice')", db)
            pg.psql("DELETE FROM persona_events WHERE session_id = '%s' AND seq = 3" % sid, db)
            r = s.cli("replay", sid)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            report = json.loads(r.stdout)
            self.assertFalse(report["checks"]["log"])
            self.assertEqual(report["first_gap_at_seq"], 3)
        finally:
            s.cleanup()

    def test_persona_bench_runs_the_load_generator(self):
        s = Server().start()
        try:
            import subprocess
            from persona_server import BIN
            r = subprocess.run([BIN, "bench", "http", "closed", "--url",
                                "http://127.0.0.1:%d" % s.port, "--connections", "4",
                                "--duration", "1", "--warmup", "0.2", "--sessions-per-conn", "1"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            out = json.loads(r.stdout)
            self.assertEqual((out["mode"], out["errors"], out["non_2xx"]), ("closed", 0, 0))
            self.assertGreater(out["ok"], 10)
            r = subprocess.run([BIN, "bench", "smtp"], capture_output=True, text=True, timeout=10)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("http", r.stderr)
        finally:
            s.cleanup()

    def test_sigterm_drains_in_flight_steps_and_exits_zero(self):
        s = Server().start()
        try:
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "u"})
            sid = b["session_id"]
            steps(s, sid, ["I'm Zoe"])
            self.assertEqual(s.stop(), 0)
            self.assertTrue(any('"msg":"stopped"' in l for l in s.log), s.log[-5:])
        finally:
            s.cleanup()

    def test_invalid_configuration_names_the_key(self):
        r = subprocess.run([BIN, "serve", "--set", "http.max_body_bytes=-5"],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 2)
        self.assertIn("http.max_body_bytes", r.stderr)
        r = subprocess.run([BIN, "serve", "--set", "htp.listen=x"], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(r.returncode, 2)
        self.assertIn("htp.listen", r.stderr)
        env = dict(os.environ, PERSONA_WRITE_MODE="sometimes")
        r = subprocess.run([BIN, "serve"], capture_output=True, text=True, timeout=20, env=env)
        self.assertEqual(r.returncode, 2)
        self.assertIn("write_mode", r.stderr)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("http:\n  listen: [1, 2]\n")
        r = subprocess.run([BIN, "serve", "--config", f.name], capture_output=True, text=True,
                           timeout=20)
        os.unlink(f.name)
        self.assertEqual(r.returncode, 2)
        self.assertIn("http.listen", r.stderr)
        r = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 0)
        for key in ("--http-listen", "--data-dir", "--write-mode", "http.max_body_bytes",
                    "store.snapshot_every"):
            self.assertIn(key, r.stdout)
        r = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 0)
        self.assertIn("persona", r.stdout)

    def test_environment_overrides_file_and_flags_override_environment(self):
        d = tempfile.mkdtemp()
        try:
            cfg = os.path.join(d, "persona.yaml")
            with open(cfg, "w") as f:
                f.write("http:\n  max_body_bytes: 100\n")
            s = Server(extra_args=["--config", cfg], env={"PERSONA_HTTP__MAX_BODY_BYTES": "200"})
            s.start()
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "u" * 150})
            self.assertEqual(st, 201, b)  # 150 < 200 (env wins over the file)
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "u" * 250})
            self.assertEqual(st, 413, b)
            s.cleanup()
        finally:
            shutil.rmtree(d, ignore_errors=True)

    @unittest.skipIf(STORE != "postgres", "a PostgreSQL-only test")
    def test_a_database_refusing_writes_gives_503_and_recovers(self):
        # PostgreSQL's counterpart of the full disk: the database turns
        # read-only (as an operator does when its disk fills). Writes get 503
        # with Retry-After, reads and /readyz keep answering, nothing
        # acknowledged is lost, and writes come back by themselves.
        s = Server().start()
        try:
            url = s.store_args[-1].split("=", 1)[1]
            db = url.rsplit("/", 1)[1]
            sid = s.request("POST", "/v1/sessions", {"user_id": "ro"})[2]["session_id"]
            acked = 0
            for i in range(5):
                st, _, _ = s.request("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"goals": "g%d" % i}})
                self.assertEqual(st, 200)
                acked += 1
            pg = Postgres.get()
            kick = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s' "
                    "AND pid <> pg_backend_pid()") % db
            pg.psql("ALTER DATABASE %s SET default_transaction_read_only = on" % db)
            pg.psql(kick)
            refused = 0
            for i in range(5):
                st, h, body = s.request("PATCH", "/v1/sessions/%s/profile" % sid,
                                        {"fields": {"goals": "refused%d" % i}})
                self.assertEqual(st, 503, body)
                self.assertIn("retry-after", h)
                refused += 1
            st, _, ready = s.request("GET", "/readyz")
            self.assertEqual(st, 503)
            self.assertIn("read-only", ready["detail"])
            st, _, prof = s.request("GET", "/v1/sessions/%s" % sid)
            self.assertEqual(st, 200)
            self.assertEqual(prof["profile"]["goals"], "g4")
            pg.psql("ALTER DATABASE %s SET default_transaction_read_only = off" % db)
            pg.psql(kick)
            deadline = time.time() + 10
            st = 0
            while time.time() < deadline:
                st, _, _ = s.request("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"goals": "back"}})
                if st == 200:
                    break
                time.sleep(0.2)
            self.assertEqual(st, 200)
            self.assertEqual(s.request("GET", "/readyz")[0], 200)
            st, _, ev = s.request("GET", "/v1/sessions/%s/events?limit=1000" % sid)
            goals = [e["data"].get("value") for e in ev["events"] if e["type"] == "profile.field_set"]
            self.assertEqual(goals, ["g0", "g1", "g2", "g3", "g4", "back"])
        finally:
            s.cleanup()

    @rocksdb_only
    def test_corrupt_store_refuses_to_start_with_a_clear_message(self):
        s = Server().start()
        s.stop()
        current = os.path.join(s.data_dir, "data", "events", "CURRENT")
        with open(current, "w") as f:
            f.write("MANIFEST-424242\n")
        try:
            with self.assertRaises(RuntimeError) as ctx:
                s.start(timeout=10)
            self.assertIn("cannot open the RocksDB store", str(ctx.exception))
            self.assertEqual(s.proc.wait(timeout=10), 2)
        finally:
            s.proc = None
            s.cleanup()

    @rocksdb_only
    def test_full_disk_gives_503_keeps_serving_and_keeps_acknowledged_data(self):
        mnt = tempfile.mkdtemp(prefix="persona-full-")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", mnt],
                          capture_output=True).returncode != 0:
            os.rmdir(mnt)
            self.skipTest("cannot mount a small tmpfs here (needs root)")
        s = Server(data_dir=mnt, extra_args=["--set", "store.min_free_bytes=2097152"])
        try:
            s.start()
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "u"})
            sid = b["session_id"]
            acked, statuses = [], set()
            conn = s.conn()
            for i in range(20000):
                value = "g%05d " % i + "x" * 990
                st, h, body = s.request("PATCH", "/v1/sessions/%s/profile" % sid,
                                        {"fields": {"goals": value}}, conn=conn)
                statuses.add(st)
                if st == 200:
                    acked.append((body["version"], value))
                else:
                    self.assertIn(st, (503, 429), body)
                    self.assertEqual(h["content-type"], "application/problem+json")
                    self.assertIn("retry-after", h)
                    break
            conn.close()
            self.assertTrue(statuses & {503, 429}, "the disk never filled: %s" % statuses)
            # Still serving reads, and the last acknowledged write is what it says.
            st, _, b = s.request("GET", "/v1/sessions/%s/profile" % sid)
            self.assertEqual(st, 200)
            self.assertEqual((b["version"], b["profile"]["goals"]), acked[-1])
            self.assertEqual(s.request("GET", "/healthz")[0], 200)
            st, _, ready = s.request("GET", "/readyz")  # not ready: writes are refused
            self.assertEqual(st, 503)
            self.assertIn("disk nearly full", ready["detail"])
            s.kill9()
            # Make room, restart on the same directory: every acknowledged write is there.
            subprocess.run(["mount", "-o", "remount,size=64m", mnt], check=True)
            s.start()
            st, _, b = s.request("GET", "/v1/sessions/%s/profile" % sid)
            self.assertEqual((b["version"], b["profile"]["goals"]), acked[-1])
            st, _, evs = s.request("GET", "/v1/sessions/%s/events?after=%d&limit=1000"
                                   % (sid, acked[-1][0] - 50))
            got = {e["seq"]: e["data"]["value"] for e in evs["events"]
                   if e["type"] == "profile.field_set"}
            for version, value in acked[-50:]:
                self.assertEqual(got.get(version), value)
            s.stop()
        except Exception:
            rc = s.proc.poll() if s.proc else None
            print("\nserver exit status %r; log tail:\n%s" % (rc, "\n".join(s.log[-25:])))
            raise
        finally:
            s.stop()
            subprocess.run(["umount", mnt], capture_output=True)
            shutil.rmtree(mnt, ignore_errors=True)

    def test_a_session_with_too_many_pending_requests_gets_429(self):
        s = Server(extra_args=["--set", "engine.max_pending_per_session=1"]).start()
        try:
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "u"})
            sid = b["session_id"]
            statuses, lock = [], threading.Lock()

            def worker():
                c = s.conn()
                for i in range(10):
                    st, h, body = s.request("POST", "/v1/sessions/%s/messages" % sid,
                                            {"text": "I like x%d" % i}, conn=c)
                    with lock:
                        statuses.append((st, h.get("retry-after"), h.get("content-type")))
                c.close()
            threads = [threading.Thread(target=worker) for _ in range(16)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            codes = {st for st, _, _ in statuses}
            self.assertLessEqual(codes, {200, 429})
            self.assertIn(429, codes)
            for st, retry, ctype in statuses:
                if st == 429:
                    self.assertEqual((retry, ctype), ("1", "application/problem+json"))
            # The accepted steps are all there, in order, and the server still serves.
            st, _, ev = s.request("GET", "/v1/sessions/%s/events?limit=1000" % sid)
            users = [e for e in ev["events"] if e["type"] == "message.user"]
            self.assertEqual(len(users), sum(1 for st, _, _ in statuses if st == 200))
        finally:
            s.cleanup()

    def test_slow_drip_client_is_cut_off_and_others_are_served(self):
        s = Server(extra_args=["--set", "http.request_timeout_ms=500"]).start()
        try:
            slow = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            start = time.time()
            self.assertEqual(s.request("GET", "/healthz")[0], 200)
            closed = False
            while time.time() - start < 5:
                try:
                    slow.sendall(b"X-Drip: 1\r\n")
                    if slow.recv(1) == b"":
                        closed = True
                        break
                except (BrokenPipeError, ConnectionResetError, socket.timeout):
                    closed = True
                    break
            self.assertTrue(closed, "slow client was not cut off")
            self.assertLess(time.time() - start, 4)
        finally:
            s.cleanup()

    def test_many_idle_connections_do_not_stop_service(self):
        # 2,000 connections from one address in a burst: beyond the default
        # limits.connections_per_address (100/s, burst 1,000), so it is lifted.
        s = Server(extra_args=["--set", "limits.connections_per_address.rate=0"]).start()
        socks = []
        try:
            for _ in range(2000):
                socks.append(socket.create_connection(("127.0.0.1", s.port), timeout=5))
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "u"})
            self.assertEqual(st, 201)
            st, _, text = s.request("GET", "/metrics")
            line = [l for l in text.splitlines() if l.startswith("persona_http_connections ")][0]
            self.assertGreaterEqual(int(line.split()[1]), 2000)
        finally:
            for c in socks:
                c.close()
            s.cleanup()

    def test_connection_limit_refuses_extra_connections(self):
        s = Server(extra_args=["--set", "http.max_connections=5"]).start()
        socks = []
        try:
            for _ in range(5):
                socks.append(socket.create_connection(("127.0.0.1", s.port), timeout=5))
            time.sleep(0.2)
            extra = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = extra.recv(100)
            except ConnectionResetError:
                data = b""
            self.assertEqual(data, b"")
            for c in socks:
                c.close()
            time.sleep(0.2)
            self.assertEqual(s.request("GET", "/healthz")[0], 200)
        finally:
            s.cleanup()


if __name__ == "__main__":
    unittest.main()
