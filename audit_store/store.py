"""The SQLite audit store (sqlite-utils): schema by migrations, a hash-chained append-only log.

Durability: a row is committed (WAL, synchronous=FULL) before `append()` returns, and the
sidecar sends no response before that. Concurrent appends from the threads of one process
are grouped into shared commits: one writer thread per process takes everything queued
while the previous commit was being synced, and commits it as one transaction, so the fsync
is paid once per group, not once per request. Every caller waits for its own row. A row is
normalised and serialised on its own before it joins a group (prepare), so a row that cannot
be stored fails alone; if the database still refuses a group for one of its rows, the rows
are committed one by one. A commit that fails for the store's own state (locked, disk full)
fails every row in it (each caller gets `AuditWriteError`, so its response is a 503).

Several processes (gunicorn workers) append to the same file: the writers take turns on a
lock file (`<db>.lock`), then each transaction takes SQLite's write lock (BEGIN IMMEDIATE),
reads the chain head, and hashes and inserts its rows, so the log stays one chain whoever
writes. Everything that can be done before the turn is: typing, canonical JSON, and the
SHA-256 of the part of the hashed text that precedes prev_hash (chain.hash_prefix); rows
that arrive while a writer waits for its turn join its commit.

What a commit costs is mostly pages written to the WAL and synced. Only the primary key
and the unique decision_id index are kept on the log; the lookups by resident, staff
member, care service and outcome are indexed on `decisions_lookup`, copied from the log in
bulk (every `lookup_every` rows, in its own transaction), see _deferred_indexes.

Append-only: triggers refuse UPDATE and DELETE, and refuse an INSERT that does not extend
the chain (seq = head + 1, prev_hash = head's row_hash). Tamper evidence does not rest on
the triggers (whoever holds the file can drop them): `verify` recomputes the chain and checks
the signed checkpoints (see chain.py, checkpoints.py, verify.py).
"""

from __future__ import annotations

import _thread
import contextlib
import datetime as dt
import fcntl
import json
import math
import os
import queue
import re
import sqlite3
import threading
import time
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import sqlite_utils
from sqlite_utils import Migrations

from . import chain
from .checkpoints import Signer, load_signer
from .events import AuditEvent, storable_json, storable_scalar, storable_text, utc_timestamp

TABLE = "decisions"
CHECKPOINTS = "checkpoints"

migrations = Migrations("lcr_audit")


@migrations(name="wal", transactional=False)
def _wal(db: sqlite_utils.Database) -> None:
    db.enable_wal()


@migrations(name="decisions")
def _decisions(db: sqlite_utils.Database) -> None:
    db.table(TABLE).create(
        {
            # seq is the tamper-resistant sequence number of GP Connect's audit minimum;
            # the hash chain over it is added by the migration below.
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
            "shadow_revision": str,
            "shadow_result": str,
            "shadow_diverged": int,
        },
        pk="seq",
        not_null={"decision_id", "time", "action", "outcome", "http_status"},
    )
    db.table(TABLE).create_index(["decision_id"], unique=True)
    db.table(TABLE).create_index(["nhs_number", "time"])
    db.table(TABLE).create_index(["subject_id", "time"])
    db.table(TABLE).create_index(["care_service", "time"])
    db.table(TABLE).create_index(["outcome", "time"])


@migrations(name="hash_chain")
def _hash_chain(db: sqlite_utils.Database) -> None:
    conn = db.conn
    conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN prev_hash TEXT")
    conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN row_hash TEXT")
    # Rows written before the chain existed are chained as they are, in seq order.
    head_seq, head_hash = 0, chain.GENESIS
    columns = ", ".join(("seq", *chain.CONTENT_COLUMNS))
    while True:
        batch = conn.execute(
            f"SELECT {columns} FROM {TABLE} WHERE seq > ? ORDER BY seq LIMIT 1000", (head_seq,)
        ).fetchall()
        if not batch:
            break
        for values in batch:
            row = dict(zip(("seq", *chain.CONTENT_COLUMNS), values, strict=False))
            row["prev_hash"] = head_hash
            head_seq, head_hash = row["seq"], chain.row_hash_of(row)
            conn.execute(
                f"UPDATE {TABLE} SET prev_hash = ?, row_hash = ? WHERE seq = ?", (row["prev_hash"], head_hash, head_seq)
            )
    conn.execute(
        f"""CREATE TABLE {CHECKPOINTS} (
            seq INTEGER PRIMARY KEY,
            row_hash TEXT NOT NULL,
            signature TEXT NOT NULL,
            key_id TEXT NOT NULL,
            time TEXT NOT NULL
        )"""
    )
    refuse = "SELECT RAISE(ABORT, 'the audit log is append-only: {} refused')"
    for table in (TABLE, CHECKPOINTS):
        conn.execute(f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} BEGIN {refuse.format('UPDATE')}; END")
        conn.execute(f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} BEGIN {refuse.format('DELETE')}; END")
    conn.execute(
        f"""CREATE TRIGGER {TABLE}_chain_only BEFORE INSERT ON {TABLE}
        WHEN NEW.row_hash IS NULL
          OR NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM {TABLE})
          OR NEW.prev_hash IS NOT coalesce((SELECT row_hash FROM {TABLE} ORDER BY seq DESC LIMIT 1), '{chain.GENESIS}')
          OR EXISTS (SELECT 1 FROM {TABLE} WHERE decision_id = NEW.decision_id)
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: an insert must extend the hash chain'); END"""
    )
    conn.execute(
        f"""CREATE TRIGGER {CHECKPOINTS}_on_chain BEFORE INSERT ON {CHECKPOINTS}
        WHEN NEW.row_hash IS NOT (SELECT row_hash FROM {TABLE} WHERE seq = NEW.seq)
        BEGIN SELECT RAISE(ABORT, 'a checkpoint must sign a row of the chain'); END"""
    )


