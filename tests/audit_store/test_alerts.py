"""`lcr-audit alerts` with the real OPA and the built bundle, on a generated log with planted patterns.

Four weeks of ordinary work (a handful of requests a day per staff member, in office hours,
now and then an unmatched identifier or a refused section) and, on the last day, one of
each pattern the rules look for. The alerts must be exactly the planted ones.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from audit_store import AuditEvent, AuditStore
from audit_store.cli import cli
from audit_store.synthetic import nhs_numbers
from bundles.roster import build as build_roster

UTC = dt.UTC
DAY = dt.date(2026, 11, 29)  # the window: in November London time is UTC
STAFF = {  # subject_id → (name, care service)
    "VM101-staff-001": ("Ada Okafor", "VM101"),
    "VM101-staff-002": ("Ben Singh", "VM101"),
    "VM101-staff-003": ("Chen Murphy", "VM101"),
    "VM101-staff-004": ("Dee Whitaker", "VM101"),
    "VM102-staff-001": ("Eli Nowak", "VM102"),
    "VM102-staff-002": ("Fay Patel", "VM102"),
    "VM102-staff-003": ("Gus Evans", "VM102"),
}
FAMILY = ["Thompson", "Clarke", "Hughes", "Green", "Baker", "Hall", "Wood", "Price", "Bell", "Cox"]
NHS_PATTERN = re.compile(r"\b\d{3} ?\d{3} ?\d{4}\b")


def _residents() -> dict[str, dict[str, dict[str, Any]]]:
    numbers = nhs_numbers()
    roster: dict[str, dict[str, dict[str, Any]]] = {}
    for service in ("VM101", "VM102"):
        roster[service] = {
            next(numbers): {
                "status": "resident",
                "start": "2026-01-05",
                "end": None,
                "family_name": FAMILY[i % len(FAMILY)],
            }
            for i in range(20)
        }
    # A resident who shares Dee Whitaker's surname at her own home, and one who shares
    # Ben Singh's at the other home.
    roster["VM101"][next(numbers)] = {
        "status": "resident",
        "start": "2026-02-01",
        "end": None,
        "family_name": "Whitaker",
    }
    roster["VM102"][next(numbers)] = {
        "status": "respite",
        "start": "2026-11-20",
        "end": "2026-12-04",
        "family_name": "Singh",
    }
    return roster


ROSTER = _residents()
UNMATCHED = next(n for n in nhs_numbers() if n not in ROSTER["VM101"] and n not in ROSTER["VM102"])


def _number(service: str, family: str) -> str:
    return next(n for n, r in ROSTER[service].items() if r["family_name"] == family)


class Log:
    """Events to append, and which planted pattern each belongs to."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.planted: dict[str, list[str]] = {}  # pattern → decision ids

    def add(
        self,
        sub: str | None,
        at: dt.datetime,
        *,
        action: str = "record.read",
        outcome: str = "allowed",
        reasons: list[str] | None = None,
        nhs: str | None = None,
        plant: str | None = None,
    ) -> AuditEvent:
        name, service = STAFF[sub] if sub else (None, None)
        statuses = {
            "allowed": (200, None),
            "denied": (403, "access-denied"),
            "no-matching-record": (404, "no-matching-record"),
            "unauthenticated": (401, "token-missing"),
        }
        status, code = statuses[outcome]
        event = AuditEvent(
            decision_id=str(uuid.uuid4()),
            time=at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            action=action,
            outcome=outcome,
            http_status=status,
            error_code=code,
            subject_id=sub,
            subject_name=name,
            care_service=service,
            access_level="senior_carer" if sub else None,
            reason_for_request="directcare" if sub else None,
            client="10.0.0.7",
            nhs_number=nhs,
            reasons=reasons or [],
            policy_revision="sha256-test",
        )
        self.events.append(event)
        if plant:
            self.planted.setdefault(plant, []).append(event.decision_id)
        return event


