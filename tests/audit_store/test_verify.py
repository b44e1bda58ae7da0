"""Tamper evidence: every kind of change is found by `verify`, a clean chain verifies.

Each attack is done the way someone holding the database would: triggers dropped (SQLite)
or switched off (PostgreSQL, as its superuser), raw SQL. Every test runs on both backends.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from click.testing import CliRunner

from audit_store import chain, queries
from audit_store.checkpoints import Signer, load_public_keys
from audit_store.cli import cli
from audit_store.verify import verify

from .conftest import db_arg, event, raw, write_key


def check(store: Any, key: Any, **kw: Any):
    with queries.connect(store) as conn:
        return verify(conn, load_public_keys([key]), **kw)


def rows(conn: Any) -> list[dict[str, Any]]:
    cursor = conn.execute("SELECT * FROM decisions ORDER BY seq")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=False)) for r in cursor.fetchall()]


def rechain(conn: Any, start: int = 1) -> None:
    """Recompute every hash from `start` on, as a careful forger would."""
    all_rows = rows(conn)
    prev = chain.GENESIS if start == 1 else next(r for r in all_rows if r["seq"] == start - 1)["row_hash"]
    for r in all_rows:
        if r["seq"] < start:
            continue
        r["prev_hash"] = prev
        prev = chain.row_hash_of(r)
        conn.execute("UPDATE decisions SET prev_hash = ?, row_hash = ? WHERE seq = ?", (r["prev_hash"], prev, r["seq"]))


def test_a_clean_chain_verifies(filled, checkpoint_key):
    report = check(filled, checkpoint_key)
    assert report.ok, report.problems
    assert (report.rows, report.first_seq, report.last_seq) == (30, 1, 30)
    assert report.valid_checkpoints == 3 and report.last_valid_checkpoint == 30 and report.unsigned_rows == 0


def test_an_edited_row_is_found(filled, checkpoint_key):
    conn = raw(filled)
    conn.execute("UPDATE decisions SET outcome = 'allowed', subject_id = 'someone-else' WHERE seq = 17")
    conn.close()
    report = check(filled, checkpoint_key)
    assert report.first_broken.kind == "edited" and report.first_broken.seq == 17


def test_an_edited_json_column_is_found(filled, checkpoint_key):
    conn = raw(filled)
    conn.execute(
        """UPDATE decisions SET sections_returned = '{"alerts":2,"mental_health":1,"patient":1}' WHERE seq = 4"""
    )
    conn.close()
    assert check(filled, checkpoint_key).first_broken.seq == 4


def test_a_deleted_row_is_found(filled, checkpoint_key):
    conn = raw(filled)
    conn.execute("DELETE FROM decisions WHERE seq = 12")
    conn.close()
    report = check(filled, checkpoint_key)
    assert report.first_broken.kind == "missing" and report.first_broken.seq == 12
    assert "seq 12 missing" in report.first_broken.message


def test_the_first_rows_deleted_are_found(filled, checkpoint_key):
    conn = raw(filled)
    conn.execute("DELETE FROM decisions WHERE seq <= 3")
    conn.close()
    report = check(filled, checkpoint_key)
    assert report.first_broken.kind == "missing" and report.first_broken.seq == 1


def test_rows_cut_from_the_end_are_found_by_the_checkpoint(filled, checkpoint_key):
    conn = raw(filled)
    conn.execute("DELETE FROM decisions WHERE seq > 25")
    conn.close()
    report = check(filled, checkpoint_key)
    assert not report.ok
    assert report.first_broken.kind == "checkpoint" and report.first_broken.seq == 30


def test_reordered_rows_are_found(filled, checkpoint_key):
    conn = raw(filled)
    # swap rows 8 and 9 (content and hashes move together; the seqs stay in place)
    conn.execute("UPDATE decisions SET seq = 1008 WHERE seq = 8")
    conn.execute("UPDATE decisions SET seq = 8 WHERE seq = 9")
    conn.execute("UPDATE decisions SET seq = 9 WHERE seq = 1008")
    conn.close()
    report = check(filled, checkpoint_key)
    assert report.first_broken.seq == 8 and report.first_broken.kind in ("edited", "unlinked")


def test_reordered_rows_with_their_seqs_kept_are_found(filled, checkpoint_key):
    conn = raw(filled)
    # swap only the contents of 8 and 9, rehashing each row in place: the links break
    all_rows = {r["seq"]: r for r in rows(conn)}
    conn.execute("UPDATE decisions SET decision_id = 'tmp-' || seq WHERE seq IN (8, 9)")
    sets = ", ".join(f"{c} = ?" for c in chain.CONTENT_NAMES)
    for a, b in ((8, 9), (9, 8)):
        r = {**all_rows[b], "seq": a, "prev_hash": all_rows[a]["prev_hash"]}
        r["row_hash"] = chain.row_hash_of(r)
        conn.execute(
            f"UPDATE decisions SET {sets}, row_hash = ? WHERE seq = ?",
            [*(r[c] for c in chain.CONTENT_NAMES), r["row_hash"], a],
        )
    conn.close()
    report = check(filled, checkpoint_key)
    assert report.first_broken.seq == 9 and report.first_broken.kind == "unlinked"


def test_an_inserted_row_is_found(filled, checkpoint_key):
    conn = raw(filled)
    # make room after seq 14 and put a forged row there, correctly hashed for its place
    for seq in range(30, 14, -1):
        conn.execute("UPDATE decisions SET seq = seq + 1 WHERE seq = ?", (seq,))
    forged = {**rows(conn)[13], "seq": 15, "decision_id": "forged", "subject_id": "ghost"}
    forged["prev_hash"] = rows(conn)[13]["row_hash"]
    forged["row_hash"] = chain.row_hash_of(forged)
    names = ("seq", "prev_hash", "row_hash", *chain.CONTENT_NAMES)
    conn.execute(
        f"INSERT INTO decisions ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", [forged[n] for n in names]
    )
    conn.close()
    report = check(filled, checkpoint_key)
    # row 15 links properly; the old row 15, now 16, does not (its hash covers seq 15)
    assert report.first_broken.seq == 16
    assert report.first_broken.kind in ("edited", "unlinked")


def test_a_consistently_rewritten_chain_is_caught_by_the_signed_checkpoint(filled, checkpoint_key):
    conn = raw(filled)
    conn.execute("UPDATE decisions SET outcome = 'denied' WHERE seq = 5")
    rechain(conn, start=5)
    conn.close()
    report = check(filled, checkpoint_key)
    assert report.first_broken.kind == "checkpoint" and report.first_broken.seq == 10
    assert "rewritten" in report.first_broken.message


def test_a_rewritten_chain_without_its_checkpoints_is_unsigned(filled, checkpoint_key):
    conn = raw(filled)
    conn.execute("UPDATE decisions SET outcome = 'denied' WHERE seq = 5")
    rechain(conn, start=5)
    conn.execute("DELETE FROM checkpoints")
    conn.close()
    report = check(filled, checkpoint_key, max_unsigned=10)
    assert report.first_broken.kind == "unsigned"


def test_a_rewritten_chain_re_signed_with_another_key_is_not_trusted(filled, checkpoint_key, tmp_path):
    from cryptography.hazmat.primitives import serialization

    attacker = Signer.from_key(
        serialization.load_pem_private_key(write_key(tmp_path / "attacker.pem").read_bytes(), None)
    )
    conn = raw(filled)
    conn.execute("UPDATE decisions SET outcome = 'denied' WHERE seq = 5")
    rechain(conn, start=5)
    conn.execute("DELETE FROM checkpoints")
    for seq in (10, 20, 30):
        row_hash = conn.execute("SELECT row_hash FROM decisions WHERE seq = ?", (seq,)).fetchone()[0]
        now = dt.datetime.now(dt.UTC).isoformat()
        conn.execute(
            "INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?)",
            (seq, row_hash, attacker.sign(seq, row_hash, now), attacker.kid, now),
        )
    conn.close()
    report = check(filled, checkpoint_key, max_unsigned=10)
    assert not report.ok and report.valid_checkpoints == 0
    assert any(p.kind == "checkpoint" and "not a trusted key" in p.message for p in report.problems)
    assert any(p.kind == "unsigned" for p in report.problems)


def test_a_forged_signature_is_found(filled, checkpoint_key):
    conn = raw(filled)
    conn.execute("UPDATE checkpoints SET signature = ? WHERE seq = 20", ("A" * 86 + "==",))
    conn.close()
    report = check(filled, checkpoint_key)
    assert report.first_broken.kind == "checkpoint" and "invalid signature" in report.first_broken.message


def test_verify_streams_while_the_sidecar_appends(make_store, checkpoint_key):
    store = make_store(checkpoint_every=100)
    store.append_many([event(i) for i in range(300)])
    seen: list[int] = []

    def progress(n: int) -> None:
        seen.append(n)
        store.append(event(1000 + len(seen)))

    with queries.connect(store) as conn:
        report = verify(conn, load_public_keys([checkpoint_key]), progress=progress)
    assert report.ok and report.rows == 300  # one consistent snapshot


@pytest.mark.parametrize("tamper, code", [(None, 0), ("UPDATE decisions SET outcome = 'x' WHERE seq = 3", 1)])
def test_cli_verify_exit_code(filled, checkpoint_key, tamper, code):
    if tamper:
        conn = raw(filled)
        conn.execute(tamper)
        conn.close()
    result = CliRunner().invoke(cli, ["verify", "--db", db_arg(filled), "--public-key", str(checkpoint_key)])
    assert result.exit_code == code, result.output
    assert ("OK: 30 rows" in result.output) if code == 0 else ("BROKEN at seq 3" in result.output)


def test_cli_verify_without_a_trusted_key_fails_on_signed_checkpoints(filled, tmp_path):
    other = write_key(tmp_path / "other.pem")
    result = CliRunner().invoke(cli, ["verify", "--db", db_arg(filled), "--public-key", str(other)])
    assert result.exit_code == 1 and "not a trusted key" in result.output


def test_cli_checkpoint_signs_the_head_with_the_given_key(make_store, checkpoint_key):
    store = make_store(checkpoint_every=0)
    for i in range(3):
        store.append(event(i))
    result = CliRunner().invoke(cli, ["checkpoint", "--db", db_arg(store), "--key", str(checkpoint_key)])
    assert result.exit_code == 0 and "checkpoint seq 3" in result.output, result.output
    assert check(store, checkpoint_key, max_unsigned=0).ok


def test_cli_checkpoint_refuses_to_invent_a_key(make_store, monkeypatch, tmp_path):
    monkeypatch.delenv("LCR_SIDECAR_AUDIT_CHECKPOINT_KEY_FILE", raising=False)
    monkeypatch.chdir(tmp_path)  # no var/keys/ of a local `make run` to find
    store = make_store()
    store.append(event(0))
    result = CliRunner().invoke(cli, ["checkpoint", "--db", db_arg(store)])
    assert result.exit_code == 2 and "pass --key" in result.output


# -- archived heads: rows exported and removed up to a signed checkpoint ---------------------


def test_a_log_archived_up_to_a_signed_checkpoint_verifies_from_there(filled, checkpoint_key):
    conn = raw(filled)
    conn.execute("DELETE FROM decisions WHERE seq <= 10")  # archived (exported first), checkpoints kept
    conn.close()
    report = check(filled, checkpoint_key, archived_through=10)
    assert report.ok, report.problems
    assert (report.rows, report.first_seq, report.last_seq) == (20, 11, 30)
    # Without saying so, the missing head is found.
    assert check(filled, checkpoint_key).first_broken.kind == "missing"


def test_an_archive_point_without_a_signed_checkpoint_is_refused(filled, checkpoint_key):
    conn = raw(filled)
    conn.execute("DELETE FROM decisions WHERE seq <= 12")
    conn.close()
    report = check(filled, checkpoint_key, archived_through=12)
    assert report.first_broken.kind == "archived" and report.first_broken.seq == 12


def test_rows_cut_beyond_the_archive_point_are_found(filled, checkpoint_key):
    conn = raw(filled)
    conn.execute("DELETE FROM decisions WHERE seq <= 13")
    conn.close()
    report = check(filled, checkpoint_key, archived_through=10)
    assert report.first_broken.kind == "missing" and report.first_broken.seq == 11


def test_a_head_rewritten_after_archiving_is_found(filled, checkpoint_key):
    conn = raw(filled)
    conn.execute("DELETE FROM decisions WHERE seq <= 10")
    conn.execute("UPDATE decisions SET prev_hash = ? WHERE seq = 11", ("f" * 64,))
    conn.close()
    report = check(filled, checkpoint_key, archived_through=10)
    assert not report.ok and report.first_broken.seq == 11


def test_everything_archived_verifies_and_the_cli_takes_the_archive_point(filled, checkpoint_key):
    conn = raw(filled)
    conn.execute("DELETE FROM decisions")
    conn.close()
    assert check(filled, checkpoint_key, archived_through=30).ok
    result = CliRunner().invoke(
        cli, ["verify", "--db", db_arg(filled), "--public-key", str(checkpoint_key), "--archived-through", "30"]
    )
    assert result.exit_code == 0, result.output
