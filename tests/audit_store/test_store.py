"""The store: durable chained appends, group commit, append-only triggers, migration of old files."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
import sqlite_utils

from audit_store import AuditStore, AuditWriteError, chain, queries
from audit_store.checkpoints import load_public_keys
from audit_store.store import migrations
from audit_store.verify import verify

from .conftest import event, select


def test_append_returns_consecutive_seqs_and_chains_rows(make_store):
    store = make_store()
    seqs = [store.append(event(i)) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    rows = list(store.rows())
    assert [r["seq"] for r in rows] == seqs
    assert rows[0]["prev_hash"] == chain.GENESIS
    for before, after in zip(rows, rows[1:], strict=False):
        assert after["prev_hash"] == before["row_hash"]
    assert all(r["row_hash"] == chain.row_hash_of(r) for r in rows)
    assert store.count() == 5 and store.head() == (5, rows[-1]["row_hash"])


def test_row_hash_is_sha256_of_the_canonical_json_of_the_row(make_store):
    store = make_store()
    store.append(event(0, subject_name="Zoë Ünal"))
    row = next(store.rows())
    content = {name: row[name] for name in chain.CONTENT_NAMES}
    canonical = json.dumps(
        {"content": content, "prev_hash": row["prev_hash"], "seq": row["seq"]}, sort_keys=True, separators=(",", ":")
    )
    import hashlib

    assert row["row_hash"] == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("UPDATE decisions SET outcome = 'allowed' WHERE seq = 1", id="update"),
        pytest.param("DELETE FROM decisions WHERE seq = 1", id="delete"),
        pytest.param("DELETE FROM decisions", id="delete-all"),
        pytest.param("UPDATE checkpoints SET seq = 1", id="update-checkpoint"),
        pytest.param("DELETE FROM checkpoints", id="delete-checkpoint"),
        pytest.param(
            "INSERT INTO decisions (seq, decision_id, time, action, outcome, http_status) VALUES (99, 'x', 't', 'a', "
            "'o', 200)",
            id="insert-off-chain",
        ),
        pytest.param(
            "INSERT OR REPLACE INTO decisions SELECT * FROM decisions WHERE seq = 1",
            id="replace",
        ),
    ],
)
@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL: test_postgres_refuses_changes
def test_the_store_refuses_changes(filled, sql, backend):
    conn = sqlite3.connect(filled.path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute(sql)
    conn.close()
    assert filled.count() == 30


PG_CHANGES = [
    pytest.param("UPDATE decisions SET outcome = 'allowed' WHERE seq = 1", id="update"),
    pytest.param("UPDATE decisions SET outcome = 'allowed' WHERE seq = 999", id="update-no-row"),
    pytest.param("DELETE FROM decisions WHERE seq = 1", id="delete"),
    pytest.param("DELETE FROM decisions", id="delete-all"),
    pytest.param("TRUNCATE decisions", id="truncate"),
    pytest.param("UPDATE checkpoints SET seq = 1", id="update-checkpoint"),
    pytest.param("DELETE FROM checkpoints", id="delete-checkpoint"),
    pytest.param("TRUNCATE checkpoints", id="truncate-checkpoints"),
    pytest.param(
        "INSERT INTO decisions (seq, prev_hash, row_hash, decision_id, time, action, outcome, http_status) "
        "VALUES (99, 'x', 'y', 'x', 't', 'a', 'o', 200)",
        id="insert-off-chain",
    ),
    pytest.param(
        "INSERT INTO decisions (seq, prev_hash, row_hash, decision_id, time, action, outcome, http_status) "
        "SELECT 31, row_hash, row_hash, 'forged', time, action, outcome, http_status FROM decisions WHERE seq = 29",
        id="insert-after-the-wrong-row",
    ),
    pytest.param(
        "INSERT INTO decisions SELECT * FROM decisions WHERE seq = 1 ON CONFLICT (seq) DO UPDATE SET outcome = "
        "'denied'",
        id="upsert",
    ),
    pytest.param("INSERT INTO checkpoints VALUES (5, 'not-the-hash', 'sig', 'k', 't')", id="checkpoint-off-chain"),
]


@pytest.mark.parametrize("sql", PG_CHANGES)
@pytest.mark.parametrize("backend", ["postgresql"])
def test_postgres_refuses_changes(filled, sql, backend):
    """The sidecar's role has no UPDATE, DELETE or TRUNCATE; the triggers refuse even the owner."""
    import psycopg

    for url, refused in (
        (filled.url, (psycopg.errors.InsufficientPrivilege, psycopg.errors.RestrictViolation)),
        (filled.owner_url, psycopg.errors.RestrictViolation),
    ):
        with psycopg.connect(url, autocommit=True) as conn:
            with pytest.raises(refused):
                conn.execute(sql)
    assert filled.count() == 30 and filled.head()[0] == 30


