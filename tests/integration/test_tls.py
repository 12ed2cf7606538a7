"""TLS on the HTTP and MQTT listeners (SPEC §10), with a CA generated here:
HTTPS, MQTT over TLS, wss://, optional and required client certificates,
and certificates reloaded on SIGHUP."""
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from mqtt_client import Client
from persona_server import Server


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    """A CA, a server certificate for localhost/127.0.0.1 (twice, with two
    CNs, for the reload test) and a client certificate."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=persona-test-ca", cwd=d)
    with open(os.path.join(d, "san.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "server2", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
                name + ".csr", "-subj", "/CN=" + name, cwd=d)
        extra = ["-extfile", "san.cnf"] if name.startswith("server") else []
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".pem", "-days", "2", *extra, cwd=d)


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="persona-pki-")
        make_pki(cls.pki)
        # The files persona serves; the reload test overwrites them.
        shutil.copy(os.path.join(cls.pki, "server.pem"), os.path.join(cls.pki, "live.pem"))
        shutil.copy(os.path.join(cls.pki, "server.key"), os.path.join(cls.pki, "live.key"))
        p = lambda n: os.path.join(cls.pki, n)
        args = []
        for listener in ("http", "mqtt"):
            args += ["--set", "%s.tls.cert_file=%s" % (listener, p("live.pem")),
                     "--set", "%s.tls.key_file=%s" % (listener, p("live.key")),
                     "--set", "%s.tls.client_ca_file=%s" % (listener, p("ca.pem"))]
        cls.s = Server(extra_args=args).start()
        cls.ctx = ssl.create_default_context(cafile=p("ca.pem"))
        cls.client_ctx = ssl.create_default_context(cafile=p("ca.pem"))
        cls.client_ctx.load_cert_chain(p("client.pem"), p("client.key"))

    @classmethod
    def tearDownClass(cls):
        assert cls.s.stop() == 0
        cls.s.cleanup()
        shutil.rmtree(cls.pki, ignore_errors=True)

    def https(self, path, ctx=None, port=None):
        sock = socket.create_connection(("127.0.0.1", port or self.s.port), timeout=5)
        tls = (ctx or self.ctx).wrap_socket(sock, server_hostname="localhost")
        peer = tls.getpeercert()
        tls.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path)
                    .encode())
        data = b""
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
        tls.close()
        return data, peer

    def test_https_and_optional_client_certificates(self):
        data, peer = self.https("/healthz")
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:40])
        self.assertIn(("commonName", "server"), peer["subject"][0])
        data, _ = self.https("/healthz", self.client_ctx)
        self.assertTrue(data.startswith(b"HTTP/1.1 200"))
        # Plain HTTP on the TLS port gets no HTTP answer.
        sock = socket.create_connection(("127.0.0.1", self.s.port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            reply = sock.recv(4096)
        except ConnectionResetError:
            reply = b""
        self.assertFalse(reply.startswith(b"HTTP/1.1 200"))
        sock.close()
        # A client that does not trust persona's CA refuses it.
        with self.assertRaises(ssl.SSLError):
            self.https("/healthz", ssl.create_default_context())

    def test_mqtt_over_tls_and_wss(self):
        c = Client(self.s.mqtt_port, tls=self.ctx)
        self.assertEqual(c.return_code, 0)
        self.assertEqual(c.subscribe("plain/t"), [1])
        c.publish("plain/t", "over tls", qos=1)
        got = c.messages(1, timeout=3)
        self.assertEqual(got[0][1], "over tls")
        c.disconnect()
        sock = self.ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.s.port), timeout=5),
                                    server_hostname="localhost")
        sock.sendall(b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")
        self.assertTrue(sock.recv(4096).startswith(b"HTTP/1.1 101"))
        sock.close()

    def test_sighup_reloads_the_certificate(self):
        _, peer = self.https("/healthz")
        self.assertIn(("commonName", "server"), peer["subject"][0])
        shutil.copy(os.path.join(self.pki, "server2.pem"), os.path.join(self.pki, "live.pem"))
        shutil.copy(os.path.join(self.pki, "server2.key"), os.path.join(self.pki, "live.key"))
        n = sum('"mqtt.tls"' in l for l in self.s.log)
        self.s.proc.send_signal(1)
        deadline = time.time() + 5
        while time.time() < deadline and sum('"mqtt.tls"' in l for l in self.s.log) == n:
            time.sleep(0.05)
        _, peer = self.https("/healthz")
        self.assertIn(("commonName", "server2"), peer["subject"][0])
        c = Client(self.s.mqtt_port, tls=self.ctx)
        self.assertEqual(c.return_code, 0)
        self.assertIn(("commonName", "server2"), c.sock.getpeercert()["subject"][0])
        c.disconnect()


class RequiredClientCertTest(unittest.TestCase):
    def test_a_client_without_a_certificate_is_refused(self):
        pki = tempfile.mkdtemp(prefix="persona-pki-")
        try:
            make_pki(pki)
            p = lambda n: os.path.join(pki, n)
            s = Server(extra_args=["--set", "http.tls.cert_file=" + p("server.pem"),
                                   "--set", "http.tls.key_file=" + p("server.key"),
                                   "--set", "http.tls.client_ca_file=" + p("ca.pem"),
                                   "--set", "http.tls.require_client_cert=true"]).start()
            try:
                ctx = ssl.create_default_context(cafile=p("ca.pem"))
                sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
                with self.assertRaises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
                    tls = ctx.wrap_socket(sock, server_hostname="localhost")
                    tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    if not tls.recv(100):
                        raise ConnectionResetError("closed")
                ctx.load_cert_chain(p("client.pem"), p("client.key"))
                tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", s.port), timeout=5),
                                      server_hostname="localhost")
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertTrue(tls.recv(100).startswith(b"HTTP/1.1 200"))
                tls.close()
            finally:
                s.cleanup()
            # Broken TLS settings stop start-up, naming the key.
            for args, want in (([("http.tls.cert_file", p("server.pem"))], "key_file"),
                               ([("http.tls.cert_file", p("server.pem")),
                                 ("http.tls.key_file", p("client.key"))], "mismatch"),
                               ([("mqtt.tls.cert_file", "/nonexistent.pem"),
                                 ("mqtt.tls.key_file", p("server.key"))], "mqtt.tls.cert_file")):
                extra = []
                for k, v in args:
                    extra += ["--set", "%s=%s" % (k, v)]
                bad = Server(extra_args=extra)
                with self.assertRaises(RuntimeError):
                    bad.start(timeout=10)
                self.assertEqual(bad.proc.wait(timeout=10), 2)
                self.assertIn(want, "\n".join(bad.log))
                bad.cleanup()
        finally:
            shutil.rmtree(pki, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
