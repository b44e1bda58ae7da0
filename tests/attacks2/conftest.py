"""One served world for the second round: every case's resident served by a small FHIR
stub (`stub.py`, pages of three entries with `next` links, chosen `fullUrl`s), asked
through the real sidecar app and the session's real OPA (the built, signed bundle)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sidecar import create_app

from .. import processes
from ..attacks import world
from ..attacks.world import Case, Resident
from ..redaction.metamorph import paths_of
from ..roster import Roster
from ..tokens import bound_to
from . import cases, stub

PAGE_SIZE = 3


@dataclass
class Served:
    world: world.World
    app: Any
    client: Any

    def ask(self, bearer: str, case: Case, endpoint: str = "/v1/record") -> tuple[Resident, Any]:
        resident = self.world.residents[case.id]
        response = self.client.post(
            endpoint,
            json=resident.request(),
            headers={"Authorization": f"Bearer {bound_to(bearer, resident.nhs_number)}"},
        )
        return resident, response


def _pages(r: world.Resident, base: str, case_id: str) -> list[list[dict[str, Any]]]:
    if case_id in cases.PAGES:
        return cases.PAGES[case_id](r, base)
    chosen = cases.FULL_URLS.get(case_id, lambda _: {})(r)
    entries = [
        {"fullUrl": chosen.get(res.get("id"), f"{base}/{res['resourceType']}/{res.get('id')}"), "resource": res}
        for res in [r.patient, *r.resources]
    ]
    return [entries[n : n + PAGE_SIZE] for n in range(0, len(entries), PAGE_SIZE)]


@pytest.fixture(scope="session")
def attack2_world(
    tmp_path_factory: pytest.TempPathFactory, opa: processes.Process, jwks_file: Path, roster: Roster
) -> Iterator[Served]:
    built = world.World(seed=43)
    server = stub.Stub()
    for case in cases.ALL:
        r = built.add(case)
        server.add(r.patient, _pages(r, server.url, case.id))
    roster.admit([r.nhs_number for r in built.residents.values()], [opa.url])
    logs = tmp_path_factory.mktemp("attack2-logs")
    app = create_app(
        test_config={
            **processes.sidecar_test_config(opa.url, server.url, logs / "audit.db", jwks_file),
            **processes.KEEP_FACTS_ONLY,
        }
    )
    try:
        yield Served(built, app, app.test_client())
    finally:
        app.extensions["lcr"].close()
        server.stop()


def needle(case: world.Case, resident: world.Resident) -> str:
    return cases.NEEDLES.get(case.id, lambda r: r.canary)(resident)


def assert_not_shown(served: Served, bearer: str, case: world.Case, level: str) -> None:
    """200 with the resident's control Flag, and the case's needle nowhere in the raw body:
    asked twice, the second time from the facts kept of each resource (processes.KEEP_FACTS_ONLY)."""
    for ask in ("first", "again, from kept facts"):
        _check_once(served, bearer, case, f"{level} ({ask})")


def _check_once(served: Served, bearer: str, case: world.Case, level: str) -> None:
    resident, response = served.ask(bearer, case)
    text = response.get_data(as_text=True)
    assert response.status_code == 200, f"{case.id} at {level}: status {response.status_code}: {text[:300]}"
    assert resident.control_id in text, f"{case.id} at {level}: the control Flag is missing"
    found = needle(case, resident)
    if found in text:
        where = ", ".join(paths_of(response.get_json(), found)) or "raw body"
        pytest.fail(f"LEAK {case.id} at {level}: {found} at {where}\n  ({case.why})")