#: what the auditors' lookups by resident, staff member, care service and outcome need, one
#: narrow row per decision, filled in bulk behind the log (see _deferred_indexes)
LOOKUP = "decisions_lookup"
LOOKUP_COLUMNS: tuple[str, ...] = ("seq", "time", "outcome", "nhs_number", "subject_id", "care_service")
_LOOKUP_INDEXES = (("nhs_number", "time"), ("subject_id", "time"), ("care_service", "time"), ("outcome", "time"))


@migrations(name="deferred_indexes")
def _deferred_indexes(db: sqlite_utils.Database) -> None:
    """The four lookup indexes move from the log to a narrow table filled in bulk.

    Indexed on the log itself, every appended row put an entry at a random place in three
    of them (resident, staff member, care service), so each commit wrote a 4 KiB page per
    row per index to the WAL and again to the database: most of the bytes a commit synced.
    Filled a few thousand rows at a time, rows share those pages. The log keeps its primary
    key (seq) and the unique decision_id index (the append-only trigger needs both); queries
    (queries.py) look up the lookup table and scan the rows not yet in it (seq above its
    head: at most a few thousand). The table is derived data, not part of the chain; it
    can only grow, by rows that copy the log's, in seq order.
    """
    conn = db.conn
    conn.execute(
        f"""CREATE TABLE {LOOKUP} (
            seq INTEGER PRIMARY KEY,
            time TEXT NOT NULL,
            outcome TEXT NOT NULL,
            nhs_number TEXT,
            subject_id TEXT,
            care_service TEXT
        )"""
    )
    columns = ", ".join(LOOKUP_COLUMNS)
    conn.execute(f"INSERT INTO {LOOKUP} ({columns}) SELECT {columns} FROM {TABLE} ORDER BY seq")
    for names in _LOOKUP_INDEXES:
        conn.execute(f"CREATE INDEX idx_{LOOKUP}_{'_'.join(names)} ON {LOOKUP} ({', '.join(names)})")
        conn.execute(f"DROP INDEX IF EXISTS idx_{TABLE}_{'_'.join(names)}")
    refuse = "SELECT RAISE(ABORT, 'the lookup table only grows, from the log: {} refused')"
    conn.execute(f"CREATE TRIGGER {LOOKUP}_no_update BEFORE UPDATE ON {LOOKUP} BEGIN {refuse.format('UPDATE')}; END")
    conn.execute(f"CREATE TRIGGER {LOOKUP}_no_delete BEFORE DELETE ON {LOOKUP} BEGIN {refuse.format('DELETE')}; END")
    same = " AND ".join(f"d.{name} IS NEW.{name}" for name in LOOKUP_COLUMNS[1:])
    conn.execute(
        f"""CREATE TRIGGER {LOOKUP}_copies_the_log BEFORE INSERT ON {LOOKUP}
        WHEN NEW.seq IS NOT coalesce((SELECT seq FROM {LOOKUP} ORDER BY seq DESC LIMIT 1), 0) + 1
          OR NOT EXISTS (SELECT 1 FROM {TABLE} d WHERE d.seq = NEW.seq AND {same})
        BEGIN SELECT RAISE(ABORT, 'the lookup table only grows, from the log: an insert must copy the next row'); END"""
    )


class _ReadConnection(sqlite3.Connection):
    """A read-only connection that knows the process that opened it (not usable after fork)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pid = os.getpid()


class AuditWriteError(Exception):
    """The row could not be committed: the caller must not release the response."""


class _Pending:
    """Rows one caller is waiting for; resolved by the writer thread."""

    __slots__ = ("rows", "first_seq", "error", "resolved", "_done")

    def __init__(self, rows: list[Any]) -> None:  # events, then Prepared rows once the writer has them
        self.rows = rows
        self.first_seq = 0
        self.error: BaseException | None = None
        self.resolved = False
        self._done = _thread.allocate_lock()  # cheaper than threading.Event
        self._done.acquire()

    def resolve(self, first_seq: int = 0, error: BaseException | None = None) -> None:
        if self.resolved:
            return  # answered already (a failing round fails only those still waiting)
        self.resolved = True
        self.first_seq, self.error = first_seq, error
        self._done.release()

    def wait(self) -> int:
        self._done.acquire()
        if self.error is not None:
            raise self.error
        return self.first_seq


_STOP = None
WAL_RESET_PAGES = 4000  # ≈ 16 MB of log
TURN_POLL_SECONDS = 0.0001


class WriterStats:
    """Counters of the writer thread (read them for tests and benchmarks)."""

    def __init__(self) -> None:
        self.commits = 0
        self.rows = 0
        self.failed_commits = 0
        self.checkpoints = 0
        self.lookup_commits = 0
        self.lookup_rows = 0
        self.wal_resets = 0


class WriterThread(Protocol):
    """A store's writer thread: takes _Pending groups from `queue`, in the process `pid`."""

    pid: int
    queue: queue.SimpleQueue[_Pending | None]  # None: stop

    def is_alive(self) -> bool: ...
    def start(self) -> None: ...


