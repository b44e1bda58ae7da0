"""A circuit breaker for OPA: once OPA has failed to answer, deny at once instead of waiting.

A hung OPA accepts connections and never answers, so without this every request would
wait the full timeout before its 503. After `failures` transport failures in a row the
breaker opens: calls are refused without touching the network for `cool_off` seconds,
then exactly one caller is let through as a trial (half-open) while the others keep
being refused; its success closes the breaker, its failure opens it again.

Hand-written (≈ 40 lines) because the Python breakers at hand do not fit a threaded
server: `circuitbreaker` lets every concurrent call through when half-open (each would
wait the full timeout on a hung OPA) and `pybreaker` holds its lock across the call,
which would serialise every OPA question of a worker.
"""

from __future__ import annotations

import threading
import time


class CircuitBreaker:
    def __init__(self, failures: int = 1, cool_off: float = 1.0) -> None:
        self.failures = max(1, int(failures))
        self.cool_off = float(cool_off)
        self._lock = threading.Lock()
        self._failed = 0
        self._open_until: float | None = None  # None: closed
        self._trial = False  # half-open and a trial call is out

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def allow(self) -> bool:
        """May this call go to OPA? Every True must be followed by success() or failure()."""
        if self._open_until is None:
            return True
        with self._lock:
            if self._open_until is None:
                return True
            if self._trial or time.monotonic() < self._open_until:
                return False
            self._trial = True
            return True

    def success(self) -> None:
        if self._open_until is None and not self._failed:
            return
        with self._lock:
            self._failed, self._open_until, self._trial = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self._failed += 1
            if self._trial or self._failed >= self.failures:
                self._open_until = time.monotonic() + self.cool_off
            self._trial = False

    def inconclusive(self) -> None:
        """The call failed in a way that says nothing about OPA (a huge record timing out)."""
        with self._lock:
            if self._trial:  # the trial proved nothing: stay open, let another try later
                self._trial = False
                self._open_until = time.monotonic() + self.cool_off
