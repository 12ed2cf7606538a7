"""A fake OpenAI-compatible chat completions server for tests.

Speaks the real wire protocol: POST {base}/chat/completions with a JSON body;
answers a JSON completion, or server-sent events (chunked) when the request
says "stream": true, ending with a usage chunk and "data: [DONE]". What it
answers is scripted per call: tests push behaviours, and when none is queued
it answers the default (a JSON contract echoing the user's message).

Behaviour keys: status (200), content (the model's output text), usage
({"prompt_tokens", "completion_tokens"}), delay_ms (before answering),
hang (never answer), retry_after (header on 429/5xx), body (raw error body),
chunk_delay_ms (between streamed pieces, 10), piece (stream piece size, 6).
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self):
        self.lock = threading.Lock()
        self.script = []       # behaviours for the next calls, in order
        self.default = None    # behaviour when the script is empty (None: echo)
        self.requests = []     # (headers dict, body dict) per call
        self.count_tokens = False  # usage from the text (about 4 bytes a token), not fixed
        self.delay_ms = 0      # of the echo answer
        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # listen backlog: no SYN drops under load

        self.server = Server(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.stop_event = threading.Event()

    @property
    def base_url(self):
        return "http://127.0.0.1:%d/v1" % self.port

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()

    def push(self, *behaviours):
        with self.lock:
            self.script.extend(behaviours)

    def calls(self):
        with self.lock:
            return len(self.requests)

    def _next(self, body):
        with self.lock:
            if self.script:
                return self.script.pop(0)
            if self.default is not None:
                return dict(self.default)
        text = body["messages"][-1]["content"]
        return {"content": json.dumps({"reply": "echo: " + text, "changes": [], "asks": ""}),
                "delay_ms": self.delay_ms}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": "no route " + self.path}})
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._json(400, {"error": {"message": "bad json"}})
                with fake.lock:
                    fake.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                b = fake._next(body)
                if b.get("hang"):
                    fake.stop_event.wait(60)
                    return
                if b.get("delay_ms"):
                    time.sleep(b["delay_ms"] / 1000.0)
                status = b.get("status", 200)
                if status != 200:
                    extra = {"Retry-After": str(b["retry_after"])} if "retry_after" in b else {}
                    return self._json(status, b.get("body", {"error": {"message": "scripted %d" % status}}),
                                      extra)
                content = b.get("content", "")
                usage = b.get("usage", {"prompt_tokens": 100, "completion_tokens": 20,
                                        "total_tokens": 120})
                if fake.count_tokens and "usage" not in b:
                    n_in = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
                    n_in, n_out = (n_in + 3) // 4, (len(content) + 3) // 4
                    usage = {"prompt_tokens": n_in, "completion_tokens": n_out,
                             "total_tokens": n_in + n_out}
                if body.get("stream"):
                    return self._stream(body, content, usage, b)
                self._json(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": usage})

            def _json(self, status, obj, extra=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def _chunk(self, data):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _stream(self, body, content, usage, b):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                piece = b.get("piece", 6)
                delay = b.get("chunk_delay_ms", 10) / 1000.0
                try:
                    for i in range(0, len(content), piece):
                        ev = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                              "model": body.get("model"),
                              "choices": [{"index": 0, "delta": {"content": content[i:i + piece]},
                                           "finish_reason": None}]}
                        self._chunk(("data: " + json.dumps(ev) + "\n\n").encode())
                        time.sleep(delay)
                    final = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [],
                             "usage": usage}
                    self._chunk(("data: " + json.dumps(final) + "\n\n").encode())
                    self._chunk(b"data: [DONE]\n\n")
                    self._chunk(b"")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


if __name__ == "__main__":
    # Standalone (bench/run_llm.sh): answers every call after --delay-ms with
    # a small JSON contract and prints {"port": N} once listening.
    import argparse
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("--delay-ms", type=int, default=300)
    ap.add_argument("--echo", action="store_true",
                    help="answer with the user's message (the default behaviour), not a fixed reply")
    ap.add_argument("--count-tokens", action="store_true",
                    help="report usage from the text (about 4 bytes a token)")
    args = ap.parse_args()
    fake = FakeOpenAI()
    fake.count_tokens = args.count_tokens
    if args.echo:
        fake.delay_ms = args.delay_ms
    else:
        fake.default = {"content": json.dumps({"reply": "Thanks! Where do you live?",
                                               "changes": [], "asks": "city"}),
                        "delay_ms": args.delay_ms}
    print(json.dumps({"port": fake.port}), flush=True)
    try:
        fake.server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
