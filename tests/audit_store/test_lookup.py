"""The writer's fast paths give exactly the chain's definitions, and the lookup table that
carries the auditors' indexes behind the log stays a faithful, growing copy of it."""

from __future__ import annotations

import math
import sqlite3

import pytest
import sqlite_utils

from audit_store import AuditStore, AuditWriteError, chain, queries
from audit_store.store import LOOKUP, LOOKUP_COLUMNS, migrations, prepare, update_lookup

from .conftest import event


@pytest.fixture
def backend() -> str:
    """SQLite only: the lookup table is SQLite's (PostgreSQL indexes the log itself)."""
    return "sqlite"


ODD_ROWS = [
    event(0),
    event(1, subject_name="Zoë Ünal \u2603 \U0001f600", client='a"b\\c\n\t\x00\x1f'),
    event(2, latency_ms=-0.0, resources_returned=2**63 - 1, http_status=True, shadow_diverged=1),
    event(3, latency_ms=1e100, error_code=None, nhs_number=None, opa_input={"ü": [1.5, None, {"b": 1, "a": "\u2028"}]}),
    event(4, latency_ms=float("nan"), reasons=["x"] * 50, sections_returned={"z": 1, "a": 2}),
    event(5, latency_ms=3, care_service=12345, policy_revision="rev\u00e9"),
]


@pytest.mark.parametrize("row", ODD_ROWS, ids=range(len(ODD_ROWS)))
def test_the_writers_content_text_and_prefix_hash_match_the_chain_definitions(row):
    values, content, prefix = prepare(row)
    stored = dict(zip(chain.CONTENT_NAMES, values, strict=False))
    assert content == chain.content_json(stored)
    for seq, prev in ((1, chain.GENESIS), (123456789, "ab" * 32)):
        assert chain.row_hash_after(prefix, seq, prev) == chain.row_hash(seq, prev, content)
        assert chain.row_hash_after(prefix, seq, prev) == chain.row_hash_of({**stored, "seq": seq, "prev_hash": prev})


def test_stored_odd_rows_read_back_as_hashed(make_store):
    store = make_store()
    for row in ODD_ROWS:
        store.append(row)
    rows = list(store.rows())
    assert len(rows) == len(ODD_ROWS)
    assert all(r["row_hash"] == chain.row_hash_of(r) for r in rows)
    assert math.isnan(ODD_ROWS[4].latency_ms) and rows[4]["latency_ms"] is None


def test_an_integer_sqlite_cannot_store_fails_only_its_own_row(make_store):
    store = make_store()
    with pytest.raises(AuditWriteError, match="unstorable"):
        store.append(event(0, resources_returned=2**63))
    assert store.append(event(1)) == 1


def lookup_rows(path):
    conn = sqlite3.connect(path)
    try:
        columns = ", ".join(LOOKUP_COLUMNS)
        return conn.execute(f"SELECT {columns} FROM {LOOKUP} ORDER BY seq").fetchall(), conn.execute(
            f"SELECT {columns} FROM decisions ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


def test_the_lookup_table_follows_the_log_in_bulk(make_store):
    store = make_store(lookup_every=10, checkpoint_every=0)
    for i in range(25):
        store.append(event(i, nhs_number=f"99900000{i % 3}8"))
    copied, log = lookup_rows(store.path)
    assert 20 <= len(copied) < 25 and copied == log[: len(copied)]  # the rest is the tail
    assert store.stats.lookup_commits >= 2
    conn = sqlite3.connect(store.path, isolation_level=None)
    assert update_lookup(conn) == 25 - len(copied)
    conn.close()
    copied, log = lookup_rows(store.path)
    assert copied == log


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param(f"UPDATE {LOOKUP} SET nhs_number = 'x' WHERE seq = 1", id="update"),
        pytest.param(f"DELETE FROM {LOOKUP} WHERE seq = 1", id="delete"),
        pytest.param(
            f"INSERT INTO {LOOKUP} (seq, time, outcome, nhs_number) SELECT seq, time, outcome, 'other' FROM "
            "decisions WHERE seq = 6",
            id="not-a-copy",
        ),
        pytest.param(
            f"INSERT INTO {LOOKUP} SELECT {', '.join(LOOKUP_COLUMNS)} FROM decisions WHERE seq = 7", id="skips-a-row"
        ),
        pytest.param(f"INSERT INTO {LOOKUP} (seq, time, outcome) VALUES (99, 't', 'allowed')", id="no-such-row"),
        pytest.param(f"INSERT OR REPLACE INTO {LOOKUP} SELECT * FROM {LOOKUP} WHERE seq = 1", id="replace"),
    ],
)
def test_the_lookup_table_refuses_anything_but_copying_the_next_row(make_store, sql):
    store = make_store(lookup_every=5, checkpoint_every=0)
    for i in range(7):
        store.append(event(i))
    before = lookup_rows(store.path)[0]
    assert len(before) == 5
    conn = sqlite3.connect(store.path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="only grows"):
        conn.execute(sql)
    conn.close()
    assert lookup_rows(store.path)[0] == before