def _at(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def generate(path: Path, checkpoint_key: Path) -> tuple[dict[str, set[int]], dict[str, int]]:
    """The log; the seqs of each planted pattern; the seq of each decision id."""
    rng = random.Random(11)
    log = Log()
    planted_today = {"VM101-staff-002", "VM101-staff-003", "VM101-staff-004", "VM102-staff-001", "VM102-staff-002"}
    for offset in range(28, -1, -1):  # 1 to 29 November
        day = DAY - dt.timedelta(days=offset)
        for sub, (name, service) in STAFF.items():
            own = [n for n, r in ROSTER[service].items() if r["family_name"] != name.split()[-1]]
            for _ in range(rng.randint(8, 12)):  # ordinary work, 09:00 to 17:00
                at = _at(day, 9) + dt.timedelta(seconds=rng.randint(0, 8 * 3600 - 1))
                log.add(sub, at, action=rng.choice(["record.read", "record.read", "menu.read"]), nhs=rng.choice(own))
            if day == DAY and sub in planted_today:
                continue  # their planted rows only, so the expected rows are exact
            if rng.random() < 0.3:  # a mistyped NHS number
                log.add(
                    sub,
                    _at(day, 9) + dt.timedelta(seconds=rng.randint(0, 8 * 3600 - 1)),
                    outcome="no-matching-record",
                    nhs=UNMATCHED,
                )
            if rng.random() < 0.3:  # a section they may not see
                log.add(
                    sub,
                    _at(day, 9) + dt.timedelta(seconds=rng.randint(0, 8 * 3600 - 1)),
                    outcome="denied",
                    reasons=["section_unknown"],
                    nhs=rng.choice(own),
                )
    # Requests that end before anyone is known (no token), at night: no staff member, no alert.
    log.add(None, _at(DAY, 3, 10), outcome="unauthenticated")
    # Half an hour without a roster (the platform's failure, not the staff member's): no alert.
    for minute in range(0, 31, 6):
        log.add(
            "VM101-staff-001",
            _at(DAY, 12, minute),
            outcome="denied",
            reasons=["roster_not_loaded"],
            nhs=next(iter(ROSTER["VM101"])),
        )

    # 1. identifier probing: three unmatched NHS numbers and a resident of another home in 25 minutes.
    for minute in (0, 7, 15):
        log.add(
            "VM101-staff-002",
            _at(DAY, 14, minute),
            outcome="no-matching-record",
            nhs=UNMATCHED,
            plant="identifier_probing",
        )
    log.add(
        "VM101-staff-002",
        _at(DAY, 14, 25),
        outcome="denied",
        reasons=["no_legitimate_relationship"],
        nhs=_number("VM102", "Singh"),
        plant="identifier_probing",
    )
    # 2. out of hours: 05:30 and 22:15.
    log.add("VM101-staff-003", _at(DAY, 5, 30), nhs=next(iter(ROSTER["VM101"])), plant="out_of_hours")
    log.add(
        "VM101-staff-003", _at(DAY, 22, 15), action="menu.read", nhs=next(iter(ROSTER["VM101"])), plant="out_of_hours"
    )
    # 3. a resident with the staff member's surname, at her own home.
    log.add("VM101-staff-004", _at(DAY, 11, 0), nhs=_number("VM101", "Whitaker"), plant="same_surname")
    # 4. unusual volume: 50 more records than the usual ten or so, in office hours.
    for i in range(50):
        log.add("VM102-staff-001", _at(DAY, 10) + dt.timedelta(minutes=5 * i), nhs=rng.choice(list(ROSTER["VM102"])))
    # 5. repeated denials: six refusals in 40 minutes.
    for minute in range(0, 41, 8):
        log.add(
            "VM102-staff-002",
            _at(DAY, 15, minute),
            outcome="denied",
            reasons=["access_level_no_access"],
            nhs=next(iter(ROSTER["VM102"])),
            plant="repeated_denials",
        )

    log.events.sort(key=lambda e: e.time)
    store = AuditStore(path, checkpoint_key=checkpoint_key)
    try:
        seqs = store.append_many(log.events)
    finally:
        store.close()
    by_id = {e.decision_id: seq for e, seq in zip(log.events, seqs, strict=False)}
    expected = {pattern: {by_id[i] for i in ids} for pattern, ids in log.planted.items()}
    # Unusual volume: every request VM102-staff-001 made that day, the usual ones too.
    expected["unusual_volume"] = {
        by_id[e.decision_id]
        for e in log.events
        if e.subject_id == "VM102-staff-001" and e.time.startswith(DAY.isoformat())
    }
    return expected, by_id


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, checkpoint_key: Path) -> tuple[Path, dict[str, set[int]]]:
    path = tmp_path_factory.mktemp("alerts") / "audit.db"
    expected, _ = generate(path, checkpoint_key)
    return path, expected


