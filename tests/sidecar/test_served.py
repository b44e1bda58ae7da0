"""The sidecar as deployed: gunicorn workers over real HTTP, sharing one SQLite audit file."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import sqlite_utils

from .. import processes
from ..seed_table import FULL, LEVELS


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
        r = requests.post(f"{sidecar.url}/v1/record", json=FULL, headers={"Authorization": f"Bearer {token(level)}"}, timeout=10)
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


def test_application_log_holds_no_nhs_number_or_record_content(served, token):
    sidecar, _ = served
    for level in ("registered_manager", "senior_carer"):
        requests.post(f"{sidecar.url}/v1/record", json=FULL, headers={"Authorization": f"Bearer {token(level)}"}, timeout=10)
    requests.post(f"{sidecar.url}/v1/record", json={"nhs_number": "1234567890", "dob": "1938-04-12"},
                  headers={"Authorization": f"Bearer {token('admin')}"}, timeout=10)
    sidecar.stop()
    log = sidecar.log.read_text()
    assert "decision_id=" in log
    for secret in ("9990000018", "1234567890", "Margaret", "Thompson", "1938-04-12"):
        assert secret not in log
    assert json.dumps(FULL) not in log
