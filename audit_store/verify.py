"""Walk the chain (streaming) and check every row and every signed checkpoint.

What each break means, in the order the walk finds it:

- `missing`    seq jumps (rows deleted), or the first row is not seq 1;
- `edited`     a row's content no longer matches its own row_hash;
- `unlinked`   a row's prev_hash is not the previous row's row_hash (a row inserted,
               rows reordered, or everything from here rewritten);
- `checkpoint` a signed checkpoint does not match the chain, is signed by a key the
               verifier does not trust, has a bad signature, or points past the end (rows
               deleted from the end);
- `unsigned`   more rows after the last valid checkpoint than `max_unsigned` (whole chain
               rewritten and checkpoints removed, or the signer stopped);
- `archived`   `archived_through` names rows as archived (exported, then removed from the
               store) but no valid signed checkpoint at that seq vouches for where the
               remaining rows start.

With `archived_through=N` the log may start at seq N + 1: its first row must link to the
row_hash of a valid signed checkpoint at seq N (kept in the checkpoints table when the
rows are archived), so rows cut from the head beyond what was declared archived, or a
head rewritten after archiving, are still found. The archive itself is verified on its
own (its export and the same checkpoint).

The walk stops at the first broken row (everything after it is suspect anyway) but still
checks every checkpoint's signature.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import chain
from .checkpoints import signature_valid
from .store import CHECKPOINTS, TABLE


@dataclass
class Problem:
    kind: str
    seq: int | None
    message: str


@dataclass
class Report:
    rows: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None
    checkpoints: int = 0
    valid_checkpoints: int = 0
    last_valid_checkpoint: int | None = None
    unsigned_rows: int = 0
    key_ids: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_broken(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def verify(
    conn: sqlite3.Connection,
    trusted_keys: dict[str, Ed25519PublicKey],
    max_unsigned: int = 1000,
    progress: Any = None,
    archived_through: int = 0,
) -> Report:
    """Check the chain and checkpoints in one read transaction (a consistent snapshot).

    `archived_through`: seq of the last archived row (0: nothing archived, the log starts
    at seq 1). `conn`: a sqlite3 connection or a pg.PgReader. Returns a Report; problems
    are listed, never raised."""
    report = Report()
    conn.execute("BEGIN")  # one snapshot for both cursors, while writers go on appending
    try:
        start_seq, start_prev = 1, chain.GENESIS
        if archived_through > 0:
            anchor = _anchor(conn, trusted_keys, archived_through)
            if anchor is None:
                report.problems.append(
                    Problem(
                        "archived",
                        archived_through,
                        f"no valid signed checkpoint at seq {archived_through}: nothing vouches for the rows "
                        "archived up to it",
                    )
                )
                return report
            start_seq, start_prev = archived_through + 1, anchor
            report.last_valid_checkpoint = archived_through
        checkpoints = _checkpoints(conn, trusted_keys, report)
        next_cp = next(checkpoints, None)
        columns = ", ".join(("seq", "prev_hash", "row_hash", *chain.CONTENT_NAMES))
        cursor = conn.execute(f"SELECT {columns} FROM {TABLE} ORDER BY seq")
        names = ("seq", "prev_hash", "row_hash", *chain.CONTENT_NAMES)
        expected_seq, expected_prev = start_seq, start_prev
        broken = False
        while not broken:
            batch = cursor.fetchmany(2000)
            if not batch:
                break
            for values in batch:
                row = dict(zip(names, values, strict=False))
                seq = row["seq"]
                if report.first_seq is None:
                    report.first_seq = seq
                report.rows += 1
                if seq != expected_seq:
                    missing = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq}–{seq - 1}"
                    report.problems.append(
                        Problem("missing", expected_seq, f"row {missing} missing (deleted) before row seq {seq}")
                    )
                    broken = True
                    break
                if row["row_hash"] != _recompute(row):
                    report.problems.append(
                        Problem("edited", seq, f"row seq {seq} was changed: its content does not match its row_hash")
                    )
                    broken = True
                    break
                if row["prev_hash"] != expected_prev:
                    report.problems.append(
                        Problem(
                            "unlinked",
                            seq,
                            f"row seq {seq} does not follow row seq {seq - 1} (inserted, reordered or rewritten from "
                            "here)",
                        )
                    )
                    broken = True
                    break
                while next_cp is not None and next_cp["seq"] <= seq:
                    if next_cp["seq"] == seq:
                        if next_cp["row_hash"] != row["row_hash"]:
                            report.problems.append(
                                Problem(
                                    "checkpoint",
                                    seq,
                                    f"signed checkpoint at seq {seq} does not match the chain: rows up to seq {seq} "
                                    "were rewritten",
                                )
                            )
                            broken = True
                            break
                        report.last_valid_checkpoint = seq
                    next_cp = next(checkpoints, None)
                if broken:
                    break
                report.last_seq, report.head_hash = seq, row["row_hash"]
                expected_seq, expected_prev = seq + 1, row["row_hash"]
            if progress is not None:
                progress(len(batch))
        if not broken:
            # Checkpoints beyond the last row: rows were cut from the end (those of archived
            # rows, with everything archived, are not).
            while next_cp is not None and next_cp["seq"] <= archived_through:
                next_cp = next(checkpoints, None)
            while next_cp is not None:
                last = report.last_seq or archived_through
                report.problems.append(
                    Problem(
                        "checkpoint",
                        next_cp["seq"],
                        f"signed checkpoint at seq {next_cp['seq']} but the log ends at seq {last}: rows deleted "
                        "from the end",
                    )
                )
                next_cp = None
            report.unsigned_rows = max(0, (report.last_seq or 0) - (report.last_valid_checkpoint or 0))
            if report.unsigned_rows > max_unsigned:
                since = report.last_valid_checkpoint or 0
                report.problems.append(
                    Problem(
                        "unsigned",
                        since + 1,
                        f"{report.unsigned_rows} rows after seq {since} are covered by no valid signed checkpoint "
                        f"(more than {max_unsigned}): the chain may have been rewritten and its checkpoints removed",
                    )
                )
        for _ in checkpoints:  # count (and signature-check) the rest
            pass
    finally:
        conn.execute("COMMIT")
    report.key_ids = sorted(set(report.key_ids))
    report.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return report


def _anchor(conn: Any, trusted: dict[str, Ed25519PublicKey], seq: int) -> str | None:
    """The row_hash a valid signed checkpoint at `seq` vouches for, or None."""
    found = conn.execute(
        f"SELECT seq, row_hash, signature, key_id, time FROM {CHECKPOINTS} WHERE seq = ?", (seq,)
    ).fetchone()
    if found is None:
        return None
    seq, row_hash, signature, kid, time = found
    public = trusted.get(kid)
    if public is None or not signature_valid(public, seq, row_hash, time, kid, signature):
        return None
    return str(row_hash)


def _recompute(row: dict[str, Any]) -> str | None:
    try:
        return chain.row_hash_of(row)
    except (TypeError, ValueError):
        return None


def _checkpoints(
    conn: sqlite3.Connection, trusted: dict[str, Ed25519PublicKey], report: Report
) -> Iterator[dict[str, Any]]:
    """Checkpoints in seq order whose signature verifies with a trusted key; records the others."""
    cursor = conn.execute(f"SELECT seq, row_hash, signature, key_id, time FROM {CHECKPOINTS} ORDER BY seq")
    for seq, row_hash, signature, kid, time in cursor:
        report.checkpoints += 1
        public = trusted.get(kid)
        if public is None:
            report.problems.append(
                Problem(
                    "checkpoint", seq, f"checkpoint at seq {seq} is signed by key {kid}, which is not a trusted key"
                )
            )
            continue
        if not signature_valid(public, seq, row_hash, time, kid, signature):
            report.problems.append(Problem("checkpoint", seq, f"checkpoint at seq {seq} has an invalid signature"))
            continue
        report.valid_checkpoints += 1
        report.key_ids.append(kid)
        yield {"seq": seq, "row_hash": row_hash}
