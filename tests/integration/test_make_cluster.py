"""`make cluster` (scripts/cluster.sh): PostgreSQL, Redis, three nodes and
HAProxy started and stopped by one command; the API, the web UI, WebSocket
and MQTT work through the proxy. In the PostgreSQL suite."""
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import time
import unittest

from mqtt_client import Client
from persona_server import BIN, ROOT, free_port, postgres_only


class MakeClusterTest(unittest.TestCase):
    @postgres_only
    def test_one_command_starts_and_stops_a_working_cluster(self):
        http_port, mqtt_port = free_port(), free_port()
        env = dict(os.environ, PERSONA_BIN=BIN, CLUSTER_HTTP_PORT=str(http_port),
                   CLUSTER_MQTT_PORT=str(mqtt_port))
        proc = subprocess.Popen([os.path.join(ROOT, "scripts", "cluster.sh")], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        out = b""
        try:
            deadline = time.time() + 90
            while b"cluster ready" not in out and time.time() < deadline:
                r, _, _ = select.select([proc.stdout], [], [], 0.5)
                if r:
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    out += chunk
            self.assertIn(b"cluster ready", out, out.decode(errors="replace"))

            def call(method, path, body=None):
                c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
                c.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                data = r.read()
                c.close()
                return r.status, data

            st, page = call("GET", "/")
            self.assertEqual(st, 200)
            self.assertIn(b"<html", page.lower())
            st, data = call("POST", "/v1/sessions", {"user_id": "cluster"})
            self.assertEqual(st, 201, data)
            sid = json.loads(data)["session_id"]
            # MQTT over TCP through HAProxy sees a write made over HTTP.
            mq = Client(mqtt_port, client_id="make-cluster")
            self.assertEqual(mq.subscribe("session/%s/events" % sid), [1])
            st, data = call("POST", "/v1/sessions/%s/messages" % sid, {"text": "my name is Mina"})
            self.assertEqual(st, 200, data)
            version = json.loads(data)["version"]
            seqs, deadline = [], time.time() + 10
            while (not seqs or seqs[-1] < version) and time.time() < deadline:
                for topic, payload, *_ in mq.messages(1, timeout=0.5):
                    seqs.append(json.loads(payload)["seq"])
            mq.drop()
            self.assertEqual(seqs[-1], version)
            st, data = call("GET", "/v1/sessions/%s/profile" % sid)
            self.assertEqual(json.loads(data)["profile"]["name"], "Mina")
            # The web UI's MQTT over WebSocket upgrades through the proxy.
            with socket.create_connection(("127.0.0.1", http_port), timeout=5) as s:
                s.sendall(b"GET /mqtt HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                          b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          b"Sec-WebSocket-Protocol: mqtt\r\n\r\n")
                self.assertIn(b" 101 ", s.recv(4096).split(b"\r\n")[0])
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=60)
        self.assertEqual(rc, 0, out.decode(errors="replace"))
        for port in (http_port, mqtt_port):
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()


if __name__ == "__main__":
    unittest.main()
