"""gunicorn settings shared by `make run`, the Dockerfile and the benchmarks."""

from __future__ import annotations

import os
from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's gauges must not linger in the multiprocess /metrics.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


# Threads per worker: a request mostly waits on OPA and the LCR, and concurrent audit
# rows share one commit (group commit) only when requests overlap within a process.
worker_class = "gthread"
threads = 8
# Keep the care app's connections open between requests.
keepalive = 5


def post_worker_init(worker: Any) -> None:
    # Everything loaded so far (Flask, PyJWT, the app, its settings) lives as long as the
    # worker: move it out of the collector's sight. A full collection over it took
    # ≈ 90 ms on the 2-core benchmark machine, and each one is a latency spike for every
    # request in flight (bench/overhead/PROFILE.md).
    import gc

    gc.freeze()
