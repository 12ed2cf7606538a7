"""Steady load through a zero-downtime upgrade (SPEC §13), shared by
test_upgrade.py and bench/run_upgrade.sh.

HTTP writers, each on its own session over one keep-alive connection, send
chat steps with an Idempotency-Key. A reply that never came because the
server closed an idle keep-alive connection as the request was on its way
(the race every HTTP/1.1 client has, RFC 9112 §9.3.1) is sent again with the
same key, on a new connection, as a client retries a request it may not
have been answered: persona then answers it once. A refused connection
(ECONNREFUSED) and any status but 200 are failures. An MQTT device with a
persistent session (clean session off) watches every session's events and
reconnects when its connection closes; it must see every event.
"""
import http.client
import json
import threading
import time

from mqtt_client import Client

RETRIABLE = (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionResetError,
             BrokenPipeError, ConnectionAbortedError)


class Load:
    def __init__(self, port, mqtt_port, sessions, watched=None):
        self.port, self.mqtt_port, self.sessions = port, mqtt_port, sessions
        # The sessions the MQTT device watches (all by default): a Python
        # device reading one packet at a time keeps up with a few writers,
        # not with many (persona then treats it as a slow consumer).
        self.watched = sessions if watched is None else watched
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.failed = []           # (status or error, detail)
        self.refused = 0           # connections refused
        self.retried = 0           # requests sent again after a closed connection
        self.acked = {sid: 0 for sid in sessions}
        self.done_at = []          # completion times of answered requests
        self.slowest = 0.0         # longest time from first send to answer
        self.mqtt_seen = {}        # session id → set of seqs seen by the device
        self.mqtt_reconnects = 0
        self.mqtt_session_lost = 0  # reconnects whose CONNACK had no session
        self.threads = []

    # --- HTTP writers ---------------------------------------------------------
    def _connect(self):
        while not self.stop.is_set():
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                c.connect()
                return c
            except ConnectionRefusedError:
                with self.lock:
                    self.refused += 1
                time.sleep(0.01)
        return None

    def _writer(self, sid, n):
        conn = self._connect()
        i = 0
        while conn is not None and not self.stop.is_set():
            i += 1
            body = json.dumps({"text": "note %d" % i}).encode()
            headers = {"Content-Type": "application/json", "Idempotency-Key": "%s-%d" % (n, i)}
            t0 = time.time()
            while True:
                try:
                    conn.request("POST", "/v1/sessions/%s/messages" % sid, body=body,
                                 headers=headers)
                    r = conn.getresponse()
                    payload = r.read()
                    if r.getheader("Connection", "").lower() == "close":
                        conn.close()
                        conn = None
                    break
                except RETRIABLE:
                    conn.close()
                    with self.lock:
                        self.retried += 1
                    conn = self._connect()
                    if conn is None:
                        return
            now = time.time()
            with self.lock:
                if r.status == 200:
                    self.acked[sid] += 1
                    self.done_at.append(now)
                    self.slowest = max(self.slowest, now - t0)
                else:
                    self.failed.append((r.status, payload[:200]))
            if conn is None:
                conn = self._connect()

    # --- the MQTT device --------------------------------------------------------
    def _device(self, ready):
        topics = ["session/%s/events" % sid for sid in self.watched]
        dev = Client(self.mqtt_port, "upgrade-watcher", clean=False)
        dev.subscribe(*topics)
        ready.set()
        while not self.stop.is_set() or self._pending_mqtt():
            try:
                # One at a time: what a read gets is recorded before the
                # next read can find the connection closed.
                for t, p, *_ in dev.messages(1, timeout=0.2):
                    self.mqtt_seen.setdefault(t.split("/")[1], set()).add(json.loads(p)["seq"])
                if self.stop.is_set() and not self._pending_mqtt():
                    break
            except (ConnectionError, OSError, IndexError, ValueError):
                try:
                    dev.sock.close()
                except OSError:
                    pass
                dev = None
                while dev is None:
                    try:
                        dev = Client(self.mqtt_port, "upgrade-watcher", clean=False)
                    except (OSError, AssertionError, IndexError):  # refused, reset, timeout
                        time.sleep(0.02)
                self.mqtt_reconnects += 1
                if not dev.session_present:
                    self.mqtt_session_lost += 1
                    dev.subscribe(*topics)
        dev.disconnect()

    def _pending_mqtt(self):
        # After the writers stop: until the device has every acknowledged
        # write's events (bounded by finish()'s deadline).
        if self.expected is None:
            return True  # finish() is still working it out
        return time.time() < self.deadline and any(
            not self.expected[sid] <= self.mqtt_seen.get(sid, set()) for sid in self.watched)

    expected = None
    deadline = 0

    def start(self):
        ready = threading.Event()
        d = threading.Thread(target=self._device, args=(ready,), daemon=True)
        d.start()
        ready.wait(10)
        self.threads.append(d)
        for n, sid in enumerate(self.sessions):
            t = threading.Thread(target=self._writer, args=(sid, "w%d" % n), daemon=True)
            t.start()
            self.threads.append(t)
        self.started = time.time()

    def finish(self, expected):
        """Stops the writers; `expected(sid)` is the set of seqs the device
        must see; waits up to 10 s for them."""
        self.stop.set()
        for t in self.threads[1:]:
            t.join(30)
        self.expected = {sid: expected(sid) for sid in self.watched}
        self.deadline = time.time() + 10
        self.threads[0].join(15)

    def longest_gap(self, since, until):
        """The longest time without an answered request within [since, until]."""
        ts = sorted(t for t in self.done_at if since <= t <= until)
        if not ts:
            return until - since
        gaps = [ts[0] - since] + [b - a for a, b in zip(ts, ts[1:])] + [until - ts[-1]]
        return max(gaps)


def events(server, sid):
    out, after = [], 0
    while True:
        st, _, b = server.request("GET", "/v1/sessions/%s/events?after=%d&limit=1000" % (sid, after))
        assert st == 200, b
        out += b["events"]
        if "next_after" not in b:
            return out
        after = b["next_after"]
