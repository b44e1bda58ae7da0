"""The floor under every figure, measured in the same run: a loopback TCP round trip and an fsync.

Loopback: a 64-byte ping-pong over one kept-alive TCP connection on 127.0.0.1 between
this process and a child process (so both ends are scheduled like client and server), and
a fresh connect + ping-pong + close (what every request to a gunicorn sync worker pays).
fsync: append 4 KiB and fsync, in the audit store's folder (same disk as var/audit.db).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import statistics
import time
from pathlib import Path
from typing import Any

PAYLOAD = b"x" * 64


def _echo_server(sock: socket.socket) -> None:
    while True:
        conn, _ = sock.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                conn.sendall(data)


def _pcts(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "p50": round(q[49] * 1e6, 1),
        "p99": round(q[98] * 1e6, 1),
        "mean": round(statistics.fmean(samples) * 1e6, 1),
    }


def loopback(n: int = 3000) -> dict[str, Any]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_echo_server, args=(listener,), daemon=True)
    child.start()
    try:
        addr = listener.getsockname()
        kept: list[float] = []
        with socket.create_connection(addr) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(n + 200):
                t = time.perf_counter()
                c.sendall(PAYLOAD)
                got = 0
                while got < len(PAYLOAD):
                    got += len(c.recv(4096))
                if i >= 200:
                    kept.append(time.perf_counter() - t)
        fresh: list[float] = []
        for i in range(n // 3 + 50):
            t = time.perf_counter()
            with socket.create_connection(addr) as c:
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                c.sendall(PAYLOAD)
                got = 0
                while got < len(PAYLOAD):
                    got += len(c.recv(4096))
            if i >= 50:
                fresh.append(time.perf_counter() - t)
    finally:
        child.terminate()
        child.join()
        listener.close()
    return {"round_trip_us": _pcts(kept), "connect_round_trip_close_us": _pcts(fresh), "samples": n}


def fsync(folder: Path, n: int = 300) -> dict[str, Any]:
    path = folder / "fsync-floor.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    samples: list[float] = []
    try:
        block = os.urandom(4096)
        for i in range(n + 20):
            os.write(fd, block)
            t = time.perf_counter()
            os.fsync(fd)
            if i >= 20:
                samples.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink()
    return {"fsync_4k_us": _pcts(samples), "samples": n, "folder": str(folder)}
