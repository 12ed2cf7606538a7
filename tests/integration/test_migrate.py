"""persona migrate --from rocksdb:DIR --to postgresql://… (SPEC §11): a copy
while the source serves, a catch-up pass, verification, and persona serving
the migrated data from PostgreSQL. Runs with a real PostgreSQL server (the
test starts it) whatever store the rest of the suite uses."""
import json
import os
import unittest

from persona_server import Postgres, Server

ROCKS = ["--set", "store.backend=rocksdb"]


class MigrateTest(unittest.TestCase):
    def run_migrate(self, s, url, *extra):
        r = s.cli("migrate", "--from", "rocksdb:" + os.path.join(s.data_dir, "data"), "--to", url,
                  *extra)
        return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else None), r.stderr

    def test_copy_while_serving_then_catch_up_verify_and_serve_from_postgres(self):
        s = Server(extra_args=ROCKS)
        s.store_args = []  # this test's source is RocksDB, whatever the suite runs on
        s.start()
        url = Postgres.get().new_database()
        try:
            sids = []
            for i in range(6):
                st, _, b = s.request("POST", "/v1/sessions", {"user_id": "m%d" % i})
                self.assertEqual(st, 201)
                sids.append(b["session_id"])
                for text in ("Hi, I'm Mina Park", "I'm 31 and I live in Busan"):
                    st, _, _ = s.request("POST", "/v1/sessions/%s/messages" % b["session_id"],
                                         {"text": text})
                    self.assertEqual(st, 200)
            # 70 edits on one session: past a snapshot (every 64 events).
            for k in range(70):
                st, _, _ = s.request("PATCH", "/v1/sessions/%s/profile" % sids[0],
                                     {"fields": {"goals": "goal %d" % k}})
                self.assertEqual(st, 200)
            rc, report, err = self.run_migrate(s, url)  # while the source serves
            self.assertEqual(rc, 0, err)
            first = report["passes"][0]
            self.assertEqual(first["sessions_copied"], 6)
            # Changes after the first run, including an erasure.
            st, _, _ = s.request("PATCH", "/v1/sessions/%s/profile" % sids[1],
                                 {"fields": {"city": "Daegu"}})
            self.assertEqual(st, 200)
            st, _, _ = s.request("DELETE", "/v1/sessions/%s" % sids[2])
            self.assertEqual(st, 204)
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "late"})
            late = b["session_id"]
            self.assertEqual(s.stop(), 0)
            # The catch-up run copies only what changed, then verifies.
            rc, report, err = self.run_migrate(s, url, "--verify")
            self.assertEqual(rc, 0, err)
            self.assertEqual(report["passes"][0]["sessions_copied"], 2)  # sids[1] and late
            self.assertEqual(report["passes"][0]["sessions_erased"], 1)
            self.assertTrue(report["verify"]["equal"], report)
            self.assertEqual(report["verify"]["sessions_source"], 6)
            self.assertEqual(report["verify"]["sessions_target"], 6)
            # Again: nothing to do.
            rc, report, err = self.run_migrate(s, url)
            self.assertEqual((rc, report["sessions_copied"]), (0, 0))

            # persona on PostgreSQL serves the migrated sessions.
            p = Server(extra_args=["--set", "store.backend=postgres", "--set", "store.url=" + url])
            p.store_args = []
            p.start()
            try:
                st, _, b = p.request("GET", "/v1/sessions/%s" % sids[1])
                self.assertEqual(st, 200)
                self.assertEqual(b["profile"]["city"], "Daegu")
                self.assertEqual(b["profile"]["name"], "Mina Park")
                st, _, b = p.request("GET", "/v1/sessions/%s" % sids[0])
                self.assertEqual(b["profile"]["goals"], "goal 69")
                self.assertEqual(p.request("GET", "/v1/sessions/%s" % sids[2])[0], 404)
                self.assertEqual(p.request("GET", "/v1/sessions/%s" % late)[0], 200)
                st, _, b = p.request("POST", "/v1/sessions/%s/messages" % sids[3],
                                     {"text": "I work as a nurse"})
                self.assertEqual(st, 200)
                self.assertEqual(b["profile"]["occupation"], "nurse")
                r = p.cli("replay", sids[0], "--set", "store.backend=postgres",
                          "--set", "store.url=" + url)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertTrue(json.loads(r.stdout)["equal"])
            finally:
                p.cleanup()
        finally:
            s.cleanup()

    def test_bad_arguments_are_refused_clearly(self):
        s = Server(extra_args=ROCKS)
        s.store_args = []
        try:
            r = s.cli("migrate", "--from", "/tmp/x", "--to", "postgresql://x")
            self.assertEqual(r.returncode, 2)
            self.assertIn("rocksdb:DIR", r.stderr)
            r = s.cli("migrate", "--from", "rocksdb:/tmp/x", "--to", "mysql://x")
            self.assertEqual(r.returncode, 2)
            self.assertIn("postgresql://", r.stderr)
            r = s.cli("migrate", "--from", "rocksdb:/tmp/x",
                      "--to", "postgresql://postgres@127.0.0.1:1/none")
            self.assertEqual(r.returncode, 2)
            self.assertIn("cannot connect to PostgreSQL", r.stderr)
        finally:
            s.cleanup()


if __name__ == "__main__":
    unittest.main()
