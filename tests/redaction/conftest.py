"""One generated world for the redaction tests: every case's resident written to one data
dir up front, one demo upstream serving it, one sidecar app (the real pipeline) asking the
session's real OPA."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from sidecar import create_app

from .. import processes
from ..roster import Roster
from ..tokens import bound_to
from . import cases, metamorph


@dataclass
class Served:
    world: metamorph.World
    upstream: processes.Process
    app: Any
    client: Any

    def record(self, case: str) -> metamorph.Record:
        return self.world.records[case]

    def ask(self, bearer: str, body: dict[str, Any], client: Any = None) -> Any:
        return (client or self.client).post(
            "/v1/record", json=body, headers={"Authorization": f"Bearer {bound_to(bearer, body.get('nhs_number'))}"}
        )

    def upstream_pages(self, record: metamorph.Record) -> list[str]:
        """The resident's `$everything` straight from the upstream, every page's raw body."""
        url: str | None = f"{self.upstream.url}/fhir/Patient/{record.patient['id']}/$everything"
        pages: list[str] = []
        while url and len(pages) < 50:
            response = requests.get(url, timeout=10)
            response.raise_for_status()
            pages.append(response.text)
            url = next(
                (link["url"] for link in response.json().get("link", []) if link.get("relation") == "next"), None
            )
        return pages


@pytest.fixture(scope="session")
def redaction_world(
    tmp_path_factory: pytest.TempPathFactory, opa: processes.Process, jwks_file: Path, roster: Roster
) -> Iterator[Served]:
    port = processes.free_port()
    world = metamorph.World(f"http://127.0.0.1:{port}/fhir")
    for base_id, forms in cases.all_cases():
        world.build(base_id, forms)
    data_dir = tmp_path_factory.mktemp("redaction-residents")
    world.write(data_dir)
    roster.admit([record.nhs_number for record in world.records.values()], [opa.url])
    logs = tmp_path_factory.mktemp("redaction-logs")
    upstream = processes.start_upstream(logs, data_dir, port=port)
    app = create_app(
        test_config=processes.sidecar_test_config(opa.url, upstream.url + "/fhir", logs / "audit.db", jwks_file)
        | processes.KEEP_FACTS_ONLY
    )
    try:
        yield Served(world, upstream, app, app.test_client())
    finally:
        app.extensions["lcr"].close()
        upstream.stop()
