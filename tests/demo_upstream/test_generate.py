"""Random records for property-based tests: valid, loadable, and labelled consistently."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from demo_upstream import create_app
from demo_upstream.generate import (
    PRECEDENCE,
    TEMPLATES,
    WITHHELD,
    random_labelled_record,
    random_record,
    valid_nhs_number,
)

from .test_app import FHIR_JSON, NHS, mod11_valid
from .test_app import PRECEDENCE as DOC_PRECEDENCE


def test_precedence_matches_the_docs() -> None:
    assert list(PRECEDENCE) == DOC_PRECEDENCE


@pytest.mark.parametrize("seed", range(5))
def test_valid_nhs_numbers(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        number = valid_nhs_number(rng)
        assert number.startswith("999") and mod11_valid(number), number


def test_same_seed_same_record() -> None:
    first = random_record(random.Random(3), "res-1", "9990000018", "1938-04-12", 30)
    second, _ = random_labelled_record(random.Random(3), "res-1", "9990000018", "1938-04-12", 30)
    assert first == second


@pytest.mark.parametrize("size", [0, 1, 25, 200])
def test_record_shape_and_labels(size: int) -> None:
    bundle, labels = random_labelled_record(random.Random(size), "res-9", "9990000026", "1945-11-02", size)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    keys = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]]
    assert len(keys) == size + 5  # Patient + 4 supporting + size drawn
    assert len(set(keys)) == len(keys)
    assert list(labels) == keys
    assert labels["Patient/res-9"] == {"sections": [], "primary": "patient"}
    for key, label in labels.items():
        order = (WITHHELD, *PRECEDENCE)  # an unmapped label's pseudo-section comes first
        assert label["sections"] == sorted(label["sections"], key=order.index), key
        if key != "Patient/res-9":
            assert label["primary"] == (label["sections"][0] if label["sections"] else None), key


def test_templates_cover_every_section_and_unclassified() -> None:
    _, labels = random_labelled_record(random.Random(0), "res-1", "9990000018", "1938-04-12", 400)
    seen = {s for label in labels.values() for s in label["sections"]}
    assert seen == set(PRECEDENCE) | {WITHHELD}
    assert any(
        label["primary"] is None
        for key, label in labels.items()
        if not key.startswith(("Organization/", "Practitioner/"))
    )
    assert any(len(label["sections"]) >= 3 for label in labels.values())
    assert len({t.name for t in TEMPLATES}) == len(TEMPLATES)


def test_generated_record_is_served_by_the_demo_upstream(tmp_path: Path) -> None:
    rng = random.Random(11)
    number = valid_nhs_number(rng)
    bundle = random_record(rng, "gen-1", number, "1939-03-03", 60)
    (tmp_path / "gen.json").write_text(json.dumps(bundle))
    client = create_app({"DATA_DIR": str(tmp_path)}).test_client()
    search = client.get(f"/fhir/Patient?identifier={NHS}|{number}&birthdate=1939-03-03")
    assert search.mimetype == FHIR_JSON
    assert search.get_json(force=True)["total"] == 1
    everything: dict[str, Any] = client.get("/fhir/Patient/gen-1/$everything?_count=1000").get_json(
        force=True
    )  # one page
    served = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in everything["entry"]}
    referencing = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle["entry"]
        if '"Patient/gen-1"' in json.dumps(e["resource"])
    }
    assert referencing <= served
