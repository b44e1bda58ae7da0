"""The legitimate care relationship, bound tokens and the probing cool-off, end to end.

Each test here runs its own bundle server and OPA (the roster changes under it), a real
served sidecar where traffic matters, and the demo upstream, which counts the FHIR requests
it served: a refused request must not have reached it.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from audit_store import replay as rp
from audit_store.queries import Filters
from bundles.build import DEFAULT_KEY_ID, DEV_VERIFICATION_KEY, build

from .. import processes
from ..roster import Roster, wait_for_roster
from ..seed_table import FULL, SMALL

HUGHES = {"nhs_number": "9990000050", "dob": "1936-09-30"}  # a resident of Thames View (VM102) only


@pytest.fixture
def own(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Bundles, a bundle server and an OPA of this test's own: the roster is the test's to change."""
    out = tmp_path / "bundles"
    build(out, opa=processes.opa_binary())
    roster = Roster(out, processes.opa_binary())
    roster.services = {
        "VM101": {n: {"status": "resident", "start": "2024-01-01"} for n in ("9990000018", "9990000026")},
        "VM102": {"9990000050": {"status": "resident", "start": "2024-01-01"}},
    }
    roster.publish()
    server = processes.start_bundle_server(out / "serve", tmp_path)
    opa = processes.start_opa(server.url, tmp_path)
    yield {"out": out, "roster": roster, "opa": opa, "tmp": tmp_path}
    opa.stop()
    server.stop()


def upstream_calls(upstream: processes.Process) -> int:
    return int(requests.get(upstream.url + "/_demo/calls", timeout=5).json()["fhir_requests"])


def post(client: Any, bearer: str, body: dict[str, Any], path: str = "/v1/record") -> Any:
    return client.post(path, json=body, headers={"Authorization": f"Bearer {bearer}"})


def reasons(response: Any) -> list[str]:
    issue = response.get_json()["issue"][0]
    return [e.removeprefix("reason:") for e in issue.get("expression", [])]


def code(response: Any) -> str:
    return str(response.get_json()["issue"][0]["details"]["coding"][0]["code"])


def test_a_resident_of_another_home_is_refused_before_the_lcr_is_asked(make_app, token, own, upstream):
    app = make_app(OPA_URL=own["opa"].url)
    client = app.test_client()
    before = upstream_calls(upstream)
    refused = post(client, token("senior_carer", nhs_number=HUGHES["nhs_number"]), HUGHES)
    assert refused.status_code == 403 and code(refused) == "access-denied"
    assert reasons(refused) == ["no_legitimate_relationship"]
    menu = post(client, token("senior_carer", nhs_number=HUGHES["nhs_number"]), HUGHES, "/v1/menu").get_json()
    assert menu == {"record_available": False, "sections": [], "reason": "access-denied"}
    # A number the LCR does not hold gets exactly the same answer: the deny says nothing about the LCR.
    unknown = post(
        client, token("senior_carer", nhs_number="9434765919"), {"nhs_number": "9434765919", "dob": "1938-04-12"}
    )
    assert unknown.status_code == 403 and reasons(unknown) == ["no_legitimate_relationship"]
    assert upstream_calls(upstream) == before
    # Thames View's own staff see him.
    assert post(client, token("senior_carer", org="VM102", nhs_number=HUGHES["nhs_number"]), HUGHES).status_code == 200
    assert upstream_calls(upstream) > before
    rows = list(app.extensions["lcr"].audit.rows())
    assert [r["outcome"] for r in rows] == ["denied", "denied", "denied", "allowed"]
    assert json.loads(rows[0]["reasons"]) == ["no_legitimate_relationship"]
    assert json.loads(rows[0]["opa_result"])["roster_revision"] == own["roster"].revision
    assert json.loads(rows[-1]["opa_result"])["relationship"] == "resident"


