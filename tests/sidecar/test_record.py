"""The record fetch end to end: real OPA (built bundle), demo upstream over HTTP, SQLite audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from ..fhir_pages import all_entries, references
from ..seed_table import ALL_SECTIONS, DUPLICATE, FULL, LEVELS, PARTIAL_DOB, SMALL
from ..tokens import bound_to

EXPECTED = json.loads((Path(__file__).parent.parent / "fixtures" / "expected_sections.json").read_text())


def fetch(client: Any, token: str | None, body: Any, path: str = "/v1/record") -> Any:
    if token and isinstance(body, dict):
        token = bound_to(token, body.get("nhs_number"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(path, json=body, headers=headers)


def returned(response: Any) -> list[dict[str, Any]]:
    return [e["resource"] for e in response.get_json()["entry"]]


def key(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def upstream_record(upstream: Any, patient: dict[str, str]) -> list[dict[str, Any]]:
    """The whole record as the LCR holds it, read straight from the demo upstream (every page)."""
    search = requests.get(
        f"{upstream.url}/fhir/Patient",
        params={
            "identifier": f"https://fhir.nhs.uk/Id/nhs-number|{patient['nhs_number']}",
            "birthdate": patient["dob"],
        },
        timeout=5,
    ).json()
    patient_id = search["entry"][0]["resource"]["id"]
    return [e["resource"] for e in all_entries(f"{upstream.url}/fhir/Patient/{patient_id}/$everything")]


@pytest.mark.parametrize("level", ["admin", "senior_carer", "registered_manager"])
def test_each_level_sees_exactly_its_sections(client, token, audit_rows, upstream, level):
    response = fetch(client, token(level), FULL)
    assert response.status_code == 200, response.get_json()
    allowed = LEVELS[level]
    shown = {key(r) for r in returned(response)}
    # Exactly the resources whose every section is allowed (plus the resident's header), and
    # the supporting resources (organisations, practitioners) that those reference.
    record = upstream_record(upstream, FULL)
    visible = [
        r
        for r in record
        if EXPECTED[key(r)]["primary"] == "patient"
        or (EXPECTED[key(r)]["primary"] not in (None, "supporting") and set(EXPECTED[key(r)]["sections"]) <= allowed)
    ]
    referenced = set().union(*(references(r) for r in visible))
    supporting = {key(r) for r in record if EXPECTED[key(r)]["primary"] == "supporting" and key(r) in referenced}
    assert shown == {key(r) for r in visible} | supporting
    row = audit_rows()[-1]
    counts = json.loads(row["sections_returned"])
    assert set(counts) - {"patient", "supporting"} == set(allowed), (
        "each allowed section has content in the full record"
    )
    assert counts["patient"] == 1
    assert row["outcome"] == "allowed" and row["http_status"] == 200
    assert row["resources_returned"] == len(shown)
    assert response.headers["X-Policy-Revision"] == row["policy_revision"]


@pytest.mark.parametrize("level", sorted(LEVELS))
@pytest.mark.parametrize("section", sorted(ALL_SECTIONS))
def test_matrix_level_by_section(client, token, level, section, audit_rows):
    """Each access level × each section category: exactly the seed's table."""
    response = fetch(client, token(level), {**FULL, "sections": [section]})
    row = audit_rows()[-1]
    if section in LEVELS[level]:
        assert response.status_code == 200
        resources = [r for r in returned(response) if EXPECTED[key(r)]["primary"] not in ("patient", "supporting")]
        assert resources, f"the full record has {section} content"
        for resource in resources:
            sections = set(EXPECTED[key(resource)]["sections"])
            assert section in sections and sections <= LEVELS[level], key(resource)
    else:
        assert response.status_code == 403
        assert response.get_json()["resourceType"] == "OperationOutcome"
        assert row["outcome"] == "denied" and row["resources_returned"] == 0


