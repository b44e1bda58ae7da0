"""The care app's Audit Trail view: who accessed this resident's record, and what they saw.

audit trail: verify caller → validate identifiers → ready? → decide (audit.read) → query → audit → respond

Who may call it, and whether they see every access or only their own care service's,
is policy (`audit_trail` in the bundle data); the read is itself audited.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from flask import Blueprint, Response

from audit_store import AuditWriteError, queries

from . import errors
from .pipeline import Access, Answer, dispatch, services
from .policy import Decision
from .steps import Asked, check_ready, decide, validate_identifiers, verify_caller

bp = Blueprint("audit_trail", __name__)

_FILTERS = ("since", "until", "outcome")
# A date, or a date and time with an optional UTC offset (docs/openapi.yaml says the same).
_WHEN = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?$"
)


@bp.post("/v1/audit-trail", provide_automatic_options=False)
def audit_trail() -> Response:
    return dispatch("audit.read", read_audit_trail)


def read_audit_trail(access: Access) -> Answer:
    subject = verify_caller(access)
    asked = validate_identifiers(access)
    check_ready()
    decision = decide(access, subject, asked)
    return Answer(query_trail(access, subject, asked, decision))


def query_trail(access: Access, subject: dict[str, Any], asked: Asked, decision: Decision) -> dict[str, Any]:
    body = asked.body
    filters: dict[str, Any] = {name: body[name] for name in _FILTERS if name in body}
    for name in ("since", "until"):
        if name in filters and not (isinstance(filters[name], str) and _WHEN.match(filters[name])):
            raise errors.QueryInvalid()
    outcome = filters.get("outcome", "")
    if not (isinstance(outcome, str) or (isinstance(outcome, list) and all(isinstance(o, str) for o in outcome))):
        raise errors.QueryInvalid()
    if decision.audit_scope != "all":
        # Fail closed: any scope other than "all" sees its own care service only.
        filters["care_service"] = subject.get("requesting_organization")
    try:
        page = queries.who_accessed(
            services().audit,
            asked.patient.nhs_number,
            after_seq=_whole(body.get("after_seq")),
            limit=_whole(body.get("limit")) or 100,
            **filters,
        )
    except AuditWriteError:
        # The store did not answer (PostgreSQL unreachable, its pool exhausted): fail closed.
        raise errors.AuditUnavailable() from None
    except (queries.QueryError, TypeError, ValueError, OverflowError, sqlite3.Error):
        # Filters out of any range (year 10000, a seq past SQLite's INTEGER, an object
        # for an outcome) are the caller's to fix, not a server error.
        raise errors.QueryInvalid() from None
    access.event.resources_returned = len(page["rows"])
    return {"nhs_number": asked.patient.nhs_number, "scope": decision.audit_scope, **page}


def _whole(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise errors.QueryInvalid()
    return value
