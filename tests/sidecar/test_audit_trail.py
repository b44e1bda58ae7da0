"""The Audit Trail endpoint: policy decides who may read it and how much; the read is audited."""

from __future__ import annotations

import json

import pytest

from ..seed_table import FULL, SMALL


def _trail(client, token, body=None, **kw):
    return client.post(
        "/v1/audit-trail", json={**FULL, **(body or {})}, headers={"Authorization": f"Bearer {token(**kw)}"}
    )


def _read(client, token, patient, level, org="VM101"):
    client.post("/v1/record", json=patient, headers={"Authorization": f"Bearer {token(level, org=org)}"})


def test_registered_manager_sees_own_care_service_accesses(client, token, audit_rows):
    _read(client, token, FULL, "admin")
    _read(client, token, FULL, "senior_carer", org="VM102")  # another care service
    _read(client, token, SMALL, "senior_carer")  # another resident
    _read(client, token, FULL, "no_access")
    response = _trail(client, token, level="registered_manager")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["scope"] == "own_care_service"
    assert [(r["subject_id"], r["outcome"]) for r in body["rows"]] == [
        ("staff-0002", "allowed"),
        ("staff-0001", "denied"),
    ]
    assert all(r["care_service"] == "VM101" and r["nhs_number"] == "9990000018" for r in body["rows"])
    assert "opa_input" not in body["rows"][0]  # who, when, what: not the decision internals
    row = audit_rows()[-1]
    assert (row["action"], row["outcome"], row["resources_returned"]) == ("audit.read", "allowed", 2)


def test_auditor_role_sees_every_care_service(client, token):
    _read(client, token, FULL, "admin")
    _read(client, token, FULL, "senior_carer", org="VM102")
    response = _trail(client, token, level="no_access", extra={"lcr_audit_role": "auditor"})
    assert response.status_code == 200
    assert response.get_json()["scope"] == "all"
    assert {r["care_service"] for r in response.get_json()["rows"]} == {"VM101", "VM102"}


@pytest.mark.parametrize("level", ["admin", "senior_carer", "no_access"])
def test_other_levels_may_not_read_the_trail_and_the_attempt_is_audited(client, token, audit_rows, level):
    response = _trail(client, token, level=level)
    assert response.status_code == 403
    row = audit_rows()[-1]
    assert row["action"] == "audit.read" and json.loads(row["reasons"]) == ["audit_trail_not_permitted"]


def test_filters_and_paging(client, token):
    for _ in range(3):
        _read(client, token, FULL, "admin")
    first = _trail(client, token, {"limit": 2}, level="registered_manager").get_json()
    assert len(first["rows"]) == 2 and first["next_after_seq"]
    rest = _trail(client, token, {"after_seq": first["next_after_seq"]}, level="registered_manager").get_json()
    # The first page's own read is in the trail too: reading the trail is an access.
    assert [r["action"] for r in rest["rows"]] == ["record.read", "audit.read"]
    none = _trail(client, token, {"outcome": "denied"}, level="registered_manager").get_json()
    assert none["rows"] == []


@pytest.mark.parametrize("body", [{"since": "not a date"}, {"limit": "ten"}, {"after_seq": -1}])
def test_bad_filters_are_400(client, token, body):
    response = _trail(client, token, body, level="registered_manager")
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["details"]["coding"][0]["code"] == "query-invalid"
