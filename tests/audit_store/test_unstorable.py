"""Whatever a token presented reaches its row, and a row that cannot be stored fails alone.

Claims are normalised into what the store can hold before the row is built (a lone UTF-16
surrogate kept as its escape, NaN / Infinity / over-long integers as strings, JSON nested
too deep kept as text), and a row the database still refuses never fails the other rows of
its group commit. Every stored row verifies (`lcr-audit verify`).
"""

from __future__ import annotations

import fcntl
import json
import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_store import AuditStore, AuditWriteError, chain, queries
from audit_store.checkpoints import load_public_keys
from audit_store.cli import cli
from audit_store.events import MAX_JSON_DEPTH, storable_json, storable_text
from audit_store.verify import verify

from .conftest import db_arg, event, select


@pytest.fixture
def backend() -> str:
    """SQLite only: the group is held together by the SQLite writers' lock file."""
    return "sqlite"


CLAIM_COLUMNS = ("subject_id", "subject_name", "care_service", "access_level", "reason_for_request")


def poisoned(i: int, claims: dict[str, Any]) -> Any:
    """The row the sidecar builds from a token with these claims."""
    return event(
        i,
        subject_id=claims.get("sub"),
        subject_name=claims.get("name"),
        care_service=claims.get("requesting_organization"),
        access_level=claims.get("lcr_access_level"),
        reason_for_request=claims.get("reason_for_request"),
        opa_input={"subject": claims, "patient": {"nhs_number": "9990000018", "dob": "1938-04-12"}},
    )


def read(store: Any, decision_id: str) -> dict[str, Any]:
    [row] = select(store, "SELECT * FROM decisions WHERE decision_id = ?", (decision_id,))
    return row


def verified(store: Any, key: Path) -> None:
    with queries.connect(store) as conn:
        report = verify(conn, load_public_keys([key]), max_unsigned=10**9)
    assert report.ok, report.problems
    assert report.rows == store.count()
    result = CliRunner().invoke(
        cli, ["verify", "--db", db_arg(store), "--public-key", str(key), "--max-unsigned", str(10**9)]
    )
    assert result.exit_code == 0, result.output


def together(store: AuditStore, events: list[Any], warm: bool = True) -> list[Any]:
    """Append the events from one thread each, all in one group commit: the writers' turn
    (the lock file) is held until every one is queued, so the writer gathers them all."""
    if warm:
        store.append(event(10**6))  # the writer thread is up
    results: list[Any] = [None] * len(events)
    lock = open(store.path.with_name(store.path.name + ".lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)

    def worker(i: int) -> None:
        try:
            results[i] = store.append(events[i])
        except AuditWriteError as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(events))]
    for t in threads:
        t.start()
    time.sleep(0.2)  # every thread has queued its row (the busy timeout is 2 s)
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()
    for t in threads:
        t.join()
    return results


# -- the values found ----------------------------------------------------------------------


