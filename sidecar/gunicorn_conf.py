"""gunicorn settings shared by `make run`, the Dockerfile and the benchmarks."""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from collections import deque
from functools import partial
from typing import Any, cast

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import TConn, ThreadWorker


def worker_exit(server: Any, worker: Any) -> None:
    # Close what the worker's app holds open (readiness thread, OPA and upstream
    # connections, the audit store) as the worker stops.
    services = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("lcr")
    if services is not None:
        services.close()


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's gauges must not linger in the multiprocess /metrics.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]  # unannotated in prometheus_client


# Serving: gunicorn's gthread worker, changed in one way. gthread waits for a connection's
# first byte in its poller, but from the first byte on it read the rest of the request on a
# pool thread, blocking, with no timeout: 20 connections that sent a partial header line held
# all 16 threads and /healthz hung for as long as they stayed (45 s and more). Here the
# worker's poller (one thread, non-blocking) collects each request until it has all arrived
# — the head, and a body of up to PREFETCH_MAX_BYTES — and only then hands it to a pool
# thread. A request still incomplete REQUEST_READ_SECONDS after it started is handed over
# with its deadline passed: a partial head closes the connection without an answer; a
# partial body is a 400 `body-invalid`, audited. Slow or idle clients cost a poller entry
# (at most `worker_connections`, 1000 per worker), never a thread.
REQUEST_READ_SECONDS = 5.0
PREFETCH_MAX_BYTES = 128 * 1024  # beyond this, the thread reads the rest (under the deadline)
LINGER_SECONDS = 2.0  # as gunicorn's close_graceful
# Sending the answer: a client that stops reading frees its thread after this long.
SEND_SECONDS = 30.0


class RequestReadTimeout(NoMoreData, TimeoutError):
    """The request did not arrive within REQUEST_READ_SECONDS. gunicorn closes the connection
    without an answer when this happens in the head (as when a client disconnects); while the
    sidecar reads the body it is a 400 `body-invalid`, audited (sidecar/app.py)."""


