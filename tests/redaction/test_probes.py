"""Regression probes of issue 9's faults 1–4 and 7, each as it was seen: the case that
showed it, at the level it leaked to, checked by the generator's oracle (every canary of
what that level must not see absent from the raw body, the positive controls present).

Also here: the audit row counts what actually left (nested parts included), a header
Patient that is not the matched resident is a 502 (a fault proxy answers `$everything`
with an altered Patient: the demo upstream itself cannot disagree with its own search),
and an NHS number with mixed separators is refused.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sidecar import create_app

from ..hardening.faultproxy import FaultProxy
from . import cases
from . import metamorph as m


def _check(served: Any, bearer: str, record: m.Record, level: str) -> Any:
    response = served.ask(bearer, record.request())
    found = m.problems(record, level, response.status_code, response.data)
    assert not found, f"{record.case_id} at {level}:\n  " + "\n  ".join(found)
    return response


@pytest.mark.parametrize("probe", [pytest.param(p, id=p.id) for p in cases.PROBES])
def test_probe(redaction_world, token, probe):
    _check(redaction_world, token(probe.level), redaction_world.record(probe.case), probe.level)


def _audit_row(served: Any, response: Any) -> dict[str, Any]:
    rows = list(served.app.extensions["lcr"].audit.rows(decision_id=response.headers["X-Decision-Id"]))
    assert len(rows) == 1
    row = rows[0]
    row["sections_returned"] = json.loads(row["sections_returned"] or "{}")
    return row


def test_f1_audit_counts_the_contained_condition_that_left(redaction_world, token):
    """A registered manager sees the Encounter with its contained schizophrenia Condition:
    the audit row must count the Condition (mental_health), not only visits_encounters."""
    record = redaction_world.record("mh-condition.contained-in-encounter")
    response = _check(redaction_world, token(m.MANAGER), record, m.MANAGER)
    row = _audit_row(redaction_world, response)
    assert row["sections_returned"].get("mental_health", 0) >= 1, row["sections_returned"]


def test_f1_audit_at_admin_counts_nothing_it_did_not_show(redaction_world, token):
    record = redaction_world.record("mh-condition.contained-in-encounter")
    response = _check(redaction_world, token(m.ADMIN), record, m.ADMIN)
    counted = _audit_row(redaction_world, response)["sections_returned"]
    assert set(counted) <= {"patient", "alerts", "appointments", "visits_encounters"}, counted


# -- fault 4: the header Patient must be the matched resident ---------------------------


@pytest.fixture(scope="module")
def proxied(redaction_world, opa, jwks_file, tmp_path_factory) -> Iterator[tuple[FaultProxy, Any]]:
    proxy = FaultProxy(redaction_world.upstream.url)
    app = create_app(
        test_config={
            "TESTING": True,
            "OPA_URL": opa.url,
            "UPSTREAM_URL": proxy.url + "/fhir",
            "AUDIT_DB": str(tmp_path_factory.mktemp("probe-audit") / "audit.db"),
            "TOKEN_JWKS_FILE": str(jwks_file),
            "REDACT_CACHE_ENTRIES": 0,
        }
    )
    try:
        yield proxy, app
    finally:
        app.extensions["lcr"].close()
        proxy.close()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"identifier": "other-nhs-number"}, id="different-nhs-number"),
        pytest.param({"birthDate": "1931-01-01"}, id="different-birth-date"),
        pytest.param({"identifier": "none"}, id="no-nhs-number"),
    ],
)
def test_f4_header_patient_not_the_matched_resident_is_502(redaction_world, proxied, token, change):
    proxy, app = proxied
    record = redaction_world.record("plain-flag.identity")
    pid = record.patient["id"]
    everything = requests.get(f"{redaction_world.upstream.url}/fhir/Patient/{pid}/$everything", timeout=5).json()
    assert "next" not in {link["relation"] for link in everything.get("link", [])}
    impostor = f"CANARY-impostor-{record.short}"
    altered = copy.deepcopy(everything)
    header = next(e["resource"] for e in altered["entry"] if e["resource"]["resourceType"] == "Patient")
    header["name"] = [{"family": impostor}]
    if change.get("identifier") == "other-nhs-number":
        header["identifier"] = [{"system": m.NHS_NUMBER, "value": redaction_world.world.nhs_number()}]
    elif change.get("identifier") == "none":
        header.pop("identifier")
    if "birthDate" in change:
        header["birthDate"] = change["birthDate"]
    proxy.set(
        "body",
        match=f"/fhir/Patient/{pid}/$everything",
        body=json.dumps(altered).encode(),
        content_type="application/fhir+json",
    )
    try:
        response = redaction_world.ask(token(m.MANAGER), record.request(), client=app.test_client())
    finally:
        proxy.clear()
    assert proxy.faulted >= 1, "the altered $everything was served"
    assert response.status_code == 502, (response.status_code, response.data[:300])
    assert impostor.encode() not in response.data


# -- fault 7: identifiers ----------------------------------------------------------------


@pytest.mark.parametrize("layout", ["{a} {b}-{c}", "{a}-{b} {c}"], ids=["space-then-hyphen", "hyphen-then-space"])
def test_f7_nhs_number_with_mixed_separators_is_refused(redaction_world, token, layout):
    record = redaction_world.record("plain-flag.identity")
    n = record.nhs_number
    body = {"nhs_number": layout.format(a=n[:3], b=n[3:6], c=n[6:]), "dob": record.dob}
    response = redaction_world.ask(token(m.MANAGER), body)
    assert response.status_code == 400, response.status_code
    assert response.get_json()["issue"][0]["details"]["coding"][0]["code"] == "nhs-number-invalid"
    assert record.target_part.canary.encode() not in response.data
