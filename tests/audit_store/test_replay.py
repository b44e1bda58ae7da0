"""Replay against the archived revision, and impact of a candidate, with the real OPA and bundle."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit_store import queries
from audit_store import replay as rp
from audit_store.cli import cli
from audit_store.queries import Filters
from bundles.build import DEFAULT_KEY_ID, DEV_VERIFICATION_KEY

from .conftest import event, raw, select

FULL = {"nhs_number": "9990000018", "dob": "1938-04-12"}
SMALL = {"nhs_number": "9990000026", "dob": "1945-11-02"}


def options(opa_bin: str, **kw) -> rp.Options:
    return rp.Options(opa=opa_bin, verification_key=DEV_VERIFICATION_KEY, key_id=DEFAULT_KEY_ID, chunk=500, **kw)


def run_replay(db, archive: Path, opa_bin: str, **kw) -> rp.ReplayReport:
    """`db`: a store, a SQLite file or a postgresql:// URL."""
    with queries.connect(db) as conn:
        return rp.replay(conn, archive, Filters(), options(opa_bin, **kw))


def run_impact(db, candidate: Path, opa_bin: str, archive: Path, **kw) -> rp.ImpactReport:
    with queries.connect(db) as conn:
        return rp.impact(conn, candidate, Filters(), options(opa_bin, archive=archive, **kw))


def test_a_log_made_by_the_sidecar_replays_100_percent(client, token, app, archive, opa_bin):
    for level in ("no_access", "admin", "senior_carer", "registered_manager", None):
        for org in ("VM101", "VM401"):
            for path in ("/v1/record", "/v1/menu"):
                for body in (FULL, SMALL, {**FULL, "sections": ["alerts", "mental_health"]}):
                    client.post(path, json=body, headers={"Authorization": f"Bearer {token(level, org=org)}"})
    client.post("/v1/record", json=FULL)  # no token: ends before the policy is asked
    client.post(
        "/v1/record",
        json={"nhs_number": "1234567890", "dob": "1938-04-12"},
        headers={"Authorization": f"Bearer {token('admin')}"},
    )
    report = run_replay(Path(app.config["AUDIT_DB"]), archive, opa_bin)
    assert report.diverged == 0, report.as_dict()["divergences"]
    # A token without lcr_access_level is refused (401) before the policy is asked.
    assert report.reproduced == 4 * 2 * 2 * 3
    assert report.unreplayable == Counter({rp.NO_INPUT: 2 + 2 * 2 * 3})


@pytest.mark.parametrize("dedupe", [True, False], ids=["dedupe", "every-decision"])
def test_a_generated_log_replays_100_percent(synthetic_log, archive, opa_bin, dedupe):
    report = run_replay(synthetic_log, archive, opa_bin, dedupe=dedupe)
    assert report.diverged == 0 and report.reproduced > 1900
    assert report.reproduced + sum(report.unreplayable.values()) == report.selected == 2000
    assert set(report.unreplayable) <= {rp.NO_INPUT}
    if dedupe:
        assert report.evaluations < report.reproduced  # each distinct policy-relevant input once
        [info] = report.revisions.values()
        assert "subject.lcr_access_level" in info["input_paths"] and "request.id" not in info["input_paths"]
    else:
        assert report.evaluations == report.reproduced
    assert report.opa_calls <= report.evaluations // 500 + 2  # batched, never one call per decision


def test_unreplayable_decisions_are_counted_with_their_reason(make_store, archive, bundle_revision, opa_bin):
    store = make_store()
    decided = {
        "subject": {
            "lcr_access_level": "admin",
            "requesting_organization": "VM101",
            "reason_for_request": "directcare",
        },
        "patient": FULL,
        "action": "menu.read",
        "sections": [],
    }
    store.append(event(0, policy_revision="sha256-00000000000000000000"))
    store.append(event(1, opa_input=None, opa_result=None))
    store.append(event(2, opa_result=None))
    store.append(event(3, policy_revision=None))
    store.append(event(4, policy_revision=bundle_revision, opa_input=decided, opa_result=None))
    report = run_replay(store, archive, opa_bin)
    assert report.reproduced == report.diverged == 0
    assert report.unreplayable == Counter(
        {
            f"revision sha256-00000000000000000000 is not in the archive ({archive})": 1,
            rp.NO_INPUT: 1,
            rp.NO_RESULT: 2,
            rp.NO_REVISION: 1,
        }
    )


