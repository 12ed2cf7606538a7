"""A small MQTT 3.1.1 client over raw sockets, for protocol-level tests."""
import socket
import struct
import time


def _varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def packet(first_byte, body=b""):
    return bytes([first_byte]) + _varint(len(body)) + body


def connect_packet(client_id, clean=True, keepalive=60, will=None, level=4, name="MQTT",
                   username=None, password=None):
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if will:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + _str(msg)
    if username is not None:
        flags |= 0x80
        payload += _str(username)
    if password is not None:
        flags |= 0x40
        payload += _str(password)
    body = _str(name) + bytes([level, flags]) + struct.pack("!H", keepalive) + payload
    return packet(0x10, body)


def publish_packet(topic, payload, qos=0, retain=False, packet_id=1, dup=False):
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    body = _str(topic) + (struct.pack("!H", packet_id) if qos else b"")
    body += payload.encode() if isinstance(payload, str) else payload
    return packet(first, body)


class Client:
    def __init__(self, port, client_id="", clean=True, keepalive=60, will=None, timeout=5,
                 connect=True, token=None, username="persona", source=None, tls=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        if tls is not None:  # an ssl.SSLContext
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.pending = []  # packets read while waiting for another kind
        self.next_id = 1
        self.session_present = None
        if connect:
            self.send(connect_packet(client_id, clean, keepalive, will,
                                     username=username if token is not None else None,
                                     password=token))
            kind, flags, body = self.read_packet()
            assert kind == 2, "expected CONNACK, got %d" % kind
            self.session_present = bool(body[0] & 1)
            self.return_code = body[1]

    def send(self, data):
        self.sock.sendall(data)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by server")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_packet(self):
        first = self._read(1)[0]
        mult, length = 1, 0
        while True:
            b = self._read(1)[0]
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        return first >> 4, first & 0x0F, self._read(length)

    def closed(self, timeout=5):
        """True if the server closes the connection within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def subscribe(self, *filters, qos=1):
        pid = self._id()
        body = struct.pack("!H", pid) + b"".join(_str(f) + bytes([qos]) for f in filters)
        self.send(packet(0x82, body))
        while True:
            kind, flags, b = self.read_packet()
            if kind == 9:
                assert struct.unpack("!H", b[:2])[0] == pid
                return list(b[2:])
            self.pending.append((kind, flags, b))

    def publish(self, topic, payload, qos=0, retain=False):
        pid = self._id() if qos else 0
        self.send(publish_packet(topic, payload, qos, retain, pid))
        if qos == 1:
            while True:
                kind, flags, b = self.read_packet()
                if kind == 4 and struct.unpack("!H", b[:2])[0] == pid:
                    return
                self.pending.append((kind, flags, b))

    def messages(self, count, timeout=5, ack=True):
        """Reads `count` PUBLISH packets: [(topic, payload, qos, retain, dup, packet_id)]."""
        out = []
        deadline = time.time() + timeout
        while len(out) < count:
            if self.pending:
                kind, flags, body = self.pending.pop(0)
            else:
                self.sock.settimeout(max(0.01, deadline - time.time()))
                try:
                    kind, flags, body = self.read_packet()
                except socket.timeout:
                    break
            if kind != 3:
                continue
            qos = (flags >> 1) & 3
            tlen = struct.unpack("!H", body[:2])[0]
            topic = body[2:2 + tlen].decode()
            rest = body[2 + tlen:]
            pid = 0
            if qos:
                pid = struct.unpack("!H", rest[:2])[0]
                rest = rest[2:]
                if ack:
                    self.send(packet(0x40, struct.pack("!H", pid)))
            out.append((topic, rest.decode("utf-8", "replace"), qos, bool(flags & 1),
                        bool(flags & 8), pid))
        return out

    def ping(self):
        self.send(packet(0xC0))
        kind, _, _ = self.read_packet()
        return kind == 13

    def disconnect(self):
        self.send(packet(0xE0))
        self.sock.close()

    def drop(self):
        """Closes the socket without DISCONNECT (the will fires)."""
        self.sock.close()

    def _id(self):
        pid = self.next_id
        self.next_id = self.next_id % 65535 + 1
        return pid
