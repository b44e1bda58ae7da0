"""The roster bundle: shape checked, content-addressed, signed, private, and what OPA serves."""

from __future__ import annotations

import json
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from bundles import roster

from .. import processes

ROSTER = {
    "care_services": {
        "VM101": [
            {"nhs_number": "9990000018", "family_name": "Thompson", "status": "resident", "start": "2024-03-11"},
            {"nhs_number": "9990000026", "status": "discharged", "start": "2023-01-09", "end": "2026-11-20"},
        ],
        "VM102": [],
    }
}


def test_normalised_for_lookup_by_care_service_and_nhs_number():
    assert roster.normalise(ROSTER) == {
        "VM101": {
            "9990000018": {"status": "resident", "start": "2024-03-11", "end": None, "family_name": "Thompson"},
            "9990000026": {"status": "discharged", "start": "2023-01-09", "end": "2026-11-20", "family_name": None},
        },
        "VM102": {},
    }


def test_the_revision_is_the_content():
    reordered = {"care_services": {"VM102": [], "VM101": list(reversed(ROSTER["care_services"]["VM101"]))}}
    assert roster.revision_of(roster.normalise(ROSTER)) == roster.revision_of(roster.normalise(reordered))
    changed = json.loads(json.dumps(ROSTER))
    changed["care_services"]["VM101"][1]["end"] = "2026-11-21"
    assert roster.revision_of(roster.normalise(changed)) != roster.revision_of(roster.normalise(ROSTER))


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"services": {}},
        {"care_services": {"vm101": []}},
        {"care_services": {"VM101": {}}},
        {"care_services": {"VM101": [{"nhs_number": "9990000019", "status": "resident", "start": "2024-01-01"}]}},
        {"care_services": {"VM101": [{"nhs_number": 9990000018, "status": "resident", "start": "2024-01-01"}]}},
        {"care_services": {"VM101": [{"nhs_number": "999 000 0018", "status": "resident", "start": "2024-01-01"}]}},
        {"care_services": {"VM101": [{"nhs_number": "9990000018", "status": "", "start": "2024-01-01"}]}},
        {"care_services": {"VM101": [{"nhs_number": "9990000018", "status": "resident", "start": "11/03/2024"}]}},
        {
            "care_services": {
                "VM101": [{"nhs_number": "9990000018", "status": "resident", "start": "2024-01-01", "ward": "B"}]
            }
        },
        {
            "care_services": {
                "VM101": [
                    {"nhs_number": "9990000018", "status": "resident"},
                    {"nhs_number": "9990000018", "status": "discharged"},
                ]
            }
        },
    ],
    ids=[
        "not-an-object",
        "no-care-services",
        "not-an-ods-code",
        "users-not-a-list",
        "bad-check-digit",
        "number-not-text",
        "spaced-number",
        "empty-status",
        "not-iso-date",
        "unknown-field",
        "twice",
    ],
)
def test_a_roster_not_in_the_published_shape_is_refused(bad: Any):
    with pytest.raises(roster.RosterInvalid):
        roster.normalise(bad)


def test_built_signed_private_and_archived(tmp_path: Path):
    revision = roster.build(ROSTER, tmp_path, opa=processes.opa_binary())
    archived, served = tmp_path / "archive" / f"{revision}.tar.gz", tmp_path / "serve" / "roster.tar.gz"
    for path in (archived, served):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # personal data: its owner only
    with tarfile.open(served) as tar:
        files = {m.name.lstrip("/"): m for m in tar.getmembers() if m.isfile()}
        data = json.loads(tar.extractfile(files["data.json"]).read())  # type: ignore[union-attr]  # a regular file of the bundle
        manifest = json.loads(tar.extractfile(files[".manifest"]).read())  # type: ignore[union-attr]  # a regular file of the bundle
    names = set(files)
    assert names == {".manifest", ".signatures.json", "data.json"}
    assert (manifest["revision"], manifest["roots"]) == (revision, ["roster"])
    assert data == {"roster": {"revision": revision, "care_services": roster.normalise(ROSTER)}}
    assert roster.build(ROSTER, tmp_path, opa=processes.opa_binary()) == revision  # the same content, the same revision


def test_the_command_line_never_echoes_the_roster(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "roster.json"
    path.write_text(
        json.dumps(
            {
                "care_services": {
                    "VM101": [{"nhs_number": "9990000019", "family_name": "Thompson", "status": "resident"}]
                }
            }
        )
    )
    with pytest.raises(SystemExit) as stopped:
        roster.main([str(path), "--out", str(tmp_path / "out")])
    assert "check digit" in str(stopped.value) and "9990000019" not in str(stopped.value)
    assert "Thompson" not in str(stopped.value)
    assert not (tmp_path / "out" / "serve").exists()
