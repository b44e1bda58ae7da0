"""The auditors' questions: who accessed a resident, what a member of staff or a care service
accessed, all denials; paginated by seq; as functions and as the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from audit_store import queries
from audit_store.cli import cli
from audit_store.queries import QueryError

from .conftest import select


def all_rows(db):
    return select(db, "SELECT * FROM decisions ORDER BY seq")


def pages(fn, *args, **kw):
    """Every row, following the cursor page by page."""
    out, cursor = [], None
    while True:
        page = fn(*args, after_seq=cursor, limit=37, **kw)
        out += page["rows"]
        cursor = page["next_after_seq"]
        if cursor is None:
            return out


def test_who_accessed_a_resident_pages_through_every_request(synthetic_log):
    rows = all_rows(synthetic_log)
    nhs = rows[10]["nhs_number"]
    expected = [r["seq"] for r in rows if r["nhs_number"] == nhs]
    got = pages(queries.who_accessed, synthetic_log, f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}")
    assert [r["seq"] for r in got] == expected and len(expected) > 5
    first = got[0]
    assert {
        "subject_id",
        "subject_name",
        "care_service",
        "access_level",
        "time",
        "outcome",
        "sections_returned",
    } <= first.keys()
    assert "opa_input" not in first  # summary rows; detail=True adds the decision itself
    assert isinstance(first["reasons"], list)


def test_who_accessed_by_time_range_and_outcome(synthetic_log):
    rows = all_rows(synthetic_log)
    nhs = rows[10]["nhs_number"]
    mine = [r for r in rows if r["nhs_number"] == nhs]
    since, until = mine[1]["time"], mine[-2]["time"]
    expected = [r["seq"] for r in mine if since <= r["time"] < until and r["outcome"] == "allowed"]
    got = pages(queries.who_accessed, synthetic_log, nhs, since=since, until=until, outcome="allowed")
    assert [r["seq"] for r in got] == expected


def test_a_date_alone_covers_the_whole_day(synthetic_log):
    rows = all_rows(synthetic_log)
    day = rows[0]["time"][:10]
    got = pages(queries.search, synthetic_log, queries.Filters.make(since=day, until=day))
    assert len(got) == sum(1 for r in rows if r["time"].startswith(day))


def test_staff_and_service_activity(synthetic_log):
    rows = all_rows(synthetic_log)
    sub = rows[3]["subject_id"]
    assert [r["seq"] for r in pages(queries.staff_activity, synthetic_log, sub)] == [
        r["seq"] for r in rows if r["subject_id"] == sub
    ]
    assert [r["seq"] for r in pages(queries.service_activity, synthetic_log, "VM401")] == [
        r["seq"] for r in rows if r["care_service"] == "VM401"
    ]


def test_denials_all_and_by_reason(synthetic_log):
    rows = all_rows(synthetic_log)
    denied = [r["seq"] for r in rows if r["outcome"] == "denied"]
    assert [r["seq"] for r in pages(queries.denials, synthetic_log)] == denied and denied
    reason = "care_service_not_in_london_icb"
    by_reason = [r["seq"] for r in rows if r["outcome"] == "denied" and reason in json.loads(r["reasons"])]
    assert [r["seq"] for r in pages(queries.denials, synthetic_log, reason=reason)] == by_reason and by_reason


def test_newest_first_pages_backwards(synthetic_log):
    page = queries.staff_activity(synthetic_log, all_rows(synthetic_log)[0]["subject_id"], newest_first=True, limit=2)
    assert page["rows"][0]["seq"] > page["rows"][1]["seq"]
    following = queries.staff_activity(
        synthetic_log, page["rows"][0]["subject_id"], newest_first=True, limit=2, before_seq=page["next_before_seq"]
    )
    assert following["rows"][0]["seq"] < page["rows"][1]["seq"]


@pytest.mark.parametrize("bad", [{"nhs_number": "12345"}, {"since": "yesterday"}])
def test_bad_filters_are_clear_errors(synthetic_log, bad):
    with pytest.raises(QueryError):
        queries.search(synthetic_log, queries.Filters.make(**bad))


def test_queries_cannot_write(synthetic_log):
    with queries.connect(synthetic_log) as conn, pytest.raises(Exception, match="readonly|read-only"):
        conn.execute("CREATE TABLE x (y int)")


@pytest.mark.parametrize(
    "args",
    [
        ["who-accessed", "999 000 0018"],
        ["staff", "VM101-staff-003"],
        ["service", "VM102", "--outcome", "allowed"],
        ["denials", "--reason", "access_level_no_access"],
    ],
    ids=["who-accessed", "staff", "service", "denials"],
)
@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_cli_queries(synthetic_log, args, fmt):
    result = CliRunner().invoke(cli, [*args, "--db", str(synthetic_log), "--format", fmt, "--limit", "5"])
    assert result.exit_code == 0, result.output
    if fmt == "json":
        assert json.loads(result.stdout)["rows"]
    elif fmt == "csv":
        assert result.stdout.startswith("seq,decision_id,time")
    else:
        assert "seq" in result.stdout.splitlines()[0]


def test_cli_refuses_a_missing_store(tmp_path):
    result = CliRunner().invoke(cli, ["denials", "--db", str(tmp_path / "nope.db")])
    assert result.exit_code == 2 and "no audit store" in result.output


@pytest.mark.parametrize(
    "command",
    ["verify", "who-accessed", "staff", "service", "denials", "export", "checkpoint", "replay", "impact", "migrate"],
)
def test_every_command_has_help_with_an_example(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "Example" in result.output and "--db" in result.output


def test_who_accessed_within_one_care_service(synthetic_log):
    """The care app's Audit Trail view may be limited to the caller's own care service."""
    rows = all_rows(synthetic_log)
    nhs = rows[10]["nhs_number"]
    service = rows[10]["care_service"]
    got = pages(queries.who_accessed, synthetic_log, nhs, care_service=service)
    assert [r["seq"] for r in got] == [
        r["seq"] for r in rows if r["nhs_number"] == nhs and r["care_service"] == service
    ]
