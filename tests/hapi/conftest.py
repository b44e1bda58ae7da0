"""A real FHIR server for the record path: a HAPI FHIR JPA server (R4, in-memory H2, 20 entries
a page) started once per session, loaded with the demo residents, stopped at the end.

The jar is built by scripts/hapi.sh (`make hapi`; cached outside the clone); where a Docker
engine answers, the `hapiproject/hapi` image runs instead. A server that does not start, or
refuses a resident, fails every test here with the end of its log (run dir, `hapi-<port>.log`):
these tests are never skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .. import processes

RESIDENTS = processes.ROOT / "demo_upstream" / "residents"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hapi: runs against the HAPI FHIR test server (one start per session, ~30-70 s)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.hapi)


def resident_files() -> list[Path]:
    return sorted(RESIDENTS.glob("*.json"))


def transaction(collection: dict[str, Any]) -> dict[str, Any]:
    """A collection Bundle as a FHIR transaction: one PUT per resource, under its own id, so the
    ids (and every reference between the resources) stay what the file says."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": entry["resource"],
                "request": {"method": "PUT", "url": f"{entry['resource']['resourceType']}/{entry['resource']['id']}"},
            }
            for entry in collection["entry"]
        ],
    }


def load_residents(fhir_base: str, files: list[Path]) -> None:
    """POST each resident file to the server as one transaction; raise with the server's
    OperationOutcome when it refuses one (HAPI checks every reference's target type)."""
    for path in files:
        response = requests.post(
            fhir_base,
            json=transaction(json.loads(path.read_text())),
            headers={"Content-Type": "application/fhir+json"},
            timeout=60,
        )
        if response.status_code != 200:
            raise RuntimeError(f"HAPI refused {path.name} ({response.status_code}): {response.text[:2000]}")


@pytest.fixture(scope="session")
def hapi(run_dir: Path) -> Iterator[processes.Process | processes.ContainerProcess]:
    """The HAPI FHIR server, loaded with every demo resident; its FHIR base is `hapi.url + "/fhir"`."""
    started = time.monotonic()
    server = processes.start_hapi(run_dir)
    ready = time.monotonic()
    try:
        load_residents(server.url + "/fhir", resident_files())
    except Exception:
        server.stop()
        raise
    (run_dir / "hapi-timings.json").write_text(
        json.dumps({"start_seconds": round(ready - started, 2), "load_seconds": round(time.monotonic() - ready, 2)})
    )
    yield server
    server.stop()
