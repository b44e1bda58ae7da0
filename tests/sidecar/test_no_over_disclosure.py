"""Property-style: for random records, levels and requested sections, nothing outside the
allowed sections leaves, and everything inside them does.

The oracle is the generator's labels (what each resource was built to match, from its
hand-written template table), never the policy itself.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from demo_upstream.generate import random_labelled_record, valid_nhs_number

from .. import processes
from ..fhir_pages import all_entries, references
from ..roster import Roster
from ..seed_table import ALL_SECTIONS, LEVELS

SUPPORTING = {"Organization", "Practitioner", "PractitionerRole", "Location"}
RESIDENTS = 16
CASES_PER_RESIDENT = 6


@pytest.fixture(scope="module")
def random_world(
    tmp_path_factory: pytest.TempPathFactory, roster: Roster, opa: processes.Process
) -> Iterator[tuple[processes.Process, list[dict[str, Any]]]]:
    rng = random.Random(20261125)
    data_dir = tmp_path_factory.mktemp("random-residents")
    residents: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(residents) < RESIDENTS:
        nhs_number = valid_nhs_number(rng)
        if nhs_number in seen:
            continue
        seen.add(nhs_number)
        n = len(residents)
        dob = f"19{rng.randint(20, 60)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        bundle, labels = random_labelled_record(rng, f"rnd{n}", nhs_number, dob, rng.choice([0, 1, 5, 20, 60]))
        (data_dir / f"rnd{n}.json").write_text(json.dumps(bundle))
        residents.append({"nhs_number": nhs_number, "dob": dob, "patient_id": f"rnd{n}", "labels": labels})
    roster.admit([r["nhs_number"] for r in residents], [opa.url])
    server = processes.start_upstream(data_dir, data_dir)
    for r in residents:
        # What the LCR itself returns for the resident ($everything skips unreferenced
        # Medications, for instance): the oracle's universe.
        everything = all_entries(f"{server.url}/fhir/Patient/{r['patient_id']}/$everything")
        r["fetched"] = {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"] for e in everything}
    yield server, residents
    server.stop()


def _cases() -> list[tuple[int, str, list[str]]]:
    rng = random.Random(7)
    cases = []
    for resident in range(RESIDENTS):
        for _ in range(CASES_PER_RESIDENT):
            level = rng.choice(sorted(LEVELS))
            permitted = sorted(LEVELS[level]) or sorted(ALL_SECTIONS)
            requested = [] if rng.random() < 0.4 else rng.sample(permitted, rng.randint(1, min(4, len(permitted))))
            cases.append((resident, level, requested))
    return cases


@pytest.mark.parametrize("resident, level, requested", _cases())
def test_only_allowed_sections_leave(make_app, token, random_world, resident, level, requested):
    upstream, residents = random_world
    r = residents[resident]
    app = make_app(UPSTREAM_URL=upstream.url + "/fhir")
    response = app.test_client().post(
        "/v1/record",
        json={"nhs_number": r["nhs_number"], "dob": r["dob"], "sections": requested},
        headers={"Authorization": f"Bearer {token(level, nhs_number=r['nhs_number'])}"},
    )
    permitted = LEVELS[level]
    if not permitted:
        assert response.status_code == 403
        return
    assert response.status_code == 200, response.get_json()
    bundle = response.get_json()
    shown = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
    wanted = set(requested) or permitted
    expected = {
        key
        for key, label in r["labels"].items()
        if key in r["fetched"]
        and (
            label["primary"] == "patient"
            or (label["sections"] and set(label["sections"]) <= permitted and set(label["sections"]) & wanted)
        )
    }
    # Supporting resources (organisations, practitioners) leave with what references them.
    referenced = set().union(*(references(r["fetched"][key]) for key in expected))
    expected |= {
        key
        for key, label in r["labels"].items()
        if key in r["fetched"] and key.split("/")[0] in SUPPORTING and key in referenced
    }
    assert shown == expected
    assert bundle["total"] == len(bundle["entry"])  # never counts withheld resources
    assert [e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"] == [
        r["patient_id"]
    ]