def test_no_access_is_denied_with_reason(client, token, audit_rows):
    response = fetch(client, token("no_access"), FULL)
    assert response.status_code == 403
    assert _code(response) == "access-denied"
    assert "reason:access_level_no_access" in response.get_json()["issue"][0]["expression"]
    assert json.loads(audit_rows()[-1]["reasons"]) == ["access_level_no_access"]


def test_response_hides_whether_withheld_sections_exist(client, token):
    """A senior carer gets the same response shape whether or not mental-health data exists."""
    with_mh = fetch(client, token("senior_carer"), FULL).get_json()
    without_mh = fetch(client, token("senior_carer"), SMALL).get_json()
    for bundle in (with_mh, without_mh):
        assert bundle["meta"]["security"][0]["code"] == "REDACTED"
        assert bundle["total"] == len(bundle["entry"])
        assert set(bundle) == {"resourceType", "id", "meta", "type", "total", "entry"}
    text = json.dumps(with_mh)
    for label in ('"PSY"', '"MH"', "74732009", "35489007", "736253002"):
        assert label not in text


@pytest.mark.parametrize(
    "patient",
    [
        pytest.param(PARTIAL_DOB, id="partial-birth-date-upstream"),
        pytest.param(DUPLICATE, id="two-matches"),
        pytest.param({"nhs_number": "9990000050", "dob": "1936-09-29"}, id="wrong-dob"),
        pytest.param({"nhs_number": "9434765919", "dob": "1938-04-12"}, id="unknown-nhs-number"),
    ],
)
def test_no_single_match_is_one_generic_404(client, token, audit_rows, patient):
    response = fetch(client, token("registered_manager"), patient)
    assert response.status_code == 404
    assert _code(response) == "no-matching-record"
    assert response.get_json()["issue"][0]["diagnostics"] == (
        "No single London Care Record matches this NHS number and date of birth. "
        "Check both against the resident's records."
    )
    row = audit_rows()[-1]
    assert row["outcome"] == "no-matching-record" and row["nhs_number"] == patient["nhs_number"]


@pytest.mark.parametrize(
    "body, code",
    [
        pytest.param({"dob": "1938-04-12"}, "nhs-number-missing", id="nhs-missing"),
        pytest.param({"nhs_number": "9990000018"}, "dob-missing", id="dob-missing"),
        pytest.param({"nhs_number": "1234567890", "dob": "1938-04-12"}, "nhs-number-invalid", id="check-digit-10"),
        pytest.param({"nhs_number": "9876544321", "dob": "1938-04-12"}, "nhs-number-invalid", id="wrong-check"),
        pytest.param({"nhs_number": "99900000", "dob": "1938-04-12"}, "nhs-number-invalid", id="short"),
        pytest.param({"nhs_number": 9990000018, "dob": "1938-04-12"}, "nhs-number-invalid", id="number-not-string"),
        pytest.param({"nhs_number": "9990000018", "dob": "1938-02-30"}, "dob-invalid", id="no-such-date"),
        pytest.param({"nhs_number": "9990000018", "dob": "12/04/1938"}, "dob-invalid", id="not-iso"),
        pytest.param({"nhs_number": "9990000018", "dob": "2999-01-01"}, "dob-in-future", id="future"),
        pytest.param({"nhs_number": "9990000018", "dob": "1850-01-01"}, "dob-implausible", id="too-old"),
        pytest.param({**FULL, "sections": "allergies"}, "sections-invalid", id="sections-not-list"),
        pytest.param([1, 2], "body-invalid", id="body-not-object"),
    ],
)
def test_bad_input_is_400_outcome_and_audited(client, token, audit_rows, body, code):
    response = fetch(client, token("registered_manager"), body)
    assert response.status_code == 400
    assert _code(response) == code
    row = audit_rows()[-1]
    assert (row["outcome"], row["error_code"], row["http_status"]) == ("invalid-request", code, 400)
    assert row["opa_input"] is None  # rejected before any decision


def test_nhs_number_typed_with_spaces_is_accepted(client, token):
    assert fetch(client, token("admin"), {"nhs_number": "999 000 0018", "dob": "1938-04-12"}).status_code == 200
    assert fetch(client, token("admin"), {"nhs_number": "999-000-0018", "dob": "1938-04-12"}).status_code == 200


