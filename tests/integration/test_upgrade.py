"""Zero-downtime upgrade (SPEC §13, issue 13) on the real binary, on RocksDB
and (PERSONA_TEST_STORE=postgres) PostgreSQL: a second `persona serve` on
the same data directory takes the listening sockets over under steady HTTP
load with an MQTT device watching; nothing is refused, failed or lost, and
the old process exits 0. Also: a new process that fails after taking the
sockets gives them back to the old one, which serves on; a taker of an
earlier version (no confirmation) is handed over to as before; a second
upgrade during one is refused; and a stale socket file from a crashed server
is ignored."""
import os
import subprocess
import time
import unittest

from persona_server import BIN, ROOT, Server
from upgrade_load import Load, events


class UpgradeTest(unittest.TestCase):
    def setUp(self):
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.cleanup()

    def server(self, data_dir=None):
        s = Server(data_dir=data_dir)
        self.servers.append(s)
        return s

    def start_load(self, server, users):
        """Sessions for `users`, their versions now, and a running Load."""
        sessions = []
        for user in users:
            st, _, b = server.request("POST", "/v1/sessions", {"user_id": user})
            self.assertEqual(st, 201, b)
            sessions.append(b["session_id"])
        start = {sid: server.request("GET", "/v1/sessions/%s/profile" % sid)[2]["version"]
                 for sid in sessions}
        load = Load(server.port, server.mqtt_port, sessions)
        load.start()
        return sessions, start, load

    def finish_load(self, load, server, start):
        load.finish(lambda sid: set(range(start[sid] + 1,
                                          server.request("GET", "/v1/sessions/%s/profile" % sid)
                                          [2]["version"] + 1)))

    def assert_nothing_lost(self, load, server, sessions, start):
        for sid in sessions:
            evs = events(server, sid)
            # Gapless, and every acknowledged step exactly once (a retried
            # request was answered once, by its idempotency key).
            self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)))
            users = [e for e in evs if e["type"] == "message.user"]
            self.assertEqual(len(users), load.acked[sid], sid)
            # The device saw every event after it subscribed, across the
            # upgrade: its persistent session came back on the serving process.
            want = set(range(start[sid] + 1, evs[-1]["seq"] + 1))
            seen = load.mqtt_seen.get(sid, set())
            self.assertEqual(want - seen, set(), (sid, len(want), len(seen), max(seen, default=0),
                                                  load.mqtt_reconnects, load.mqtt_session_lost))
        self.assertEqual(load.mqtt_session_lost, 0)

    def test_an_upgrade_under_load_refuses_fails_and_loses_nothing(self):
        old = self.server().start()
        sessions, start, load = self.start_load(old, ["up%d" % i for i in range(4)])
        time.sleep(1.5)
        before = sum(load.acked.values())
        new = self.server(old.data_dir)
        t_upgrade = time.time()
        new.start()
        rc = old.proc.wait(timeout=30)
        old.proc = None
        self.assertEqual(new.port, old.port)  # the same socket, handed over
        time.sleep(1.5)
        self.finish_load(load, new, start)
        self.assertEqual(rc, 0)
        self.assertEqual(load.failed, [])
        self.assertEqual(load.refused, 0)
        self.assertGreater(before, 20)
        self.assertGreater(sum(load.acked.values()), before + 20)  # the new one served
        self.assertTrue(any("handed over" in l for l in old.log), old.log[-5:])
        self.assert_nothing_lost(load, new, sessions, start)
        self.assertGreaterEqual(load.mqtt_reconnects, 1)
        print("\nupgrade: %d steps, %d retried after a closed keep-alive, longest gap %.0f ms, "
              "slowest step %.0f ms" % (sum(load.acked.values()), load.retried,
                                        1000 * load.longest_gap(t_upgrade, t_upgrade + 1.0),
                                        1000 * load.slowest))

    def test_a_new_process_that_fails_after_the_takeover_gives_the_listeners_back(self):
        # The new process takes the sockets, then fails: its intent gate's
        # model is missing (loaded after the store opens). The old process
        # takes its listeners back and serves on, under load, refusing,
        # failing and losing nothing; a good upgrade after that still works.
        old = self.server().start()
        sessions, start, load = self.start_load(old, ["back0", "back1"])
        time.sleep(1.0)
        before = sum(load.acked.values())
        bad = Server(data_dir=old.data_dir, extra_args=[
            "--set", "ai.gate.enabled=true", "--set", "ai.gate.model=/nonexistent/intent.bin"])
        self.servers.append(bad)
        t_upgrade = time.time()
        with self.assertRaises(RuntimeError):
            bad.start()
        self.assertEqual(bad.proc.wait(timeout=30), 2)
        self.assertTrue(any("taking over from the running server" in l for l in bad.log), bad.log)
        deadline = time.time() + 20
        while time.time() < deadline and not any('"taken_back":true' in l for l in old.log):
            time.sleep(0.05)
        self.assertTrue(any("taking the listeners back" in l for l in old.log), old.log[-10:])
        self.assertTrue(any('"taken_back":true' in l for l in old.log), old.log[-10:])
        self.assertIsNone(old.proc.poll())  # the same process, executed again
        time.sleep(1.0)
        self.finish_load(load, old, start)
        self.assertEqual(load.failed, [])
        self.assertEqual(load.refused, 0)
        self.assertGreater(sum(load.acked.values()), before + 10)  # served after taking back
        self.assert_nothing_lost(load, old, sessions, start)
        print("\ntaken back: %d steps, %d retried, longest gap %.0f ms, slowest step %.0f ms" % (
            sum(load.acked.values()), load.retried,
            1000 * load.longest_gap(t_upgrade, time.time()), 1000 * load.slowest))
        # And the next upgrade goes through as usual.
        new = self.server(old.data_dir).start()
        self.assertEqual(old.proc.wait(timeout=30), 0)
        old.proc = None
        self.assertEqual(new.port, old.port)
        self.assertEqual(new.request("GET", "/v1/sessions/%s/profile" % sessions[0])[0], 200)

    def test_a_taker_that_does_not_confirm_is_handed_over_to_as_before(self):
        # A new process of an earlier version sends only "TAKEOVER 1" and
        # never says it serves: the old one exits 0 after releasing.
        import socket
        old = self.server().start()
        c = socket.socket(socket.AF_UNIX)
        c.connect(os.path.join(old.data_dir, "data", "upgrade.sock"))
        c.sendall(b"TAKEOVER 1\n")
        msg, anc, _, _ = c.recvmsg(128, socket.CMSG_SPACE(8))
        self.assertTrue(msg.startswith(b"LISTENERS http mqtt"), msg)
        fds = []
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += list(__import__("array").array("i", data[:len(data) - len(data) % 4]))
        self.assertEqual(len(fds), 2)
        rest = msg.split(b"\n", 1)[1]
        while b"RELEASED" not in rest:
            chunk = c.recv(64)
            if not chunk:
                break
            rest += chunk
        self.assertIn(b"RELEASED", rest)
        self.assertEqual(old.proc.wait(timeout=30), 0)
        old.proc = None
        for fd in fds:
            os.close(fd)
        c.close()

    def test_a_second_upgrade_during_one_is_refused(self):
        old = self.server().start()
        # Hold the start lock as a starting process does, then start another.
        import fcntl
        lock = open(os.path.join(old.data_dir, "data", "upgrade.lock"), "a")
        for _ in range(100):  # the server lets go of it just after it listens
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.05)
        try:
            r = subprocess.run([BIN, "serve", "--http-listen", "127.0.0.1:0", "--mqtt-listen",
                                "off", "--data-dir", os.path.join(old.data_dir, "data"),
                                "--schemas-dir", os.path.join(ROOT, "schemas")] + old.store_args,
                               capture_output=True, text=True, timeout=30)
        finally:
            lock.close()
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("another persona is starting or taking over", r.stderr)
        # The running server did not notice.
        self.assertEqual(old.request("GET", "/readyz")[0], 200)
        self.assertIsNone(old.proc.poll())

    def test_a_crashed_servers_socket_file_is_ignored(self):
        old = self.server().start()
        st, _, b = old.request("POST", "/v1/sessions", {"user_id": "crash"})
        old.kill9()
        sock = os.path.join(old.data_dir, "data", "upgrade.sock")
        self.assertTrue(os.path.exists(sock))  # left behind
        again = self.server(old.data_dir).start()
        self.assertEqual(again.request("GET", "/v1/sessions/%s/profile" % b["session_id"])[0], 200)
        self.assertTrue(any('"upgraded":false' in l for l in again.log))

    def test_garbage_on_the_upgrade_socket_is_ignored(self):
        import socket
        old = self.server().start()
        for payload in [b"", b"HELLO\n", b"\x00" * 5000, b"TAKEOVER 2\n"]:
            c = socket.socket(socket.AF_UNIX)
            c.connect(os.path.join(old.data_dir, "data", "upgrade.sock"))
            c.sendall(payload)
            c.close()
        time.sleep(0.3)
        self.assertEqual(old.request("GET", "/readyz")[0], 200)
        # And a real takeover still works after.
        new = self.server(old.data_dir).start()
        self.assertEqual(old.proc.wait(timeout=30), 0)
        old.proc = None
        self.assertEqual(new.request("GET", "/readyz")[0], 200)


if __name__ == "__main__":
    unittest.main()
