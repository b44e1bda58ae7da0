"""Readiness that fails closed: OPA up with a verified, recent bundle, and a writable audit store.

A background thread keeps a fresh verdict per process, so the record path pays nothing
for it. A record request that finds the cached verdict "not ready" wakes that thread and
waits a few milliseconds for a newer verdict (`recheck`): recovery is seen at once, yet
with OPA hung (a check then takes the whole timeout) requests are still refused within
that short wait instead of each waiting the timeout. `/readyz` checks synchronously.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client.opa import OpaClient
from prometheus_client.parser import text_string_to_metric_families

from . import errors

BUNDLE = "lcr"
_BUNDLE_GAUGES = ("last_success_bundle_request", "last_success_bundle_activation")


@dataclass(frozen=True)
class Verdict:
    ready: bool
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: type[errors.LcrError] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "not-ready", "checks": self.checks}


class ReadinessProbe:
    def __init__(self, opa_url: str, audit_db: str, max_bundle_age_seconds: float, interval_seconds: float, timeout: float) -> None:
        parts = urlsplit(opa_url)
        # retries=0: a readiness check answers now; the next check is a second away.
        self._opa = OpaClient(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 8181,
            ssl=parts.scheme == "https",
            retries=0,
            timeout=timeout,
        )
        self.audit_db = audit_db
        self.max_bundle_age_seconds = max_bundle_age_seconds
        self.interval_seconds = interval_seconds
        self.timeout = timeout
        self._verdict: Verdict | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self._wake = threading.Event()
        self._checked = threading.Condition()
        self._generation = 0  # verdicts published so far
        self._thread: threading.Thread | None = None

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=5)
        self._opa.close_connection()

    def cached(self) -> Verdict:
        """The latest verdict; the first call checks now and starts the refresher (after fork)."""
        if self._verdict is None:
            with self._lock:
                if self._thread is None:
                    self._verdict = self.check()
                    self._thread = threading.Thread(target=self._refresh, name="readiness", daemon=True)
                    self._thread.start()
        return self._verdict  # type: ignore[return-value]

    def recheck(self, wait_seconds: float) -> Verdict:
        """Ask the background thread for a new verdict; the newest one within wait_seconds."""
        verdict = self.cached()
        with self._checked:
            seen = self._generation
            self._wake.set()
            if wait_seconds > 0:
                self._checked.wait_for(lambda: self._generation != seen, timeout=wait_seconds)
            return self._verdict or verdict

    def _refresh(self) -> None:
        while True:
            self._wake.wait(self.interval_seconds)
            if self._stopping:
                return
            self._wake.clear()
            started = time.monotonic()
            self.check()
            # Requests keep waking this thread while not ready: at most one check per 50 ms.
            time.sleep(max(0.0, 0.05 - (time.monotonic() - started)))

    def check(self) -> Verdict:
        opa = self._opa_bundle_active()
        if opa["ok"]:
            signed, fresh = self._signature_required(), self._bundle_fresh()
        else:
            # A hung OPA would cost the timeout once per question: ask it no more.
            skipped = {"ok": False, "detail": "not checked: OPA is not answering"}
            signed, fresh = skipped, skipped
        checks = {"opa": opa, "bundle_signed": signed, "bundle_fresh": fresh, "audit_store": self._audit_writable()}
        failing = [name for name, c in checks.items() if not c["ok"]]
        error: type[errors.LcrError] | None = None
        if "audit_store" in failing:
            error = errors.AuditUnavailable
        elif "opa" in failing or "bundle_signed" in failing:
            error = errors.PolicyUnavailable
        elif "bundle_fresh" in failing:
            error = errors.PolicyStale
        verdict = Verdict(not failing, checks, error)
        with self._checked:
            self._verdict = verdict
            self._generation += 1
            self._checked.notify_all()
        return verdict

    def _opa_bundle_active(self) -> dict[str, Any]:
        ok = self._opa.check_health({"bundles": "true"})
        return {"ok": ok, "detail": "bundle activated" if ok else "OPA is unreachable or has not activated the policy bundle"}

    def _signature_required(self) -> dict[str, Any]:
        # OPA activates only verified bundles when signing is configured for the bundle.
        try:
            config = self._opa.get_config()["result"]
            keyid = config["bundles"][BUNDLE]["signing"]["keyid"]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return {"ok": False, "detail": "OPA is not configured to verify the bundle's signature"}
        return {"ok": bool(keyid), "detail": f"signature verified with key {keyid}"}

    def _bundle_fresh(self) -> dict[str, Any]:
        try:
            # OPA's /metrics is large (Go runtime, HTTP histograms): parse only the two
            # bundle gauges, or every worker spends a few % of its CPU on this once a second.
            wanted = "\n".join(line for line in self._opa.get_metrics().splitlines() if line.startswith(_BUNDLE_GAUGES))
            families = {f.name: f for f in text_string_to_metric_families(wanted + "\n")}
        except (requests.RequestException, ValueError) as exc:
            return {"ok": False, "detail": f"OPA metrics unreadable ({type(exc).__name__})"}
        last_ns = 0.0
        revision = None
        for name in _BUNDLE_GAUGES:
            for sample in getattr(families.get(name), "samples", []):
                if sample.labels.get("name") == BUNDLE:
                    last_ns = max(last_ns, sample.value)
                    revision = sample.labels.get("active_revision", revision)
        if not last_ns:
            return {"ok": False, "detail": "OPA reports no successful bundle download or activation"}
        age = time.time() - last_ns / 1e9
        ok = age <= self.max_bundle_age_seconds
        detail = f"bundle server last reached {age:.0f}s ago (limit {self.max_bundle_age_seconds:.0f}s)"
        return {"ok": ok, "detail": detail, "age_seconds": round(age, 1), "revision": revision}

    def _audit_writable(self) -> dict[str, Any]:
        try:
            conn = sqlite3.connect(self.audit_db, timeout=self.timeout, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return {"ok": False, "detail": f"audit store not writable ({exc})"}
        return {"ok": True, "detail": "audit store writable"}