def test_group_commit_groups_concurrent_appends(make_store):
    store = make_store(checkpoint_every=0)
    store.append(event(0))  # writer thread up
    before = store.stats.commits
    barrier = threading.Barrier(32)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        barrier.wait()
        try:
            for i in range(20):
                store.append(event(k * 100 + i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    commits = store.stats.commits - before
    assert store.count() == 1 + 32 * 20
    assert commits < 32 * 20 / 2, f"{commits} commits for {32 * 20} rows: not grouped"


def test_a_failed_commit_fails_every_waiter(make_store, tmp_path, backend):
    store = make_store(busy_timeout_ms=50)
    store.append(event(0))
    if backend == "postgresql":
        import psycopg

        from audit_store.pg import CHAIN_LOCK

        blocker = psycopg.connect(store.url, autocommit=True)
        blocker.execute("BEGIN")
        blocker.execute(
            "SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK,)
        )  # another replica holds the chain past the timeout
    else:
        blocker = sqlite3.connect(store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the timeout
    results: list[object] = []

    def worker(i: int) -> None:
        try:
            results.append(store.append(event(i)))
        except AuditWriteError as exc:
            results.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    blocker.execute("ROLLBACK")
    blocker.close()
    assert len(results) == 8 and all(isinstance(r, AuditWriteError) for r in results), results
    assert ("lock timeout" if backend == "postgresql" else "locked") in str(results[0])
    assert store.append(event(99)) == 2  # and the store recovers


def test_a_duplicate_decision_id_fails_only_its_own_row(make_store):
    store = make_store()
    first = event(0)
    store.append(first)
    results: dict[str, object] = {}

    def worker(e, name):
        barrier.wait()
        try:
            results[name] = store.append(e)
        except AuditWriteError as exc:
            results[name] = exc

    jobs = [(event(i), f"ok{i}") for i in range(1, 6)] + [(event(9, decision_id=first.decision_id), "dup")]
    threads = [threading.Thread(target=worker, args=job) for job in jobs]
    barrier = threading.Barrier(len(threads))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(results["dup"], AuditWriteError)
    assert sorted(v for k, v in results.items() if k != "dup") == [2, 3, 4, 5, 6]


def test_unstorable_row_is_refused_before_the_response(make_store):
    store = make_store()
    with pytest.raises(AuditWriteError, match="unstorable"):
        store.append(event(0, opa_input={"x": object()}))
    assert store.append(event(1)) == 1


def test_checkpoints_every_n_rows_and_on_demand(make_store, checkpoint_key):
    store = make_store(checkpoint_every=10)
    for i in range(25):
        store.append(event(i))
    seqs = [r["seq"] for r in select(store, "SELECT seq FROM checkpoints ORDER BY seq")]
    assert seqs == [10, 20]
    cp = store.checkpoint()
    assert cp is not None and cp["seq"] == 25
    assert store.checkpoint()["seq"] == 25  # already signed: no second checkpoint
    assert [r["seq"] for r in select(store, "SELECT seq FROM checkpoints ORDER BY seq")] == [10, 20, 25]


def test_without_a_configured_key_a_dev_key_is_generated_beside_the_store(tmp_path):
    store = AuditStore(tmp_path / "var" / "audit.db", checkpoint_every=2)
    store.append(event(0))
    store.append(event(1))
    store.close()
    assert (tmp_path / "var" / "keys" / "audit-checkpoint-dev.pem").exists()
    assert (tmp_path / "var" / "keys" / "audit-checkpoint-dev.pub").exists()


def test_a_store_from_before_the_chain_is_migrated_and_verifies(tmp_path, checkpoint_key):
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="hash_chain")
    for i in range(3):
        db["decisions"].insert(event(i).row())
    db.close()
    store = AuditStore(path, checkpoint_key=checkpoint_key)
    store.append(event(3))
    conn = sqlite3.connect(path, isolation_level=None)
    report = verify(conn, load_public_keys([checkpoint_key]))
    conn.close()
    assert report.ok and report.rows == 4, report.problems


def test_rows_never_hold_the_token_or_record_content(client, token, app):
    """Masking: what is stored is what the decision depended on, never the bearer token or
    the record; disclosure is counts per section and a hash of the response."""
    bearer = token("senior_carer")
    response = client.post(
        "/v1/record",
        json={"nhs_number": "9990000018", "dob": "1938-04-12"},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert response.status_code == 200
    client.post(
        "/v1/record",
        json={"nhs_number": "9990000018", "dob": "1938-04-12"},
        headers={"Authorization": "Bearer " + bearer[:-4] + "AAAA"},
    )
    stored = json.dumps(list(app.extensions["lcr"].audit.rows()))
    header, payload, signature = bearer.split(".")
    for secret in (bearer, signature, payload):
        assert secret not in stored
    for entry in response.get_json()["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] != "Patient":
            assert f'"{resource["id"]}"' not in stored, f"{resource['resourceType']}/{resource['id']} content stored"
        names = resource.get("name", [])
        for name in names if isinstance(names, list) else []:  # Organization.name is a string
            for given in name.get("given", []):
                assert given not in stored
    row = list(app.extensions["lcr"].audit.rows())[0]
    assert json.loads(row["sections_returned"]) and len(row["response_sha256"]) == 64
    assert set(json.loads(row["opa_input"])) == {
        "subject",
        "patient",
        "requested_record",
        "action",
        "sections",
        "request",
        "history",
    }


@pytest.mark.parametrize("backend", ["postgresql"])
def test_postgres_keeps_a_nul_as_its_escape_and_the_row_verifies(make_store, checkpoint_key, backend):
    """PostgreSQL text cannot hold NUL: the row keeps `\\u0000`, hashed as stored."""
    store = make_store(checkpoint_every=2)
    store.append(event(0, subject_name="Ada\x00Carer"))
    store.append(event(1))
    [row] = [r for r in store.rows() if r["seq"] == 1]
    assert row["subject_name"] == "Ada\\u0000Carer"
    with queries.connect(store) as conn:
        assert verify(conn, load_public_keys([checkpoint_key])).ok


@pytest.mark.parametrize("backend", ["postgresql"])
def test_postgres_recent_activity_counts_the_whole_fleets_rows(make_store, backend):
    store = make_store()
    store.append(event(0, subject_id="staff-x", outcome="denied", reasons=["no_relationship"]))
    store.append(event(1, subject_id="staff-x"))
    store.append(event(2, subject_id="staff-y"))
    assert store.recent_activity("staff-x", "2026-11-25") == {
        "outcomes": {"denied": 1, "allowed": 1},
        "reasons": {"no_relationship": 1},
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_recent_activity_counts_every_row_of_repeated_outcomes_and_reasons(make_store, backend):
    """Rows that share their outcome and reasons (most of a caller's hour) each count."""
    store = make_store()
    rows = [("denied", ["no_legitimate_relationship"])] * 5 + [("denied", ["no_legitimate_relationship", "x"])] * 3
    rows += [("allowed", [])] * 2 + [("no-matching-record", [])] * 4
    for i, (outcome, reasons) in enumerate(rows):
        store.append(event(i, subject_id="staff-x", outcome=outcome, reasons=reasons))
    store.append(event(len(rows), subject_id="staff-y", outcome="denied", reasons=["x"]))
    assert store.recent_activity("staff-x", "2026-11-25") == {
        "outcomes": {"denied": 8, "allowed": 2, "no-matching-record": 4},
        "reasons": {"no_legitimate_relationship": 8, "x": 3},
    }


def test_postgres_schema_behind_and_no_right_to_migrate_is_not_ready_and_refuses_writes(
    pg_cluster, checkpoint_key, tmp_path
):
    """The sidecar's role may not create the schema: it says so, and fails closed."""
    import psycopg

    from audit_store.backends import open_store

    owner = pg_cluster.create_database("unmigrated")
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'lcr_unmigrated'").fetchone()
        if not exists:
            conn.execute("CREATE ROLE lcr_unmigrated LOGIN")
    store = open_store(
        pg_cluster.url("lcr_unmigrated", "unmigrated"), checkpoint_key=checkpoint_key, key_anchor=tmp_path / "audit.db"
    )
    try:
        verdict = store.writable()
        assert not verdict["ok"] and "lcr-audit migrate" in verdict["detail"]
        with pytest.raises(AuditWriteError, match="lcr-audit migrate"):
            store.append(event(0))
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_postgres_pool_exhausted_fails_the_read_closed_within_the_busy_timeout(make_store, backend):
    """The Audit Trail reads through the pool: none free in time is the store unavailable (503)."""
    import time

    store = make_store(busy_timeout_ms=300, pool_size=1)
    store.append(event(0))
    with store.reader():  # the pool's only connection, held
        started = time.monotonic()
        with pytest.raises(AuditWriteError, match="unavailable"):
            queries.who_accessed(store, "9990000018")
        assert time.monotonic() - started < 2
    assert queries.who_accessed(store, "9990000018")["rows"]  # and it serves again