def test_a_diverging_decision_is_reported_with_its_reason(log_copy, archive, opa_bin, tmp_path):
    conn = raw(log_copy)
    seq, result = conn.execute(
        "SELECT seq, opa_result FROM decisions WHERE outcome = 'allowed' AND access_level = 'admin' ORDER BY seq "
        "LIMIT 1"
    ).fetchone()
    forged = json.loads(result)
    forged["sections"] = sorted(forged["sections"] + ["mental_health"])
    conn.execute("UPDATE decisions SET opa_result = ? WHERE seq = ?", (json.dumps(forged), seq))
    conn.close()
    report = run_replay(log_copy, archive, opa_bin)
    assert report.diverged == 1
    [divergence] = report.divergences.values()
    assert divergence.first_seq == seq and divergence.reason == "sections -mental_health"
    details = tmp_path / "diverged.jsonl"
    result = CliRunner().invoke(
        cli,
        [
            "replay",
            "--db",
            str(log_copy),
            "--archive",
            str(archive),
            "--opa",
            opa_bin,
            "--details",
            str(details),
            "--no-progress",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "sections -mental_health" in result.output
    [line] = details.read_text().splitlines()
    assert json.loads(line)["seq"] == seq


def test_a_tampered_archive_is_not_replayed(log_copy, archive, bundle_revision, opa_bin, tmp_path):
    bad = tmp_path / "archive"
    bad.mkdir()
    (bad / f"{bundle_revision}.tar.gz").write_bytes((archive / f"{bundle_revision}.tar.gz").read_bytes()[:-100])
    for roster in archive.glob("roster-*.tar.gz"):  # the rosters intact: only the policy was tampered with
        (bad / roster.name).write_bytes(roster.read_bytes())
    report = run_replay(log_copy, bad, opa_bin)
    assert report.reproduced == 0
    assert any("does not load" in reason for reason in report.unreplayable)


def candidate_from_archive(archive: Path, revision: str, target: Path) -> Path:
    """The policy of the logged revision, unpacked as a policy folder (not the live policies/,
    which others may be editing)."""
    with tarfile.open(archive / f"{revision}.tar.gz") as tar:
        tar.extractall(target, filter="data")
    (target / ".signatures.json").unlink()
    return target


def remove_section(candidate: Path, level: str, section: str) -> None:
    data_file = candidate / "data.json"
    data = json.loads(data_file.read_text())
    levels = data["lcr"]["config"]["access_levels"]
    levels[level] = [s for s in levels[level] if s != section]
    data_file.write_text(json.dumps(data))


def test_impact_of_removing_alerts_from_admin_is_exactly_the_admins_alerts(
    synthetic_log, archive, bundle_revision, opa_bin, tmp_path
):
    candidate = candidate_from_archive(archive, bundle_revision, tmp_path / "candidate")
    remove_section(candidate, "admin", "alerts")
    expected: Counter[tuple[str, str, str, str]] = Counter()
    narrowed = 0
    for row in select(
        synthetic_log,
        "SELECT access_level, care_service, opa_result, sections_requested FROM decisions WHERE opa_result IS NOT NULL",
    ):
        level, service, requested = row["access_level"], row["care_service"], row["sections_requested"]
        result = json.loads(row["opa_result"])
        if level == "admin" and result["allow"] and "alerts" in result["sections"]:
            narrowed += 1
            expected[(level, service, "alerts", "section lost")] += 1
            if json.loads(requested) == ["alerts"]:
                expected[(level, service, "*", "access revoked")] += 1
    assert narrowed > 50
    report = run_impact(synthetic_log, candidate, opa_bin, archive)
    assert report.changes == expected
    assert (report.narrowed, report.widened, report.mixed) == (narrowed, 0, 0)
    assert report.evaluated == report.unchanged + report.narrowed + report.other

    out = CliRunner().invoke(
        cli,
        [
            "impact",
            "--db",
            str(synthetic_log),
            "--candidate",
            str(candidate),
            "--opa",
            opa_bin,
            "--archive",
            str(archive),
            "--format",
            "csv",
            "--fail-on-change",
            "--no-progress",
        ],
    )
    assert out.exit_code == 1, out.output
    lines = out.stdout.splitlines()
    assert lines[0] == "access_level,care_service,section,change,decisions"
    assert sum(int(line.rsplit(",", 1)[1]) for line in lines[1:]) == sum(expected.values())


def test_impact_of_an_unchanged_candidate_is_nothing(synthetic_log, archive, bundle_revision, opa_bin, tmp_path):
    candidate = candidate_from_archive(archive, bundle_revision, tmp_path / "same")
    out = CliRunner().invoke(
        cli,
        [
            "impact",
            "--db",
            str(synthetic_log),
            "--candidate",
            str(candidate),
            "--opa",
            opa_bin,
            "--archive",
            str(archive),
            "--format",
            "json",
            "--fail-on-change",
            "--no-progress",
        ],
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["changed"] == 0 and report["changes"] == [] and report["unchanged"] == report["evaluated"] > 1900


def test_impact_of_a_candidate_bundle_that_widens(synthetic_log, archive, bundle_revision, opa_bin, tmp_path):
    candidate = candidate_from_archive(archive, bundle_revision, tmp_path / "wider")
    data = json.loads((candidate / "data.json").read_text())
    data["lcr"]["config"]["access_levels"]["admin"].append("allergies")
    (candidate / "data.json").write_text(json.dumps(data))
    report = run_impact(synthetic_log, candidate, opa_bin, archive)
    assert report.widened > 0 and report.narrowed == 0
    assert {key[2:] for key in report.changes} == {("allergies", "section gained")}
    assert all(key[0] == "admin" for key in report.changes)


def test_a_candidate_that_does_not_build_is_a_clear_error(synthetic_log, tmp_path, opa_bin):
    broken = tmp_path / "broken"
    (broken / "lcr").mkdir(parents=True)
    (broken / ".manifest").write_text('{"roots": ["lcr"]}')
    (broken / "lcr" / "x.rego").write_text("package lcr.access\n\ndecision := {")
    out = CliRunner().invoke(
        cli, ["impact", "--db", str(synthetic_log), "--candidate", str(broken), "--opa", opa_bin, "--no-progress"]
    )
    assert out.exit_code == 2 and "does not build" in out.output
