"""Real-time sync over MQTT 3.1.1 (SPEC §5): persona's topics, broker
semantics, and protocol abuse, with real clients (mosquitto_sub/pub and a
raw-socket client)."""
import json
import shutil
import socket
import struct
import subprocess
import threading
import time
import unittest

from mqtt_client import Client, connect_packet, packet, publish_packet
from persona_server import Server


class MqttTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server().start()
        cls.port = cls.s.mqtt_port

    @classmethod
    def tearDownClass(cls):
        cls.s.cleanup()

    def session(self):
        st, _, b = self.s.request("POST", "/v1/sessions", {"user_id": "mqtt"})
        self.assertEqual(st, 201)
        return b["session_id"]

    def say(self, sid, text):
        st, _, b = self.s.request("POST", "/v1/sessions/%s/messages" % sid, {"text": text})
        self.assertEqual(st, 200, b)
        return b

    def test_retained_profile_then_every_change_in_order(self):
        sid = self.session()
        self.say(sid, "I'm Alice")
        c = Client(self.port, "dev-a")
        self.assertEqual(c.subscribe("session/%s/profile" % sid, "session/%s/events" % sid), [1, 1])
        (topic, payload, qos, retain, dup, _), = c.messages(1)
        self.assertEqual(topic, "session/%s/profile" % sid)
        self.assertTrue(retain)
        self.assertEqual(json.loads(payload)["profile"], {"name": "Alice"})
        version = json.loads(payload)["version"]
        self.say(sid, "I'm 34 and I live in Seoul")
        msgs = c.messages(6)  # user msg, age, city, assistant msg, + profile snapshot
        events = [json.loads(p) for t, p, *_ in msgs if t.endswith("/events")]
        seqs = [e["seq"] for e in events]
        self.assertEqual(seqs, list(range(version + 1, version + 1 + len(seqs))))
        self.assertEqual([e["type"] for e in events],
                         ["message.user", "profile.field_set", "profile.field_set", "message.assistant"])
        snaps = [json.loads(p) for t, p, *_ in msgs if t.endswith("/profile")]
        self.assertEqual(snaps[-1]["profile"], {"name": "Alice", "age": 34, "city": "Seoul"})
        self.assertFalse(any(r for t, p, q, r, *_ in msgs))  # live forwards are not retained
        c.disconnect()

    def test_device_edit_and_chat_over_mqtt(self):
        sid = self.session()
        watcher = Client(self.port, "watcher")
        watcher.subscribe("session/%s/events" % sid, "session/%s/errors" % sid)
        dev = Client(self.port, "phone")
        dev.publish("session/%s/profile/set" % sid, json.dumps({"fields": {"city": "Busan"}}), qos=1)
        (t, p, *_), = watcher.messages(1)
        e = json.loads(p)
        self.assertEqual((e["type"], e["data"]["field"], e["data"]["value"], e["origin"]),
                         ("profile.field_set", "city", "Busan", "device"))
        dev.publish("session/%s/messages" % sid, json.dumps({"text": "I'm Bob"}), qos=1)
        msgs = [json.loads(p) for t, p, *_ in watcher.messages(3)]
        self.assertEqual([m["type"] for m in msgs],
                         ["message.user", "profile.field_set", "message.assistant"])
        self.assertTrue(msgs[2]["data"]["text"])
        # A rejected edit is reported on …/errors and changes nothing.
        dev.publish("session/%s/profile/set" % sid, json.dumps({"fields": {"age": 999}}), qos=1)
        dev.publish("session/%s/profile/set" % sid, "not json", qos=1)
        errs = watcher.messages(2)
        self.assertTrue(all(t.endswith("/errors") for t, *_ in errs))
        # The invalid edit is refused by the engine and the bad JSON at once, so
        # the two problems may arrive in either order.
        details = sorted(json.loads(p)["detail"] for t, p, *_ in errs)
        self.assertTrue(any("age" in d for d in details), details)
        self.assertTrue(any("JSON object" in d for d in details), details)
        st, _, prof = self.s.request("GET", "/v1/sessions/%s/profile" % sid)
        self.assertEqual(prof["profile"], {"name": "Bob", "city": "Busan"})
        # Clients cannot publish on server-owned topics.
        dev.publish("session/%s/events" % sid, '{"seq":999}', qos=1)
        self.assertEqual(watcher.messages(1, timeout=0.5), [])
        st, _, evs = self.s.request("GET", "/v1/sessions/%s/events?limit=1000" % sid)
        self.assertNotIn(999, [e["seq"] for e in evs["events"]])
        dev.disconnect()
        watcher.disconnect()

    def test_http_changes_reach_mqtt_and_mqtt_changes_reach_sse_in_event_order(self):
        sid = self.session()
        c = Client(self.port, "orderer")
        c.subscribe("session/%s/events" % sid)
        for i in range(20):
            if i % 2:
                self.s.request("PATCH", "/v1/sessions/%s/profile" % sid,
                               {"fields": {"goals": "goal %d" % i}})
            else:
                c.publish("session/%s/profile/set" % sid,
                          json.dumps({"fields": {"occupation": "job %d" % i}}), qos=1)
        msgs = c.messages(20, timeout=10)
        seqs = [json.loads(p)["seq"] for t, p, *_ in msgs]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), 20)
        c.disconnect()

    def test_persistent_session_queues_qos1_while_offline_and_resumes_in_order(self):
        sid = self.session()
        dev = Client(self.port, "tablet-1", clean=False)
        dev.subscribe("session/%s/events" % sid)
        dev.drop()
        time.sleep(0.2)
        for i in range(5):
            self.s.request("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"goals": "g%d" % i}})
        dev = Client(self.port, "tablet-1", clean=False)
        self.assertTrue(dev.session_present)
        msgs = dev.messages(5)
        self.assertEqual([json.loads(p)["data"]["value"] for t, p, *_ in msgs],
                         ["g0", "g1", "g2", "g3", "g4"])
        # Unacknowledged messages come again, with DUP, after a reconnect.
        self.s.request("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"goals": "g5"}})
        (t, p, q, r, dup, pid), = dev.messages(1, ack=False)
        self.assertFalse(dup)
        dev.drop()
        time.sleep(0.2)
        dev = Client(self.port, "tablet-1", clean=False)
        (t2, p2, q2, r2, dup2, pid2), = dev.messages(1)
        self.assertEqual((p2, dup2, pid2), (p, True, pid))
        dev.disconnect()
        # A clean session forgets it all.
        dev = Client(self.port, "tablet-1", clean=True)
        self.assertFalse(dev.session_present)
        dev.disconnect()

    def test_a_persistent_session_survives_a_restart(self):
        # The session (subscriptions and the seq the device acknowledged) is
        # written to the store, so a restarted server (RocksDB here, and
        # PostgreSQL in the postgres run) gives it back: the events written
        # while the device was away come from the log, in order.
        s = Server().start()
        try:
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "mqtt"})
            sid = b["session_id"]
            topic = "session/%s/events" % sid
            dev = Client(s.mqtt_port, "watch-1", clean=False)
            dev.subscribe(topic)
            s.request("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"goals": "a"}})
            (_, p, *_), = dev.messages(1)
            seen = json.loads(p)["seq"]
            dev.disconnect()
            for g in ("b", "c"):
                s.request("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"goals": g}})
            s.stop()
            s.start()
            dev = Client(s.mqtt_port, "watch-1", clean=False)
            self.assertTrue(dev.session_present)
            msgs = [json.loads(p) for _, p, *_ in dev.messages(2)]
            self.assertEqual([(m["seq"], m["data"]["value"]) for m in msgs],
                             [(seen + 1, "b"), (seen + 2, "c")])
            # And it is still subscribed: live events follow.
            s.request("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"goals": "d"}})
            (_, p, *_), = dev.messages(1)
            self.assertEqual(json.loads(p)["data"]["value"], "d")
            dev.disconnect()
        finally:
            s.cleanup()

    def test_plain_broker_wildcards_retained_will_and_takeover(self):
        sub = Client(self.port, "sub")
        self.assertEqual(sub.subscribe("home/+/temp", "office/#", qos=1), [1, 1])
        pub = Client(self.port, "pub")
        pub.publish("home/kitchen/temp", "21", qos=1)
        pub.publish("home/kitchen/humidity", "40", qos=1)  # no match
        pub.publish("office/a/b/c", "x", qos=0)
        got = sub.messages(2)
        self.assertEqual([(t, p, q) for t, p, q, *_ in got],
                         [("home/kitchen/temp", "21", 1), ("office/a/b/c", "x", 0)])
        # Retained: stored, delivered on subscribe with RETAIN set, cleared by an empty payload.
        pub.publish("status/door", "open", qos=1, retain=True)
        late = Client(self.port, "late")
        late.subscribe("status/#")
        (t, p, q, r, *_), = late.messages(1)
        self.assertEqual((t, p, r), ("status/door", "open", True))
        pub.publish("status/door", "", qos=1, retain=True)
        later = Client(self.port, "later")
        later.subscribe("status/#")
        self.assertEqual(later.messages(1, timeout=0.5), [])
        # Last will on an abnormal disconnect, not on a clean one.
        sub.subscribe("wills/#")
        w = Client(self.port, "dying", will=("wills/dying", "gone", 1, False))
        w.drop()
        (t, p, *_), = sub.messages(1)
        self.assertEqual((t, p), ("wills/dying", "gone"))
        w2 = Client(self.port, "polite", will=("wills/polite", "gone", 1, False))
        w2.disconnect()
        self.assertEqual(sub.messages(1, timeout=0.5), [])
        # Client-id takeover: the old connection is closed.
        first = Client(self.port, "same-id")
        second = Client(self.port, "same-id")
        self.assertTrue(first.closed(timeout=3))
        self.assertTrue(second.ping())
        for c in (sub, pub, late, later, second):
            c.disconnect()

    def test_qos2_publish_is_delivered_once(self):
        sub = Client(self.port, "q2sub")
        sub.subscribe("q2/t", qos=2)
        raw = Client(self.port, "q2pub")
        raw.send(publish_packet("q2/t", "once", qos=2, packet_id=7))
        kind, _, body = raw.read_packet()
        self.assertEqual((kind, struct.unpack("!H", body)[0]), (5, 7))  # PUBREC
        raw.send(publish_packet("q2/t", "once", qos=2, packet_id=7, dup=True))  # a resend
        self.assertEqual(raw.read_packet()[0], 5)
        raw.send(packet(0x62, struct.pack("!H", 7)))  # PUBREL
        kind, _, body = raw.read_packet()
        self.assertEqual(kind, 7)  # PUBCOMP
        msgs = sub.messages(2, timeout=1)
        self.assertEqual([(t, p, q) for t, p, q, *_ in msgs], [("q2/t", "once", 1)])

    def test_keepalive_expiry_closes_the_connection(self):
        c = Client(self.port, "sleepy", keepalive=1)
        self.assertTrue(c.ping())
        self.assertTrue(c.closed(timeout=4))

    def test_protocol_abuse_is_refused_without_harm(self):
        cases = [
            b"\x00\x00",                                    # reserved packet type
            b"\xf0\x00",                                    # reserved packet type 15
            publish_packet("a/b", "x"),                     # PUBLISH before CONNECT
            b"\x10\xff\xff\xff\xff\x7f",                    # 5-byte remaining length
            connect_packet("x", level=3),                   # MQTT with level 3
            connect_packet("", clean=False),                # empty id without clean session
            b"\x10\x80\x80\x80\x01",                        # 2 MiB CONNECT: over the limit
        ]
        for data in cases:
            raw = Client(self.port, connect=False)
            raw.send(data)
            self.assertTrue(raw.closed(timeout=3), data[:8])
        # CONNACK return codes where the spec asks for them.
        raw = Client(self.port, connect=False)
        raw.send(connect_packet("x", level=3))
        kind, _, body = raw.read_packet()
        self.assertEqual((kind, body[1]), (2, 1))
        raw = Client(self.port, connect=False)
        raw.send(connect_packet("", clean=False))
        kind, _, body = raw.read_packet()
        self.assertEqual((kind, body[1]), (2, 2))
        # After CONNECT: a second CONNECT, a wildcard in a PUBLISH topic, a bad SUBSCRIBE.
        for data in (connect_packet("again"), publish_packet("a/+", "x"),
                     packet(0x80, b"\x00\x01" + b"\x00\x01a\x00")):  # SUBSCRIBE flags 0
            c = Client(self.port, "abuser")
            c.send(data)
            self.assertTrue(c.closed(timeout=3))
        # Half-open: a socket that connects and says nothing is closed after the CONNECT timeout
        # (10 s); here we only check the broker still serves everyone else meanwhile.
        idle = socket.create_connection(("127.0.0.1", self.port))
        ok = Client(self.port, "still-fine")
        self.assertTrue(ok.ping())
        ok.disconnect()
        idle.close()
        st, _, text = self.s.request("GET", "/metrics")
        self.assertIn("persona_mqtt_protocol_errors_total", text)

    def test_slow_consumer_does_not_delay_others(self):
        sid = self.session()
        slow = Client(self.port, "slow", clean=False)
        slow.subscribe("session/%s/events" % sid)
        fast = Client(self.port, "fast")
        fast.subscribe("session/%s/events" % sid)
        # The slow client never acknowledges or reads; the fast one must see everything.
        for i in range(40):
            self.s.request("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"goals": "n%d" % i}})
        msgs = fast.messages(40, timeout=10)
        self.assertEqual(len(msgs), 40)
        fast.disconnect()
        slow.drop()

    @unittest.skipUnless(shutil.which("mosquitto_sub"), "mosquitto-clients not installed")
    def test_with_mosquitto_clients(self):
        sid = self.session()
        self.say(sid, "I'm Carol")
        out = subprocess.run(["mosquitto_sub", "-p", str(self.port), "-t",
                              "session/%s/profile" % sid, "-q", "1", "-C", "1", "-W", "5"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["profile"], {"name": "Carol"})
        sub = subprocess.Popen(["mosquitto_sub", "-p", str(self.port), "-t",
                                "session/%s/events" % sid, "-q", "1", "-C", "1", "-W", "10"],
                               stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        r = subprocess.run(["mosquitto_pub", "-p", str(self.port), "-t",
                            "session/%s/profile/set" % sid, "-q", "1", "-m",
                            json.dumps({"fields": {"city": "Daegu"}})], timeout=10)
        self.assertEqual(r.returncode, 0)
        line = sub.communicate(timeout=15)[0]
        self.assertEqual(json.loads(line)["data"]["value"], "Daegu")


class MqttBoundsTest(unittest.TestCase):
    """Small bounds make the slow-consumer rules visible."""

    def test_snapshots_coalesce_and_a_client_that_cannot_keep_up_is_disconnected(self):
        s = Server(extra_args=["--set", "mqtt.max_inflight=2",
                               "--set", "mqtt.max_queued_messages=4"]).start()
        try:
            st, _, b = s.request("POST", "/v1/sessions", {"user_id": "u"})
            sid = b["session_id"]
            # Snapshots only: the queue never overflows, newer snapshots replace older ones.
            snap = Client(s.mqtt_port, "snap", clean=False)
            snap.subscribe("session/%s/profile" % sid)
            snap.messages(1, ack=False)  # the retained snapshot, left unacknowledged
            for i in range(10):
                s.request("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"goals": "s%d" % i}})
            st, _, text = s.request("GET", "/metrics")
            coalesced = [l for l in text.splitlines() if l.startswith("persona_mqtt_coalesced_total")]
            self.assertGreater(int(coalesced[0].split()[1]), 0)
            self.assertFalse(snap.closed(timeout=0.3))
            # The newest snapshot is still the last one delivered once the client acknowledges.
            got = snap.messages(20, timeout=2)
            self.assertEqual(json.loads(got[-1][1])["profile"]["goals"], "s9")
            snap.disconnect()
            # Events cannot be coalesced: a client that does not acknowledge is disconnected
            # once its queue is full, and resumes from its persistent session.
            ev = Client(s.mqtt_port, "events", clean=False)
            ev.subscribe("session/%s/events" % sid)
            for i in range(10):
                s.request("PATCH", "/v1/sessions/%s/profile" % sid, {"fields": {"goals": "e%d" % i}})
            self.assertTrue(ev.closed(timeout=3))
            st, _, text = s.request("GET", "/metrics")
            kicked = [l for l in text.splitlines()
                      if l.startswith("persona_mqtt_slow_consumer_disconnects_total")]
            self.assertGreater(int(kicked[0].split()[1]), 0)
            ev = Client(s.mqtt_port, "events", clean=False)
            self.assertTrue(ev.session_present)
            got = [json.loads(p) for t, p, *_ in ev.messages(20, timeout=2)]
            seqs = [e["seq"] for e in got]
            self.assertEqual(seqs, sorted(seqs))
            ev.disconnect()
        finally:
            s.cleanup()

    def test_connection_limit(self):
        s = Server(extra_args=["--set", "mqtt.max_connections=2"]).start()
        try:
            a = Client(s.mqtt_port, "a")
            b = Client(s.mqtt_port, "b")
            extra = Client(s.mqtt_port, connect=False)
            extra.send(connect_packet("c"))
            self.assertTrue(extra.closed(timeout=3))
            self.assertTrue(a.ping() and b.ping())
            a.disconnect()
            time.sleep(0.2)
            c = Client(s.mqtt_port, "c")
            self.assertEqual(c.return_code, 0)
            c.disconnect()
            b.disconnect()
        finally:
            s.cleanup()

    def test_offline_sessions_expire_and_the_longest_offline_makes_room(self):
        s = Server(extra_args=["--set", "mqtt.max_sessions=2",
                               "--set", "mqtt.session_expiry_s=2"]).start()
        try:
            a = Client(s.mqtt_port, "a", clean=False)
            a.subscribe("x/a")
            a.drop()
            time.sleep(0.1)
            b = Client(s.mqtt_port, "b", clean=False)
            b.subscribe("x/b")
            b.drop()
            time.sleep(0.1)
            c = Client(s.mqtt_port, "c", clean=False)  # the table is full: "a" goes
            self.assertEqual(c.return_code, 0)
            b = Client(s.mqtt_port, "b", clean=False)
            self.assertTrue(b.session_present)
            b.drop()
            c.drop()
            time.sleep(2.5)
            b = Client(s.mqtt_port, "b", clean=False)  # expired while offline
            self.assertFalse(b.session_present)
            b.disconnect()
        finally:
            s.cleanup()


if __name__ == "__main__":
    unittest.main()