@pytest.fixture(scope="module")
def policy_bundle(run_dir: Path, bundle_revision: str) -> Path:
    return run_dir / "bundles" / "serve" / "lcr.tar.gz"


def _published(roster: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The roster as the care app publishes it (bundles/roster.py)."""
    return {
        "care_services": {
            ods: [{"nhs_number": n, **user} for n, user in users.items()] for ods, users in roster.items()
        }
    }


@pytest.fixture(scope="module")
def roster_bundle(tmp_path_factory: pytest.TempPathFactory, opa_bin: str) -> tuple[Path, str]:
    """The roster built, signed and published as the care app's would be; and its revision."""
    out = tmp_path_factory.mktemp("roster")
    revision = build_roster(_published(ROSTER), out, opa=opa_bin)
    return out / "serve" / "roster.tar.gz", revision


def _unsigned_roster(work: Path, opa_bin: str) -> Path:
    stage = work / "bundle"
    (stage / "roster").mkdir(parents=True)
    (stage / ".manifest").write_text(json.dumps({"roots": ["roster"]}))
    (stage / "roster" / "data.json").write_text(
        json.dumps({"revision": "roster-sha256-unsigned", "care_services": ROSTER})
    )
    out = work / "roster.tar.gz"
    subprocess.run(
        [opa_bin, "build", "--bundle", ".", "--output", str(out)], check=True, cwd=stage, capture_output=True
    )
    return out


def _alerts(db: Path, bundle: Path, opa_bin: str, *args: str) -> tuple[int, Any, str]:
    result = CliRunner().invoke(cli, ["alerts", "--db", str(db), "--bundle", str(bundle), "--opa", opa_bin, *args])
    return result.exit_code, result.stdout, result.stderr


def test_alerts_find_each_planted_pattern_and_nothing_else(planted, policy_bundle, roster_bundle, opa_bin):
    db, expected = planted
    roster, revision = roster_bundle
    code, out, err = _alerts(
        db,
        policy_bundle,
        opa_bin,
        "--roster",
        str(roster),
        "--since",
        "2026-11-29",
        "--until",
        "2026-11-29",
        "--format",
        "json",
    )
    assert code == 1, err
    report = json.loads(out)
    found = {a["rule"]: a for a in report["alerts"]}
    assert len(found) == len(report["alerts"]) == 5, report["alerts"]
    assert {rule: set(a["seqs"]) for rule, a in found.items()} == expected
    assert {rule: (a["subject_id"], a["care_service"], a["severity"]) for rule, a in found.items()} == {
        "identifier_probing": ("VM101-staff-002", "VM101", "high"),
        "out_of_hours": ("VM101-staff-003", "VM101", "low"),
        "same_surname": ("VM101-staff-004", "VM101", "high"),
        "unusual_volume": ("VM102-staff-001", "VM102", "medium"),
        "repeated_denials": ("VM102-staff-002", "VM102", "medium"),
    }
    assert [a["severity"] for a in report["alerts"]] == ["high", "high", "medium", "medium", "low"]
    assert report["roster_revision"] == revision and revision.startswith("roster-sha256-")
    assert report["policy_revision"] and report["policy_revision"].startswith("sha256-")
    assert report["window"] == {
        "since": "2026-11-29T00:00:00.000000Z",
        "until": "2026-11-30T00:00:00.000000Z",
        "time_zone": "Europe/London",
    }
    assert report["history_since"] == "2026-11-01T00:00:00.000000Z" and report["history_buckets"] > 0
    assert found["unusual_volume"]["count"] >= 58
    assert not NHS_PATTERN.search(json.dumps(found)), "an alert names a resident"


def test_an_ordinary_day_has_no_alerts(planted, policy_bundle, roster_bundle, opa_bin):
    db, _ = planted
    code, out, err = _alerts(
        db,
        policy_bundle,
        opa_bin,
        "--roster",
        str(roster_bundle[0]),
        "--since",
        "2026-11-28",
        "--until",
        "2026-11-28",
        "--format",
        "json",
    )
    assert code == 0, err
    assert json.loads(out)["alerts"] == []
    assert json.loads(out)["rows"] > 50


def test_the_table_names_rules_staff_and_rows_but_no_resident(planted, policy_bundle, roster_bundle, opa_bin):
    db, expected = planted
    roster, revision = roster_bundle
    code, out, err = _alerts(
        db,
        policy_bundle,
        opa_bin,
        "--roster",
        str(roster),
        "--since",
        "2026-11-29T00:00:00Z",
        "--until",
        "2026-11-30T00:00:00Z",
    )
    assert code == 1
    assert "5 alerts" in err
    lines = out.splitlines()
    assert f"roster {revision}" in lines[0]
    header = next(i for i, line in enumerate(lines) if line.startswith("severity"))
    body = lines[header + 2 :]
    assert [line.split()[1] for line in body] == [
        "same_surname",
        "identifier_probing",
        "unusual_volume",
        "repeated_denials",
        "out_of_hours",
    ]
    assert "VM101-staff-004 (Dee Whitaker)" in out
    assert ", ".join(str(s) for s in sorted(expected["identifier_probing"])) in out
    assert not NHS_PATTERN.search(out)
    for service in ROSTER.values():  # no resident's family name (the staff member's own name aside)
        for resident in service.values():
            if resident["family_name"] not in ("Whitaker", "Singh"):
                assert resident["family_name"] not in out


def test_without_a_roster_the_same_surname_rule_finds_nothing(planted, policy_bundle, opa_bin, tmp_path, monkeypatch):
    db, expected = planted
    monkeypatch.chdir(tmp_path)  # no var/bundles/serve/roster.tar.gz here, whatever a local run left
    code, out, _ = _alerts(
        db, policy_bundle, opa_bin, "--since", "2026-11-29", "--until", "2026-11-29", "--format", "json"
    )
    assert code == 1
    report = json.loads(out)
    assert {a["rule"]: set(a["seqs"]) for a in report["alerts"]} == {
        k: v for k, v in expected.items() if k != "same_surname"
    }
    assert report["roster_revision"] is None


def test_the_default_window_is_the_last_24_hours(planted, policy_bundle, opa_bin):
    db, expected = planted
    code, out, _ = _alerts(db, policy_bundle, opa_bin, "--until", "2026-11-29T14:20:00Z", "--format", "json")
    report = json.loads(out)
    assert report["window"]["since"] == "2026-11-28T14:20:00.000000Z"
    # Three unmatched answers by 14:15 are enough; the fourth row (14:25) is after the window.
    [probing] = [a for a in report["alerts"] if a["rule"] == "identifier_probing"]
    assert set(probing["seqs"]) == set(sorted(expected["identifier_probing"])[:3])
    assert code == 1


def test_could_not_run_is_exit_2(planted, policy_bundle, opa_bin, tmp_path):
    db, _ = planted
    assert _alerts(db, tmp_path / "none.tar.gz", opa_bin)[0] == 2
    assert _alerts(db, policy_bundle, opa_bin, "--roster", str(tmp_path / "none.tar.gz"))[0] == 2
    assert _alerts(tmp_path / "none.db", policy_bundle, opa_bin)[0] == 2
    assert _alerts(db, policy_bundle, opa_bin, "--since", "2026-11-29", "--until", "2026-11-28")[0] == 2
    assert _alerts(db, policy_bundle, opa_bin, "--since", "yesterday")[0] == 2
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(policy_bundle.read_bytes()[:-64] + b"\0" * 64)
    assert _alerts(db, broken, opa_bin)[0] == 2


def test_an_unsigned_roster_is_refused_unless_told(planted, policy_bundle, opa_bin, tmp_path):
    db, _ = planted
    unsigned = _unsigned_roster(tmp_path, opa_bin)
    code, _, err = _alerts(db, policy_bundle, opa_bin, "--roster", str(unsigned), "--since", "2026-11-29")
    assert code == 2 and "roster" in err, err
    code, out, _ = _alerts(
        db,
        policy_bundle,
        opa_bin,
        "--roster",
        str(unsigned),
        "--skip-verify",
        "--since",
        "2026-11-29",
        "--until",
        "2026-11-29",
        "--format",
        "json",
    )
    assert code == 1 and json.loads(out)["roster_revision"] == "roster-sha256-unsigned"
