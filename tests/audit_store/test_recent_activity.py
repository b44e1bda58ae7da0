"""recent_activity (the decision input's `history`): each process remembers the rows it has
counted per staff member and reads only those committed since; the counts must always be
those of one query over the window, whatever order the calls, the writers and `since` come in."""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3

import pytest

from audit_store import store as store_module
from audit_store.events import utc_timestamp

from .conftest import event

START = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def backend() -> str:
    return "sqlite"


def expected(path, subject_id: str, since: str) -> dict[str, dict[str, int]]:
    """One plain count over every committed row: what recent_activity must answer."""
    conn = sqlite3.connect(path)
    try:
        found = conn.execute(
            "SELECT outcome, reasons FROM decisions WHERE subject_id = ? AND time >= ?", (subject_id, since)
        ).fetchall()
    finally:
        conn.close()
    outcomes: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for outcome, reasons_json in found:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        for reason in json.loads(reasons_json or "[]"):
            reasons[reason] = reasons.get(reason, 0) + 1
    return {"outcomes": outcomes, "reasons": reasons}


def at(seconds: float) -> str:
    return utc_timestamp(START + dt.timedelta(seconds=seconds))


@pytest.mark.parametrize("scan_rows", [4096, 3], ids=["read-by-seq", "read-again"])
@pytest.mark.parametrize("lookup_every", [5, 10_000], ids=["lookup-table", "tail-only"])
def test_counts_match_one_query_over_the_window_whatever_the_order(make_store, monkeypatch, scan_rows, lookup_every):
    monkeypatch.setattr(store_module, "HISTORY_SCAN_ROWS", scan_rows)
    monkeypatch.setattr(store_module, "HISTORY_PRUNE_ROWS", 4)
    monkeypatch.setattr(store_module, "HISTORY_MARGIN", dt.timedelta(seconds=40))
    rng = random.Random(20261130)
    store = make_store(lookup_every=lookup_every, checkpoint_every=0)
    other = make_store(lookup_every=lookup_every, checkpoint_every=0)  # another worker on the same file
    subjects = ["staff-a", "staff-b", "staff-c"]
    outcomes = ["allowed", "denied", "no-matching-record", "failed"]
    reasons = ["no_legitimate_relationship", "identifier_probing", "access_level_no_access"]
    clock = 0.0
    checked = 0
    for step in range(900):
        clock += rng.uniform(0, 20)
        if rng.random() < 0.6:
            # Rows are timed when their request began: not in seq order, and now and then
            # (a clock put back, a replayed row) from before the window.
            writer = store if rng.random() < 0.7 else other
            outcome = rng.choice(outcomes)
            writer.append(
                event(
                    step,
                    time=at(clock - rng.choice([rng.uniform(0, 30), rng.uniform(0, 1200)])),
                    subject_id=rng.choice(subjects),
                    outcome=outcome,
                    reasons=rng.sample(reasons, rng.randint(0, 2)) if outcome == "denied" else [],
                )
            )
            continue
        # `since` mostly moves forward with the clock; now and then a request that began
        # earlier, or much earlier (below what is remembered), asks.
        window = 600.0
        since = clock - window - rng.choice([0, 0, 0, rng.uniform(0, 60), rng.uniform(0, 3000)])
        subject = rng.choice(subjects)
        assert store.recent_activity(subject, at(since)) == expected(store.path, subject, at(since))
        checked += 1
    assert checked > 300
    # A `since` not in the rows' time format is counted by the query, and still right.
    assert store.recent_activity("staff-a", "2026-11-25") == expected(store.path, "staff-a", "2026-11-25")
    assert store.recent_activity("staff-a", "") == expected(store.path, "staff-a", "")


def test_remembered_rows_are_forgotten_below_the_margin_and_counted_again_when_asked(make_store, monkeypatch):
    store = make_store(checkpoint_every=0)
    for i in range(600):
        store.append(event(i, time=at(i * 10), subject_id="staff-a", outcome="allowed" if i % 3 else "denied"))
    assert store.recent_activity("staff-a", at(0)) == expected(store.path, "staff-a", at(0))
    remembered = store._history["staff-a"]
    assert len(remembered.rows) == 600
    assert store.recent_activity("staff-a", at(5000)) == expected(store.path, "staff-a", at(5000))
    assert len(remembered.rows) == 130  # from 5 minutes before `since` on
    # Within the margin: from what is remembered; before it: read again. Same answers as the query.
    for since in (at(4750), at(4700), at(4699), at(0), at(5990), at(6000)):
        assert store.recent_activity("staff-a", since) == expected(store.path, "staff-a", since)


def test_a_row_whose_reasons_cannot_be_counted_fails_the_calls_whose_window_holds_it(make_store):
    store = make_store(checkpoint_every=0)
    store.append(event(0, time=at(0), subject_id="staff-a"))
    assert store.recent_activity("staff-a", at(0))["outcomes"] == {"allowed": 1}
    store.append(event(1, time=at(10), subject_id="staff-a", outcome="denied", reasons=[["not", "text"]]))
    for since in (at(0), at(5), at(0)):
        with pytest.raises(TypeError):
            store.recent_activity("staff-a", since)
    # Out of the window it is not counted (though it is within what would be remembered).
    assert store.recent_activity("staff-a", at(11)) == {"outcomes": {}, "reasons": {}}
    store.append(event(2, time=at(20), subject_id="staff-a"))
    assert store.recent_activity("staff-a", at(11)) == {"outcomes": {"allowed": 1}, "reasons": {}}
