"""The SQLite audit store (sqlite-utils): schema by migrations, one committed row per request.

A row is committed (WAL, synchronous=FULL) before the response that it records leaves.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator

import sqlite_utils
from sqlite_utils import Migrations

from .events import AuditEvent

TABLE = "decisions"

migrations = Migrations("lcr_audit")


@migrations(name="wal", transactional=False)
def _wal(db: sqlite_utils.Database) -> None:
    db.enable_wal()


@migrations(name="decisions")
def _decisions(db: sqlite_utils.Database) -> None:
    db[TABLE].create(
        {
            # seq is the tamper-resistant sequence number of GP Connect's audit minimum;
            # the hash chain over it comes with the auditors' tools.
            "seq": int,
            "decision_id": str,
            "time": str,
            "action": str,
            "outcome": str,
            "http_status": int,
            "error_code": str,
            "subject_id": str,
            "subject_name": str,
            "care_service": str,
            "access_level": str,
            "reason_for_request": str,
            "client": str,
            "nhs_number": str,
            "reasons": str,
            "sections_requested": str,
            "sections_allowed": str,
            "sections_returned": str,
            "resources_returned": int,
            "resources_withheld": int,
            "policy_revision": str,
            "opa_input": str,
            "opa_result": str,
            "response_sha256": str,
            "latency_ms": float,
        },
        pk="seq",
        not_null={"decision_id", "time", "action", "outcome", "http_status"},
    )
    db[TABLE].create_index(["decision_id"], unique=True)
    db[TABLE].create_index(["nhs_number", "time"])
    db[TABLE].create_index(["subject_id", "time"])
    db[TABLE].create_index(["care_service", "time"])
    db[TABLE].create_index(["outcome", "time"])


class AuditWriteError(Exception):
    """The row could not be committed: the caller must not release the response."""


class AuditStore:
    def __init__(self, path: str | Path, busy_timeout_ms: int = 2000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.Lock()
        # Several serving processes open the store at once; one applies the migrations.
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            migrations.apply(self.db)
        # Durability over speed: the row must survive a crash once the response is out.
        self.db.execute("PRAGMA synchronous=FULL")

    def close(self) -> None:
        self.db.close()

    def append(self, event: AuditEvent) -> int:
        try:
            with self._lock, self.db.conn:
                self.db.conn.execute("BEGIN IMMEDIATE")
                seq = self.db[TABLE].insert(event.row()).last_pk
        except sqlite3.Error as exc:
            raise AuditWriteError(f"{type(exc).__name__}: {exc}") from exc
        return int(seq)

    def rows(self, **where: Any) -> Iterator[dict[str, Any]]:
        clause = " and ".join(f"[{k}] = :{k}" for k in where) or None
        return self.db[TABLE].rows_where(clause, where or None, order_by="seq")

    def count(self) -> int:
        return self.db[TABLE].count


def init_app(app: Any) -> AuditStore:
    """Open the store once per process and close it with the app."""
    store = AuditStore(app.config["AUDIT_DB"], app.config["AUDIT_BUSY_TIMEOUT_MS"])
    app.extensions["audit_store"] = store
    return store
