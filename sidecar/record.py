"""The care app's two endpoints, each one linear pipeline.

record: verify caller → validate identifiers → ready? → decide → fetch → redact → audit → respond
menu:   verify caller → validate identifiers → ready? → decide → match   →          audit → respond

Every step is a named function that returns what it established or raises an `LcrError`
(the shared ones are in `steps.py`); `pipeline.dispatch` gives each request its decision
id and writes the audit row on every path: no row, no response content.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from . import errors, redact
from .identifiers import PatientIdentifiers
from .pipeline import FHIR_JSON, Access, Answer, dispatch, services
from .policy import Decision
from .steps import check_ready, decide, validate_identifiers, verify_caller
from .upstream import FetchedRecord

bp = Blueprint("record", __name__)


# -- the endpoints ---------------------------------------------------------------------


@bp.post("/v1/record", provide_automatic_options=False)
def record() -> Response:
    return dispatch("record.read", read_record)


@bp.post("/v1/menu", provide_automatic_options=False)
def menu() -> Response:
    return dispatch("menu.read", read_menu)


def read_record(access: Access) -> Answer:
    subject = verify_caller(access)
    asked = validate_identifiers(access)
    check_ready()
    decision = decide(access, subject, asked)
    fetched, patient_id = fetch(asked.patient)
    return Answer(redact_record(access, decision, asked.patient, fetched, patient_id), mimetype=FHIR_JSON)


def read_menu(access: Access) -> Answer:
    subject = verify_caller(access)
    asked = validate_identifiers(access)
    check_ready()
    try:
        decision = decide(access, subject, asked)
        services().upstream.find_patient(asked.patient)
    except errors.TokenPatientMismatch:
        raise  # not an answer about this resident: a refused request
    except (errors.AccessDenied, errors.NoMatchingRecord) as error:
        # The menu's question has an ordinary answer here: do not show the record.
        body = {"record_available": False, "sections": [], "reason": error.code}
        return Answer(body, outcome=error.outcome, code=error.code)
    return Answer({"record_available": True, "sections": decision.sections})


# -- the record's own steps -------------------------------------------------------------


def fetch(patient: PatientIdentifiers) -> tuple[FetchedRecord, str]:
    upstream = services().upstream
    deadline = upstream.start_deadline()  # one deadline for the search and every page of the record
    found = upstream.find_patient(patient, deadline=deadline)
    return upstream.everything(found["id"], patient, deadline=deadline), found["id"]


def redact_record(
    access: Access, decision: Decision, patient: PatientIdentifiers, record: FetchedRecord, patient_id: str
) -> dict[str, Any]:
    upstream = services().upstream
    classification = services().policy.classify(
        decision,
        {"id": patient_id, "nhs_number": patient.nhs_number},
        record.resources,
        record.full_urls,
        upstream.base_url,
    )
    redacted = redact.apply(record.resources, classification, record.full_urls)
    access.event.sections_returned = redacted.counts
    access.event.resources_returned = len(redacted.resources)
    access.event.resources_withheld = redacted.withheld
    return redact.record_bundle(redacted, upstream.base_url)
