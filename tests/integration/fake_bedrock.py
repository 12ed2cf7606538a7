"""A fake Amazon Bedrock runtime (Converse and ConverseStream), standard library only.

    with FakeBedrock(script=[reply("Hi!"), throttle(retry_after=1), hang()]) as fake:
        ...  # point persona's bedrock provider at fake.base_url (endpoint_url)

It checks every request as AWS does before anything else: a SigV4 signature recomputed from
the received bytes (method, path exactly as sent, query, the headers named in SignedHeaders,
SHA-256 of the body) with the credentials given to the constructor, the credential scope
(date, region, service), an X-Amz-Date at most 5 minutes from the server's clock, and the
session token when one is configured. A request that fails gets AWS's 403 and JSON body.

Then it answers POST /model/{modelId}/converse and /model/{modelId}/converse-stream with the
next behaviour of its script (FIFO; `default` when the script is empty). A behaviour is a
Behaviour (see reply, raw, error, throttle, hang, stream_exception): reply text or raw JSON,
an HTTP error status with x-amzn-ErrorType and an optional Retry-After, a delay before
answering, a hang, or (streams) text split into deltas with a pause between them and an
optional exception message in the middle. converse-stream answers are
application/vnd.amazon.eventstream messages (CRC-32 by zlib.crc32) sent with chunked
transfer encoding, as the real service does.

`requests` records what arrived (model id, operation, headers, body, whether the signature
verified) for assertions.

Run the file to self-test: `python3 tests/integration/fake_bedrock.py`.
"""
import calendar
import dataclasses
import hashlib
import hmac
import http.client
import http.server
import json
import struct
import sys
import threading
import time
import uuid
import zlib
from urllib.parse import quote, unquote, unquote_to_bytes

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 300
SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you "
                      "provided. Check your AWS Secret Access Key and signing method. Consult the "
                      "service documentation for details.")

# --------------------------------------------------------------------------------------------
# SigV4 (header signing), written from the AWS documentation, independently of the C++ signer.


def amz_date(unix_seconds):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(unix_seconds))


def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _normalize_path(path):
    """RFC 3986 remove_dot_segments plus removal of empty segments (botocore)."""
    out = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
        else:
            out.append(seg)
    result = "/" + "/".join(out)
    if out and path.endswith("/"):
        result += "/"
    return result


def canonical_uri(wire_path):
    """The wire path (as sent, percent-encoded), normalised and URI-encoded once more."""
    return quote(_normalize_path(wire_path).encode("utf-8"), safe="/~")


def canonical_query(raw_query):
    """From the query string as sent: decode each pair, re-encode, sort."""
    pairs = []
    if raw_query:
        for part in raw_query.split("&"):
            if not part:
                continue
            k, _, v = part.partition("=")
            pairs.append((quote(unquote_to_bytes(k), safe="-_.~"),
                          quote(unquote_to_bytes(v), safe="-_.~")))
    return "&".join("%s=%s" % kv for kv in sorted(pairs))


def _header_value(v):
    return " ".join(v.split())


def canonical_request(method, wire_path, raw_query, headers, signed_names, body):
    """`headers`: list of (name, value) as received; `signed_names`: lower-case, sorted."""
    lines = []
    for name in signed_names:
        values = [_header_value(v) for k, v in headers if k.lower() == name]
        lines.append("%s:%s\n" % (name, ",".join(values)))
    return "\n".join([
        method,
        canonical_uri(wire_path),
        canonical_query(raw_query),
        "".join(lines),
        ";".join(signed_names),
        hashlib.sha256(body).hexdigest(),
    ])


def string_to_sign(date, scope, creq):
    return "\n".join([ALGORITHM, date, scope, hashlib.sha256(creq.encode("utf-8")).hexdigest()])


def signature(secret, date8, region, service, sts):
    key = _hmac(("AWS4" + secret).encode("utf-8"), date8)
    key = _hmac(key, region)
    key = _hmac(key, service)
    key = _hmac(key, "aws4_request")
    return hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest()