def request_complete(data: bytes | bytearray) -> bool:
    """Whether `data` holds a whole request (a hint for when to hand it to a thread; gunicorn's
    parser still reads it). Past PREFETCH_MAX_BYTES the thread reads the rest."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return len(data) > PREFETCH_MAX_BYTES
    head, body = bytes(data[:end]).lower(), len(data) - end - 4
    if body >= PREFETCH_MAX_BYTES:
        return True
    if b"\nexpect:" in head:
        return True  # the client waits for gunicorn's 100 Continue before it sends the body
    if b"\ntransfer-encoding:" in head:
        return data.endswith(b"0\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            value = line[15:].strip()
            return not value.isdigit() or body >= int(value)
    return True


class DeadlineConn(TConn):
    """A connection whose reads share one deadline per request, and that hands the bytes its
    worker's poller collected to gunicorn's parser."""

    read_deadline = 0.0
    prefetched = b""
    from_poller = False
    worker: SidecarThreadWorker | None = None

    def close(self, graceful: bool = False) -> None:
        # gunicorn lingers on a closing connection (up to 2 s, reading what the client still
        # sends) on the worker's main thread: a client that kept its end open stalled the
        # poller 2 s per connection. The linger happens in the poller instead.
        if graceful and self.worker is not None:
            self.worker.linger(self)
        else:
            super().close(graceful)

    def init(self) -> None:
        super().init()  # runs for every request on the connection; makes the parser once
        # gunicorn's parser and unreader, changed in place: its typing stubs (an older gunicorn)
        # know neither the HTTP/1 parser's unreader as used here nor chunk's size hint.
        unreader: Any = cast(Any, self.parser).unreader
        if self.prefetched:
            unreader.buf.seek(0, os.SEEK_END)  # after anything already buffered
            unreader.buf.write(self.prefetched)
            self.prefetched = b""
        if not getattr(unreader, "lcr_deadline", False):
            recv = unreader.chunk

            def chunk(size_hint: int | None = None) -> bytes:
                remaining = self.read_deadline - time.monotonic()
                if remaining <= 0:
                    raise RequestReadTimeout()
                self.sock.settimeout(remaining)
                try:
                    return cast(bytes, recv(size_hint))
                except TimeoutError:
                    raise RequestReadTimeout() from None
                finally:
                    self.sock.settimeout(SEND_SECONDS)

            unreader.chunk = chunk
            unreader.lcr_deadline = True
        self.sock.settimeout(SEND_SECONDS)


class SidecarThreadWorker(ThreadWorker):
    """gunicorn's gthread worker whose poller collects each request before a thread reads it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arriving: deque[DeadlineConn] = deque()  # oldest deadline first
        self.lingering: deque[tuple[float, DeadlineConn]] = deque()

    def accept(self, listener: Any) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = DeadlineConn(self.cfg, client_sock, client_addr, listener.getsockname())
        conn.worker = self
        self.collect(conn)

    def linger(self, conn: DeadlineConn) -> None:
        """Half-close, then read and drop what the client still sends until it closes (at most
        LINGER_SECONDS), without a thread: so the answer is not cut off by a reset."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_lingering, conn))
        except (OSError, ValueError, KeyError):
            conn.sock.close()
            return
        self.lingering.append((time.monotonic() + LINGER_SECONDS, conn))

    def on_lingering(self, conn: DeadlineConn, client: Any) -> None:
        try:
            if conn.sock.recv(65536):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._end_linger(conn)

    def _end_linger(self, conn: DeadlineConn) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        conn.sock.close()

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        # A kept-alive connection's next request is collected the same way.
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.collect(conn)

    def collect(self, conn: DeadlineConn) -> None:
        conn.sock.setblocking(False)
        conn.read_deadline = time.monotonic() + REQUEST_READ_SECONDS
        conn.prefetched = b""
        self.arriving.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_arriving, conn))

    def on_arriving(self, conn: DeadlineConn, client: Any) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data and b"\r\n\r\n" in conn.prefetched:
            # The client stopped sending with the head complete: a thread reads what came
            # (a body cut short is a 400, audited).
            self._hand_over(conn)
            return
        if not data:  # closed before a whole head arrived: nothing to answer
            self._stop_collecting(conn)
            self.nr_conns -= 1
            conn.close()
            return
        conn.prefetched += data
        if request_complete(conn.prefetched):
            self._hand_over(conn)

    def _stop_collecting(self, conn: DeadlineConn) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.arriving.remove(conn)

    def _hand_over(self, conn: DeadlineConn) -> None:
        self._stop_collecting(conn)
        conn.data_ready = True
        conn.from_poller = True
        self.enqueue_req(conn)

    def enqueue_req(self, conn: Any) -> None:
        if not getattr(conn, "from_poller", False):
            # A request gunicorn hands over itself (pipelined behind the last one): its own deadline.
            conn.read_deadline = time.monotonic() + REQUEST_READ_SECONDS
        conn.from_poller = False
        super().enqueue_req(conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self.lingering and self.lingering[0][0] <= now:
            self._end_linger(self.lingering.popleft()[1])
        while self.arriving and self.arriving[0].read_deadline <= now:
            # Too slow: a thread reads what came, at once (its deadline has passed).
            self._hand_over(self.arriving[0])


# Threads per worker: a request mostly waits on OPA and the LCR, and concurrent audit
# rows share one commit (group commit) only when requests overlap within a process.
worker_class = "sidecar.gunicorn_conf.SidecarThreadWorker"
threads = 8
# Keep the care app's connections open between requests (idle ones wait in the worker's
# poller, not on a thread).
keepalive = 5

# gunicorn's own refusals of a request head (400/414/431 with no audit row) only above the
# sidecar's limits (sidecar/app.py: a 4,096-byte target, 100 fields, 16 KiB a field, 32 KiB in
# all), which refuse with a code and an audit row. 8190 is the longest request line gunicorn
# bounds; 200 fields of 32 KiB bound what one connection's head may buffer to 6.5 MB.
limit_request_line = 8190
limit_request_fields = 200
limit_request_field_size = 32768


# Logs: one JSON object a line on stderr (python-json-logger), for gunicorn's own loggers and
# the sidecar's. Each request's line carries its decision_id, action, outcome, status, code
# and timings (sidecar/pipeline.py), so the application log joins the audit rows on one key;
# never an NHS number or record content.
_JSON_FORMAT = "%(levelname)s %(name)s %(process)d %(message)s"
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": _JSON_FORMAT,
            "timestamp": "time",  # ISO 8601, UTC
            "rename_fields": {"levelname": "level", "name": "logger", "process": "pid"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
    },
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False, "qualname": "gunicorn.error"},
        # Off, as before: the sidecar's own line per request (with its decision id) replaces it.
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False, "qualname": "gunicorn.access"},
    },
}


def post_worker_init(worker: Any) -> None:
    # Everything loaded so far (Flask, PyJWT, the app, its settings) lives as long as the
    # worker: move it out of the collector's sight. A full collection over it took
    # ≈ 90 ms on the 2-core benchmark machine, and each one is a latency spike for every
    # request in flight (bench/overhead/PROFILE.md).
    import gc

    gc.freeze()