@pytest.mark.parametrize("lookup_every", [1, 7, 10_000], ids=["all-indexed", "part", "none-indexed"])
def test_queries_find_rows_in_the_lookup_table_and_in_its_tail(make_store, lookup_every):
    store = make_store(lookup_every=lookup_every, checkpoint_every=0)
    for i in range(40):
        store.append(
            event(
                i,
                nhs_number=f"99900000{i % 4}8",
                subject_id=f"staff-{i % 3}",
                outcome="denied" if i % 5 == 0 else "allowed",
            )
        )
    log = list(store.rows())
    nhs = log[0]["nhs_number"]
    got = [r["seq"] for r in queries.who_accessed(store, nhs, limit=1000)["rows"]]
    assert got == [r["seq"] for r in log if r["nhs_number"] == nhs]
    got = [r["seq"] for r in queries.staff_activity(store, "staff-1", since=log[5]["time"], limit=1000)["rows"]]
    assert got == [r["seq"] for r in log if r["subject_id"] == "staff-1" and r["time"] >= log[5]["time"]]
    got = [r["seq"] for r in queries.denials(store, limit=1000, newest_first=True)["rows"]]
    assert got == [r["seq"] for r in reversed(log) if r["outcome"] == "denied"]
    assert queries.count(store, queries.Filters.make(subject_id="staff-2")) == sum(
        r["subject_id"] == "staff-2" for r in log
    )


def test_a_store_with_the_indexes_on_the_log_is_migrated(tmp_path, checkpoint_key):
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="deferred_indexes")
    db.close()
    store = AuditStore(path, checkpoint_key=checkpoint_key)
    store.close()
    conn = sqlite3.connect(path)
    indexes = {
        name
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'decisions'")
    }
    conn.close()
    assert indexes == {"idx_decisions_decision_id"}


def test_rows_written_before_the_lookup_table_are_copied_into_it(tmp_path, checkpoint_key):
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="hash_chain")
    for i in range(6):
        db["decisions"].insert(event(i, nhs_number="9990000018" if i % 2 else "9990000026").row())
    db.close()
    store = AuditStore(path, checkpoint_key=checkpoint_key, lookup_every=10_000)
    store.append(event(6, nhs_number="9990000018"))
    copied, log = lookup_rows(path)
    assert copied == log[:6]
    got = [r["seq"] for r in queries.who_accessed(store, "9990000018")["rows"]]
    assert got == [2, 4, 6, 7]
    store.close()


def test_a_bug_in_a_round_fails_its_callers_and_the_writer_goes_on(make_store, monkeypatch):
    store = make_store()
    store.append(event(0))

    def broken(conn, rows):
        raise KeyError("bug")

    monkeypatch.setattr(store, "_write", broken)
    with pytest.raises(AuditWriteError):
        store.append(event(1))
    monkeypatch.undo()
    assert store.append(event(2)) == 2


def test_a_row_that_cannot_be_serialised_fails_only_itself(make_store):
    store = make_store()
    with pytest.raises(AuditWriteError, match="unstorable"):
        store.append(event(0, opa_input={"x": [object()]}))
    assert store.append(event(1)) == 1
    # Nesting too deep for the JSON encoder is not unstorable: from MAX_JSON_DEPTH down it
    # is kept as its JSON text (tests/audit_store/test_unstorable.py).
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert store.append(event(2, opa_input={"x": deep})) == 2
