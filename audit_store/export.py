"""Streaming exports of the decision log: JSON Lines, CSV, and FHIR R4 AuditEvent (NDJSON).

FHIR AuditEvents follow IHE Basic Audit Log Patterns (BALP) for a RESTful read with an
identifiable patient (profile IHE.BasicAudit.PatientRead, plus the user's organisation as
in BALP's comprehensive token profiles):

- `type` rest / `subtype` read, `action` R, `recorded` = the request time;
- `outcome` 0 (allowed), 4 (refused: denied, unauthenticated, invalid, no matching record),
  8 (the service failed: policy, upstream or audit store unavailable), 12 (internal error);
- `agent`: the user (IRCP, requestor; who = staff id from the verified token, role = LCR
  access level, purposeOfUse), their care service (PROV; who = ODS code), the calling
  client (110152, network address) and the sidecar (110153);
- `entity`: the Patient by NHS-number identifier (type 1 / role 1), the record read
  (type 2 / role 4, details: sections allowed and returned, policy revision, response
  hash), and the decision id as BALP's X-Request-Id transaction entity.

NDJSON (one resource per line) is the FHIR bulk-data format: it streams and concatenates.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import IO, Any

from sidecar.identifiers import NHS_NUMBER_SYSTEM

from .queries import DETAIL_FIELDS

ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
STAFF_SYSTEM = "https://lcr-sidecar.example/Id/care-app-staff"  # care-app staff ids (token `sub`)
DECISION_SYSTEM = "urn:ietf:rfc:3986"  # decision ids are UUIDs: urn:uuid:…
SIDECAR = "lcr-sidecar"

BALP_PATIENT_READ = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead"
BALP_READ = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Read"

REFUSED = {"denied", "unauthenticated", "invalid-request", "no-matching-record"}
OUTCOME_TEXT = {"0": "Success", "4": "Minor failure", "8": "Serious failure", "12": "Major failure"}
PURPOSE = {"directcare": ("TREAT", "treatment")}


def fhir_outcome(row: dict[str, Any]) -> str:
    outcome = row.get("outcome")
    if outcome == "allowed":
        return "0"
    if outcome in REFUSED:
        return "4"
    if int(row.get("http_status") or 500) in (502, 503, 504):
        return "8"
    return "12"


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def to_fhir(row: dict[str, Any]) -> dict[str, Any]:
    """One decoded log row → one FHIR R4 AuditEvent resource."""
    outcome = fhir_outcome(row)
    desc = [str(row.get("outcome"))]
    if row.get("error_code"):
        desc.append(str(row["error_code"]))
    if row.get("reasons"):
        desc.append("reasons: " + ", ".join(row["reasons"]))
    user: dict[str, Any] = {
        "type": {
            "coding": [
                _coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP", "information recipient")
            ]
        },
        "requestor": True,
    }
    if row.get("subject_id"):
        user["who"] = {"identifier": {"system": STAFF_SYSTEM, "value": row["subject_id"]}}
        if row.get("subject_name"):
            user["who"]["display"] = row["subject_name"]
            user["name"] = row["subject_name"]
    else:
        user["who"] = {"display": "unauthenticated caller"}
    if row.get("access_level"):
        user["role"] = [
            {
                "coding": [_coding("https://lcr-sidecar.example/CodeSystem/lcr-access-level", row["access_level"])],
                "text": row["access_level"],
            }
        ]
    if row.get("reason_for_request"):
        code = PURPOSE.get(row["reason_for_request"])
        concept: dict[str, Any] = {"text": row["reason_for_request"]}
        if code:
            concept["coding"] = [_coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", *code)]
        user["purposeOfUse"] = [concept]
    agents = [user]
    if row.get("care_service"):
        agents.append(
            {
                "type": {
                    "coding": [
                        _coding("http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PROV", "healthcare provider")
                    ]
                },
                "who": {"identifier": {"system": ODS_SYSTEM, "value": row["care_service"]}},
                "requestor": False,
            }
        )
    client: dict[str, Any] = {
        "type": {"coding": [_coding("http://dicom.nema.org/resources/ontology/DCM", "110152", "Destination Role ID")]},
        "who": {"display": row.get("client") or "unknown"},
        "requestor": False,
    }
    if row.get("client"):
        client["network"] = {"address": row["client"], "type": "2"}
    agents.append(client)
    agents.append(
        {
            "type": {"coding": [_coding("http://dicom.nema.org/resources/ontology/DCM", "110153", "Source Role ID")]},
            "who": {"display": SIDECAR},
            "requestor": False,
        }
    )
    entities: list[dict[str, Any]] = []
    if row.get("nhs_number"):
        entities.append(
            {
                "what": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": row["nhs_number"]}},
                "type": _coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1", "Person"),
                "role": _coding("http://terminology.hl7.org/CodeSystem/object-role", "1", "Patient"),
            }
        )
    details = [
        {"type": "sections_allowed", "valueString": json.dumps(row.get("sections_allowed") or [])},
        {"type": "sections_returned", "valueString": json.dumps(row.get("sections_returned") or {}, sort_keys=True)},
        {"type": "resources_returned", "valueString": str(row.get("resources_returned") or 0)},
        {"type": "resources_withheld", "valueString": str(row.get("resources_withheld") or 0)},
    ]
    for name in ("policy_revision", "response_sha256"):
        if row.get(name):
            details.append({"type": name, "valueString": str(row[name])})
    entities.append(
        {
            "what": {
                "display": "London Care Record" + (" (left-hand menu)" if row.get("action") == "menu.read" else "")
            },
            "type": _coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2", "System Object"),
            "role": _coding("http://terminology.hl7.org/CodeSystem/object-role", "4", "Domain Resource"),
            "detail": details,
        }
    )
    entities.append(
        {
            "what": {"identifier": {"system": DECISION_SYSTEM, "value": f"urn:uuid:{row['decision_id']}"}},
            "type": _coding("https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType", "XrequestId"),
        }
    )
    return {
        "resourceType": "AuditEvent",
        "id": row["decision_id"],
        "meta": {"profile": [BALP_PATIENT_READ if row.get("nhs_number") else BALP_READ]},
        "type": _coding("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "Restful Operation"),
        "subtype": [
            _coding("http://hl7.org/fhir/restful-interaction", "read", "read"),
            _coding("https://lcr-sidecar.example/CodeSystem/audit-action", str(row.get("action"))),
        ],
        "action": "R",
        "recorded": row["time"],
        "outcome": outcome,
        "outcomeDesc": "; ".join(desc),
        "agent": agents,
        "source": {
            "observer": {"display": SIDECAR},
            "type": [_coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")],
        },
        "entity": entities,
    }


def write_jsonl(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    n = 0
    for row in rows:
        out.write(json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n")
        n += 1
    return n


def write_csv(rows: Iterable[dict[str, Any]], out: IO[str], columns: tuple[str, ...] = DETAIL_FIELDS) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    n = 0
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
        n += 1
    return n


def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return "" if value is None else value


def write_fhir(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    n = 0
    for row in rows:
        out.write(json.dumps(to_fhir(row), separators=(",", ":")) + "\n")
        n += 1
    return n


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "fhir": write_fhir}