def test_body_not_json_is_400(client, token, audit_rows):
    response = client.post("/v1/record", data=b"nhs=9990000018", headers={"Authorization": f"Bearer {token('admin')}"})
    assert response.status_code == 400 and _code(response) == "body-invalid"
    assert audit_rows()[-1]["error_code"] == "body-invalid"


def test_oversized_body_is_413(client, token):
    response = client.post(
        "/v1/record", data=b"{" + b" " * 20000 + b"}", headers={"Authorization": f"Bearer {token('admin')}"}
    )
    assert response.status_code == 413 and _code(response) == "payload-too-large"


def test_unknown_section_requested_is_denied(client, token, audit_rows):
    response = fetch(client, token("registered_manager"), {**FULL, "sections": ["tarot_readings"]})
    assert response.status_code == 403
    assert "section_unknown" in json.loads(audit_rows()[-1]["reasons"])


@pytest.mark.parametrize(
    "org, reason",
    [
        pytest.param("VM201", "care_service_not_residential", id="nursing-home"),
        pytest.param("VM301", "care_service_lcr_not_enabled", id="not-enabled"),
        pytest.param("VM401", "care_service_not_in_london_icb", id="outside-london"),
        pytest.param("ZZ999", "care_service_unknown", id="unknown-service"),
    ],
)
def test_ineligible_care_service_is_denied(client, token, audit_rows, org, reason):
    response = fetch(client, token("registered_manager", org=org), FULL)
    assert response.status_code == 403
    row = audit_rows()[-1]
    assert reason in json.loads(row["reasons"]) and row["care_service"] == org


def test_audit_row_holds_the_decision_and_its_inputs(client, token, audit_rows):
    response = fetch(client, token("senior_carer"), {**FULL, "sections": ["allergies", "alerts"]})
    assert response.status_code == 200
    row = audit_rows()[-1]
    assert row["decision_id"] == response.headers["X-Decision-Id"]
    assert (row["subject_id"], row["care_service"], row["access_level"]) == ("staff-0003", "VM101", "senior_carer")
    assert row["nhs_number"] == "9990000018"
    assert json.loads(row["sections_requested"]) == ["alerts", "allergies"]
    assert json.loads(row["sections_allowed"]) == ["alerts", "allergies"]
    opa_input = json.loads(row["opa_input"])
    assert opa_input["patient"] == {"nhs_number": "9990000018", "dob": "1938-04-12"}
    assert opa_input["subject"]["lcr_access_level"] == "senior_carer"
    assert "token" not in row["opa_input"].lower().replace("reason_for_request", "")
    assert json.loads(row["opa_result"])["allow"] is True
    assert row["latency_ms"] > 0 and row["response_sha256"]
    import hashlib

    assert row["response_sha256"] == hashlib.sha256(response.get_data()).hexdigest()


def test_menu_lists_allowed_sections_when_record_matches(client, token, audit_rows):
    response = fetch(client, token("admin"), FULL, path="/v1/menu")
    assert response.status_code == 200
    assert response.get_json() == {"record_available": True, "sections": sorted(LEVELS["admin"])}
    assert audit_rows()[-1]["action"] == "menu.read"


@pytest.mark.parametrize(
    "level, patient, reason",
    [
        pytest.param("senior_carer", PARTIAL_DOB, "no-matching-record", id="unmatched"),
        pytest.param("no_access", FULL, "access-denied", id="no-access"),
    ],
)
def test_menu_hides_record_when_unavailable(client, token, audit_rows, level, patient, reason):
    response = fetch(client, token(level), patient, path="/v1/menu")
    assert response.status_code == 200
    assert response.get_json() == {"record_available": False, "sections": [], "reason": reason}
    assert audit_rows()[-1]["error_code"] == reason


def _code(response: Any) -> str:
    return response.get_json()["issue"][0]["details"]["coding"][0]["code"]
