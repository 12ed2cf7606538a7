#!/usr/bin/env python3
"""How long a killed node's devices take to resume elsewhere (issue 11).

DEVICES MQTT devices on node 1 each watch their own session's events
(session/{id}/events, QoS 1, acknowledging each). Writers post steps to
those sessions through every node. After WARM seconds node 1 is killed
with SIGKILL. Each device, seeing its connection die, does what persona's
clients do: connects to another node (alternating between the others),
subscribes again, and fetches what it missed from the event log
(GET …/events?after=<last seq it saw>). Its resume time is from the kill
until that fetch is done: from then on it has every event and receives the
rest live. After the run every session's log is read back and compared
with what its device saw: lost = in the log and never seen by the device.

Usage: resume_devices.py --http P1,P2,P3 --mqtt M1,M2,M3 --pid PID1 --out FILE
       [--devices 300] [--warm 3] [--after 3] [--writers 6]
Writes {"devices", "resumed", "resume_ms": {p50, p99, max}, "lost", "events_seen",
        "writes_acked", "kill_at"} to FILE and prints a line.
"""
import argparse
import http.client
import json
import os
import signal
import socket
import struct
import threading
import time


def varint(n):
    out = b""
    while True:
        b = n % 128
        n //= 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def pkt(first, body):
    return bytes([first]) + varint(len(body)) + body


