"""Exports: JSON Lines, CSV and FHIR R4 AuditEvent (IHE BALP), streamed."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from audit_store import export, queries
from audit_store.cli import cli


def count(db) -> int:
    return queries.count(db)


def test_jsonl_is_one_complete_row_per_line(synthetic_log):
    out = io.StringIO()
    n = export.write_jsonl(queries.iter_rows(synthetic_log), out)
    lines = out.getvalue().splitlines()
    assert n == len(lines) == count(synthetic_log)
    row = json.loads(lines[0])
    assert row["seq"] == 1 and set(queries.DETAIL_FIELDS) == set(row)
    assert isinstance(row["sections_requested"], list)


def test_csv_round_trips(synthetic_log):
    out = io.StringIO()
    export.write_csv(queries.iter_rows(synthetic_log, queries.Filters.make(outcome="denied")), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows and all(r["outcome"] == "denied" for r in rows)
    assert json.loads(rows[0]["reasons"])


@pytest.mark.parametrize(
    "outcome, status, code",
    [
        ("allowed", 200, "0"),
        ("denied", 403, "4"),
        ("no-matching-record", 404, "4"),
        ("unauthenticated", 401, "4"),
        ("invalid-request", 400, "4"),
        ("failed", 503, "8"),
        ("failed", 502, "8"),
        ("failed", 500, "12"),
    ],
)
def test_fhir_outcome_codes(outcome, status, code):
    assert export.fhir_outcome({"outcome": outcome, "http_status": status}) == code


def test_fhir_audit_event_follows_balp_patient_read(synthetic_log):
    row = next(
        r for r in queries.iter_rows(synthetic_log) if r["outcome"] == "allowed" and r["action"] == "record.read"
    )
    event = export.to_fhir(row)
    assert event["resourceType"] == "AuditEvent" and event["id"] == row["decision_id"]
    assert event["type"]["code"] == "rest" and event["subtype"][0]["code"] == "read" and event["action"] == "R"
    assert event["recorded"] == row["time"] and event["outcome"] == "0"
    user = event["agent"][0]
    assert user["requestor"] is True and user["type"]["coding"][0]["code"] == "IRCP"
    assert user["who"]["identifier"]["value"] == row["subject_id"]
    assert user["role"][0]["text"] == row["access_level"]
    assert user["purposeOfUse"][0]["coding"][0]["code"] == "TREAT"
    org = event["agent"][1]
    assert org["who"]["identifier"] == {
        "system": "https://fhir.nhs.uk/Id/ods-organization-code",
        "value": row["care_service"],
    }
    patient = event["entity"][0]
    assert patient["what"]["identifier"] == {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": row["nhs_number"]}
    assert patient["type"]["code"] == "1" and patient["role"]["code"] == "1"
    transaction = event["entity"][-1]
    assert transaction["type"]["code"] == "XrequestId"
    assert transaction["what"]["identifier"]["value"] == f"urn:uuid:{row['decision_id']}"
    details = {d["type"]: d["valueString"] for d in event["entity"][1]["detail"]}
    assert json.loads(details["sections_returned"]) == row["sections_returned"]
    assert details["policy_revision"] == row["policy_revision"]


def test_fhir_for_a_request_that_never_got_an_identity():
    event = export.to_fhir(
        {
            "decision_id": "d",
            "time": "t",
            "action": "record.read",
            "outcome": "unauthenticated",
            "http_status": 401,
            "error_code": "token-expired",
        }
    )
    assert event["outcome"] == "4" and "token-expired" in event["outcomeDesc"]
    assert event["agent"][0]["who"] == {"display": "unauthenticated caller"}
    assert event["meta"]["profile"][0].endswith("IHE.BasicAudit.Read")


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "fhir"])
def test_cli_export(synthetic_log, tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    result = CliRunner().invoke(
        cli, ["export", "--db", str(synthetic_log), "--format", fmt, "-o", str(out), "--service", "VM101"]
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    expected = sum(1 for r in queries.iter_rows(synthetic_log) if r["care_service"] == "VM101")
    assert len(text.splitlines()) == expected + (1 if fmt == "csv" else 0)
    if fmt == "fhir":
        assert all(json.loads(line)["resourceType"] == "AuditEvent" for line in text.splitlines())
