"""A small HTTP proxy whose fault can be switched on and off while traffic flows through it.

It runs in the test process (a thread per connection) in front of OPA or the LCR upstream:
the sidecar is configured with the proxy's URL, so switching the proxy's mode is the
backend going wrong, at once, for every sidecar worker. Modes:

    pass       forward to the backend (kept-alive connection per client connection)
    slow       wait `delay` seconds, then forward (a backend slower than the caller's timeout)
    close      read the request, close the connection without an answer
    status     answer `status` (e.g. 500) with a short text body
    body       answer 200 with `body` (garbage, invalid JSON, JSON of the wrong shape)
    huge       answer 200 with a `size`-byte body that starts like a FHIR Bundle

A fault applies only to request paths starting with `match` ("" = every path), e.g. only
OPA's decision queries, so that the readiness probe (health, config, metrics) still passes
and the fault is seen where it is meant to be.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "content-length",
    "date",
    "server",
}


@dataclass(frozen=True)
class Fault:
    mode: str = "pass"
    match: str = ""
    delay: float = 0.0
    status: int = 500
    body: bytes = b""
    content_type: str = "application/json"
    size: int = 0


class FaultProxy:
    def __init__(self, backend_url: str) -> None:
        parts = urlsplit(backend_url)
        self.backend = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.fault = Fault()
        self.faulted = 0  # requests the current or last fault was applied to
        self._lock = threading.Lock()
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    def set(self, mode: str, match: str = "", **kw: Any) -> None:
        with self._lock:
            self.fault = Fault(mode, match, **kw)
            self.faulted = 0

    def clear(self) -> None:
        with self._lock:
            self.fault = Fault()

    def _count(self) -> None:
        with self._lock:
            self.faulted += 1

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout) mid-answer is part of the exercise


class _Handler(http.server.BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"
    _backend: http.client.HTTPConnection | None = None

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def finish(self) -> None:
        if self._backend is not None:
            self._backend.close()
        try:
            super().finish()
        except OSError:
            pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        fault = self.owner.fault
        if fault.mode == "pass" or not self.path.startswith(fault.match):
            self._forward(body)
            return
        self.owner._count()
        if fault.mode == "slow":
            time.sleep(fault.delay)
            self._forward(body)
        elif fault.mode == "close":
            self.close_connection = True
        elif fault.mode == "status":
            self._answer(fault.status, b"backend error", "text/plain")
        elif fault.mode == "body":
            self._answer(200, fault.body, fault.content_type)
        elif fault.mode == "huge":
            self._huge(fault.size)
        else:
            raise ValueError(f"unknown fault mode {fault.mode!r}")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _huge(self, size: int) -> None:
        head = b'{"resourceType": "Bundle", "type": "searchset", "entry": ['
        chunk = b'{"resource": {"resourceType": "Observation", "id": "x"}},' * 1024
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(head)
            sent = len(head)
            while sent < size:
                part = chunk[: size - sent]
                self.wfile.write(part)
                sent += len(part)
        except OSError:
            pass  # the sidecar stopped reading at its limit and closed the connection
        self.close_connection = True

    def _forward(self, body: bytes | None) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        for attempt in (1, 2):
            if self._backend is None:
                self._backend = http.client.HTTPConnection(*self.owner.backend, timeout=30)
            reused = self._backend.sock is not None
            try:
                self._backend.request(self.command, self.path, body, headers)
                response = self._backend.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException):
                self._backend.close()
                self._backend = None
                if not reused or attempt == 2:
                    # The backend itself is gone: the caller sees its connection dropped.
                    self.close_connection = True
                    return
        try:
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in _HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True
