"""The record path against a real FHIR server: HAPI FHIR pages `$everything` 20 entries at a
time, and the sidecar must show each caller the same record from it as from the demo upstream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from ..seed_table import DUPLICATE, FULL, LEVELS, PARTIAL_DOB, SMALL
from ..tokens import bound_to
from .conftest import RESIDENTS, resident_files

EXPECTED = json.loads((Path(__file__).parent.parent / "fixtures" / "expected_sections.json").read_text())

#: Supporting resources: shown or not by their own rules, never one of the resident's own.
SUPPORTING = {"Organization", "Practitioner", "PractitionerRole", "Location", "HealthcareService", "Device"}

#: Each demo resident: their file, the identifiers the care app sends, and what an allowed
#: level gets back (404: no single record matches both identifiers).
RESIDENT_REQUESTS = [
    pytest.param("9990000018-margaret-thompson.json", FULL, 200, id="margaret"),
    pytest.param("9990000026-arthur-bennett.json", SMALL, 200, id="arthur"),
    pytest.param("9990000034-edith-clarke.json", PARTIAL_DOB, 404, id="edith-partial-dob"),
    pytest.param("9990000042-florence-example-duplicate.json", DUPLICATE, 404, id="florence-duplicate"),
    pytest.param("9990000050-walter-hughes.json", {"nhs_number": "9990000050", "dob": "1936-09-30"}, 200, id="walter"),
]


def file_keys(file_name: str) -> list[tuple[str, str]]:
    bundle = json.loads((RESIDENTS / file_name).read_text())
    return [(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]]


def keys(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle.get("entry", [])]


def next_link(bundle: dict[str, Any]) -> str | None:
    return next((link["url"] for link in bundle.get("link", []) if link.get("relation") == "next"), None)


def _classified(key: tuple[str, str]) -> bool:
    """In a section of the record (the resident's header included), per the seed's fixture."""
    return EXPECTED[f"{key[0]}/{key[1]}"]["primary"] not in (None, "supporting")


def fetch(client: Any, token: str, body: dict[str, str]) -> Any:
    return client.post(
        "/v1/record", json=body, headers={"Authorization": f"Bearer {bound_to(token, body.get('nhs_number'))}"}
    )


def test_every_resident_file_is_requested() -> None:
    assert sorted(p.values[0] for p in RESIDENT_REQUESTS) == [p.name for p in resident_files()]  # type: ignore[type-var]  # the pages and parameters checked just above


def test_hapi_pages_everything_for_the_biggest_resident(hapi: Any) -> None:
    base = hapi.url + "/fhir"
    url: str | None = f"{base}/Patient/mthompson/$everything"
    pages: list[dict[str, Any]] = []
    while url and len(pages) < 20:
        response = requests.get(url, headers={"Accept": "application/fhir+json"}, timeout=30)
        assert response.status_code == 200, response.text[:2000]
        pages.append(response.json())
        url = next_link(pages[-1])
    first = pages[0]
    assert len(first["entry"]) == 20, "HAPI's default page size"
    assert next_link(first) and next_link(first).startswith(base + "?_getpages="), first.get("link")  # type: ignore[union-attr]  # the pages and parameters checked just above
    assert len(pages) == 4
    held = [key for page in pages for key in keys(page)]
    assert sorted(held) == sorted(file_keys("9990000018-margaret-thompson.json")), "every page, the whole file, once"


@pytest.mark.parametrize("level", sorted(LEVELS))
@pytest.mark.parametrize("file_name, body, status", RESIDENT_REQUESTS)
def test_record_from_hapi_is_the_record_from_the_demo_upstream(
    make_app: Any, tmp_path: Path, hapi: Any, token: Any, level: str, file_name: str, body: dict[str, str], status: int
) -> None:
    demo = make_app().test_client()
    real = make_app(UPSTREAM_URL=hapi.url + "/fhir", AUDIT_DB=str(tmp_path / "audit-hapi.db")).test_client()
    expected = fetch(demo, token(level), body)
    got = fetch(real, token(level), body)

    want_status = 403 if level == "no_access" else status
    assert expected.status_code == want_status, expected.get_json()
    assert got.status_code == want_status, got.get_json()
    if want_status != 200:
        code = lambda r: r.get_json()["issue"][0]["details"]["coding"][0]["code"]  # noqa: E731
        assert code(got) == code(expected)
        return

    shown = keys(got.get_json())
    assert sorted(shown) == sorted(keys(expected.get_json()))
    assert len(set(shown)) == len(shown)
    assert got.get_json()["total"] == expected.get_json()["total"] == len(shown)

    # Not trivially equal: the resident's header, and for a registered manager (every section)
    # every one of the resident's classified resources, however many pages they span.
    resident = [k for k in file_keys(file_name) if k[0] == "Patient"][0]
    assert resident in shown and len(shown) > 1
    if level == "registered_manager":
        own = {k for k in file_keys(file_name) if k[0] not in SUPPORTING and _classified(k)}
        assert {k for k in shown if k[0] not in SUPPORTING} == own
        assert len(own) > 1