def mstr(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


class Conn:
    """A blocking MQTT 3.1.1 connection that keeps its read buffer whole."""

    def __init__(self, port, client_id, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.sock.sendall(pkt(0x10, mstr("MQTT") + bytes([4, 2]) + struct.pack("!H", 60)
                              + mstr(client_id)))
        kind, _, body = self.read()
        if kind != 2 or body[1] != 0:
            raise ConnectionError("CONNACK %r" % body)

    def read(self):
        """One packet (kind, flags, body); socket.timeout leaves the buffer as it was."""
        while True:
            if len(self.buf) >= 2:
                n, mult, i = 0, 1, 1
                while i < len(self.buf) and i <= 4:
                    b = self.buf[i]
                    n += (b & 127) * mult
                    mult *= 128
                    i += 1
                    if not b & 128:
                        if len(self.buf) >= i + n:
                            first, body = self.buf[0], self.buf[i:i + n]
                            self.buf = self.buf[i + n:]
                            return first >> 4, first & 15, body
                        break
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def subscribe(self, topic, on_publish):
        self.sock.sendall(pkt(0x82, struct.pack("!H", 1) + mstr(topic) + b"\x01"))
        while True:
            kind, flags, body = self.read()
            if kind == 9:
                if body[2] != 1:
                    raise ConnectionError("SUBACK %r" % body)
                return
            if kind == 3:
                self.publish_in(flags, body, on_publish)

    def publish_in(self, flags, body, on_publish):
        tl = struct.unpack("!H", body[:2])[0]
        rest = body[2 + tl:]
        if (flags >> 1) & 3:
            pid = struct.unpack("!H", rest[:2])[0]
            rest = rest[2:]
            self.sock.sendall(pkt(0x40, struct.pack("!H", pid)))
        on_publish(json.loads(rest))


def request(port, method, path, body=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, json.loads(data) if data else {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--mqtt", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--devices", type=int, default=300)
    ap.add_argument("--warm", type=float, default=3)
    ap.add_argument("--after", type=float, default=3)
    ap.add_argument("--writers", type=int, default=6)
    a = ap.parse_args()
    http_ports = [int(p) for p in a.http.split(",")]
    mqtt_ports = [int(p) for p in a.mqtt.split(",")]
    threading.stack_size(256 * 1024)

    # Sessions, created through node 2, and the version each device starts from.
    c = http.client.HTTPConnection("127.0.0.1", http_ports[1], timeout=10)
    sessions = []
    for i in range(a.devices):
        st, b = request(http_ports[1], "POST", "/v1/sessions", {"user_id": "dev%d" % i}, conn=c)
        assert st == 201, b
        sessions.append((b["session_id"], b["version"]))
    c.close()

    stop = threading.Event()  # writers
    done = threading.Event()  # devices, once the last deliveries are in
    killed = threading.Event()
    kill_at = [0.0]
    seen = [set() for _ in sessions]
    resumed_at = [None] * len(sessions)
    failures = []
    ready = threading.Barrier(a.devices + 1)

    def device(i):
        sid, v0 = sessions[i]
        topic = "session/%s/events" % sid
        mine = seen[i]

        def on_publish(ev):
            mine.add(ev["seq"])

        try:
            conn = Conn(mqtt_ports[0], "dev-%d" % i)
            conn.subscribe(topic, on_publish)
        except (OSError, ConnectionError) as e:
            failures.append("connect %d: %s" % (i, e))
            ready.wait()
            return
        ready.wait()
        conn.sock.settimeout(0.2)
        while not done.is_set():
            try:
                kind, flags, body = conn.read()
                if kind == 3:
                    conn.publish_in(flags, body, on_publish)
                continue
            except socket.timeout:
                continue
            except (OSError, ConnectionError):
                pass
            if done.is_set():
                break
            if not killed.is_set():
                killed.wait(5)  # the kill signal and the dead socket race
            # The node is gone: resume on another one, from the last event
            # seen before it went (events arriving live on the new
            # subscription may be newer than what was missed).
            last = max(mine) if mine else v0
            alt = 1 + i % (len(mqtt_ports) - 1)
            for _ in range(50):
                try:
                    conn = Conn(mqtt_ports[alt], "dev-%d" % i)
                    conn.subscribe(topic, on_publish)
                    after = last
                    while True:
                        st, page = request(http_ports[alt], "GET",
                                           "/v1/sessions/%s/events?after=%d&limit=1000"
                                           % (sid, after))
                        if st != 200:
                            raise ConnectionError("GET events %d" % st)
                        for e in page["events"]:
                            mine.add(e["seq"])
                        if len(page["events"]) < 1000:
                            break
                        after = page["events"][-1]["seq"]
                    resumed_at[i] = time.time()
                    break
                except (OSError, ConnectionError, http.client.HTTPException):
                    time.sleep(0.05)
            else:
                failures.append("resume %d" % i)
                return
            conn.sock.settimeout(0.2)
        try:
            conn.sock.close()
        except OSError:
            pass

    threads = [threading.Thread(target=device, args=(i,), daemon=True)
               for i in range(a.devices)]
    for t in threads:
        t.start()
    ready.wait()

    acked = [0]
    lock = threading.Lock()

    def writer(w):
        port = http_ports[w % len(http_ports)]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        n = 0
        while not stop.is_set():
            n += 1
            sid = sessions[(w * 7919 + n) % len(sessions)][0]
            try:
                st, _ = request(port, "POST", "/v1/sessions/%s/messages" % sid,
                                {"text": "note %d-%d" % (w, n)}, conn=conn)
            except (OSError, http.client.HTTPException):
                if w % len(http_ports) == 0:
                    return  # node 1's writers end with it
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                continue
            if st == 200:
                with lock:
                    acked[0] += 1

    writers = [threading.Thread(target=writer, args=(w,), daemon=True)
               for w in range(a.writers)]
    for t in writers:
        t.start()
    time.sleep(a.warm)
    kill_at[0] = time.time()
    os.kill(a.pid, signal.SIGKILL)
    killed.set()
    time.sleep(a.after)
    stop.set()
    for t in writers:
        t.join()
    time.sleep(1.0)  # the last deliveries
    done.set()
    for t in threads:
        t.join(timeout=5)

    # Every session's log against what its device saw.
    lost, events_in_logs = 0, 0
    c = http.client.HTTPConnection("127.0.0.1", http_ports[1], timeout=10)
    for i, (sid, v0) in enumerate(sessions):
        st, head = request(http_ports[1], "GET", "/v1/sessions/%s/profile" % sid, conn=c)
        expected = set(range(v0 + 1, head["version"] + 1))
        events_in_logs += len(expected)
        lost += len(expected - seen[i])
    c.close()
    times = sorted((t - kill_at[0]) * 1000 for t in resumed_at if t is not None)
    pct = lambda q: round(times[min(len(times) - 1, int(q * len(times)))], 1) if times else None
    out = {"devices": a.devices, "resumed": len(times),
           "resume_ms": {"p50": pct(0.5), "p99": pct(0.99),
                         "max": round(times[-1], 1) if times else None},
           "lost": lost, "events_in_logs": events_in_logs,
           "events_seen": sum(len(s) for s in seen), "writes_acked": acked[0],
           "failures": failures[:10]}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    print("node kill: %d of %d devices resumed, p50 %s ms, p99 %s ms, max %s ms; %d events in the "
          "logs, %d lost" % (len(times), a.devices, out["resume_ms"]["p50"],
                             out["resume_ms"]["p99"], out["resume_ms"]["max"], events_in_logs,
                             lost))


if __name__ == "__main__":
    main()