def sign(method, host, wire_path, raw_query, headers, body, access_key, secret, region, service,
         date, session_token=None):
    """Returns the headers to add (Authorization, X-Amz-Date[, X-Amz-Security-Token])."""
    added = [("X-Amz-Date", date)]
    if session_token:
        added.append(("X-Amz-Security-Token", session_token))
    all_headers = [("Host", host)] + list(headers) + added
    names = sorted({k.lower() for k, _ in all_headers})
    creq = canonical_request(method, wire_path, raw_query, all_headers, names, body)
    scope = "%s/%s/%s/aws4_request" % (date[:8], region, service)
    sig = signature(secret, date[:8], region, service, string_to_sign(date, scope, creq))
    auth = "%s Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (ALGORITHM, access_key, scope,
                                                                   ";".join(names), sig)
    return [("Authorization", auth)] + added


# --------------------------------------------------------------------------------------------
# application/vnd.amazon.eventstream


def encode_event(headers, payload):
    """`headers`: list of (name, str value); all are sent as string headers (type 7)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    hb = b""
    for name, value in headers:
        n = name.encode("utf-8")
        v = value.encode("utf-8")
        hb += struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(hb) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hb))
    prelude += struct.pack(">I", zlib.crc32(prelude) & 0xffffffff)
    msg = prelude + hb + payload
    return msg + struct.pack(">I", zlib.crc32(msg) & 0xffffffff)


def decode_events(data):
    """Decodes a whole stream into [(headers dict, payload bytes)]; raises ValueError."""
    out = []
    i = 0
    while i < len(data):
        if len(data) - i < 16:
            raise ValueError("truncated message")
        total, hlen, pcrc = struct.unpack(">III", data[i:i + 12])
        if zlib.crc32(data[i:i + 8]) & 0xffffffff != pcrc:
            raise ValueError("prelude CRC mismatch")
        if total < 16 or hlen > total - 16 or len(data) - i < total:
            raise ValueError("bad lengths")
        msg = data[i:i + total]
        if zlib.crc32(msg[:-4]) & 0xffffffff != struct.unpack(">I", msg[-4:])[0]:
            raise ValueError("message CRC mismatch")
        headers = {}
        j = 12
        while j < 12 + hlen:
            nlen = msg[j]
            name = msg[j + 1:j + 1 + nlen].decode("utf-8")
            j += 1 + nlen
            htype = msg[j]
            j += 1
            if htype != 7:
                raise ValueError("only string headers are decoded here")
            vlen = struct.unpack(">H", msg[j:j + 2])[0]
            headers[name] = msg[j + 2:j + 2 + vlen].decode("utf-8")
            j += 2 + vlen
        out.append((headers, msg[12 + hlen:-4]))
        i += total
    return out


# --------------------------------------------------------------------------------------------
# Behaviours


@dataclasses.dataclass
class Behaviour:
    status: int = 200
    text: str = "Hello from fake Bedrock."  # the reply (converse and converse-stream)
    raw: object = None  # converse: this body (str/bytes, or a dict sent as JSON) instead
    error_type: str = None  # x-amzn-ErrorType for an error status ("ThrottlingException")
    message: str = None  # error message
    retry_after: object = None  # Retry-After header value
    delay_s: float = 0.0  # wait before answering
    hang: bool = False  # never answer (until the server stops or hang_s passes)
    hang_s: float = 3600.0
    stop_reason: str = "end_turn"
    input_tokens: int = 12
    output_tokens: int = 7
    chunks: list = None  # converse-stream: the deltas (default: text split into words)
    chunk_delay_s: float = 0.0  # pause between stream messages
    stream_exception: str = None  # e.g. "throttlingException", sent after `exception_after`
    exception_after: int = 1  # deltas sent before the exception
    raw_stream: bytes = None  # converse-stream: these bytes as the body instead


def reply(text, **kw):
    return Behaviour(text=text, **kw)


def raw(body, status=200, **kw):
    return Behaviour(raw=body, status=status, **kw)


def error(status, error_type, message="error", **kw):
    return Behaviour(status=status, error_type=error_type, message=message, **kw)


def throttle(retry_after=None, **kw):
    return Behaviour(status=429, error_type="ThrottlingException",
                     message="Too many requests, please wait before trying again.",
                     retry_after=retry_after, **kw)


def hang(**kw):
    return Behaviour(hang=True, **kw)


def stream_exception(exception_type="throttlingException", after=1, **kw):
    return Behaviour(stream_exception=exception_type, exception_after=after, **kw)


# --------------------------------------------------------------------------------------------
# The server


class FakeBedrock:

    def __init__(self, port=0, script=(), access_key_id="AKIDEXAMPLE",
                 secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", session_token=None,
                 region="us-east-1", service="bedrock", default=None, now=time.time):
        self.port = port
        self.script = list(script)
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token
        self.region = region
        self.service = service
        self.default = default or Behaviour()
        self.now = now
        self.requests = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = None
        self.thread = None

    # Lifecycle -------------------------------------------------------------------------------

    def start(self):
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.port

    def push(self, *behaviours):
        with self.lock:
            self.script.extend(behaviours)

    def next_behaviour(self):
        with self.lock:
            return self.script.pop(0) if self.script else self.default

    # Verification ----------------------------------------------------------------------------

    def verify(self, method, raw_target, headers, body):
        """Returns None when the request is authentic, else (error type, message)."""
        auth = [v for k, v in headers if k.lower() == "authorization"]
        if not auth:
            return ("MissingAuthenticationTokenException", "Missing Authentication Token")
        auth = auth[0]
        if not auth.startswith(ALGORITHM + " "):
            return ("IncompleteSignatureException", "Unsupported signing algorithm.")
        fields = {}
        for part in auth[len(ALGORITHM) + 1:].split(","):
            k, _, v = part.strip().partition("=")
            fields[k] = v
        if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
            return ("IncompleteSignatureException",
                    "Authorization header requires 'Credential', 'SignedHeaders' and "
                    "'Signature' parameters.")
        cred = fields["Credential"].split("/")
        if len(cred) != 5 or cred[4] != "aws4_request":
            return ("IncompleteSignatureException", "Credential is malformed.")
        akid, date8, region, service = cred[:4]
        if akid != self.access_key_id:
            return ("UnrecognizedClientException",
                    "The security token included in the request is invalid.")
        dates = [v for k, v in headers if k.lower() == "x-amz-date"]
        if not dates:
            return ("IncompleteSignatureException", "Missing X-Amz-Date.")
        date = dates[0]
        try:
            t = calendar.timegm(time.strptime(date, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            return ("IncompleteSignatureException", "X-Amz-Date is malformed.")
        now = self.now()
        if abs(now - t) > MAX_SKEW_S:
            return ("InvalidSignatureException",
                    "Signature expired: %s is now earlier than %s (%s - 5 min.)" %
                    (date, amz_date(now - MAX_SKEW_S), amz_date(now)) if t < now else
                    "Signature not yet current: %s is still later than %s (%s + 5 min.)" %
                    (date, amz_date(now + MAX_SKEW_S), amz_date(now)))
        if date8 != date[:8] or region != self.region or service != self.service:
            return ("InvalidSignatureException",
                    "Credential should be scoped to a valid region, service and date.")
        signed = fields["SignedHeaders"].split(";")
        if signed != sorted(signed) or "host" not in signed or "x-amz-date" not in signed:
            return ("InvalidSignatureException", SIGNATURE_MISMATCH)
        tokens = [v for k, v in headers if k.lower() == "x-amz-security-token"]
        if self.session_token is not None:
            if tokens != [self.session_token] or "x-amz-security-token" not in signed:
                return ("UnrecognizedClientException",
                        "The security token included in the request is invalid.")
        elif tokens:
            return ("UnrecognizedClientException",
                    "The security token included in the request is invalid.")
        path, _, query = raw_target.partition("?")
        creq = canonical_request(method, path, query, headers, signed, body)
        scope = "%s/%s/%s/aws4_request" % (date8, region, service)
        expected = signature(self.secret_access_key, date8, region, service,
                             string_to_sign(date, scope, creq))
        if not hmac.compare_digest(expected, fields["Signature"]):
            return ("InvalidSignatureException", SIGNATURE_MISMATCH)
        return None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake = None  # set by FakeBedrock.start

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send_json(self, status, obj, error_type=None, extra=()):
        body = json.dumps(obj).encode("utf-8") if not isinstance(obj, bytes) else obj
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if error_type:
            self.send_header("x-amzn-ErrorType",
                             error_type + ":http://internal.amazon.com/coral/com.amazon.bedrock/")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        self._send_json(404, {"message": "Not Found"}, "UnknownOperationException")

    def do_POST(self):
        fake = self.server_fake
        length = self.headers.get("Content-Length")
        if length is None:
            self._send_json(411, {"message": "Length Required"})
            return
        body = self.rfile.read(int(length))
        headers = list(self.headers.items())
        path = self.path.partition("?")[0]
        record = {"method": "POST", "path": self.path, "headers": headers, "body": body,
                  "model_id": None, "operation": None, "verified": False, "json": None}
        with fake.lock:
            fake.requests.append(record)

        failure = fake.verify("POST", self.path, headers, body)
        if failure:
            record["error"] = failure
            self._send_json(403, {"message": failure[1]}, failure[0])
            return
        record["verified"] = True

        parts = path.split("/")
        if len(parts) != 4 or parts[0] != "" or parts[1] != "model" or parts[3] not in (
                "converse", "converse-stream"):
            self._send_json(404, {"message": "Unknown operation"}, "UnknownOperationException")
            return
        record["model_id"] = unquote(parts[2])
        record["operation"] = parts[3]
        problem = _validate_converse(body)
        if isinstance(problem, str):
            self._send_json(400, {"message": problem}, "ValidationException")
            return
        record["json"] = problem

        b = fake.next_behaviour()
        record["behaviour"] = b
        if b.hang:
            fake.stopping.wait(b.hang_s)
            self.close_connection = True
            return
        if b.delay_s:
            time.sleep(b.delay_s)
        if b.status != 200:
            extra = [("Retry-After", str(b.retry_after))] if b.retry_after is not None else []
            self._send_json(b.status, {"message": b.message or "error"}, b.error_type, extra)
            return
        if record["operation"] == "converse":
            self._converse(b)
        else:
            self._converse_stream(b)

    def _converse(self, b):
        if b.raw is not None:
            body = b.raw if isinstance(b.raw, (str, bytes)) else json.dumps(b.raw)
            self._send_json(200, body.encode("utf-8") if isinstance(body, str) else body)
            return
        self._send_json(200, {
            "output": {"message": {"role": "assistant", "content": [{"text": b.text}]}},
            "stopReason": b.stop_reason,
            "usage": {"inputTokens": b.input_tokens, "outputTokens": b.output_tokens,
                      "totalTokens": b.input_tokens + b.output_tokens},
            "metrics": {"latencyMs": 42},
        })

    def _converse_stream(self, b):
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        try:
            if b.raw_stream is not None:
                self._chunk(b.raw_stream)
            else:
                for i, msg in enumerate(_stream_messages(b)):
                    if i and b.chunk_delay_s:
                        time.sleep(b.chunk_delay_s)
                    self._chunk(msg)
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _event(event_type, obj):
    obj = dict(obj)
    obj["p"] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123"[:len(event_type) + 10]
    return encode_event([(":event-type", event_type), (":content-type", "application/json"),
                         (":message-type", "event")], json.dumps(obj))


def _stream_messages(b):
    chunks = b.chunks if b.chunks is not None else [w for w in b.text.split(" ") if w]
    if b.chunks is None:
        chunks = [c if i == 0 else " " + c for i, c in enumerate(chunks)]
    yield _event("messageStart", {"role": "assistant"})
    for i, c in enumerate(chunks):
        if b.stream_exception and i == b.exception_after:
            break
        yield _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": c}})
    if b.stream_exception:
        yield encode_event([(":exception-type", b.stream_exception),
                            (":content-type", "application/json"), (":message-type", "exception")],
                           json.dumps({"message": b.message or "Too many requests."}))
        return
    yield _event("contentBlockStop", {"contentBlockIndex": 0})
    yield _event("messageStop", {"stopReason": b.stop_reason})
    yield _event("metadata", {"usage": {"inputTokens": b.input_tokens,
                                        "outputTokens": b.output_tokens,
                                        "totalTokens": b.input_tokens + b.output_tokens},
                              "metrics": {"latencyMs": 42}})


def _validate_converse(body):
    """The parsed request, or Bedrock's ValidationException message."""
    try:
        req = json.loads(body)
    except ValueError:
        return "Malformed input request, please reformat your input and try again."
    msgs = req.get("messages") if isinstance(req, dict) else None
    if not isinstance(msgs, list) or not msgs:
        return "The model returned the following errors: messages: field required"
    if msgs[0].get("role") != "user":
        return ("A conversation must start with a user message. Try again with a conversation "
                "that starts with a user message.")
    for a, b in zip(msgs, msgs[1:]):
        if a.get("role") == b.get("role"):
            return ("A conversation must alternate between user and assistant roles. Make sure "
                    "the conversation alternates between user and assistant roles and try again.")
    for m in msgs:
        content = m.get("content")
        if not isinstance(content, list) or not content or not all(
                isinstance(c, dict) and isinstance(c.get("text"), str) and c["text"].strip()
                for c in content):
            return "The text field in the ContentBlock object is blank."
    return req


