"""Regressions for the bugs the hardening tests found (hostile bodies, odd tokens, methods, filters)."""

from __future__ import annotations

import pytest
import requests

from .conftest import outcome_code

RESIDENT = {"nhs_number": "9990000018", "dob": "1938-04-12"}


@pytest.mark.parametrize("body", [b"[" * 5000, b'{"nhs_number": ' + b"[" * 3000 + b"]" * 3000 + b"}"])
def test_deeply_nested_json_body_is_a_400_outcome(live_sidecar, token, body):
    before = live_sidecar.audit_count()
    r = requests.post(
        live_sidecar.url + "/v1/record",
        data=body,
        headers={"Authorization": f"Bearer {token('admin')}", "Content-Type": "application/json"},
        timeout=5,
    )
    assert r.status_code == 400 and outcome_code(r.json()) == "body-invalid"
    assert live_sidecar.audit_count() == before + 1


def test_signed_token_with_a_string_exp_is_a_401_outcome(live_sidecar, token):
    before = live_sidecar.audit_count()
    t = token("admin", extra={"exp": "9999999999"})  # PyJWT accepts it (int("…") works)
    r = requests.post(
        live_sidecar.url + "/v1/record", json=RESIDENT, headers={"Authorization": f"Bearer {t}"}, timeout=5
    )
    assert r.status_code == 401 and outcome_code(r.json()) == "token-invalid"
    assert live_sidecar.audit_count() == before + 1


def test_405_names_the_allowed_methods(live_sidecar):
    r = requests.get(live_sidecar.url + "/v1/record", timeout=5)
    assert r.status_code == 405
    assert {m.strip() for m in r.headers.get("Allow", "").split(",")} >= {"POST"}


def test_options_is_an_audited_405(live_sidecar):
    before = live_sidecar.audit_count()
    r = requests.options(live_sidecar.url + "/v1/record", timeout=5)
    assert r.status_code == 405 and outcome_code(r.json()) == "method-not-allowed"
    assert live_sidecar.audit_count() == before + 1


@pytest.mark.parametrize(
    "filters",
    [
        {"until": "9999-12-31"},  # end of day: one day past date.max
        {"since": "9999-12-31T23:59:59-05:00"},  # in UTC: year 10000
        {"since": "0001-01-01T00:00:00+01:00"},  # in UTC: year 0
        {"outcome": [{}]},  # not a string: sqlite cannot bind it
        {"after_seq": 2**70},  # past SQLite's INTEGER
    ],
    ids=["until-9999", "since-overflow", "since-underflow", "outcome-object", "after-seq-huge"],
)
def test_audit_trail_filters_out_of_range_are_400(live_sidecar, token, filters):
    before = live_sidecar.audit_count()
    r = requests.post(
        live_sidecar.url + "/v1/audit-trail",
        json={**RESIDENT, **filters},
        headers={"Authorization": f"Bearer {token('registered_manager')}"},
        timeout=5,
    )
    assert r.status_code == 400 and outcome_code(r.json()) == "query-invalid"
    assert live_sidecar.audit_count() == before + 1
