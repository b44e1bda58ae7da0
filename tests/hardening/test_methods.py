"""Methods the description does not list: a 405 OperationOutcome, audited, on the live sidecar."""

from __future__ import annotations

import pytest
import requests

from .conftest import outcome_code

UNDECLARED = ["GET", "PUT", "DELETE", "PATCH", "TRACE"]


@pytest.mark.parametrize("path", ["/v1/record", "/v1/menu"])
def test_undeclared_methods_are_405_outcomes(live_sidecar, token, path):
    before = live_sidecar.audit_count()
    for method in UNDECLARED:
        r = requests.request(
            method, live_sidecar.url + path, headers={"Authorization": f"Bearer {token('admin')}"}, timeout=5
        )
        assert r.status_code == 405, (method, r.status_code)
        assert outcome_code(r.json()) == "method-not-allowed"
        assert r.headers["Content-Type"] == "application/fhir+json" and r.headers["X-Decision-Id"]
    assert live_sidecar.audit_count() == before + len(UNDECLARED)


def test_post_to_a_get_endpoint_is_a_405_outcome(live_sidecar):
    r = requests.post(live_sidecar.url + "/healthz", timeout=5)
    assert r.status_code == 405 and outcome_code(r.json()) == "method-not-allowed"


def test_unknown_path_is_a_404_outcome(live_sidecar):
    r = requests.post(live_sidecar.url + "/v1/records", json={}, timeout=5)
    assert r.status_code == 404 and outcome_code(r.json()) == "not-found"
