"""Starts the real persona binary on port 0 and talks to it over real sockets.

Used by every integration test. The binary comes from $PERSONA_BIN (set by
CTest) or build/src/persona.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("PERSONA_BIN") or os.path.join(ROOT, "build", "src", "persona")


class Server:
    """One persona process with its own data directory."""

    def __init__(self, data_dir=None, extra_args=(), env=None):
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="persona-it-")
        self.extra_args = list(extra_args)
        self.env = env
        self.proc = None
        self.port = None
        self.log = []

    def start(self, timeout=20):
        args = [BIN, "serve", "--http-listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0",
                "--data-dir",
                os.path.join(self.data_dir, "data"), "--schemas-dir",
                os.path.join(ROOT, "schemas")] + self.extra_args
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env)
        deadline = time.time() + timeout
        buf = b""
        while time.time() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if not r:
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self.log.append(line.decode("utf-8", "replace"))
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if obj.get("msg") == "listening":
                    self.port = int(obj["http"].rsplit(":", 1)[1])
                    mqtt = obj.get("mqtt", "off")
                    self.mqtt_port = None if mqtt == "off" else int(mqtt.rsplit(":", 1)[1])
                    self._drain_in_background()
                    return self
        raise RuntimeError("persona did not start: " + "\n".join(self.log[-20:]))

    def _drain_in_background(self):
        import threading

        def pump():
            for line in self.proc.stdout:
                self.log.append(line.decode("utf-8", "replace").rstrip("\n"))
        threading.Thread(target=pump, daemon=True).start()

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None, raw=None):
        """Returns (status, headers dict lower-cased, parsed JSON or text)."""
        own = conn is None
        c = conn or self.conn()
        h = {"Content-Type": "application/json"} if body is not None or raw is not None else {}
        h.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if own:
            c.close()
        ctype = hdrs.get("content-type", "")
        if "json" in ctype and payload:
            return r.status, hdrs, json.loads(payload)
        return r.status, hdrs, payload.decode("utf-8", "replace")

    def cli(self, *args, input_text=None):
        """Runs a persona subcommand against this server's data directory."""
        cmd = [BIN] + list(args) + ["--data-dir", os.path.join(self.data_dir, "data"),
                                   "--schemas-dir", os.path.join(ROOT, "schemas")]
        return subprocess.run(cmd, capture_output=True, text=True, input=input_text, timeout=60)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(secret, claims, header=None):
    """An HS256 JWT, written here independently of persona's own code."""
    h = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    p = b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), (h + "." + p).encode(), hashlib.sha256).digest()
    return h + "." + p + "." + b64url(sig)


def user_token(secret, user, ttl=3600, **claims):
    c = {"sub": user, "aud": "persona", "iat": int(time.time()), "exp": int(time.time()) + ttl}
    c.update(claims)
    return mint(secret, c)
