"""The care app's two endpoints, each one linear pipeline.

record: verify caller → validate identifiers → ready? → decide → fetch → redact → audit → respond
menu:   verify caller → validate identifiers → ready? → decide → match   →          audit → respond

Every step is a named function that either fills in the `Access` or raises an
`LcrError`. `_finish` is the one place where an outcome becomes a response, and it
writes the audit row first on every path: no row, no response content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import sqlite3
import time
import uuid
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, request

from audit_store import AuditEvent, AuditStore, AuditWriteError

from . import errors, fastjson, identifiers, metrics, redact, tokens
from .identifiers import PatientIdentifiers
from .outcome import operation_outcome
from .policy import Decision, PolicyClient
from .readiness import ReadinessProbe
from .tokens import TokenVerifier
from .upstream import FetchedRecord, FhirUpstream

log = logging.getLogger("lcr.sidecar")
bp = Blueprint("record", __name__)

FHIR_JSON = "application/fhir+json"


@dataclass
class Access:
    """What one request has established so far; becomes the audit row."""

    event: AuditEvent
    started: float
    subject: dict[str, Any] | None = None
    patient: PatientIdentifiers | None = None
    requested: list[str] = field(default_factory=list)
    decision: Decision | None = None
    request_body: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None  # the response's

    @classmethod
    def begin(cls, action: str) -> "Access":
        # The decision id exists before any work, so every path can be audited under it.
        now = dt.datetime.now(dt.timezone.utc)
        event = AuditEvent(
            decision_id=str(uuid.uuid4()),
            time=now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            action=action,
            client=request.remote_addr,
        )
        return cls(event=event, started=time.perf_counter())


# -- the endpoints ---------------------------------------------------------------------


@bp.post("/v1/record", provide_automatic_options=False)
def record() -> Response:
    access = Access.begin("record.read")
    try:
        verify_caller(access)
        validate_identifiers(access)
        check_ready(access)
        decide(access)
        record, patient_id = fetch(access)
        access.body = redact_record(access, record, patient_id)
    except errors.LcrError as error:
        return _finish(access, error)
    except Exception:
        return _bug(access)
    return _finish(access, None)


@bp.post("/v1/menu", provide_automatic_options=False)
def menu() -> Response:
    access = Access.begin("menu.read")
    try:
        verify_caller(access)
        validate_identifiers(access)
        check_ready(access)
        decide(access)
        _services().upstream.find_patient(access.patient)  # type: ignore[arg-type]
        access.body = {"record_available": True, "sections": access.decision.sections}  # type: ignore[union-attr]
    except errors.TokenPatientMismatch as error:
        return _finish(access, error)  # not an answer about this resident: a refused request
    except (errors.AccessDenied, errors.NoMatchingRecord) as error:
        # The menu's question has an ordinary answer here: do not show the record.
        access.body = {"record_available": False, "sections": [], "reason": error.code}
        return _finish(access, None, outcome=error.outcome)
    except errors.LcrError as error:
        return _finish(access, error)
    except Exception:
        return _bug(access)
    return _finish(access, None)


# -- the steps -------------------------------------------------------------------------


def verify_caller(access: Access) -> None:
    subject = _services().tokens.verify(request.headers.get("Authorization"))
    access.subject = subject
    e = access.event
    e.subject_id = subject.get("sub")
    e.subject_name = subject.get("name")
    e.care_service = subject.get("requesting_organization")
    e.access_level = subject.get("lcr_access_level")
    e.reason_for_request = subject.get("reason_for_request")


def validate_identifiers(access: Access) -> None:
    body = access.request_body = _json_body()
    config = current_app.config
    nhs_number = identifiers.parse_nhs_number(body.get("nhs_number"))
    access.event.nhs_number = nhs_number
    dob = identifiers.parse_dob(body.get("dob"), dt.date.today(), int(config["DOB_MAX_AGE_YEARS"]))
    access.patient = PatientIdentifiers(nhs_number, dob)
    sections = body.get("sections", [])
    if not isinstance(sections, list) or not all(isinstance(s, str) and 0 < len(s) <= 64 for s in sections) or len(sections) > 64:
        raise errors.SectionsInvalid()
    access.requested = sorted(set(sections))
    access.event.sections_requested = access.requested


def check_ready(access: Access) -> None:
    """Fail closed while OPA, its bundle or the audit store is not fit to decide."""
    services = _services()
    verdict = services.readiness.cached()
    if not verdict.ready:
        # Recovery is seen at once, not a refresh later. While OPA's circuit is open there
        # is nothing to wait for: the check is started, the answer is the current verdict.
        wait = 0.0 if services.policy.breaker.is_open else float(current_app.config["READINESS_RECHECK_WAIT_SECONDS"])
        verdict = services.readiness.recheck(wait)
    if verdict.error is not None:
        raise verdict.error()


def decide(access: Access) -> None:
    assert access.subject is not None and access.patient is not None
    requested = tokens.requested_nhs_number(access.subject)
    opa_input = {
        "subject": access.subject,
        "patient": access.patient.as_input(),
        "requested_record": {"nhs_number": requested} if requested else None,
        "action": access.event.action,
        "sections": access.requested,
        "request": {
            "id": access.event.decision_id,
            "time": access.event.time,
            # The day in London, which the roster's dates are in (the time alone would make
            # every decision's input distinct, and replay could share no evaluation).
            "date": london_date(access.event.time),
            "client": access.event.client,
            "purpose": access.subject.get("reason_for_request"),
        },
        "history": history(access),
    }
    access.event.opa_input = opa_input
    decision = _services().policy.decide(opa_input)
    access.decision = decision
    e = access.event
    e.policy_revision = decision.revision
    e.opa_result = decision.result
    e.reasons = decision.reasons
    e.sections_allowed = decision.sections
    metrics.observe_revision(decision.revision)
    shadow(access, opa_input, decision)
    if not decision.allow:
        if "token_patient_mismatch" in decision.reasons:
            raise errors.TokenPatientMismatch(decision.reasons)
        raise errors.AccessDenied(decision.reasons)


LONDON = zoneinfo.ZoneInfo("Europe/London")


def london_date(utc_time: str) -> str:
    """The date in London (YYYY-MM-DD) at a UTC ISO 8601 time such as 2026-06-30T23:30:00.000000Z."""
    moment = dt.datetime.fromisoformat(utc_time.replace("Z", "+00:00"))
    return moment.astimezone(LONDON).date().isoformat()


def history(access: Access) -> dict[str, Any]:
    """How the caller's requests ended in the last HISTORY_WINDOW_SECONDS, from the audit store.

    It is part of the decision's input (so the decision replays exactly) and the policy
    reads it for identifier probing; counting is all that happens here.
    Raises errors.AuditUnavailable when the store cannot be read: no history, no decision.
    """
    window = int(current_app.config["HISTORY_WINDOW_SECONDS"])
    now = dt.datetime.fromisoformat(access.event.time.replace("Z", "+00:00"))
    since = (now - dt.timedelta(seconds=window)).isoformat(timespec="microseconds").replace("+00:00", "Z")
    try:
        counts = _services().audit.recent_activity(str(access.event.subject_id), since)
    except sqlite3.Error as exc:
        log.error("audit history unreadable decision_id=%s: %s", access.event.decision_id, type(exc).__name__)
        raise errors.AuditUnavailable() from None
    return {"window_seconds": window, "since": since, **counts}


def shadow(access: Access, opa_input: dict[str, Any], decision: Decision) -> None:
    """Ask the candidate policy the same question and record where it differs; never enforced."""
    candidate = _services().shadow
    if candidate is None:
        return
    try:
        other = candidate.decide(opa_input)
    except errors.LcrError:
        metrics.SHADOW_ERRORS.inc()  # a broken candidate must not touch live traffic
        return
    e = access.event
    e.shadow_revision, e.shadow_result = other.revision, other.result
    e.shadow_diverged = int((other.allow, other.sections, other.reasons) != (decision.allow, decision.sections, decision.reasons))
    if e.shadow_diverged:
        metrics.SHADOW_DIVERGED.inc()


def fetch(access: Access) -> tuple[FetchedRecord, str]:
    assert access.patient is not None
    upstream = _services().upstream
    deadline = upstream.start_deadline()  # one deadline for the search and every page of the record
    patient = upstream.find_patient(access.patient, deadline=deadline)
    return upstream.everything(patient["id"], access.patient, deadline=deadline), patient["id"]


def redact_record(access: Access, record: FetchedRecord, patient_id: str) -> dict[str, Any]:
    assert access.decision is not None and access.patient is not None
    upstream = _services().upstream
    classification = _services().policy.classify(
        access.decision,
        {"id": patient_id, "nhs_number": access.patient.nhs_number},
        record.resources,
        record.full_urls,
        upstream.base_url,
    )
    redacted = redact.apply(record.resources, classification, record.full_urls)
    access.event.sections_returned = redacted.counts
    access.event.resources_returned = len(redacted.resources)
    access.event.resources_withheld = redacted.withheld
    return redact.record_bundle(redacted, _services().upstream.base_url)


# -- the one place outcomes become responses --------------------------------------------


def _finish(access: Access, error: errors.LcrError | None, outcome: str = "allowed") -> Response:
    e = access.event
    if error is None:
        status, payload, mimetype = 200, access.body, (FHIR_JSON if e.action == "record.read" else "application/json")
        e.outcome, e.http_status, e.error_code = outcome, 200, None
        if outcome != "allowed":
            e.error_code = access.body.get("reason") if access.body else None  # type: ignore[union-attr]
    else:
        status, payload, mimetype = error.status, operation_outcome(error), FHIR_JSON
        e.outcome, e.http_status, e.error_code = error.outcome, error.status, error.code
    body = fastjson.dumps(payload)
    e.response_sha256 = hashlib.sha256(body).hexdigest()
    e.latency_ms = round((time.perf_counter() - access.started) * 1000, 3)
    try:
        with metrics.AUDIT_SECONDS.time():
            _services().audit.append(e)
    except AuditWriteError as exc:
        # Nothing leaves without its audit row: answer 503, never the record.
        log.error("audit write failed decision_id=%s: %s", e.decision_id, exc)
        failed = errors.AuditUnavailable()
        body = fastjson.dumps(operation_outcome(failed))
        status, mimetype = failed.status, FHIR_JSON
    metrics.REQUESTS.labels(e.action, e.outcome, e.error_code or "").inc()
    for reason in e.reasons:
        metrics.DENY_REASONS.labels(reason).inc()
    metrics.REQUEST_SECONDS.labels(e.action).observe(time.perf_counter() - access.started)
    # Never the NHS number or record content in the application log.
    log.info("decision_id=%s action=%s outcome=%s status=%s code=%s", e.decision_id, e.action, e.outcome, status, e.error_code)
    response = Response(body, status=status, mimetype=mimetype)
    response.headers["X-Decision-Id"] = e.decision_id
    if e.policy_revision:
        response.headers["X-Policy-Revision"] = e.policy_revision
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="lcr-sidecar"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _bug(access: Access) -> Response:
    # A bug still fails closed and still leaves its audit row; the traceback goes to the
    # log (no record content is in a traceback's locals, which are not logged).
    log.exception("unexpected error decision_id=%s", access.event.decision_id)
    return _finish(access, errors.InternalError())


def audited_error(action: str, error: errors.LcrError, allow: list[str] | None = None) -> Response:
    """For requests that never reached an endpoint (unknown route, wrong method)."""
    response = _finish(Access.begin(action), error)
    if allow:
        response.headers["Allow"] = ", ".join(sorted(allow))
    return response


def _json_body() -> dict[str, Any]:
    limit = int(current_app.config["MAX_BODY_BYTES"])
    if (request.content_length or 0) > limit:
        raise errors.PayloadTooLarge()
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise errors.PayloadTooLarge()
    try:
        body = fastjson.loads(raw)
    except ValueError:  # including nesting deeper than 1024
        raise errors.InvalidRequest() from None
    if not isinstance(body, dict):
        raise errors.InvalidRequest()
    return body


@dataclass(frozen=True)
class Services:
    tokens: TokenVerifier
    policy: PolicyClient
    upstream: FhirUpstream
    audit: AuditStore
    readiness: ReadinessProbe
    shadow: PolicyClient | None

    def close(self) -> None:
        self.readiness.close()
        if self.shadow:
            self.shadow.close()
        self.policy.close()
        self.upstream.close()
        self.audit.close()


def _services() -> Services:
    return current_app.extensions["lcr"]  # type: ignore[no-any-return]