def test_a_token_for_another_resident_is_refused(make_app, token, own, upstream):
    app = make_app(OPA_URL=own["opa"].url)
    client = app.test_client()
    before = upstream_calls(upstream)
    bound_to_small = token("registered_manager", nhs_number=SMALL["nhs_number"])
    for path in ("/v1/record", "/v1/menu"):
        response = post(client, bound_to_small, FULL, path)
        assert response.status_code == 403 and code(response) == "token-patient-mismatch"
        assert reasons(response) == ["token_patient_mismatch"]
    unbound = post(client, token("registered_manager", nhs_number=None), FULL)
    assert unbound.status_code == 403 and reasons(unbound) == ["requested_record_missing"]
    assert upstream_calls(upstream) == before
    # The same number written another way is the same resident.
    assert post(client, token("registered_manager", nhs_number="999 000 0018"), FULL).status_code == 200
    rows = list(app.extensions["lcr"].audit.rows())
    assert [r["error_code"] for r in rows] == [
        "token-patient-mismatch",
        "token-patient-mismatch",
        "access-denied",
        None,
    ]
    assert json.loads(rows[0]["opa_input"])["requested_record"] == {"nhs_number": SMALL["nhs_number"]}


@pytest.mark.parametrize(
    "claim",
    [
        {
            "resourceType": "Patient",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000019"}],
        },
        {"resourceType": "Patient", "identifier": []},
        {
            "resourceType": "Practitioner",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}],
        },
        {
            "resourceType": "Patient",
            "identifier": [
                {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"},
                {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000026"},
            ],
        },
        "9990000018",
    ],
    ids=["bad-check-digit", "no-identifier", "not-a-patient", "two-numbers", "not-an-object"],
)
def test_a_malformed_requested_record_is_401(client, token, claim):
    response = post(client, token("admin", nhs_number=None, extra={"requested_record": claim}), FULL)
    assert response.status_code == 401 and code(response) == "token-invalid"


def test_a_discharge_past_the_grace_period_is_refused(make_app, token, own, upstream):
    roster = own["roster"]
    roster.services["VM101"]["9990000026"] = {"status": "discharged", "start": "2024-01-01", "end": "2020-01-31"}
    today = dt.date.today().isoformat()  # discharged today: within the grace period
    roster.services["VM101"]["9990000018"] = {"status": "discharged", "start": "2024-01-01", "end": today}
    wait_for_roster(own["opa"].url, roster.publish())
    client = make_app(OPA_URL=own["opa"].url).test_client()
    gone = post(client, token("senior_carer", nhs_number=SMALL["nhs_number"]), SMALL)
    assert gone.status_code == 403 and reasons(gone) == ["no_legitimate_relationship"]
    within = post(client, token("senior_carer"), FULL)
    assert within.status_code == 200


def test_identifier_probing_cools_off(make_app, token, own, upstream):
    """Five record requests for residents the LCR does not hold, then a real one: refused."""
    roster = own["roster"]
    missing = ["9434765919", "9990000069", "9990000077", "9990000085", "9990000093"]
    for nhs in missing:  # on the roster, not in the LCR: each gets the generic 404
        roster.services["VM101"][nhs] = {"status": "resident", "start": "2024-01-01"}
    wait_for_roster(own["opa"].url, roster.publish())
    app = make_app(OPA_URL=own["opa"].url)
    client = app.test_client()
    for nhs in missing:
        assert (
            post(client, token("senior_carer", nhs_number=nhs), {"nhs_number": nhs, "dob": "1950-01-01"}).status_code
            == 404
        )
    cooled = post(client, token("senior_carer"), FULL)
    assert cooled.status_code == 403 and reasons(cooled) == ["identifier_probing_cool_off"]
    # Someone else at the same home is not affected.
    assert post(client, token("senior_carer", sub="staff-0777"), FULL).status_code == 200
    row = list(app.extensions["lcr"].audit.rows())[-2]
    assert json.loads(row["opa_input"])["history"]["outcomes"] == {"no-matching-record": 5}


