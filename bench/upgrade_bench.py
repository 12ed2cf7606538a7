#!/usr/bin/env python3
"""One store's rounds of bench/run_upgrade.sh (PERSONA_TEST_STORE selects
it, as in the integration tests): each round starts a persona, puts the load
of tests/integration/upgrade_load.py on it, upgrades it, and reports what
failed, what was lost and the longest stall. Prints one JSON object."""
import json
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from persona_server import STORE, Server  # noqa: E402
from upgrade_load import Load, events  # noqa: E402

WRITERS = int(os.environ.get("WRITERS", "16"))
BEFORE = float(os.environ.get("BEFORE", "3"))
AFTER = float(os.environ.get("AFTER", "3"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
WATCHED = int(os.environ.get("WATCHED", "2"))  # sessions the MQTT device watches
LIMITS = ["--set", "limits.http_per_user.rate=0", "--set", "limits.connections_per_address.rate=0"]


def one_round():
    old = Server(extra_args=LIMITS).start()
    new = None
    try:
        sessions = []
        for i in range(WRITERS):
            sessions.append(old.request("POST", "/v1/sessions", {"user_id": "w%d" % i})[2]
                            ["session_id"])
        start = {sid: old.request("GET", "/v1/sessions/%s/profile" % sid)[2]["version"]
                 for sid in sessions}
        load = Load(old.port, old.mqtt_port, sessions, watched=sessions[:WATCHED])
        load.start()
        time.sleep(BEFORE)
        new = Server(data_dir=old.data_dir, extra_args=LIMITS)
        t0 = time.time()
        new.start()
        rc = old.proc.wait(timeout=60)
        old.proc = None
        time.sleep(AFTER)
        heads = {}

        def expected(sid):
            heads[sid] = new.request("GET", "/v1/sessions/%s/profile" % sid)[2]["version"]
            return set(range(start[sid] + 1, heads[sid] + 1))
        load.finish(expected)
        lost = sum(len(set(range(start[s] + 1, heads[s] + 1)) - load.mqtt_seen.get(s, set()))
                   for s in sessions[:WATCHED])
        watched_events = sum(heads[s] - start[s] for s in sessions[:WATCHED])
        dup_or_missing = 0
        for sid in sessions:
            evs = events(new, sid)
            users = sum(1 for e in evs if e["type"] == "message.user")
            dup_or_missing += abs(users - load.acked[sid])
            assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1)), sid
        drain = next((re.search(r'"drain_ms":(\d+)', l).group(1) for l in old.log
                      if "handed over" in l), "?")
        return {"steps": sum(load.acked.values()), "failed": len(load.failed),
                "failures": [str(f) for f in load.failed[:5]], "refused": load.refused,
                "retried": load.retried, "mqtt_lost": lost, "mqtt_events": watched_events,
                "steps_not_once": dup_or_missing,
                "mqtt_reconnects": load.mqtt_reconnects,
                "mqtt_sessions_lost": load.mqtt_session_lost,
                "longest_stall_ms": 1000 * load.longest_gap(t0, t0 + 1.0),
                "slowest_step_ms": 1000 * load.slowest, "drain_ms": drain, "old_exit": rc}
    finally:
        if new:
            new.cleanup()
        old.cleanup()


print(json.dumps({"store": STORE, "rounds": [one_round() for _ in range(ROUNDS)]}))
