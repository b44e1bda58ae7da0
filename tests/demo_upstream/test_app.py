"""The demo upstream's endpoints (Flask test client) and the resident data they serve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from demo_upstream import create_app
from demo_upstream.app import DEFAULT_DATA_DIR
from demo_upstream.errors import DataError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_JSON = "application/fhir+json"

# docs/sections.md, most restrictive first.
PRECEDENCE = [
    "mental_health",
    "endoscopy",
    "additional_gp_reports",
    "gp_records",
    "clinical_correspondence",
    "clinical_document_reports",
    "community_information",
    "discharge_summaries",
    "maternity",
    "social_care",
    "letters",
    "care_plans",
    "progress_notes",
    "referrals",
    "lab_results",
    "vital_signs",
    "social_history",
    "diagnoses",
    "allergies",
    "family_history",
    "issued_medications",
    "medications",
    "procedures",
    "alerts",
    "appointments",
    "visits_encounters",
]


@pytest.fixture
def client() -> Any:
    return create_app({"TESTING": True}).test_client()


def get(client: Any, url: str, status: int = 200) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == FHIR_JSON
    return json.loads(response.get_data(as_text=True))


def ids(bundle: dict[str, Any]) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])]


def all_pages(client: Any, url: str) -> list[dict[str, Any]]:
    """Every page of a paged searchset, following `next` links (paths on this server)."""
    pages = [get(client, url)]
    while nexts := [link["url"] for link in pages[-1]["link"] if link["relation"] == "next"]:
        assert len(pages) < 100, "the pages do not end"
        pages.append(get(client, nexts[0].removeprefix("http://localhost")))
    return pages


def all_entries(client: Any, url: str) -> dict[str, Any]:
    """The pages of a searchset as one Bundle: page 1's fields, every page's entries."""
    pages = all_pages(client, url)
    return {**pages[0], "entry": [e for page in pages for e in page.get("entry", [])]}


def file_resources() -> dict[str, list[dict[str, Any]]]:
    """Resources per resident file, straight from the JSON (not through the server)."""
    return {
        path.name: [e["resource"] for e in json.loads(path.read_text())["entry"]]
        for path in sorted(DEFAULT_DATA_DIR.glob("*.json"))
    }


def keys_of(resources: list[dict[str, Any]]) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in resources}


def expected_sections() -> dict[str, dict[str, Any]]:
    return json.loads((FIXTURES / "expected_sections.json").read_text())


def mod11_valid(number: str) -> bool:
    """NHS Data Dictionary Modulus 11, written out again here so the test does not trust the code."""
    if len(number) != 10 or not number.isdigit():
        return False
    total = sum(int(digit) * weight for digit, weight in zip(number[:9], range(10, 1, -1), strict=False))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(number[9])


# --- metadata ---------------------------------------------------------------------------


def test_metadata_is_a_capability_statement(client: Any) -> None:
    body = get(client, "/fhir/metadata")
    assert body["resourceType"] == "CapabilityStatement"
    assert body["fhirVersion"] == "4.0.1"
    patient = body["rest"][0]["resource"][0]
    assert {p["name"] for p in patient["searchParam"]} == {"identifier", "birthdate", "_id"}
    assert [op["name"] for op in patient["operation"]] == ["everything"]


# --- search -----------------------------------------------------------------------------


def search_url(*params: tuple[str, str]) -> str:
    return "/fhir/Patient?" + "&".join(f"{k}={v}" for k, v in params)


def nhs(number: str) -> tuple[str, str]:
    return ("identifier", f"{NHS}|{number}")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param([nhs("9990000018"), ("birthdate", "1938-04-12")], ["mthompson"], id="nhs-and-dob"),
        pytest.param([nhs("9990000018"), ("birthdate", "1938-04-13")], [], id="wrong-dob"),
        pytest.param([nhs("9990000019"), ("birthdate", "1938-04-12")], [], id="wrong-nhs-number"),
        pytest.param([nhs("9990000026"), ("birthdate", "1938-04-12")], [], id="another-residents-dob"),
        pytest.param(
            [nhs("9990000018"), ("birthdate", "1938-04")], ["mthompson"], id="full-date-inside-searched-month"
        ),
        pytest.param([nhs("9990000018"), ("birthdate", "1938")], ["mthompson"], id="full-date-inside-searched-year"),
        pytest.param([nhs("9990000018"), ("birthdate", "eq1938-04-12")], ["mthompson"], id="explicit-eq"),
        pytest.param(
            [nhs("9990000034"), ("birthdate", "1941-07-15")], [], id="partial-stored-date-never-matches-a-day"
        ),
        pytest.param([nhs("9990000034"), ("birthdate", "1941-07-01")], [], id="partial-stored-date-first-of-month"),
        pytest.param(
            [nhs("9990000042"), ("birthdate", "1950-01-20")], ["fexample-a", "fexample-b"], id="duplicate-registration"
        ),
        pytest.param([nhs("9990000050"), ("birthdate", "1936-09-30")], ["whughes"], id="walter"),
        pytest.param([nhs("9990000026")], ["abennett"], id="identifier-alone"),
        pytest.param([("birthdate", "1945-11-02")], ["abennett"], id="birthdate-alone"),
        pytest.param([("identifier", "9990000018")], ["mthompson"], id="identifier-value-any-system"),
        pytest.param([("identifier", "|9990000018")], [], id="identifier-without-system-only"),
        pytest.param([("identifier", "https://example.org/other|9990000018")], [], id="identifier-other-system"),
        pytest.param(
            [("identifier", f"{NHS}|")],
            ["mthompson", "abennett", "eclarke", "fexample-a", "fexample-b", "whughes"],
            id="identifier-any-value-in-system",
        ),
        pytest.param([("birthdate", "1938-04-12,1945-11-02")], ["mthompson", "abennett"], id="comma-is-or"),
        pytest.param([("birthdate", "ge1940"), ("birthdate", "lt1946")], ["abennett", "eclarke"], id="repeat-is-and"),
        pytest.param([("birthdate", "lt1937")], ["whughes"], id="prefix-lt"),
        pytest.param([("birthdate", "gt1949-12-31")], ["fexample-a", "fexample-b"], id="prefix-gt"),
        pytest.param([("birthdate", "le1938-04-12")], ["mthompson", "whughes"], id="prefix-le"),
        pytest.param([("birthdate", "ne1950-01-20"), ("birthdate", "ge1941")], ["abennett", "eclarke"], id="prefix-ne"),
        pytest.param([("_id", "whughes")], ["whughes"], id="by-id"),
        pytest.param([nhs("9990000018"), ("birthdate", "")], ["mthompson"], id="empty-value-ignored"),
    ],
)
def test_search(client: Any, params: list[tuple[str, str]], expected: list[str]) -> None:
    body = get(client, search_url(*params))
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "searchset"
    assert body["total"] == len(expected)
    assert ids(body) == [f"Patient/{pid}" for pid in expected]


def test_partial_birthdate_matches_only_a_search_as_coarse_as_itself(client: Any) -> None:
    # FHIR eq: the stored range (all of July 1941) lies inside a search for July 1941 or for
    # 1941. The sidecar searches with a validated full date only, so Edith never loads.
    assert ids(get(client, search_url(nhs("9990000034"), ("birthdate", "1941-07")))) == ["Patient/eclarke"]
    assert ids(get(client, search_url(nhs("9990000034"), ("birthdate", "1941")))) == ["Patient/eclarke"]
    for day in range(1, 32):
        assert get(client, search_url(nhs("9990000034"), ("birthdate", f"1941-07-{day:02d}")))["total"] == 0


def test_search_bundle_shape(client: Any) -> None:
    body = get(client, search_url(nhs("9990000018"), ("birthdate", "1938-04-12")))
    [entry] = body["entry"]
    assert entry["fullUrl"] == "http://localhost/fhir/Patient/mthompson"
    assert entry["search"] == {"mode": "match"}
    assert entry["resource"]["birthDate"] == "1938-04-12"
    [link] = body["link"]
    assert link["relation"] == "self" and "/fhir/Patient?" in link["url"]
    assert body["id"] and body["meta"]["lastUpdated"].endswith("Z")


def test_empty_search_has_no_entry(client: Any) -> None:
    body = get(client, search_url(nhs("9990000034"), ("birthdate", "1941-07-15")))
    assert body["total"] == 0
    assert "entry" not in body  # as HAPI answers: clients must not assume `entry` exists


@pytest.mark.parametrize(
    ("query", "diagnostic"),
    [
        pytest.param("name=Thompson", 'Unknown search parameter "name"', id="unknown-parameter"),
        pytest.param("nhs=9990000018", 'Unknown search parameter "nhs"', id="unknown-parameter-2"),
        pytest.param("_count=x", 'Invalid _count value "x"', id="count-not-a-number"),
        pytest.param("_count=-1", 'Invalid _count value "-1"', id="count-negative"),
        pytest.param(f"identifier:exact={NHS}|9990000018", "modifier", id="modifier"),
        pytest.param("birthdate=12/04/1938", "Invalid date/time format", id="not-a-date"),
        pytest.param("birthdate=1938-02-30", "Invalid date/time format", id="impossible-date"),
        pytest.param("birthdate=sa1938", 'prefix "sa"', id="unsupported-prefix"),
    ],
)
def test_bad_search_is_400_operation_outcome(client: Any, query: str, diagnostic: str) -> None:
    body = get(client, f"/fhir/Patient?{query}", status=400)
    assert body["resourceType"] == "OperationOutcome"
    [issue] = body["issue"]
    assert issue["severity"] == "error"
    assert diagnostic in issue["diagnostics"]


# --- read -------------------------------------------------------------------------------


def test_read_patient(client: Any) -> None:
    body = get(client, "/fhir/Patient/mthompson")
    assert body["resourceType"] == "Patient"
    assert body["identifier"] == [{"system": NHS, "value": "9990000018"}]


@pytest.mark.parametrize("url", ["/fhir/Patient/nobody", "/fhir/Patient/nobody/$everything"])
def test_unknown_patient_is_404_operation_outcome(client: Any, url: str) -> None:
    body = get(client, url, status=404)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "not-found"
    assert "Patient/nobody" in body["issue"][0]["diagnostics"]


# --- $everything ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patient_id", "file_name"),
    [
        ("mthompson", "9990000018-margaret-thompson.json"),
        ("abennett", "9990000026-arthur-bennett.json"),
        ("eclarke", "9990000034-edith-clarke.json"),
        ("whughes", "9990000050-walter-hughes.json"),
    ],
)
def test_everything_returns_exactly_the_residents_file(client: Any, patient_id: str, file_name: str) -> None:
    body = all_entries(client, f"/fhir/Patient/{patient_id}/$everything")
    assert body["type"] == "searchset"
    assert body["total"] == len(body["entry"])
    assert ids(body)[0] == f"Patient/{patient_id}"
    assert set(ids(body)) == keys_of(file_resources()[file_name])
    assert len(ids(body)) == len(set(ids(body)))


def test_everything_marks_compartment_match_and_referenced_include(client: Any) -> None:
    body = all_entries(client, "/fhir/Patient/mthompson/$everything")
    modes = {key: e["search"]["mode"] for key, e in zip(ids(body), body["entry"], strict=False)}
    assert modes["Patient/mthompson"] == "match"
    assert modes["Condition/mt-cond-depression"] == "match"
    assert modes["Appointment/mt-appt-clinic"] == "match"  # via participant.actor, not subject
    assert modes["Immunization/mt-imm-flu"] == "match"  # via patient
    assert modes["Organization/org-riverside"] == "include"
    assert modes["Practitioner/prac-alex-sample"] == "include"
    assert modes["Medication/mt-med-amlodipine"] == "include"  # referenced by the order and dispense
    assert all(e["fullUrl"].startswith("http://localhost/fhir/") for e in body["entry"])


def test_everything_of_one_duplicate_registration_excludes_the_other(client: Any) -> None:
    assert ids(get(client, "/fhir/Patient/fexample-a/$everything")) == ["Patient/fexample-a", "Flag/fa-flag-falls"]
    assert ids(get(client, "/fhir/Patient/fexample-b/$everything")) == [
        "Patient/fexample-b",
        "Encounter/fb-enc-outpatient",
    ]


# --- anything else ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/"),
        ("GET", "/fhir"),
        ("GET", "/fhir/Observation"),
        ("GET", "/fhir/Observation/mt-obs-bp"),
        ("GET", "/fhir/Patient/mthompson/$export"),
        ("GET", "/fhir/Patient/mthompson/_history"),
        ("POST", "/fhir/Patient"),
        ("PUT", "/fhir/Patient/mthompson"),
        ("DELETE", "/fhir/Patient/mthompson"),
        ("OPTIONS", "/fhir/metadata"),
    ],
)
def test_anything_else_is_404_operation_outcome(client: Any, method: str, url: str) -> None:
    response = client.open(url, method=method)
    assert response.status_code == 404
    assert response.mimetype == FHIR_JSON
    assert response.get_json(force=True)["resourceType"] == "OperationOutcome"


# --- configuration ----------------------------------------------------------------------


def write_bundle(folder: Path, name: str, resources: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    (folder / name).write_text(json.dumps(bundle))


PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"system": NHS, "value": "9434765919"}],
    "birthDate": "1960-01-01",
}


def test_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_bundle(tmp_path, "one.json", [PATIENT])
    monkeypatch.setenv("DEMO_UPSTREAM_DATA_DIR", str(tmp_path))
    client = create_app().test_client()
    assert ids(get(client, search_url(nhs("9434765919")))) == ["Patient/p1"]
    assert get(client, search_url(nhs("9990000018")))["total"] == 0


def test_test_config_overrides_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_bundle(tmp_path / "a", "one.json", [PATIENT])
    monkeypatch.setenv("DEMO_UPSTREAM_DATA_DIR", str(tmp_path / "elsewhere"))
    client = create_app({"DATA_DIR": str(tmp_path / "a")}).test_client()
    assert get(client, "/fhir/Patient/p1")["id"] == "p1"


def test_identical_supporting_resource_in_two_files_is_loaded_once(tmp_path: Path) -> None:
    org = {"resourceType": "Organization", "id": "o1", "name": "Shared"}
    write_bundle(tmp_path, "a.json", [PATIENT, org])
    write_bundle(tmp_path, "b.json", [org])
    create_app({"DATA_DIR": str(tmp_path)})


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param({"a.json": "not json"}, "not readable JSON", id="not-json"),
        pytest.param(
            {"a.json": json.dumps({"resourceType": "Bundle", "type": "searchset"})}, "collection", id="not-a-collection"
        ),
        pytest.param(
            {
                "a.json": json.dumps(
                    {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Flag"}}]}
                )
            },
            "needs a FHIR id",
            id="no-id",
        ),
        pytest.param(
            {
                "a.json": json.dumps(
                    {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": PATIENT}]}
                ),
                "b.json": json.dumps(
                    {
                        "resourceType": "Bundle",
                        "type": "collection",
                        "entry": [{"resource": {**PATIENT, "birthDate": "1961-01-01"}}],
                    }
                ),
            },
            "defined differently",
            id="conflicting-duplicate",
        ),
        pytest.param({}, "no *.json", id="empty-folder"),
    ],
)
def test_bad_data_stops_startup(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=message.replace("*", r"\*")):
        create_app({"DATA_DIR": str(tmp_path)})


def test_missing_data_dir_stops_startup(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a directory"):
        create_app({"DATA_DIR": str(tmp_path / "missing")})


# --- the resident data ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("9990000018", True),
        ("9434765919", True),
        ("9876543210", True),
        ("4010232137", True),
        ("1234567890", False),
        ("9991234560", False),
        ("9876544321", False),
        ("0000000001", False),
        ("999000001", False),
    ],
)
def test_mod11_checker_agrees_with_known_examples(number: str, valid: bool) -> None:
    assert mod11_valid(number) is valid


def test_every_nhs_number_in_the_data_is_valid_and_synthetic() -> None:
    numbers = [
        ident["value"]
        for resources in file_resources().values()
        for r in resources
        if r["resourceType"] == "Patient"
        for ident in r.get("identifier", [])
        if ident.get("system") == NHS
    ]
    assert sorted(set(numbers)) == ["9990000018", "9990000026", "9990000034", "9990000042", "9990000050"]
    for number in numbers:
        assert number.startswith("999") and mod11_valid(number), number


def test_every_reference_in_the_data_resolves() -> None:
    everything = {key for resources in file_resources().values() for key in keys_of(resources)}
    for resources in file_resources().values():
        for resource in resources:
            for ref in _references(resource):
                assert ref in everything, f"{resource['resourceType']}/{resource['id']} → {ref}"


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for item in node for r in _references(item)]
    return []


def test_expected_sections_covers_every_resource_exactly_once() -> None:
    all_keys = [key for resources in file_resources().values() for key in sorted(keys_of(resources))]
    assert len(all_keys) == len(set(all_keys)), "resource ids must be unique across resident files"
    assert set(expected_sections()) == set(all_keys)


def test_expected_sections_are_consistent_with_the_precedence() -> None:
    for key, expected in expected_sections().items():
        sections, primary = expected["sections"], expected["primary"]
        assert sections == sorted(sections, key=PRECEDENCE.index), key
        if key.startswith("Patient/"):
            assert (sections, primary) == ([], "patient"), key
        elif sections:
            assert primary == sections[0], key
        elif key.split("/")[0] in {"Organization", "Practitioner", "PractitionerRole", "Location"}:
            assert primary == "supporting", key  # shown only with what references it
        else:
            assert primary is None, key


def sections_of(client: Any, patient_id: str) -> set[str]:
    table = expected_sections()
    return {
        s for key in ids(all_entries(client, f"/fhir/Patient/{patient_id}/$everything")) for s in table[key]["sections"]
    }


def test_margaret_has_every_section(client: Any) -> None:
    assert sections_of(client, "mthompson") == set(PRECEDENCE)
    assert len(PRECEDENCE) == 26


def test_margaret_has_unclassified_resources_that_must_be_withheld(client: Any) -> None:
    table = expected_sections()
    record = ids(all_entries(client, "/fhir/Patient/mthompson/$everything"))
    unclassified = {key for key in record if table[key]["primary"] is None}
    assert {"Observation/mt-obs-nocat", "DocumentReference/mt-doc-unknown"} <= unclassified


def test_arthur_has_no_mental_health_or_gp_data(client: Any) -> None:
    assert sections_of(client, "abennett") == {
        "alerts",
        "appointments",
        "visits_encounters",
        "allergies",
        "vital_signs",
        "medications",
    }


def test_walter_has_mental_health_and_gp_documents(client: Any) -> None:
    assert {"mental_health", "additional_gp_reports", "gp_records", "diagnoses", "alerts"} <= sections_of(
        client, "whughes"
    )
