"""Readiness that fails closed: OPA up with a verified, recent bundle, and a writable audit store.

Every process keeps its own verdict fresh with a background thread, started when the probe
is made (in the app factory, so in each gunicorn worker) and again in a forked child. It
re-checks every `interval_seconds`, and wakes on its own the moment a fresh bundle would
pass `max_bundle_age_seconds`, so the record path pays nothing for readiness and its
verdict moves by itself: stale as the limit is crossed, ready again within a second of
recovery, whether or not anyone calls `/readyz`. A record request that finds the cached
verdict "not ready" wakes that thread and waits a few milliseconds for a newer verdict
(`recheck`): recovery is seen at once, yet with OPA hung (a check then takes the whole
timeout) requests are still refused within that short wait instead of each waiting the
timeout. `/readyz` checks synchronously and publishes its verdict like any other check.

Freshness is when OPA last *reached* the bundle server: its own gauge of the last
successful bundle request (a 200 or a 304), `last_success_bundle_request`. Never the
activation time: a restarted OPA activates the bundle it persisted without reaching the
server, which says nothing about how old that bundle is. A restarted OPA reports that it
has not reached the server since it started (Go's zero time): that is stale at once.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import requests
from opa_client.opa import OpaClient
from prometheus_client.parser import text_string_to_metric_families

from . import errors

BUNDLE = "lcr"
ROSTER_BUNDLE = "roster"  # the care app's service users (bundles/roster.py)
#: both must be activated, signed and fresh: a stale roster would keep discharged residents
#: visible and new admissions invisible
BUNDLES = (BUNDLE, ROSTER_BUNDLE)
REACHED = "last_success_bundle_request"  # the last download request answered 200 or 304
ACTIVATED = "last_success_bundle_activation"  # read only for the active revision's label
_BUNDLE_GAUGES = (REACHED, ACTIVATED)
# Between two checks while requests keep waking the thread (not ready): at least this long.
_MIN_GAP_SECONDS = 0.05
# Wake this long after the moment a fresh bundle becomes stale, so the check sees it stale.
_PAST_LIMIT_SECONDS = 0.01

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    ready: bool
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: type[errors.LcrError] | None = None
    # Wall-clock time (time.time()) after which this ready verdict is stale: the bundle
    # server last reached + the limit. None when not ready or not known.
    fresh_until: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "not-ready", "checks": self.checks}


# Every live probe, to restart its refresher in a forked child (gunicorn --preload, or any fork
# after the app was made): threads do not survive fork(), and the child must not share the
# parent's pooled connections to OPA.
_PROBES: weakref.WeakSet[ReadinessProbe] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for probe in list(_PROBES):
        probe._restart_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class ReadinessProbe:
    def __init__(
        self, opa_url: str, audit_db: Any, max_bundle_age_seconds: float, interval_seconds: float, timeout: float
    ) -> None:
        """`audit_db`: the audit store (anything with `writable() -> {"ok", "detail"}`: the
        SQLite or the PostgreSQL store), or the path of a SQLite file."""
        self._opa_url = opa_url
        self.audit_db = audit_db
        self.max_bundle_age_seconds = max_bundle_age_seconds
        self.interval_seconds = interval_seconds
        self.timeout = timeout
        self._opa = self._client()
        self._verdict: Verdict | None = None
        self._verdict_started = 0.0  # monotonic start of the published verdict's check
        self._stopping = False
        self._sync()
        self._thread: threading.Thread | None = None
        self._pid = 0
        _PROBES.add(self)
        self._start()

    def _client(self) -> OpaClient:
        parts = urlsplit(self._opa_url)
        # retries=0: a readiness check answers now; the next check is a second away.
        return OpaClient(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 8181,
            ssl=parts.scheme == "https",
            retries=0,
            timeout=self.timeout,
        )

    def _sync(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._checked = threading.Condition()
        self._generation = 0  # verdicts published so far

    def _start(self) -> None:
        """Start this process's refresher (the caller holds no lock the thread needs)."""
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._refresh, name="readiness", daemon=True)
        self._thread.start()

    def _restart_after_fork(self) -> None:
        if self._stopping:
            return
        self._sync()  # the parent's locks may have been held by a thread that is not here
        self._opa = self._client()  # never the parent's sockets
        self._start()

    def _ensure_running(self) -> None:
        """The refresher runs in this process, whatever else happened (fork, a dead thread)."""
        thread = self._thread
        if self._pid == os.getpid() and thread is not None and thread.is_alive():
            return
        with self._lock:
            thread = self._thread
            if self._stopping or (self._pid == os.getpid() and thread is not None and thread.is_alive()):
                return
            if self._pid != os.getpid():
                self._opa = self._client()
            self._start()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread and self._pid == os.getpid():
            self._thread.join(timeout=5)
        _PROBES.discard(self)
        self._opa.close_connection()

    def cached(self) -> Verdict:
        """The latest verdict, as of now: a ready one past its bundle's age limit is stale."""
        self._ensure_running()
        verdict = self._verdict
        if verdict is None:
            return self.check()  # the refresher's first check is not in yet
        if verdict.ready and verdict.fresh_until is not None and time.time() > verdict.fresh_until:
            self._wake.set()
            return _expired(verdict)
        return verdict

    def published(self) -> Verdict | None:
        """The verdict of the newest check, as it was published (no age applied since)."""
        return self._verdict

    def recheck(self, wait_seconds: float) -> Verdict:
        """Ask the background thread for a new verdict; the newest one within wait_seconds."""
        verdict = self.cached()
        with self._checked:
            seen = self._generation
            self._wake.set()
            if wait_seconds > 0:
                self._checked.wait_for(lambda: self._generation != seen, timeout=wait_seconds)
        latest = self._verdict
        if latest is None:
            return verdict
        if latest.ready and latest.fresh_until is not None and time.time() > latest.fresh_until:
            return _expired(latest)
        return latest

    def _refresh(self) -> None:
        wait = 0.0  # the first check at once
        while True:
            self._wake.wait(wait)
            if self._stopping:
                return
            self._wake.clear()
            started = time.monotonic()
            try:
                verdict = self.check()
            except Exception:  # the refresher must outlive any surprise; fail closed meanwhile
                log.exception("readiness check failed")
                verdict = Verdict(
                    False, {"readiness": {"ok": False, "detail": "readiness check failed"}}, errors.PolicyUnavailable
                )
                self._publish(verdict, started)
            wait = self.interval_seconds
            if verdict.ready and verdict.fresh_until is not None:
                # Wake as the bundle becomes stale, not up to an interval later.
                wait = min(wait, max(0.0, verdict.fresh_until - time.time()) + _PAST_LIMIT_SECONDS)
            # Requests keep waking this thread while not ready: at most one check per 50 ms.
            time.sleep(max(0.0, _MIN_GAP_SECONDS - (time.monotonic() - started)))
            wait = max(0.0, wait - (time.monotonic() - started))

    def check(self) -> Verdict:
        started = time.monotonic()
        opa = self._opa_bundle_active()
        if opa["ok"]:
            signed, fresh = self._signature_required(), self._bundle_fresh()
        else:
            # A hung OPA would cost the timeout once per question: ask it no more.
            skipped = {"ok": False, "detail": "not checked: OPA is not answering"}
            signed, fresh = skipped, skipped
        fresh_until = fresh.pop("fresh_until", None)
        unreachable = fresh.pop("unreachable", False)
        checks = {"opa": opa, "bundle_signed": signed, "bundle_fresh": fresh, "audit_store": self._audit_writable()}
        failing = [name for name, c in checks.items() if not c["ok"]]
        error: type[errors.LcrError] | None = None
        if "audit_store" in failing:
            error = errors.AuditUnavailable
        elif "opa" in failing or "bundle_signed" in failing or unreachable:
            error = errors.PolicyUnavailable
        elif "bundle_fresh" in failing:
            error = errors.PolicyStale
        verdict = Verdict(not failing, checks, error, fresh_until if not failing else None)
        self._publish(verdict, started)
        return verdict

    def _publish(self, verdict: Verdict, started: float) -> None:
        with self._checked:
            # A slow check (a /readyz that waited on OPA) never replaces a newer one.
            if started >= self._verdict_started or self._verdict is None:
                self._verdict, self._verdict_started = verdict, started
            self._generation += 1
            self._checked.notify_all()

    def _opa_bundle_active(self) -> dict[str, Any]:
        ok = self._opa.check_health({"bundles": "true"})
        detail = "bundles activated" if ok else "OPA is unreachable or has not activated the policy and roster bundles"
        return {"ok": ok, "detail": detail}

    def _signature_required(self) -> dict[str, Any]:
        # OPA activates only verified bundles when signing is configured for the bundle.
        try:
            config = self._opa.get_config()["result"]
            keyids = {name: config["bundles"][name]["signing"]["keyid"] for name in BUNDLES}
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return {"ok": False, "detail": "OPA is not configured to verify the policy and roster bundles' signatures"}
        ok = all(keyids.values())
        return {"ok": ok, "detail": "signatures verified with " + ", ".join(f"{n}: {k}" for n, k in keyids.items())}

    def _bundle_fresh(self) -> dict[str, Any]:
        try:
            # OPA's /metrics is large (Go runtime, HTTP histograms): parse only the two
            # bundle gauges, or every worker spends a few % of its CPU on this once a second.
            wanted = "\n".join(line for line in self._opa.get_metrics().splitlines() if line.startswith(_BUNDLE_GAUGES))
            # Without TYPE lines each sample line parses as a family of its own: keep them all.
            samples = [sample for family in text_string_to_metric_families(wanted + "\n") for sample in family.samples]
        except (requests.RequestException, ValueError) as exc:
            # OPA did not answer: whether the bundle is fresh is unknown, and OPA is unavailable.
            return {"ok": False, "detail": f"OPA metrics unreadable ({type(exc).__name__})", "unreachable": True}
        reached = {name: 0.0 for name in BUNDLES}
        revision = None
        for sample in samples:
            name = sample.labels.get("name")
            if sample.name == REACHED and name in reached:
                reached[name] = max(reached[name], sample.value)
            elif sample.name == ACTIVATED and name == BUNDLE:
                revision = sample.labels.get("active_revision", revision)
        limit = self.max_bundle_age_seconds
        never = [name for name, ns in reached.items() if ns <= 0]
        if never:
            # Absent, or Go's zero time (negative in ns since 1970): not since OPA started. A
            # bundle OPA loaded from its persistence directory is of unknown age: stale.
            detail = f"OPA has not reached the bundle server for {', '.join(never)} since it started (limit {limit:g}s)"
            return {"ok": False, "detail": detail, "age_seconds": None, "revision": revision}
        # The older of the two decides: both bundles must be current.
        oldest = min(reached.values()) / 1e9
        age = time.time() - oldest
        ok = age <= limit
        detail = f"bundle server last reached {age:.1f}s ago for every bundle (limit {limit:g}s)"
        return {
            "ok": ok,
            "detail": detail,
            "age_seconds": round(age, 1),
            "revision": revision,
            "fresh_until": oldest + limit,
        }

    def _audit_writable(self) -> dict[str, Any]:
        writable = getattr(self.audit_db, "writable", None)
        if writable is not None:
            return cast(
                dict[str, Any], writable(self.timeout)
            )  # the store knows how (PostgreSQL: reachable, a primary, INSERT granted)
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


def _expired(verdict: Verdict) -> Verdict:
    """A ready verdict whose bundle has since passed the age limit: stale, until re-checked."""
    fresh = dict(verdict.checks.get("bundle_fresh", {}))
    fresh.update(ok=False, detail="bundle server not reached within the limit since the last check")
    return Verdict(False, {**verdict.checks, "bundle_fresh": fresh}, errors.PolicyStale)