def test_an_admission_reaches_decisions_within_seconds_under_traffic(own, upstream, jwks_file, token, tmp_path):
    """Traffic for a resident keeps flowing while an admission is published; the new
    resident is refused until OPA has the new roster, then allowed. No request fails."""
    env = processes.sidecar_env(own["opa"].url, upstream.url, tmp_path / "audit.db", jwks_file)
    sidecar = processes.start_sidecar(tmp_path, env)
    stop = threading.Event()
    statuses: list[int] = []

    def traffic() -> None:
        session = requests.Session()
        bearer = token("senior_carer")
        while not stop.is_set():
            r = session.post(
                sidecar.url + "/v1/record", json=FULL, headers={"Authorization": f"Bearer {bearer}"}, timeout=30
            )
            statuses.append(r.status_code)

    workers = [threading.Thread(target=traffic) for _ in range(3)]
    try:
        for w in workers:
            w.start()
        newcomer = {"nhs_number": "9990000034", "dob": "1941-07-01"}  # Edith Clarke

        def bearer(n: int) -> str:
            # A colleague each time: one staff member asking again and again for someone
            # not (yet) theirs is what the identifier-probing cool-off stops.
            return token("senior_carer", sub=f"staff-1{n:03d}", nhs_number=newcomer["nhs_number"])

        before = requests.post(
            sidecar.url + "/v1/menu", json=newcomer, headers={"Authorization": f"Bearer {bearer(0)}"}, timeout=30
        ).json()
        assert before["record_available"] is False and before["reason"] == "access-denied"
        own["roster"].services["VM101"]["9990000034"] = {"status": "resident", "start": "2026-01-05"}
        published = time.monotonic()
        own["roster"].publish()
        for n in range(1, 10_000):
            answer = requests.post(
                sidecar.url + "/v1/menu", json=newcomer, headers={"Authorization": f"Bearer {bearer(n)}"}, timeout=30
            ).json()
            if answer.get("reason") != "access-denied":
                break
            assert time.monotonic() - published < 60, "the admission did not reach decisions within 60 s"
            time.sleep(0.05)
        took = time.monotonic() - published
    finally:
        stop.set()
        for w in workers:
            w.join()
        sidecar.stop()
    # The menu now asks the LCR: Edith's partial birth date is one generic no-match, not a deny.
    assert answer == {"record_available": False, "sections": [], "reason": "no-matching-record"}
    assert statuses and set(statuses) == {200}, f"{len(statuses)} requests: {sorted(set(statuses))}"
    print(f"admission took effect after {took:.2f}s, {len(statuses)} requests served meanwhile")


def test_rows_before_and_after_a_roster_change_replay_exactly(make_app, token, own, upstream):
    app = make_app(OPA_URL=own["opa"].url)
    client = app.test_client()
    hughes_here = token("senior_carer", nhs_number=HUGHES["nhs_number"])
    assert post(client, hughes_here, HUGHES).status_code == 403  # before: not ours
    first = own["roster"].revision
    own["roster"].services["VM101"]["9990000050"] = {"status": "respite", "start": "2026-01-01", "end": None}
    wait_for_roster(own["opa"].url, own["roster"].publish())
    assert post(client, hughes_here, HUGHES).status_code == 200  # after: a respite stay
    rows = list(app.extensions["lcr"].audit.rows())
    assert [json.loads(r["opa_result"])["roster_revision"] for r in rows] == [first, own["roster"].revision]
    conn = sqlite3.connect(app.config["AUDIT_DB"])
    try:
        options = rp.Options(opa=processes.opa_binary(), verification_key=DEV_VERIFICATION_KEY, key_id=DEFAULT_KEY_ID)
        report = rp.replay(conn, own["out"] / "archive", Filters(), options)
    finally:
        conn.close()
    assert (report.reproduced, report.diverged, dict(report.unreplayable)) == (2, 0, {})
    # Replayed against one roster only, the other decision would not be reproduced.
    (own["out"] / "archive" / f"{first}.tar.gz").unlink()
    conn = sqlite3.connect(app.config["AUDIT_DB"])
    try:
        report = rp.replay(conn, own["out"] / "archive", Filters(), options)
    finally:
        conn.close()
    assert report.reproduced == 1 and sum(report.unreplayable.values()) == 1
