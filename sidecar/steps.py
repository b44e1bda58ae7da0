"""The steps every care-app endpoint starts with, each returning what it established.

verify caller → validate identifiers → ready? → decide

Each step also writes what it established into the request's audit row (`access.event`),
or raises an `LcrError`; `pipeline.dispatch` turns either into the response.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import zoneinfo
from dataclasses import dataclass
from typing import Any

from flask import current_app, request

from audit_store import AuditWriteError
from audit_store.events import utc_timestamp

from . import errors, fastjson, identifiers, metrics, tokens
from .identifiers import PatientIdentifiers
from .pipeline import Access, services
from .policy import Decision

log = logging.getLogger("lcr.sidecar")

LONDON = zoneinfo.ZoneInfo("Europe/London")


@dataclass(frozen=True)
class Asked:
    """What the request body asks about, validated."""

    patient: PatientIdentifiers
    sections: list[str]  # sorted, no repeats
    body: dict[str, Any]  # the whole body, for an endpoint's own fields


def verify_caller(access: Access) -> dict[str, Any]:
    """The verified token claims (the decision's `input.subject`)."""
    subject = services().tokens.verify(request.headers.get("Authorization"))
    e = access.event
    e.subject_id = subject.get("sub")
    e.subject_name = subject.get("name")
    e.care_service = subject.get("requesting_organization")
    e.access_level = subject.get("lcr_access_level")
    e.reason_for_request = subject.get("reason_for_request")
    return subject


def validate_identifiers(access: Access) -> Asked:
    body = json_body()
    config = current_app.config
    nhs_number = identifiers.parse_nhs_number(body.get("nhs_number"))
    access.event.nhs_number = nhs_number
    dob = identifiers.parse_dob(body.get("dob"), dt.date.today(), config["DOB_MAX_AGE_YEARS"])
    sections = body.get("sections", [])
    if (
        not isinstance(sections, list)
        or not all(isinstance(s, str) and 0 < len(s) <= 64 for s in sections)
        or len(sections) > 64
    ):
        raise errors.SectionsInvalid()
    requested = sorted(set(sections))
    access.event.sections_requested = requested
    return Asked(PatientIdentifiers(nhs_number, dob), requested, body)


def check_ready() -> None:
    """Fail closed while OPA, its bundle or the audit store is not fit to decide."""
    svc = services()
    verdict = svc.readiness.cached()
    if not verdict.ready:
        # Recovery is seen at once, not a refresh later. While OPA's circuit is open there
        # is nothing to wait for: the check is started, the answer is the current verdict.
        wait = 0.0 if svc.policy.breaker.is_open else current_app.config["READINESS_RECHECK_WAIT_SECONDS"]
        verdict = svc.readiness.recheck(wait)
    if verdict.error is not None:
        raise verdict.error()


def decide(access: Access, subject: dict[str, Any], asked: Asked) -> Decision:
    """The policy's decision; refuses (`AccessDenied`, `TokenPatientMismatch`) unless it allows."""
    requested = tokens.requested_nhs_number(subject)
    e = access.event
    opa_input = {
        "subject": subject,
        "patient": asked.patient.as_input(),
        "requested_record": {"nhs_number": requested} if requested else None,
        "action": e.action,
        "sections": asked.sections,
        "request": {
            "id": e.decision_id,
            "time": e.time,
            # The day in London, which the roster's dates are in (the time alone would make
            # every decision's input distinct, and replay could share no evaluation).
            "date": london_date(e.time),
            "client": e.client,
            "purpose": subject.get("reason_for_request"),
        },
        "history": history(access),
    }
    e.opa_input = opa_input
    decision = services().policy.decide(opa_input)
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
    return decision


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
    window = current_app.config["HISTORY_WINDOW_SECONDS"]
    now = dt.datetime.fromisoformat(access.event.time.replace("Z", "+00:00"))
    since = utc_timestamp(now - dt.timedelta(seconds=window))
    try:
        counts = services().audit.recent_activity(str(access.event.subject_id), since)
    except (sqlite3.Error, AuditWriteError) as exc:  # AuditWriteError: PostgreSQL did not answer
        log.error("audit history unreadable: %s", type(exc).__name__, extra={"decision_id": access.event.decision_id})
        raise errors.AuditUnavailable() from None
    return {"window_seconds": window, "since": since, **counts}


def shadow(access: Access, opa_input: dict[str, Any], decision: Decision) -> None:
    """Ask the candidate policy the same question and record where it differs; never enforced."""
    candidate = services().shadow
    if candidate is None:
        return
    try:
        other = candidate.decide(opa_input)
    except errors.LcrError:
        metrics.SHADOW_ERRORS.inc()  # a broken candidate must not touch live traffic
        return
    e = access.event
    e.shadow_revision, e.shadow_result = other.revision, other.result
    e.shadow_diverged = int(
        (other.allow, other.sections, other.reasons) != (decision.allow, decision.sections, decision.reasons)
    )
    if e.shadow_diverged:
        metrics.SHADOW_DIVERGED.inc()


def json_body() -> dict[str, Any]:
    """The request body: a JSON object of at most MAX_BODY_BYTES."""
    limit = current_app.config["MAX_BODY_BYTES"]
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
