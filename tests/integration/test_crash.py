"""kill -9 while steps and PATCHes are in flight: every acknowledged write is
present exactly once after restart, and `persona replay` equals the stored
profile."""
import http.client
import json
import os
import threading
import time
import unittest
import uuid

from persona_server import STORE, Postgres, Server

WORKERS = 64
SESSIONS = 32
# make crash-test runs the long mode: 100,000 acknowledged writes, and on
# PostgreSQL a database restart half-way (writes get 503, then resume).
TARGET_ACKS = int(os.environ.get("CRASH_TARGET_ACKS", "4000"))
PG_RESTART = os.environ.get("CRASH_PG_RESTART") == "1" and STORE == "postgres"


class CrashTest(unittest.TestCase):
    def test_kill9_loses_no_acknowledged_write(self):
        s = Server().start()
        try:
            sids = []
            for i in range(SESSIONS):
                st, _, b = s.request("POST", "/v1/sessions", {"user_id": "crash-%d" % i})
                self.assertEqual(st, 201)
                sids.append(b["session_id"])

            acked_msgs = []     # (sid, text, message_id)
            acked_patches = []  # (sid, value, version)
            lock = threading.Lock()
            stop = threading.Event()

            def worker(w):
                sid = sids[w % SESSIONS]
                conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
                n = 0
                while not stop.is_set():
                    n += 1
                    token = "w%dn%d" % (w, n)
                    try:
                        if n % 2:
                            body = json.dumps({"text": "I like item-%s" % token})
                            conn.request("POST", "/v1/sessions/%s/messages" % sid, body=body,
                                         headers={"Content-Type": "application/json"})
                        else:
                            body = json.dumps({"fields": {"goals": "goal-" + token}})
                            conn.request("PATCH", "/v1/sessions/%s/profile" % sid, body=body,
                                         headers={"Content-Type": "application/json",
                                                  "Idempotency-Key": uuid.uuid4().hex})
                        r = conn.getresponse()
                        data = r.read()
                    except (OSError, http.client.HTTPException):
                        return  # the server died; this request may or may not be stored
                    if r.status != 200:
                        continue
                    b = json.loads(data)
                    with lock:
                        if n % 2:
                            acked_msgs.append((sid, "I like item-" + token, b["message_id"]))
                        else:
                            acked_patches.append((sid, "goal-" + token, b["version"]))

            threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
            for t in threads:
                t.start()
            deadline = time.time() + max(60, TARGET_ACKS / 200)
            restarted = False
            while time.time() < deadline:
                with lock:
                    done = len(acked_msgs) + len(acked_patches)
                if done >= TARGET_ACKS:
                    break
                if PG_RESTART and not restarted and done >= TARGET_ACKS // 2:
                    Postgres.get().restart()
                    restarted = True
                time.sleep(0.01)
            s.kill9()  # while requests are in flight
            stop.set()
            for t in threads:
                t.join()
            total = len(acked_msgs) + len(acked_patches)
            self.assertGreaterEqual(total, TARGET_ACKS)

            s.start()
            events = {}
            for sid in sids:
                evs, after = [], 0
                while True:
                    st, _, b = s.request("GET", "/v1/sessions/%s/events?after=%d&limit=1000" % (sid, after))
                    self.assertEqual(st, 200)
                    evs += b["events"]
                    if len(b["events"]) < 1000:
                        break
                    after = b["next_after"]
                self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)), sid)
                events[sid] = evs

            for sid, text, mid in acked_msgs:
                found = [e for e in events[sid] if e["type"] == "message.user"
                         and e["data"]["message_id"] == mid]
                self.assertEqual(len(found), 1, (sid, text))
                self.assertEqual(found[0]["data"]["text"], text)
            for sid, value, version in acked_patches:
                found = [e for e in events[sid] if e["type"] == "profile.field_set"
                         and e["data"].get("value") == value]
                self.assertEqual(len(found), 1, (sid, value))
                self.assertEqual(found[0]["seq"], version)
            # Nothing was stored twice, acknowledged or not.
            for sid, evs in events.items():
                texts = [e["data"]["text"] for e in evs if e["type"] == "message.user"]
                self.assertEqual(len(texts), len(set(texts)))
            s.stop()
            for sid in sids:
                r = s.cli("replay", sid)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertTrue(json.loads(r.stdout)["equal"])
            print("\ncrash test (%s%s): %d acknowledged steps, %d acknowledged PATCHes, all present once"
                  % (STORE, ", database restarted mid-run" if PG_RESTART else "",
                     len(acked_msgs), len(acked_patches)))
        finally:
            s.cleanup()


if __name__ == "__main__":
    unittest.main()
