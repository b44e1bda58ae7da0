"""The audited dispatch every endpoint runs through.

`dispatch(action, steps)` is the whole life of a request, in the spirit of Flask's
`full_dispatch_request`: the decision id first (`begin`), then the endpoint's steps, then
one audited exit (`finish`) on every path — an answer, a refusal (`LcrError`) or a bug
(`bug`). `finish` is the one place where an outcome becomes a response, and it writes the
audit row first: no row, no response content. An endpoint gives only its steps, so it
cannot forget its row.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from flask import Response, current_app, request

from audit_store import AuditEvent, AuditWriteError
from audit_store.backends import AuditLog
from audit_store.events import utc_timestamp

from . import errors, fastjson, metrics
from .outcome import operation_outcome
from .policy import PolicyClient
from .readiness import ReadinessProbe
from .tokens import TokenVerifier
from .upstream import FhirUpstream

log = logging.getLogger("lcr.sidecar")

FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class Services:
    """What a worker holds open for its requests; made by the app factory, closed at exit."""

    tokens: TokenVerifier
    policy: PolicyClient
    upstream: FhirUpstream
    audit: AuditLog
    readiness: ReadinessProbe
    shadow: PolicyClient | None

    def close(self) -> None:
        self.readiness.close()
        if self.shadow:
            self.shadow.close()
        self.policy.close()
        self.upstream.close()
        self.audit.close()


def services() -> Services:
    """The current app's services."""
    return cast(Services, current_app.extensions["lcr"])


@dataclass
class Access:
    """One request under way: its audit row (filled in as the steps establish it) and its start."""

    event: AuditEvent
    started: float


@dataclass(frozen=True)
class Answer:
    """What an endpoint's steps end with when they do not refuse: a 200 and its body.

    `outcome` and `code` are for answers that are ordinary but not an access (the menu's
    `record_available: false`): the row says why.
    """

    body: dict[str, Any]
    mimetype: str = "application/json"
    outcome: str = "allowed"
    code: str | None = None


def begin(action: str) -> Access:
    """The decision id exists before any work, so every path can be audited under it."""
    event = AuditEvent(
        decision_id=str(uuid.uuid4()),
        time=utc_timestamp(),
        action=action,
        client=request.remote_addr,
    )
    return Access(event=event, started=time.perf_counter())


def dispatch(action: str, steps: Callable[[Access], Answer]) -> Response:
    """Run an endpoint's steps under one decision id; every path leaves its audit row."""
    access = begin(action)
    try:
        answer = steps(access)
    except errors.LcrError as error:
        return finish(access, error)
    except Exception:
        return bug(access)
    return finish(access, answer)


def finish(access: Access, result: Answer | errors.LcrError) -> Response:
    """The one place an outcome becomes a response: the audit row first, then the answer."""
    e = access.event
    if isinstance(result, Answer):
        status, payload, mimetype = 200, result.body, result.mimetype
        e.outcome, e.http_status, e.error_code = result.outcome, 200, result.code
    else:
        status, payload, mimetype = result.status, operation_outcome(result), FHIR_JSON
        e.outcome, e.http_status, e.error_code = result.outcome, result.status, result.code
    body = fastjson.dumps(payload)
    e.response_sha256 = hashlib.sha256(body).hexdigest()
    e.latency_ms = round((time.perf_counter() - access.started) * 1000, 3)
    audit_started = time.perf_counter()
    try:
        with metrics.AUDIT_SECONDS.time():
            services().audit.append(e)
    except AuditWriteError as exc:
        # Nothing leaves without its audit row: answer 503, never the record.
        log.error("audit write failed: %s", exc, extra={"decision_id": e.decision_id})
        failed = errors.AuditUnavailable()
        body = fastjson.dumps(operation_outcome(failed))
        status, mimetype = failed.status, FHIR_JSON
    audit_ms = round((time.perf_counter() - audit_started) * 1000, 3)
    metrics.REQUESTS.labels(e.action, e.outcome, e.error_code or "").inc()
    for reason in e.reasons:
        metrics.DENY_REASONS.labels(reason).inc()
    ended = time.perf_counter()
    metrics.REQUEST_SECONDS.labels(e.action).observe(ended - access.started)
    # One line per request, keyed on the audit row's decision id. Never the NHS number or
    # record content in the application log.
    log.info(
        "request",
        extra={
            "decision_id": e.decision_id,
            "action": e.action,
            "outcome": e.outcome,
            "status": status,
            "code": e.error_code,
            "policy_revision": e.policy_revision,
            "latency_ms": round((ended - access.started) * 1000, 3),
            "audit_write_ms": audit_ms,
        },
    )
    response = Response(body, status=status, mimetype=mimetype)
    response.headers["X-Decision-Id"] = e.decision_id
    if e.policy_revision:
        response.headers["X-Policy-Revision"] = e.policy_revision
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="lcr-sidecar"'
    response.headers["Cache-Control"] = "no-store"
    return response


def bug(access: Access) -> Response:
    """A bug still fails closed and still leaves its audit row; the traceback goes to the log
    (no record content is in a traceback's locals, which are not logged)."""
    log.exception("unexpected error", extra={"decision_id": access.event.decision_id})
    return finish(access, errors.InternalError())
