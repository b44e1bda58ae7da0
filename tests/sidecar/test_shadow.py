"""Shadow mode: a candidate policy answers the same questions on live traffic, never enforced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bundles.build import build

from .. import processes
from ..bundles.test_delivery import changed_policies, drop_admin_appointments
from ..roster import publish_seed_roster
from ..seed_table import FULL


@pytest.fixture
def candidate_opa(tmp_path: Path) -> Iterator[tuple[processes.Process | processes.ContainerProcess, str]]:
    out = tmp_path / "candidate"
    revision = build(out, changed_policies(tmp_path, drop_admin_appointments), opa=processes.opa_binary())
    publish_seed_roster(out, processes.opa_binary())
    server = processes.start_bundle_server(out / "serve", tmp_path)
    opa = processes.start_opa(server.url, tmp_path)
    yield opa, revision
    opa.stop()
    server.stop()


def _record(app: Any, token: Any, level: str) -> Any:
    return app.test_client().post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {token(level)}"})


def test_candidate_is_recorded_but_not_enforced(make_app, token, candidate_opa, bundle_revision):
    opa, candidate_revision = candidate_opa
    app = make_app(SHADOW_OPA_URL=opa.url)
    response = _record(app, token, "admin")
    assert response.status_code == 200
    assert "Appointment" in {e["resource"]["resourceType"] for e in response.get_json()["entry"]}  # live policy
    _record(app, token, "senior_carer")
    admin, senior = list(app.extensions["lcr"].audit.rows())
    assert (admin["policy_revision"], admin["shadow_revision"]) == (bundle_revision, candidate_revision)
    assert admin["shadow_diverged"] == 1
    assert json.loads(admin["shadow_result"])["sections"] == ["alerts", "visits_encounters"]
    assert json.loads(admin["sections_allowed"]) == ["alerts", "appointments", "visits_encounters"]
    assert senior["shadow_diverged"] == 0
    assert "lcr_shadow_diverged_total" in app.test_client().get("/metrics").get_data(as_text=True)


def test_a_broken_candidate_never_touches_live_traffic(make_app, token):
    app = make_app(SHADOW_OPA_URL=f"http://127.0.0.1:{processes.free_port()}")
    assert _record(app, token, "admin").status_code == 200
    row = list(app.extensions["lcr"].audit.rows())[-1]
    assert row["shadow_revision"] is None and row["shadow_diverged"] is None


def test_shadow_mode_is_off_by_default(client, token, audit_rows):
    client.post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {token('admin')}"})
    assert audit_rows()[-1]["shadow_revision"] is None
