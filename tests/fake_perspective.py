"""A fake Perspective (commentanalyzer) server on 127.0.0.1 with injected faults, for tests and
benchmarks. Faults are consumed one per request from ``server.faults`` (a deque):
``"429"``, ``"500"``, ``"slow"`` (sleep ``slow_s`` before replying), ``"badjson"``, ``"reset"``
(close the socket with RST, no reply), ``"400"``; an empty deque means a normal reply.
The score of a text is deterministic: ``fake_score(text)``.
"""
from __future__ import annotations

import collections
import hashlib
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY = "test-key-9f8e7d6c5b4a"


def fake_score(text: str) -> float:
    """Return the fake server's deterministic score for ``text``."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:4], 16) / 0xFFFF


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "FakePerspective"

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(n)
        srv = self.server
        with srv.lock:
            fault = srv.faults.popleft() if srv.faults else None
            srv.times.append(time.monotonic())
            srv.bodies.append(raw)
            srv.urls.append(self.path)
        if self.headers.get("X-Goog-Api-Key") != srv.key:
            self._reply(403, b'{"error": {"message": "API key not valid"}}')
            return
        if fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if fault == "slow":
            time.sleep(srv.slow_s)
        if fault == "429":
            self._reply(429, b'{"error": {"message": "quota"}}')
            return
        if fault == "500":
            self._reply(500, b'{"error": {"message": "internal"}}')
            return
        if fault == "400":
            self._reply(400, b'{"error": {"message": "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"}}')
            return
        if fault == "badjson":
            self._reply(200, b'{"attributeScores": {"TOXICITY": ')
            return
        req = json.loads(raw)
        text = req["comment"]["text"]
        if text == "":  # the real API rejects an empty comment
            self._reply(400, b'{"error": {"message": "Comment must be non-empty."}}')
            return
        with srv.lock:
            srv.scored.append((text, tuple(req.get("languages", []))))
        body = {"attributeScores": {a: {"summaryScore": {"value": fake_score(text), "type": "PROBABILITY"}}
                                    for a in req["requestedAttributes"]}, "languages": req.get("languages", [])}
        self._reply(200, json.dumps(body).encode())


class FakePerspective(ThreadingHTTPServer):
    """The server; use as a context manager. ``url`` is the analyze endpoint."""

    daemon_threads = True

    def __init__(self, *, slow_s: float = 0.5, key: str = KEY) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.faults: collections.deque[str] = collections.deque()
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.bodies: list[bytes] = []
        self.urls: list[str] = []
        self.scored: list[tuple[str, tuple[str, ...]]] = []
        self.slow_s = slow_s
        self.key = key
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request: Any, client_address: Any) -> None:  # reset sockets are expected
        pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1alpha1/comments:analyze"

    @property
    def n_requests(self) -> int:
        return len(self.times)

    def __enter__(self) -> "FakePerspective":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
        self.server_close()