def test_a_lone_surrogate_name_is_stored_escaped_and_its_neighbours_commit(make_store, checkpoint_key):
    store = make_store(checkpoint_every=7)
    claims = {
        "sub": "staff-0002",
        "name": "x\ud800",
        "requesting_organization": "VM101",
        "reason_for_request": "directcare",
        "lcr_access_level": "admin",
    }
    bad = poisoned(1, claims)
    good = [event(i) for i in range(2, 40)]
    commits = store.stats.commits
    results = together(store, [*good[:19], bad, *good[19:]])
    assert all(isinstance(r, int) for r in results), [r for r in results if not isinstance(r, int)]
    assert store.stats.commits - commits <= 3, "not one group commit: the test proves nothing"
    row = read(store, bad.decision_id)
    assert row["subject_name"] == "x\\ud800"  # what was presented, as its escape
    assert json.loads(row["opa_input"])["subject"]["name"] == "x\ud800"  # exact in the JSON column
    assert '"name":"x\\ud800"' in row["opa_input"]
    verified(store, checkpoint_key)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        pytest.param(float("nan"), "NaN", id="nan"),
        pytest.param(float("inf"), "Infinity", id="infinity"),
        pytest.param(float("-inf"), "-Infinity", id="minus-infinity"),
        pytest.param(10**5000, hex(10**5000), id="int-over-4300-digits"),
    ],
)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_numbers_json_cannot_carry_are_stored_as_strings(make_store, checkpoint_key, value, stored, backend):
    store = make_store()
    claims = {"sub": "staff-0002", "name": value, "requesting_practitioner": {"id": value}, "lcr_access_level": "admin"}
    e = poisoned(1, claims)
    seq = store.append(e)
    row = read(store, e.decision_id)
    assert row["seq"] == seq and row["subject_name"] == stored
    assert json.loads(row["opa_input"])["subject"]["requesting_practitioner"] == {"id": stored}
    verified(store, checkpoint_key)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_json_nested_too_deep_for_the_encoder_is_kept_as_text(make_store, checkpoint_key, backend):
    store = make_store()
    deep: list[Any] = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]
    e = poisoned(1, {"sub": "staff-0002", "requesting_practitioner": deep})
    store.append(e)
    subject = json.loads(read(store, e.decision_id)["opa_input"])["subject"]
    node = subject["requesting_practitioner"]
    for _ in range(MAX_JSON_DEPTH - 2):  # opa_input → subject → claim: the claim starts 2 down
        node = node[0]
    assert isinstance(node, str) and node.startswith("[[[") and len(node) > 9000
    verified(store, checkpoint_key)


def test_a_row_that_is_not_json_fails_alone_in_its_group(make_store, checkpoint_key):
    store = make_store()
    bad = event(1, opa_input={"subject": {"name": object()}})
    results = together(store, [event(2), bad, event(3)])
    assert isinstance(results[1], AuditWriteError) and "unstorable" in str(results[1])
    assert isinstance(results[0], int) and isinstance(results[2], int)
    verified(store, checkpoint_key)


def test_a_circular_value_fails_alone_and_promptly(make_store):
    store = make_store()
    loop: list[Any] = []
    loop.append(loop)
    loop.append(loop)
    started = time.monotonic()
    results = together(store, [event(1), event(2, opa_input={"subject": {"name": loop}}), event(3)])
    assert isinstance(results[1], AuditWriteError) and "circular" in str(results[1])
    assert isinstance(results[0], int) and isinstance(results[2], int)
    assert time.monotonic() - started < 10


class _Unbindable(AuditStore):
    """A store whose preparation lets one row through that SQLite then refuses: the group
    commit's own last line of defence (one by one after a refused group)."""

    def _prepare(self, row: Any) -> Any:  # type: ignore[override]  # a test double of the store's private preparation
        values, content, prefix = super()._prepare(row)
        if row.subject_name == "unbindable":
            values = tuple("\ud800" if v == "unbindable" else v for v in values)
        return values, content, prefix


def test_a_row_the_database_refuses_fails_alone_not_its_group(tmp_path, checkpoint_key):
    store = _Unbindable(tmp_path / "audit.db", checkpoint_key=checkpoint_key, checkpoint_every=5)
    try:
        good = [event(i) for i in range(2, 22)]
        bad = event(1, subject_name="unbindable")
        results = together(store, [*good[:10], bad, *good[10:]])
        assert isinstance(results[10], AuditWriteError) and "surrogates" in str(results[10])
        assert all(isinstance(r, int) for i, r in enumerate(results) if i != 10), results
        assert store.count() == 1 + len(good)
        assert store.stats.failed_commits == 1  # only the bad row's own commit
        verified(store, checkpoint_key)
    finally:
        store.close()


def test_a_locked_store_still_fails_the_whole_group_once(make_store):
    """The store's own state (locked past the busy timeout) is not retried row by row."""
    store = make_store(busy_timeout_ms=400)
    store.append(event(0))
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        results = together(store, [event(i) for i in range(1, 9)], warm=False)
        elapsed = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert all(isinstance(r, AuditWriteError) for r in results), results
    assert "locked" in str(results[0])
    # one group: 0.2 s queueing + one 0.4 s busy timeout; row by row would be 9 timeouts
    assert elapsed < 2.5, f"{elapsed:.2f}s: the rows were retried one by one"
    assert store.append(event(99)) == 2


