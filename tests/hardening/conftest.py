"""The sidecar as deployed (gunicorn over real HTTP), for the hostile-input tests.

One sidecar per module, on the session's real OPA and demo upstream (tests/conftest.py),
with its own audit file so a test can count the rows its requests left.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .. import processes

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "docs" / "openapi.yaml"
ERROR_CODE_SYSTEM = "https://lcr-sidecar.example/CodeSystem/error-code"


@dataclass
class LiveSidecar:
    process: processes.Process
    audit_db: Path

    @property
    def url(self) -> str:
        return self.process.url

    def audit_count(self) -> int:
        with sqlite3.connect(self.audit_db) as db:
            return int(db.execute("select count(*) from decisions").fetchone()[0])


@pytest.fixture(scope="module")
def live_sidecar(
    tmp_path_factory: pytest.TempPathFactory, opa: Any, upstream: Any, jwks_file: Path
) -> Iterator[LiveSidecar]:
    run = tmp_path_factory.mktemp("live-sidecar")
    audit_db = run / "audit.db"
    sidecar = processes.start_sidecar(run, processes.sidecar_env(opa.url, upstream.url, audit_db, jwks_file))
    yield LiveSidecar(sidecar, audit_db)
    sidecar.stop()


@pytest.fixture(scope="session")
def openapi() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI.read_text())


def documented_codes(spec: dict[str, Any]) -> dict[int, set[str]]:
    """{status: {stable error codes}} from the OpenAPI description's OutcomeNNN schemas."""
    codes: dict[int, set[str]] = {}
    for name, schema in spec["components"]["schemas"].items():
        if not (name.startswith("Outcome") and name[7:].isdigit()):
            continue
        narrowed = schema["allOf"][1]["properties"]["issue"]["items"]["properties"]["details"]
        coding = narrowed["properties"]["coding"]["items"]["properties"]["code"]
        codes[int(name[7:])] = set(coding["enum"])
    return codes


def outcome_code(body: Any) -> str:
    """The stable code of an OperationOutcome body; fails the test if it is not one."""
    assert isinstance(body, dict) and body.get("resourceType") == "OperationOutcome", body
    issue = body["issue"][0]
    assert issue["severity"] == "error" and isinstance(issue["code"], str), issue
    coding = issue["details"]["coding"][0]
    assert coding["system"] == ERROR_CODE_SYSTEM, coding
    return str(coding["code"])
