"""Prometheus metrics. Labels reuse the stable error codes and deny reasons.

Under gunicorn, set PROMETHEUS_MULTIPROC_DIR (scripts/run.sh does) so /metrics adds up
every worker; without it, /metrics shows this process alone.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter(
    "lcr_requests", "Requests answered, by action, outcome and error code.", ["action", "outcome", "code"]
)
DENY_REASONS = Counter("lcr_deny_reasons", "Deny reasons given by the policy.", ["reason"])
REQUEST_SECONDS = Histogram("lcr_request_seconds", "Whole request, arrival to response.", ["action"], buckets=_BUCKETS)
OPA_SECONDS = Histogram("lcr_opa_seconds", "OPA round trip, by query.", ["query"], buckets=_BUCKETS)
UPSTREAM_SECONDS = Histogram("lcr_upstream_seconds", "LCR FHIR API round trip, by call.", ["call"], buckets=_BUCKETS)
AUDIT_SECONDS = Histogram("lcr_audit_write_seconds", "Committing one audit row.", buckets=_BUCKETS)
POLICY_REVISION = Gauge(
    "lcr_policy_revision_info",
    "The policy bundle revision of the latest decision (value 1).",
    ["revision"],
    multiprocess_mode="liveall",
)
OPA_REFUSED_FAST = Counter(
    "lcr_opa_refused_fast", "OPA questions refused without asking because OPA just failed to answer (circuit open)."
)
SHADOW_DIVERGED = Counter("lcr_shadow_diverged", "Shadow (candidate) decisions that differed from the enforced one.")
SHADOW_ERRORS = Counter("lcr_shadow_errors", "Shadow (candidate) evaluations that failed; never affects the request.")

_current_revision: list[str] = []


def observe_revision(revision: str) -> None:
    if _current_revision and _current_revision[0] == revision:
        return
    if _current_revision:
        POLICY_REVISION.labels(_current_revision.pop()).set(0)
    POLICY_REVISION.labels(revision).set(1)
    _current_revision.append(revision)


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated in prometheus_client
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