# -- fuzz: arbitrary JSON claim values ------------------------------------------------------

_SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
_TEXT = st.lists(
    st.one_of(st.characters(), _SURROGATES, st.sampled_from(["\\", '"', "\x00", "\u2028", "😀"])), max_size=12
).map("".join)
_NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -0.0, 2**63, -(2**63) - 1]),
    st.integers(4301, 4400).map(lambda digits: -(10**digits)),  # too long to write in decimal
)
_SCALARS = st.one_of(st.none(), st.booleans(), _NUMBERS, _TEXT)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)),
    max_leaves=30,
)


def _deep(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


CLAIMS = st.fixed_dictionaries(
    {},
    optional={
        "sub": JSON_VALUES,
        "name": JSON_VALUES,
        "requesting_organization": JSON_VALUES,
        "reason_for_request": JSON_VALUES,
        "lcr_access_level": JSON_VALUES,
        "requesting_practitioner": st.one_of(
            JSON_VALUES, st.builds(_deep, JSON_VALUES, st.sampled_from([40, 1200, 3000]))
        ),
        "jti": JSON_VALUES,
    },
)


def _readable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_fuzz_every_claim_value_stores_or_fails_alone_and_verifies(make_store, checkpoint_key, backend):
    store = make_store(checkpoint_every=25)
    stored = 0

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(claims=CLAIMS)
    def one(claims: dict[str, Any]) -> None:
        nonlocal stored
        bad = poisoned(0, claims)
        good = [event(i) for i in range(1, 4)]
        results: list[Any] = [None] * 4

        def worker(i: int, e: Any) -> None:
            try:
                results[i] = store.append(e)
            except AuditWriteError as exc:
                results[i] = exc

        threads = [threading.Thread(target=worker, args=(i, e)) for i, e in enumerate([bad, *good])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(isinstance(r, int) for r in results[1:]), results  # neighbours never fail
        assert isinstance(results[0], int), results[0]  # JSON claims always store
        stored += 1
        row = read(store, bad.decision_id)
        assert row["row_hash"] == chain.row_hash_of(row)
        for column in CLAIM_COLUMNS:
            assert row[column] is None or (isinstance(row[column], str) and _readable(row[column]))
        name = claims.get("name")
        if isinstance(name, str):
            expected = storable_text(name)
            if backend == "postgresql":  # PostgreSQL text cannot hold NUL: kept as its escape
                expected = expected.replace("\x00", "\\u0000")
            assert row["subject_name"] == expected
        opa_input = json.loads(row["opa_input"])  # every reader can parse it back
        assert row["opa_input"] == storable_json(bad.opa_input)
        if "sub" in claims and isinstance(claims["sub"], str):
            assert opa_input["subject"]["sub"] == claims["sub"]  # strings exact in the JSON columns
        if "name" in claims and isinstance(name, float) and math.isnan(name):
            assert opa_input["subject"]["name"] == "NaN"

    one()
    assert stored >= 100
    verified(store, checkpoint_key)


# -- the normalisation itself ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param({"b": 1, "a": [1.5, None, True]}, '{"a":[1.5,null,true],"b":1}', id="plain-json-unchanged"),
        pytest.param({"n": float("nan")}, '{"n":"NaN"}', id="nan"),
        pytest.param({1: "a", "b": 2, None: 3}, '{"1":"a","b":2,"null":3}', id="mixed-keys"),
        pytest.param(["x\ud800"], '["x\\ud800"]', id="surrogate-escaped"),
        pytest.param(("a", float("-inf")), '["a","-Infinity"]', id="tuple-and-minus-infinity"),
    ],
)
def test_storable_json(value: Any, text: str) -> None:
    assert storable_json(value) == text


def test_storable_json_refuses_what_is_not_json() -> None:
    with pytest.raises(TypeError):
        storable_json({"x": object()})


def test_storable_text_escapes_only_lone_surrogates() -> None:
    assert storable_text("Zoë 😀") == "Zoë 😀"
    assert storable_text("x\ud800y\udfff") == "x\\ud800y\\udfff"
    assert storable_text("plain") == "plain"
