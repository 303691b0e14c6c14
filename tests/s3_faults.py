"""A proxy in front of the test S3 server that answers chosen requests badly: a 503
SlowDown, a stall past the client's read timeout, or a body cut off mid-way. Real
bytes still go to the real server; only the answers the rules pick are spoiled."""

import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlparse

Action = Literal["503", "stall", "cut"]
_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclass
class Rule:
    action: Action
    method: str | None = None
    match: str = ""  # a substring of the path and query
    times: int | None = 1  # None: every matching request
    every: int = 1  # spoil every n-th matching request
    seen: int = 0

    def fires(self, method: str, target: str) -> bool:
        if self.times == 0 or (self.method and method != self.method):
            return False
        if self.match not in target:
            return False
        self.seen += 1
        if self.seen % self.every:
            return False
        if self.times is not None:
            self.times -= 1
        return True


class FaultyS3:
    def __init__(self, upstream: str, stall_s: float) -> None:
        self.upstream = urlparse(upstream)
        self.stall_s = stall_s
        self.rules: list[Rule] = []
        self.injected: list[tuple[Action, str, str]] = []
        self.requests = 0
        self._lock = threading.Lock()

    def fail(self, action: Action, **rule: object) -> Rule:
        added = Rule(action, **rule)  # type: ignore[arg-type]
        with self._lock:
            self.rules.append(added)
        return added

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def decide(self, method: str, target: str) -> Action | None:
        with self._lock:
            self.requests += 1
            for rule in self.rules:
                if rule.fires(method, target):
                    self.injected.append((rule.action, method, target))
                    return rule.action
        return None

    def count(self, action: Action) -> int:
        return sum(1 for injected, _, _ in self.injected if injected == action)


def _handler(faults: FaultyS3) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = bytearray()
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks += self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _proxy(self) -> None:
            body = self._body()
            action = faults.decide(self.command, self.path)
            if action == "stall":
                # The client gives up first (its read timeout) and retries on a new
                # connection; this one is then dropped without an answer.
                time.sleep(faults.stall_s)
                self.close_connection = True
                return
            if action == "503":
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(_SLOW_DOWN)))
                self.end_headers()
                self.wfile.write(_SLOW_DOWN)
                return
            upstream = http.client.HTTPConnection(
                faults.upstream.hostname or "127.0.0.1", faults.upstream.port, timeout=30
            )
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            length = answer.getheader("Content-Length")
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            upstream.close()
            if self.command == "HEAD":
                return
            if action == "cut" and len(data) > 1:
                # The headers promised every byte; half arrive, then the line drops.
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _proxy

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that timed out hangs up on a stalled answer: that is the point.
        pass


@contextmanager
def faulty_s3(upstream: str, *, stall_s: float = 2.0) -> Iterator[tuple[str, FaultyS3]]:
    """The proxy's endpoint and its rules, for as long as the block runs."""
    faults = FaultyS3(upstream, stall_s)
    server = _QuietServer(("127.0.0.1", 0), _handler(faults))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", faults
    finally:
        server.shutdown()
        server.server_close()