# --------------------------------------------------------------------------------------------
# Self-test


def _post(fake, model, op, body, *, secret=None, date=None, token=None, tamper=None,
          timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=timeout)
    path = "/model/%s/%s" % (quote(model, safe=""), op)
    body = body.encode("utf-8")
    host = "127.0.0.1:%d" % fake.port
    headers = [("Content-Type", "application/json")]
    added = sign("POST", host, path, "", headers, body, fake.access_key_id,
                 secret or fake.secret_access_key, fake.region, fake.service,
                 date or amz_date(time.time()), token)
    if tamper:
        body = tamper(body)
    conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host)
    for k, v in headers + added:
        conn.putheader(k, v)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def _bedrock_vector():
    """The request of sigv4_test.cc's BedrockModelIdIsEncodedOnTheWireAndAgainWhenSigned."""
    return sign("POST", "bedrock-runtime.us-east-1.amazonaws.com",
                "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", "",
                [("Content-Type", "application/json")],
                b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}', "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1", "bedrock",
                "20240101T000000Z", "token/with+chars=")


def _self_test():
    # 1. The signer against AWS's published vectors (the same ones sigv4_test.cc uses).
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    h = sign("GET", "example.amazonaws.com", "/", "", [], b"", "AKIDEXAMPLE", secret, "us-east-1",
             "service", "20150830T123600Z")
    assert h[0][1] == ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                       "aws4_request, SignedHeaders=host;x-amz-date, Signature="
                       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"), h
    h = sign("GET", "example.amazonaws.com", "/example space/", "", [], b"", "AKIDEXAMPLE", secret,
             "us-east-1", "service", "20150830T123600Z")  # get-space
    assert h[0][1].endswith(
        "Signature=652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"), h
    h = sign("GET", "example.amazonaws.com", "/", "", [], b"", "AKIDEXAMPLE", secret, "us-east-1",
             "service", "20150830T123600Z",
             "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267")
    assert h[0][1].endswith("SignedHeaders=host;x-amz-date;x-amz-security-token, Signature="
                            "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"), h
    h = sign("GET", "iam.amazonaws.com", "/", "Action=ListUsers&Version=2010-05-08",
             [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")], b"",
             "AKIDEXAMPLE", secret, "us-east-1", "iam", "20150830T123600Z")
    assert h[0][1].endswith(
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"), h
    assert canonical_uri("/model/a%3Ab/converse") == "/model/a%253Ab/converse"
    # The event stream encoder against the AWS SDK's vector (payload_one_str_header, from
    # aws-sdk-js-v3 packages/eventstream-marshaller/src/TestVectors.fixture.ts).
    assert encode_event([("content-type", "application/json")], "{'foo':'bar'}") == bytes([
        0, 0, 0, 61, 0, 0, 0, 32, 7, 253, 131, 150, 12, 99, 111, 110, 116, 101, 110, 116, 45, 116,
        121, 112, 101, 7, 0, 16, 97, 112, 112, 108, 105, 99, 97, 116, 105, 111, 110, 47, 106, 115,
        111, 110, 123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114, 39, 125, 141, 156, 8, 177])

    # 2. Round trips through the server.
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "Hi"}]}]})
    model = "anthropic.claude-3-haiku-20240307-v1:0"
    with FakeBedrock(script=[reply("Hello there friend"), reply("streamed reply here"),
                             throttle(retry_after=2), stream_exception("throttlingException")],
                     session_token="tok") as fake:
        status, _, data = _post(fake, model, "converse", body, token="tok")
        assert status == 200, (status, data)
        assert json.loads(data)["output"]["message"]["content"][0]["text"] == "Hello there friend"
        assert fake.requests[-1]["model_id"] == model

        status, hdrs, data = _post(fake, model, "converse-stream", body, token="tok")
        assert status == 200 and hdrs["Content-Type"] == "application/vnd.amazon.eventstream"
        events = decode_events(data)
        text = "".join(json.loads(p)["delta"]["text"] for h, p in events
                       if h[":event-type"] == "contentBlockDelta")
        assert text == "streamed reply here", text
        assert [h[":event-type"] for h, _ in events][-2:] == ["messageStop", "metadata"]

        status, hdrs, data = _post(fake, model, "converse", body, token="tok")
        assert status == 429 and hdrs["Retry-After"] == "2", (status, hdrs)
        assert hdrs["x-amzn-ErrorType"].startswith("ThrottlingException:")

        status, _, data = _post(fake, model, "converse-stream", body, token="tok")
        events = decode_events(data)
        assert events[-1][0][":message-type"] == "exception", events
        assert events[-1][0][":exception-type"] == "throttlingException"

        # Rejections, each with AWS's 403.
        def rejected(**kw):
            status, hdrs, data = _post(fake, model, "converse", body, **kw)
            assert status == 403, (kw, status, data)
            return hdrs["x-amzn-ErrorType"].split(":")[0], json.loads(data)["message"]

        assert rejected(token="tok", secret="wrong") == ("InvalidSignatureException",
                                                         SIGNATURE_MISMATCH)
        assert rejected(token="tok", tamper=lambda b: b.replace(b"Hi", b"Ho"))[1] == \
            SIGNATURE_MISMATCH
        kind, msg = rejected(token="tok", date=amz_date(time.time() - 301))
        assert kind == "InvalidSignatureException" and msg.startswith("Signature expired"), msg
        kind, msg = rejected(token="tok", date=amz_date(time.time() + 400))
        assert msg.startswith("Signature not yet current"), msg
        assert rejected()[0] == "UnrecognizedClientException"  # token missing
        assert rejected(token="other")[0] == "UnrecognizedClientException"

        # Within the 5 minutes it is accepted; a bad body is a ValidationException.
        status, _, _ = _post(fake, model, "converse", body, token="tok",
                             date=amz_date(time.time() - 240))
        assert status == 200
        bad = json.dumps({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]})
        status, hdrs, data = _post(fake, model, "converse", bad, token="tok")
        assert status == 400 and hdrs["x-amzn-ErrorType"].startswith("ValidationException")

    # 3. A delay delays; a hang holds the request until stop() releases it.
    with FakeBedrock(script=[Behaviour(delay_s=0.3), hang()]) as fake:
        t0 = time.time()
        status, _, _ = _post(fake, model, "converse", body)
        assert status == 200 and time.time() - t0 >= 0.3
        try:
            _post(fake, model, "converse", body, timeout=0.5)
            raise AssertionError("a hang answered")
        except TimeoutError:
            pass
        t0 = time.time()
    assert time.time() - t0 < 5, "stop() waited for the hanging request"
    print("fake_bedrock self-test: ok")


if __name__ == "__main__":
    if "--print-bedrock-vector" in sys.argv:
        for k, v in _bedrock_vector():
            print("%s: %s" % (k, v))
    else:
        _self_test()