class QueuedAppends:
    """What both stores share: each process has one writer thread, started on first use (and
    again in a forked worker, which inherits no thread); rows are queued to it, it commits
    whatever was queued meanwhile as one transaction (group commit), and each caller waits
    for its own rows. A store provides `_new_writer`."""

    max_batch: int
    _writer: Any  # the WriterThread, once started
    _writer_lock: threading.Lock
    _closed: bool

    def _new_writer(self) -> WriterThread:
        raise NotImplementedError

    def append_many(self, events: Iterable[AuditEvent | Mapping[str, Any]]) -> list[int]:
        """Commit several rows in order (in commits of at most max_batch rows); their seqs."""
        rows = list(events)
        seqs: list[int] = []
        for start in range(0, len(rows), self.max_batch):
            part = rows[start : start + self.max_batch]
            first = self._submit(part)
            seqs.extend(range(first, first + len(part)))
        return seqs

    def _submit(self, rows: list[Any]) -> int:
        pending = _Pending(rows)
        self._ensure_writer().queue.put(pending)
        return pending.wait()

    def _ensure_writer(self) -> WriterThread:
        writer: WriterThread | None = self._writer
        if writer is not None and writer.pid == os.getpid() and writer.is_alive():
            return writer
        with self._writer_lock:
            if self._closed:
                raise AuditWriteError("the audit store is closed")
            writer = self._writer
            # A forked worker (gunicorn --preload) inherits no thread: start its own.
            if writer is None or writer.pid != os.getpid() or not writer.is_alive():
                writer = self._writer = self._new_writer()
                writer.start()
            return writer


