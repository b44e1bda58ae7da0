"""One served world for the attack cases: every case's resident in one data dir, one demo
upstream, one sidecar app asking the session's real OPA (the built, signed bundle)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sidecar import create_app

from .. import processes
from ..redaction.metamorph import paths_of
from ..roster import Roster
from ..tokens import bound_to
from . import cases, world
from .world import Case, Resident


@dataclass
class Served:
    world: world.World
    app: Any
    client: Any

    def ask(self, bearer: str, case: Case) -> tuple[Resident, Any]:
        resident = self.world.residents[case.id]
        response = self.client.post(
            "/v1/record",
            json=resident.request(),
            headers={"Authorization": f"Bearer {bound_to(bearer, resident.nhs_number)}"},
        )
        return resident, response


@pytest.fixture(scope="session")
def attack_world(
    tmp_path_factory: pytest.TempPathFactory, opa: processes.Process, jwks_file: Path, roster: Roster
) -> Iterator[Served]:
    built = world.World()
    for case in cases.ALL:
        built.add(case)
    data_dir = tmp_path_factory.mktemp("attack-residents")
    built.write(data_dir)
    roster.admit([r.nhs_number for r in built.residents.values()], [opa.url])
    logs = tmp_path_factory.mktemp("attack-logs")
    upstream = processes.start_upstream(logs, data_dir)
    app = create_app(
        test_config=processes.sidecar_test_config(opa.url, upstream.url + "/fhir", logs / "audit.db", jwks_file)
        | processes.KEEP_FACTS_ONLY
    )
    try:
        yield Served(built, app, app.test_client())
    finally:
        app.extensions["lcr"].close()
        upstream.stop()


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
    needle = cases.NEEDLES.get(case.id, lambda r: r.canary)(resident)
    if needle in text:
        where = ", ".join(paths_of(response.get_json(), needle)) or "raw body"
        pytest.fail(f"LEAK {case.id} at {level}: {needle} at {where}\n  ({case.why})")
