"""Readiness transitions and metrics: each not-ready state gives the expected status and audit row."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from bundles.build import build

from .. import processes
from ..seed_table import FULL


@pytest.fixture
def own_opa(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An OPA with its own bundle server, so the test can take either away."""
    out = tmp_path / "bundles"
    revision = build(out, opa=processes.opa_binary())
    server = processes.start_bundle_server(out / "serve", tmp_path)
    opa = processes.start_opa(server.url, tmp_path)
    yield {"opa": opa, "server": server, "revision": revision}
    opa.stop()
    server.stop()


def _record(app: Any, token: Any) -> Any:
    return app.test_client().post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {token('admin')}"})


def _code(response: Any) -> str:
    return response.get_json()["issue"][0]["details"]["coding"][0]["code"]


def _last_row(app: Any) -> dict[str, Any]:
    return list(app.extensions["lcr"].audit.rows())[-1]


def test_ready_when_everything_is_fit(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    checks = response.get_json()["checks"]
    assert {name: c["ok"] for name, c in checks.items()} == {
        "opa": True, "bundle_signed": True, "bundle_fresh": True, "audit_store": True,
    }
    assert checks["bundle_fresh"]["revision"].startswith("sha256-")
    assert client.get("/healthz").status_code == 200


def test_opa_down_is_not_ready_and_requests_get_503_with_a_row(make_app, token, own_opa):
    app = make_app(OPA_URL=own_opa["opa"].url)
    assert _record(app, token).status_code == 200
    own_opa["opa"].kill()
    assert app.test_client().get("/readyz").status_code == 503
    response = _record(app, token)
    assert response.status_code == 503 and _code(response) == "policy-unavailable"
    assert (_last_row(app)["outcome"], _last_row(app)["http_status"]) == ("policy-unavailable", 503)


def test_stale_bundle_is_not_ready_and_requests_get_503_with_a_row(make_app, token, own_opa):
    app = make_app(OPA_URL=own_opa["opa"].url, BUNDLE_MAX_AGE_SECONDS=3)
    assert _record(app, token).status_code == 200
    own_opa["server"].stop()  # OPA keeps serving its bundle, but can no longer refresh it
    deadline = time.monotonic() + 15
    while app.test_client().get("/readyz").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.25)
    readyz = app.test_client().get("/readyz")
    assert readyz.status_code == 503
    assert readyz.get_json()["checks"]["bundle_fresh"]["ok"] is False
    response = _record(app, token)
    assert response.status_code == 503 and _code(response) == "policy-stale"
    row = _last_row(app)
    assert (row["outcome"], row["error_code"], row["http_status"]) == ("policy-unavailable", "policy-stale", 503)


def test_audit_store_unwritable_is_not_ready(make_app, config, token):
    app = make_app(AUDIT_BUSY_TIMEOUT_MS=100, OPA_TIMEOUT_SECONDS=0.2)
    assert _record(app, token).status_code == 200
    blocker = sqlite3.connect(config["AUDIT_DB"], isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        readyz = app.test_client().get("/readyz")
        assert readyz.status_code == 503 and readyz.get_json()["checks"]["audit_store"]["ok"] is False
        response = _record(app, token)
        assert response.status_code == 503 and _code(response) == "audit-unavailable"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert app.test_client().get("/readyz").status_code == 200
    assert _record(app, token).status_code == 200


def test_metrics_count_decisions_and_show_the_revision(client, token, bundle_revision):
    client.post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {token('admin')}"})
    client.post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {token('no_access')}"})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'lcr_requests_total{action="record.read",code="",outcome="allowed"}' in text
    assert 'lcr_requests_total{action="record.read",code="access-denied",outcome="denied"}' in text
    assert 'lcr_deny_reasons_total{reason="access_level_no_access"}' in text
    for histogram in ("lcr_request_seconds", "lcr_opa_seconds", "lcr_upstream_seconds", "lcr_audit_write_seconds"):
        assert f"{histogram}_bucket" in text
    assert f'lcr_policy_revision_info{{revision="{bundle_revision}"}} 1.0' in text