class AuditStore(QueuedAppends):
    """The SQLite audit store (one host). PgAuditStore (pg.py) has the same interface."""

    backend = "sqlite"
    #: the schema (a subclass may use another, e.g. the benchmark's chain-less baseline)
    MIGRATIONS = migrations

    def __init__(
        self,
        path: str | Path,
        busy_timeout_ms: int = 2000,
        *,
        checkpoint_every: int = 1000,
        checkpoint_key: str | Path | None = None,
        max_batch: int = 1000,
        lookup_every: int = 1000,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout = busy_timeout_ms / 1000
        self.checkpoint_every = int(checkpoint_every)
        self.max_batch = int(max_batch)
        #: the lookup table is brought up to date once this many rows are not in it yet
        self.lookup_every = max(1, int(lookup_every))
        self._lookup_lag = 0  # rows not in the lookup table after the last commit
        self.stats = WriterStats()
        #: called by the writer thread after each commit with (rows, seconds); for benchmarks
        self.on_commit: Callable[[int, float], None] | None = None
        #: called by the writer thread after each lookup-table transaction with (rows, seconds)
        self.on_lookup: Callable[[int, float], None] | None = None
        #: called by the WAL checkpointer after it held the writers' turn to finish a checkpoint
        self.on_wal_reset: Callable[[float], None] | None = None
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        # Several serving processes open the store at once; one applies the migrations.
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.MIGRATIONS.apply(self.db)
        # Durability over speed: the row must survive a crash once the response is out.
        self.db.execute("PRAGMA synchronous=FULL")
        self.signer: Signer = load_signer(checkpoint_key, self.path)
        self._writer: _Writer | None = None
        self._writer_lock = threading.Lock()
        self._turn_fd: int | None = None  # this process's handle on the writers' lock file
        self._closed = False
        self._readers = threading.local()  # one read connection per thread (recent_activity)
        # recent_activity's rows per staff member (least recently asked first), this process's
        self._history: OrderedDict[str, _RecentRows] = OrderedDict()
        self._history_lock = threading.Lock()
        self._history_pid = os.getpid()

    # -- writing -------------------------------------------------------------------------

    def append(self, event: AuditEvent) -> int:
        """Commit one row durably and return its seq. Raises AuditWriteError."""
        return self._submit([event])

    def _new_writer(self) -> _Writer:
        return _Writer(self)

    def connect(self) -> sqlite3.Connection:
        """A new connection to the store (one per thread; close it when done)."""
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _commit(
        self,
        conn: sqlite3.Connection,
        batch: list[_Pending],
        more: Callable[[int], list[_Pending]] | None = None,
    ) -> None:
        """Commit the batch as one transaction; `more(n)` hands over up to n further rows
        that queued up meanwhile, which join the batch while it waits for its turn."""
        # Serialise in this thread, before taking the lock: callers stay off the GIL.
        batch[:] = self._ready(batch)  # in place: the writer fails what is in it if this raises
        if not batch:
            return
        size = sum(len(p.rows) for p in batch)

        def while_waiting() -> bool:
            nonlocal size
            if more is None or size >= self.max_batch:
                return False
            extra = self._ready(more(min(self.max_batch - size, 8)))
            batch.extend(extra)
            size += sum(len(p.rows) for p in extra)
            return bool(extra)

        try:
            with self._turn(while_waiting):
                rows = [row for p in batch for row in p.rows]
                started = time.perf_counter()  # the commit itself, not the wait for the turn
                first_seq = self._write(conn, rows)
                elapsed = time.perf_counter() - started
                if self._lookup_lag >= self.lookup_every:
                    # Still in this turn, after the commit: the callers' rows are durable, but
                    # they wait for this (it shows in append latency, and as on_lookup).
                    self._release(batch, first_seq)
                    self._lookup_step(conn)
                    batch = []
        except Exception as exc:
            if len(batch) > 1 and not isinstance(exc, sqlite3.OperationalError):
                # A row the database refused (a duplicate decision id, a value SQLite cannot
                # bind): one bad row must not fail its neighbours, so commit them one by one.
                # Not for OperationalError (locked, busy, disk I/O, full): that is the store's
                # state, not a row's, and every row would wait out the busy timeout again.
                for p in batch:
                    self._commit(conn, [p])
                return
            self._fail(batch, exc)
            return
        self.stats.commits += 1
        self.stats.rows += len(rows)
        self._release(batch, first_seq)
        if self.on_commit is not None:
            self.on_commit(len(rows), elapsed)

    @staticmethod
    def _release(batch: list[_Pending], first_seq: int) -> None:
        seq = first_seq
        for p in batch:
            p.resolve(seq)
            seq += len(p.rows)

    def _lookup_step(self, conn: sqlite3.Connection) -> None:
        """Bring the lookup table up to date; on failure, leave it for the next turn."""
        started = time.perf_counter()
        try:
            added = update_lookup(conn, limit=4 * self.lookup_every)
        except Exception:  # noqa: BLE001 - busy or locked: the next turn tries again
            return
        self._lookup_lag = 0
        self.stats.lookup_commits += 1
        self.stats.lookup_rows += added
        if self.on_lookup is not None:
            self.on_lookup(added, time.perf_counter() - started)

    def _ready(self, batch: list[_Pending]) -> list[_Pending]:
        """Prepare every row; a caller whose row cannot be stored gets its error now."""
        ready = []
        for p in batch:
            try:
                p.rows = [r if type(r) is tuple else self._prepare(r) for r in p.rows]
            except AuditWriteError as exc:
                p.resolve(error=exc)
            else:
                ready.append(p)
        return ready

    @staticmethod
    def _prepare(row: AuditEvent | Mapping[str, Any]) -> Prepared:
        return prepare(row)

    @contextlib.contextmanager
    def _turn(self, while_waiting: Callable[[], bool] | None = None, fd: int | None = None) -> Iterator[None]:
        """The writers of all processes take turns on a lock file before BEGIN IMMEDIATE.

        SQLite's own busy handler sleeps 1, 2, 5 … 100 ms between tries, so a waiting
        process oversleeps every commit of the other; a file lock hands over in about 0.1 ms
        here (tries every 0.1 ms, and between tries `while_waiting()` prepares rows that
        arrived meanwhile, so they join this commit). Waiting is bounded by the busy timeout,
        after which the commit fails (503).
        """
        if fd is None:
            fd = self._turn_fd
        if fd is None:
            yield
            return
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError(
                        f"database is locked: another writer held the audit store for over {self.busy_timeout:g}s"
                    ) from None
                if while_waiting is None or not while_waiting():
                    time.sleep(TURN_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _fail(self, batch: list[_Pending], exc: Exception) -> None:
        self.stats.failed_commits += 1
        for p in batch:
            p.resolve(error=AuditWriteError(f"{type(exc).__name__}: {exc}"))

    def _write(self, conn: sqlite3.Connection, rows: list[Prepared]) -> int:
        """One transaction: lock, read the head, chain the rows, insert, maybe checkpoint."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            head_seq, head_hash, last_checkpoint, lookup_head = conn.execute(_HEAD).fetchone()
            params = []
            new_seq, new_hash = head_seq, head_hash
            after = chain.row_hash_after
            for values, _content, prefix in rows:
                new_seq += 1
                prev, new_hash = new_hash, after(prefix, new_seq, new_hash)
                params.append((new_seq, prev, new_hash, *values))
            insert_rows(conn, params)
            if self.checkpoint_every > 0 and new_seq - last_checkpoint >= self.checkpoint_every:
                self._insert_checkpoint(conn, new_seq, new_hash)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._lookup_lag = new_seq - lookup_head
        return int(head_seq) + 1

    def _insert_checkpoint(self, conn: sqlite3.Connection, seq: int, row_hash: str) -> dict[str, Any]:
        cp = self.signer.checkpoint(seq, row_hash, _utcnow())
        conn.execute(
            f"INSERT INTO {CHECKPOINTS} (seq, row_hash, signature, key_id, time) VALUES (:seq, :row_hash, "
            ":signature, :key_id, :time)",
            cp,
        )
        self.stats.checkpoints += 1
        return cp

    def checkpoint(self) -> dict[str, Any] | None:
        """Sign the current chain head now (no-op when it is already signed); the checkpoint row."""
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                seq, row_hash = _head(conn)
                existing = conn.execute(f"SELECT * FROM {CHECKPOINTS} WHERE seq = ?", (seq,)).fetchone()
                cp = None
                if seq and existing is None:
                    cp = self._insert_checkpoint(conn, seq, row_hash)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if existing is not None:
                return dict(zip(("seq", "row_hash", "signature", "key_id", "time"), existing, strict=False))
            return cp
        finally:
            conn.close()

    # -- reading -------------------------------------------------------------------------

    def rows(self, **where: Any) -> Iterator[dict[str, Any]]:
        clause = " and ".join(f"[{k}] = :{k}" for k in where) or None
        return self.db[TABLE].rows_where(clause, where or None, order_by="seq")

    def count(self) -> int:
        return self.db[TABLE].count

    def recent_activity(self, subject_id: str, since: str) -> dict[str, dict[str, int]]:
        """How one staff member's requests ended since `since`: the decision input's `history`.

        subject_id: the token's `sub`; since: a UTC ISO 8601 time in the rows' own format
        (`2026-11-25T11:00:00.000000Z`), inclusive. Returns {"outcomes": {outcome: rows},
        "reasons": {deny reason: rows}}, counted from committed rows only. What the counts
        mean is the policy's (identifier probing, policies/lcr/access/relationship.rego).
        Raises sqlite3.Error when the store cannot be read.

        Each process remembers the rows it has counted per staff member (`_RecentRows`), so
        a call reads only the rows committed since that staff member's previous call; the
        counts are those of every committed row, as one query over the window would give.
        """
        conn = self._reader()
        remembered = self._recent_rows(subject_id) if _TIMESTAMP.fullmatch(since) else None
        if remembered is None:
            return _count(self._rows_since(conn, subject_id, since, None))
        with remembered.lock:
            return remembered.counts(conn, self, since)

    def _rows_since(
        self, conn: sqlite3.Connection, subject_id: str, since: str, upto: int | None
    ) -> list[tuple[int, str, str, Any]]:
        """(seq, time, outcome, reasons) of every committed row of this staff member with
        time >= since (and seq <= upto when given)."""
        # The lookup table holds the older rows indexed by staff member; the rows not yet
        # copied into it (at most a few thousand, above its head) are scanned.
        return conn.execute(
            f"""SELECT seq, time, outcome, reasons FROM {TABLE} WHERE seq IN
                    (SELECT seq FROM {LOOKUP} WHERE subject_id = :sub AND time >= :since)
                  AND seq <= :upto
                UNION ALL
                SELECT seq, time, outcome, reasons FROM {TABLE}
                 WHERE seq > (SELECT coalesce(max(seq), 0) FROM {LOOKUP}) AND subject_id = :sub AND time >= :since
                   AND seq <= :upto""",
            {"sub": subject_id, "since": since, "upto": _INT64 - 1 if upto is None else upto},
        ).fetchall()

    def _recent_rows(self, subject_id: str) -> _RecentRows:
        with self._history_lock:
            if self._history_pid != os.getpid():  # a forked worker starts its own
                self._history.clear()
                self._history_pid = os.getpid()
            remembered = self._history.get(subject_id)
            if remembered is None:
                remembered = self._history[subject_id] = _RecentRows(subject_id)
                while len(self._history) > HISTORY_SUBJECTS:
                    self._history.popitem(last=False)
            else:
                self._history.move_to_end(subject_id)
            return remembered

    def _reader(self) -> _ReadConnection:
        conn: _ReadConnection | None = getattr(self._readers, "conn", None)
        if conn is None or conn.pid != os.getpid():
            conn = self._readers.conn = _ReadConnection(self.path, timeout=self.busy_timeout, check_same_thread=False)
            conn.execute("PRAGMA query_only = 1")
        return conn

    def head(self) -> tuple[int, str]:
        """(seq, row_hash) of the last row; (0, GENESIS) when empty."""
        return _head(self.db.conn)

    def writable(self, timeout: float | None = None) -> dict[str, Any]:
        """Readiness: the file opens and its write lock can be taken within `timeout`
        seconds (default: the busy timeout). {"ok": bool, "detail": str}."""
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout if timeout is None else timeout, isolation_level=None
            )
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return {"ok": False, "detail": f"audit store not writable ({exc})"}
        return {"ok": True, "detail": "audit store writable"}

    def close(self) -> None:
        with self._writer_lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None and writer.pid == os.getpid() and writer.is_alive():
            writer.queue.put(_STOP)
            writer.join()
        self.db.close()


#: the rows' time format (utc_timestamp); recent_activity remembers rows only for such a `since`
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z", re.ASCII)
#: staff members whose recent rows a process remembers (least recently asked forgotten first)
HISTORY_SUBJECTS = 4096
#: a staff member with more rows than this in the window is counted by the query every time
HISTORY_ROWS = 100_000
#: at most this many rows committed since a staff member's previous call are read by seq;
#: beyond it (a staff member who has not asked for a while in a busy fleet) the indexed
#: query reads their window again
HISTORY_SCAN_ROWS = 4096
#: remembered rows reach this far below the latest `since`, so that a request that started a
#: little earlier (a smaller `since`, a thread that ran late) is still answered from them
HISTORY_MARGIN = dt.timedelta(minutes=5)
#: remembered rows below `since` are let go once there are more than this many
HISTORY_PRUNE_ROWS = 256


class _RecentRows:
    """One staff member's committed rows, as recent_activity counts them, kept up to date
    by reading only the rows committed since the last call.

    Invariant: `rows` (sorted by time, then seq) holds every committed row of this staff
    member with seq <= `seq` and time >= `floor` (compared as text, as SQLite does), and
    `outcomes` and `reasons` count those with time >= `cut`. A `since` below `floor` reads
    the window again.
    """

    def __init__(self, subject_id: str) -> None:
        self.subject_id = subject_id
        self.lock = threading.Lock()
        self.loaded = False
        self.seq = 0
        self.floor = ""
        self.cut = ""
        self.rows: list[tuple[str, int, str, tuple[Any, ...]]] = []
        self.outcomes: dict[str, int] = {}
        self.reasons: dict[Any, int] = {}

    def counts(self, conn: sqlite3.Connection, store: AuditStore, since: str) -> dict[str, dict[str, int]]:
        head = int(conn.execute(_MAX_SEQ).fetchone()[0])
        if not self.loaded or since < self.floor or head < self.seq or head - self.seq > HISTORY_SCAN_ROWS:
            floor = _floor(since)
            found = store._rows_since(conn, self.subject_id, floor, head)
            rows = _parsed(found)
            if rows is None or len(rows) > HISTORY_ROWS:
                self._forget()
                return _count(store._rows_since(conn, self.subject_id, since, None))
            rows.sort()
            self.rows, self.seq, self.floor, self.cut = rows, head, floor, floor
            self.outcomes, self.reasons = {}, {}
            self._add(rows, 1)
            self.loaded = True
        elif head > self.seq:
            found = conn.execute(_ROWS_AFTER, (self.seq, head, self.subject_id, self.floor)).fetchall()
            new = _parsed(found)
            if new is None or len(self.rows) + len(new) > HISTORY_ROWS:
                self._forget()
                return _count(store._rows_since(conn, self.subject_id, since, None))
            for row in new:
                insort(self.rows, row)
            self._add([r for r in new if r[0] >= self.cut], 1)
            self.seq = head
        # Move the cut to `since`: uncount the rows it passes, or count those it goes back over.
        if since > self.cut:
            self._add(self.rows[_index(self.rows, self.cut) : _index(self.rows, since)], -1)
        elif since < self.cut:
            self._add(self.rows[_index(self.rows, since) : _index(self.rows, self.cut)], 1)
        self.cut = since
        # Forget the rows older than the margin below `since` (none of them is counted).
        if _index(self.rows, since) > HISTORY_PRUNE_ROWS:
            floor = _floor(since)
            below = _index(self.rows, floor)
            if below:
                del self.rows[:below]
                self.floor = floor
        return {"outcomes": dict(self.outcomes), "reasons": dict(self.reasons)}

    def _forget(self) -> None:
        self.loaded = False
        self.rows, self.outcomes, self.reasons = [], {}, {}

    def _add(self, rows: list[tuple[str, int, str, tuple[Any, ...]]], step: int) -> None:
        outcomes, reasons = self.outcomes, self.reasons
        for _time, _seq, outcome, row_reasons in rows:
            n = outcomes.get(outcome, 0) + step
            if n:
                outcomes[outcome] = n
            else:
                del outcomes[outcome]
            for reason in row_reasons:
                n = reasons.get(reason, 0) + step
                if n:
                    reasons[reason] = n
                else:
                    del reasons[reason]


_MAX_SEQ = f"SELECT coalesce(max(seq), 0) FROM {TABLE}"
_ROWS_AFTER = (
    f"SELECT seq, time, outcome, reasons FROM {TABLE} WHERE seq > ? AND seq <= ? AND subject_id = ? AND time >= ?"
)


def _parsed(found: list[tuple[int, str, str, Any]]) -> list[tuple[str, int, str, tuple[Any, ...]]] | None:
    """The rows as _RecentRows keeps them; None when one cannot be kept (a time that is not
    text, `reasons` that are not JSON or hold what cannot be counted): such rows are
    counted by the query, which fails, as it always did, only while they are in the window.
    Rows share their outcome and reasons objects (a few distinct values among many rows)."""
    rows = []
    try:
        for seq, at, outcome, reasons in found:
            row_reasons = _REASONS.get(reasons)
            if row_reasons is None:
                row_reasons = tuple(json.loads(reasons or "[]"))
                hash((outcome, row_reasons))
                if len(_REASONS) >= 1024:
                    _REASONS.clear()
                _REASONS[reasons] = row_reasons
            if type(at) is not str:
                return None
            rows.append((at, seq, _OUTCOMES.setdefault(outcome, outcome), row_reasons))
    except (ValueError, TypeError, RecursionError):
        return None
    if len(_OUTCOMES) >= 1024:
        _OUTCOMES.clear()
    return rows


#: shared parsed values of recent_activity's rows (bounded: cleared when full)
_REASONS: dict[Any, tuple[Any, ...]] = {}
_OUTCOMES: dict[Any, Any] = {}


def _floor(since: str) -> str:
    """HISTORY_MARGIN before `since` (in the rows' time format)."""
    return utc_timestamp(dt.datetime.fromisoformat(since[:-1] + "+00:00") - HISTORY_MARGIN)


def _index(rows: list[tuple[str, int, str, tuple[Any, ...]]], at: str) -> int:
    """The first row at or after `at`."""
    return bisect_left(rows, at, key=lambda row: row[0])


def _count(found: list[tuple[int, str, str, Any]]) -> dict[str, dict[str, int]]:
    outcomes: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for _seq, _time, outcome, reasons_json in found:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        for reason in json.loads(reasons_json or "[]"):
            reasons[reason] = reasons.get(reason, 0) + 1
    return {"outcomes": outcomes, "reasons": reasons}


class _Writer(threading.Thread):
    """Commits whatever is queued, as one transaction per round."""

    def __init__(self, store: AuditStore) -> None:
        super().__init__(name="audit-writer", daemon=True)
        self.store = store
        self.pid = os.getpid()
        self.queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self.stopping = False

    def _take(self, rows: int) -> list[_Pending]:
        """What is queued, up to about `rows` rows, without waiting."""
        taken: list[_Pending] = []
        while rows > 0 and not self.stopping:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self.stopping = True
                break
            taken.append(item)
            rows -= len(item.rows)
        return taken

    def run(self) -> None:
        conn: sqlite3.Connection | None = None
        stopping = False
        wal: _WalCheckpointer | None = None
        try:
            wal = _WalCheckpointer(self.store)
            conn = self.store.connect()
            self.store._turn_fd = os.open(
                self.store.path.with_name(self.store.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644
            )
            # WAL checkpoints (copying the log back into the database, with its own fsync)
            # run in a background thread, not inside commits that callers wait for: see
            # _WalCheckpointer. SQLite's own (inside COMMIT) is only the backstop, far above.
            conn.execute(f"PRAGMA wal_autocheckpoint={4 * WAL_RESET_PAGES}")
            conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: index pages stay in memory
            conn.execute("PRAGMA temp_store=MEMORY")  # statement journals of the multi-row inserts
            wal.start()
            while not stopping:
                first = self.queue.get()
                if first is _STOP:
                    break
                # Group commit: everything that queued up while the last commit was syncing,
                # and what queues up while this one waits for its turn.
                batch = [first, *self._take(self.store.max_batch - len(first.rows))]
                try:
                    self.store._commit(conn, batch, self._take)
                except BaseException as exc:  # a bug: fail this round's callers, keep writing
                    for p in batch:
                        p.resolve(error=AuditWriteError(f"audit write failed: {type(exc).__name__}: {exc}"))
                    if not isinstance(exc, Exception):
                        raise
                stopping = self.stopping
        except BaseException as exc:  # never leave a caller waiting forever
            error = AuditWriteError(f"audit writer stopped: {type(exc).__name__}: {exc}")
            while True:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    item.resolve(error=error)
            raise
        finally:
            if wal is not None:
                wal.stop()
            if conn is not None:
                conn.close()
            fd, self.store._turn_fd = self.store._turn_fd, None
            if fd is not None:
                os.close(fd)


class _WalCheckpointer(threading.Thread):
    """Moves the WAL into the database, so that commits never have to.

    PASSIVE checkpoints (they never block writers) every `interval` seconds, or every
    `busy_interval` while the log is filling up fast, copy the log in small steps. Under a
    steady stream of commits a passive checkpoint never catches up completely, and SQLite
    only restarts the log from its beginning once it has; so when the log passes
    WAL_RESET_PAGES this thread takes the writers' turn (appends wait, and see it in their
    latency) and copies the rest, then the next commit starts the log again. Without that
    step SQLite's autocheckpoint would do the same inside a COMMIT that callers wait for.
    """

    def __init__(
        self, store: AuditStore, interval: float = 0.25, busy_interval: float = 0.02, busy_pages: int = 500
    ) -> None:
        super().__init__(name="audit-wal-checkpointer", daemon=True)
        self.store = store
        self.interval = interval
        self.busy_interval = busy_interval
        self.busy_pages = busy_pages
        self._stop_event = threading.Event()

    def run(self) -> None:
        conn = self.store.connect()
        try:
            fd = os.open(self.store.path.with_name(self.store.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            conn.close()
            raise
        delay = self.interval
        try:
            while not self._stop_event.wait(delay):
                delay = self.interval
                try:
                    _busy, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if log >= WAL_RESET_PAGES and copied < log:  # caught up: the log restarts anyway
                        with self.store._turn(fd=fd):
                            started = time.perf_counter()
                            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                            held = time.perf_counter() - started
                        self.store.stats.wal_resets += 1
                        if self.store.on_wal_reset is not None:
                            self.store.on_wal_reset(held)
                except sqlite3.Error:
                    continue  # busy or locked: try again next round; the log only grows meanwhile
                if log >= self.busy_pages:
                    delay = self.busy_interval
        finally:
            conn.close()
            os.close(fd)

    def stop(self) -> None:
        if self.is_alive():
            self._stop_event.set()
            self.join()


_WIDTH = len(chain.STORED_COLUMNS)
_HEAD = f"""SELECT coalesce(max(seq), 0),
    coalesce((SELECT row_hash FROM {TABLE} ORDER BY seq DESC LIMIT 1), '{chain.GENESIS}'),
    coalesce((SELECT max(seq) FROM {CHECKPOINTS}), 0),
    coalesce((SELECT max(seq) FROM {LOOKUP}), 0)
    FROM {TABLE}"""

_LOOKUP_COPY = f"""INSERT INTO {LOOKUP} ({", ".join(LOOKUP_COLUMNS)})
    SELECT {", ".join(LOOKUP_COLUMNS)} FROM {TABLE}
    WHERE seq > (SELECT coalesce(max(seq), 0) FROM {LOOKUP}) ORDER BY seq LIMIT ?"""


def update_lookup(conn: sqlite3.Connection, limit: int = 1_000_000) -> int:
    """Copy up to `limit` rows of the log not yet in the lookup table into it (one transaction)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        added = conn.execute(_LOOKUP_COPY, (limit,)).rowcount
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return added


_INSERT = f"INSERT INTO {TABLE} ({', '.join(chain.STORED_COLUMNS)}) VALUES ({', '.join('?' * _WIDTH)})"

#: rows per INSERT statement. One statement per row would make SQLite open a statement
#: journal for every row (the chain trigger can abort the statement, so each statement must
#: be undoable on its own) and let go of the GIL once per row; a multi-row VALUES insert pays
#: both once per chunk. A few fixed sizes keep the statements in the connection's cache.
CHUNKS = (64, 32, 16, 8, 4, 2, 1)
_CHUNK_SQL = {
    n: f"INSERT INTO {TABLE} ({', '.join(chain.STORED_COLUMNS)}) VALUES "
    + ", ".join(["(" + ", ".join("?" * _WIDTH) + ")"] * n)
    for n in CHUNKS
}


def insert_rows(
    conn: sqlite3.Connection, params: list[tuple[Any, ...]], chunk_sql: Mapping[int, str] = _CHUNK_SQL
) -> None:
    """INSERT the rows in order, in multi-row statements of the sizes in chunk_sql."""
    sizes = sorted(chunk_sql, reverse=True)
    i, n = 0, len(params)
    while i < n:
        size = next(s for s in sizes if s <= n - i)
        flat: list[Any] = []
        for row in params[i : i + size]:
            flat.extend(row)
        conn.execute(chunk_sql[size], flat)
        i += size


#: a row ready for the writer: its content values (CONTENT_COLUMNS order), their canonical
#: JSON, and the SHA-256 state of the hashed text up to prev_hash (chain.hash_prefix)
Prepared = tuple[tuple[Any, ...], str, Any]

_KINDS = tuple(chain.CONTENT_COLUMNS.items())
_INT64 = 2**63


def prepare(event: AuditEvent | Mapping[str, Any]) -> Prepared:
    """Type the row as it will be stored and serialise and pre-hash its content.

    Runs before the write lock is taken, for each row on its own: text and JSON values are
    normalised into what the store can hold first (events.py), and a row that still cannot
    be stored raises AuditWriteError here, so it never joins a group commit.
    """
    source = event.__dict__ if isinstance(event, AuditEvent) else event
    get = source.get
    values: list[Any] = []
    try:
        for name, kind in _KINDS:
            value: Any = get(name)
            if value is not None and type(value) is not kind:
                if isinstance(value, (list, dict, tuple)):
                    value = storable_json(value)  # NaN, huge or deep values normalised (events.py)
                elif kind is str:
                    value = storable_scalar(value)
                elif kind is float and not math.isfinite(value):
                    value = None  # SQLite would store NaN as NULL: hash what reads back
                else:
                    value = kind(value)
            elif kind is str:
                if isinstance(value, str) and not value.isascii():
                    value = storable_text(value)  # a lone surrogate cannot be UTF-8: kept escaped
            elif kind is float and isinstance(value, float) and not math.isfinite(value):
                value = None
            if kind is float and value == 0.0:
                value = 0.0  # -0.0 reads back from SQLite as 0.0: hash what reads back
            if kind is int and value is not None and not -_INT64 <= value < _INT64:
                raise ValueError(f"{name}: {value} does not fit an SQLite INTEGER")
            values.append(value)
        content = chain.content_text(values)
    except Exception as exc:  # TypeError, ValueError, OverflowError, RecursionError …
        raise AuditWriteError(f"unstorable audit row: {type(exc).__name__}: {exc}") from exc
    return tuple(values), content, chain.hash_prefix(content)


def _head(conn: sqlite3.Connection) -> tuple[int, str]:
    head = conn.execute(f"SELECT seq, row_hash FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
    return (int(head[0]), str(head[1])) if head else (0, chain.GENESIS)


def _utcnow() -> str:
    return utc_timestamp()


def init_app(app: Any) -> Any:
    """Open the store AUDIT_STORE_URL names (default: the SQLite file AUDIT_DB) once per
    process; the app closes it with itself."""
    from .backends import open_store, store_url

    config = app.config
    store = open_store(
        store_url(config),
        config["AUDIT_BUSY_TIMEOUT_MS"],
        checkpoint_every=int(config.get("AUDIT_CHECKPOINT_EVERY", 1000)),
        checkpoint_key=config.get("AUDIT_CHECKPOINT_KEY_FILE") or None,
        pool_size=int(config.get("AUDIT_POOL_SIZE", 4)),
        key_anchor=config["AUDIT_DB"],
    )
    app.extensions["audit_store"] = store
    return store
