"""The sidecar as deployed: gunicorn workers over real HTTP, sharing one SQLite audit file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlite_utils

from sidecar.identifiers import NHS_NUMBER_SYSTEM

from .. import processes
from ..seed_table import FULL, LEVELS

RESIDENTS = Path(__file__).resolve().parents[2] / "demo_upstream" / "residents"


@pytest.fixture
def served(tmp_path: Path, opa: Any, upstream: Any, jwks_file: Path) -> Iterator[tuple[processes.Process, Path]]:
    audit_db = tmp_path / "audit.db"
    sidecar = processes.start_sidecar(tmp_path, processes.sidecar_env(opa.url, upstream.url, audit_db, jwks_file))
    yield sidecar, audit_db
    sidecar.stop()


def test_concurrent_requests_each_leave_one_row(served, token):
    sidecar, audit_db = served
    levels = ["no_access", "admin", "senior_carer", "registered_manager"] * 10

    def one(level: str) -> tuple[str, int, str]:
        r = requests.post(
            f"{sidecar.url}/v1/record", json=FULL, headers={"Authorization": f"Bearer {token(level)}"}, timeout=10
        )
        return level, r.status_code, r.headers["X-Decision-Id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, levels))
    for level, status, _ in results:
        assert status == (200 if LEVELS[level] else 403)
    rows = {r["decision_id"]: r for r in sqlite_utils.Database(audit_db)["decisions"].rows}
    assert len(rows) == len(results)
    for level, status, decision_id in results:
        assert rows[decision_id]["http_status"] == status and rows[decision_id]["access_level"] == level


def test_unknown_route_and_method_are_outcomes_not_html(served, token):
    sidecar, audit_db = served
    r = requests.get(f"{sidecar.url}/v1/record", timeout=5)
    assert r.status_code == 405 and r.json()["issue"][0]["details"]["coding"][0]["code"] == "method-not-allowed"
    r = requests.post(f"{sidecar.url}/v1/nope", json={}, timeout=5)
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    outcomes = [row["error_code"] for row in sqlite_utils.Database(audit_db)["decisions"].rows]
    assert outcomes == ["method-not-allowed", "not-found"]


def _residents() -> list[dict[str, Any]]:
    """Each demo resident's Patient."""
    bundles = [json.loads(p.read_text()) for p in sorted(RESIDENTS.glob("*.json"))]
    patients = [e["resource"] for b in bundles for e in b["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert len(patients) >= len(bundles)
    return patients


def _nhs_numbers(resident: dict[str, Any]) -> list[str]:
    return [i["value"] for i in resident.get("identifier", []) if i.get("system") == NHS_NUMBER_SYSTEM]


def test_application_log_holds_no_nhs_number_or_record_content(served, token):
    """A run over every endpoint, every demo resident and the refusals in between: the log is
    JSON lines, each request's line keyed on its decision id, and no NHS number used (in any
    of the forms sent), date of birth or name appears in it."""
    sidecar, _ = served
    residents = _residents()
    asked = [
        FULL,
        {"nhs_number": "1234567890", "dob": "1938-04-12"},
        {"nhs_number": "999 000 0026", "dob": "1945-11-02"},
        {"nhs_number": "999-000-0034", "dob": "1941-07-15"},
        {"nhs_number": "9990000018", "dob": "2999-01-01"},
    ]
    for resident in residents:
        for number in _nhs_numbers(resident):
            asked.append({"nhs_number": number, "dob": resident.get("birthDate", "1900-01-01")})
    decision_ids = set()
    for body in asked:
        for level in ("registered_manager", "senior_carer", "admin", "no_access"):
            for endpoint in ("record", "menu", "audit-trail"):
                bound = token(level, nhs_number=body["nhs_number"].replace(" ", "").replace("-", ""))
                r = requests.post(
                    f"{sidecar.url}/v1/{endpoint}", json=body, headers={"Authorization": f"Bearer {bound}"}, timeout=10
                )
                decision_ids.add(r.headers["X-Decision-Id"])
        r = requests.post(f"{sidecar.url}/v1/record", json=body, headers={"Authorization": "Bearer nope"}, timeout=10)
        decision_ids.add(r.headers["X-Decision-Id"])
    sidecar.stop()
    log = sidecar.log.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    requests_logged = {line["decision_id"]: line for line in lines if line.get("message") == "request"}
    assert set(requests_logged) == decision_ids
    for line in requests_logged.values():
        assert {"action", "outcome", "status", "code", "latency_ms", "audit_write_ms"} <= set(line)
    secrets = {body["nhs_number"] for body in asked} | {body["dob"] for body in asked}
    for resident in residents:
        secrets |= {
            n for number in _nhs_numbers(resident) for n in (number, f"{number[:3]} {number[3:6]} {number[6:]}")
        }
        secrets |= {
            part
            for name in resident.get("name", [])
            for part in [*name.get("given", []), name.get("family", "")]
            if part
        }
    assert len(secrets) > 20
    for secret in sorted(secrets):
        assert secret not in log
    assert json.dumps(FULL) not in log
