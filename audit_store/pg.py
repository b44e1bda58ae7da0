"""The PostgreSQL audit store: one hash-chained, append-only log for a fleet of sidecars.

Same interface and the same chain as the SQLite store (store.py, chain.py): `append(event)`
returns the row's seq once the row is committed and its commit record is flushed to disk
(a synchronous commit waits for the flush behind it; see below), so no response leaves
before its row.

**One global chain, serialised in the database.** Every writer (each replica's writer
thread) appends in a transaction that first takes a transaction-scoped advisory lock and
reads the head (the row with the highest seq) in one statement (lcr_audit_lock_head), then
hashes its rows onto it and COPYs them in; the lock is released at commit. Group commit per
replica, as with SQLite: one writer thread per process takes everything queued while its
last commit was syncing, plus what queued while it waited for the lock, and commits it as
one transaction. Rows are prepared (typed, serialised, pre-hashed) in the request's thread,
so joining a group costs the writer only the final hash. (Measured:
bench/results/audit-fleet.json; README "A fleet of sidecars".)

**Why the flush waits outside the lock.** Held through the commit's WAL flush, the chain's
lock would let one commit sync at a time across the fleet (measured: 4 writer processes
managed fewer rows/s than 1). So the chain transaction commits with synchronous_commit off
(set inside lcr_audit_lock_head, for that transaction only) and releases the lock at once;
the writer then runs `SELECT pg_current_xact_id()` as a transaction of its own with
synchronous_commit on, which returns only when the WAL is on disk past its own commit
record, so past the rows' commit; only then are the callers answered. Several replicas'
flushes share one fsync (PostgreSQL's own group commit). A crash before the flush loses a
suffix of the WAL: rows nobody was answered for, in chain order, so the chain that recovers
is a prefix of the one that was written, never a fork.

**Append-only in the database.** The migrations create two roles: `lcr_audit_writer`
(SELECT and INSERT on the log and the checkpoints, nothing else: what a sidecar's login
role is granted) and `lcr_audit_reader` (SELECT: what an auditor's role is granted).
Triggers refuse UPDATE, DELETE and TRUNCATE on both tables, whoever asks, and refuse an
INSERT that does not extend the chain (each new row must follow the row with seq - 1 and
carry its row_hash as prev_hash; seq is the primary key, so the chain cannot fork) and a
checkpoint that does not sign a row of the chain. The owner or a superuser can still switch
triggers off: tamper evidence rests on `verify` and the signed checkpoints, not on them.

**Fail closed.** The writer keeps one connection of its own; when the database is
unreachable or too slow (connect_timeout and lock_timeout are the busy timeout,
statement_timeout five times it) the round's callers get AuditWriteError (their responses are 503
audit-unavailable) and the next round connects again, so the store recovers by itself when
the database returns. Readers (the Audit Trail endpoint) borrow from a psycopg_pool pool;
an exhausted pool is the same 503 after the busy timeout.

Stored types: text columns are PostgreSQL `text`, which cannot hold NUL; a NUL in a text
value is stored as its escape `\\u0000` (and hashed as stored), like a lone surrogate in
the SQLite store (events.storable_text). JSON columns are text as well, not jsonb: the
chain hashes the exact text, and jsonb would reformat it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

from . import chain
from .checkpoints import Signer, load_signer
from .events import AuditEvent
from .store import (
    CHECKPOINTS,
    TABLE,
    AuditStore,
    AuditWriteError,
    Prepared,
    QueuedAppends,
    WriterStats,
    _Pending,
    _utcnow,
    prepare,
)

log = logging.getLogger("lcr.audit")

#: advisory lock keys (per database): the chain's head, and the migrations
CHAIN_LOCK = 0x6C63725F63686E  # "lcr_chn"
MIGRATE_LOCK = 0x6C63725F6D6967  # "lcr_mig"
WRITER_ROLE = "lcr_audit_writer"
READER_ROLE = "lcr_audit_reader"
MIGRATIONS_TABLE = "lcr_audit_migrations"

_PG_TYPES = {str: "text", int: "bigint", float: "double precision"}
#: characters of a looked-up value that its index holds (at most 4 bytes each: under the
#: 2,704-byte limit of a B-tree entry with the time beside it)
INDEXED_PREFIX = 200
_NOT_NULL = {"decision_id", "time", "action", "outcome", "http_status"}


class AuditSchemaError(AuditWriteError):
    """The database's audit schema is missing or behind and this role may not migrate it."""


def _decisions_sql() -> str:
    columns = ",\n  ".join(
        f"{name} {_PG_TYPES[kind]}{' NOT NULL' if name in _NOT_NULL else ''}"
        for name, kind in chain.CONTENT_COLUMNS.items()
    )
    return f"""
CREATE TABLE {TABLE} (
  seq bigint PRIMARY KEY CHECK (seq > 0),
  prev_hash text NOT NULL,
  row_hash text NOT NULL,
  {columns},
  UNIQUE (decision_id)
);
-- The auditors' questions: by resident, staff member, care service, outcome, each with time.
-- On a prefix of the value: a B-tree entry may not pass 2,704 bytes, and a row must store
-- whatever was presented (queries.py matches the prefix, then the whole value).
CREATE INDEX {TABLE}_nhs_number_time ON {TABLE} (left(nhs_number, {INDEXED_PREFIX}), time);
CREATE INDEX {TABLE}_subject_id_time ON {TABLE} (left(subject_id, {INDEXED_PREFIX}), time);
CREATE INDEX {TABLE}_care_service_time ON {TABLE} (left(care_service, {INDEXED_PREFIX}), time);
CREATE INDEX {TABLE}_outcome_time ON {TABLE} (left(outcome, {INDEXED_PREFIX}), time);
CREATE TABLE {CHECKPOINTS} (
  seq bigint PRIMARY KEY,
  row_hash text NOT NULL,
  signature text NOT NULL,
  key_id text NOT NULL,
  time text NOT NULL
);

CREATE FUNCTION lcr_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only: % refused on %', TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END $$;

-- Statement-level: refused even when no row matches, and TRUNCATE too.
CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {TABLE}
  FOR EACH STATEMENT EXECUTE FUNCTION lcr_audit_refuse();
CREATE TRIGGER {CHECKPOINTS}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {CHECKPOINTS}
  FOR EACH STATEMENT EXECUTE FUNCTION lcr_audit_refuse();

-- Once per statement (a whole group): the new rows follow each other, and the first follows
-- the row before it. seq is the primary key, so two writers cannot both extend the same head.
-- Written as lookups, not a join with the log: a join is planned as a scan of the whole log.
CREATE FUNCTION lcr_audit_chain_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  first_seq bigint;
  first_prev text;
  rows_in bigint;
  last_seq bigint;
  before text;
BEGIN
  SELECT min(seq), max(seq), count(*) INTO first_seq, last_seq, rows_in FROM lcr_new_rows;
  IF rows_in = 0 THEN
    RETURN NULL;
  END IF;
  SELECT prev_hash INTO first_prev FROM lcr_new_rows WHERE seq = first_seq;
  IF first_seq = 1 THEN
    before := '{chain.GENESIS}';
  ELSE
    SELECT row_hash INTO before FROM {TABLE} WHERE seq = first_seq - 1;
  END IF;
  IF before IS NULL OR first_prev IS DISTINCT FROM before OR last_seq - first_seq + 1 <> rows_in
     OR EXISTS (SELECT 1 FROM lcr_new_rows WHERE row_hash IS NULL)
     OR EXISTS (SELECT 1 FROM lcr_new_rows a JOIN lcr_new_rows b ON b.seq = a.seq + 1 WHERE b.prev_hash IS DISTINCT FROM a.row_hash)
  THEN
    RAISE EXCEPTION 'the audit log is append-only: an insert must extend the hash chain' USING ERRCODE = 'restrict_violation';
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER {TABLE}_chain_only AFTER INSERT ON {TABLE}
  REFERENCING NEW TABLE AS lcr_new_rows FOR EACH STATEMENT EXECUTE FUNCTION lcr_audit_chain_only();

CREATE FUNCTION lcr_audit_checkpoint_on_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM {TABLE} WHERE seq = NEW.seq AND row_hash = NEW.row_hash) THEN
    RAISE EXCEPTION 'a checkpoint must sign a row of the chain' USING ERRCODE = 'restrict_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER {CHECKPOINTS}_on_chain BEFORE INSERT ON {CHECKPOINTS}
  FOR EACH ROW EXECUTE FUNCTION lcr_audit_checkpoint_on_chain();

-- SQLite's json_valid(), for the queries and replay (PostgreSQL 15 has no IS JSON).
CREATE FUNCTION lcr_json_valid(t text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  PERFORM t::jsonb;
  RETURN t IS NOT NULL;
EXCEPTION WHEN others THEN
  RETURN false;
END $$;

REVOKE ALL ON {TABLE}, {CHECKPOINTS} FROM PUBLIC;
GRANT SELECT, INSERT ON {TABLE}, {CHECKPOINTS} TO {WRITER_ROLE};
GRANT SELECT ON {TABLE}, {CHECKPOINTS} TO {READER_ROLE};
"""


_ROLES_SQL = f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{WRITER_ROLE}') THEN CREATE ROLE {WRITER_ROLE} NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN CREATE ROLE {READER_ROLE} NOLOGIN; END IF;
END $$;
"""

#: (name, SQL), applied in order, each once, in one transaction each
MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("roles", _ROLES_SQL),
    ("decisions", _decisions_sql()),
    (
        "grants",
        (
            f"GRANT USAGE ON SCHEMA public TO {WRITER_ROLE}, {READER_ROLE};"
            f" GRANT SELECT ON {MIGRATIONS_TABLE} TO {WRITER_ROLE}, {READER_ROLE};"
        ),
    ),
    (
        # The writer's first statement: the chain's lock and its head in one round trip,
        # and this transaction's commit not waiting for the disk (the writer waits for the
        # flush after the lock is released: _PgWriter.write). SECURITY INVOKER (the
        # default): it reads with the caller's SELECT, nothing more.
        "lock_head",
        f"""CREATE FUNCTION lcr_audit_lock_head(OUT seq bigint, OUT row_hash text, OUT checkpoint_seq bigint)
        LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_advisory_xact_lock({CHAIN_LOCK});
          PERFORM set_config('synchronous_commit', 'off', true);
          SELECT d.seq, d.row_hash INTO seq, row_hash FROM {TABLE} d ORDER BY d.seq DESC LIMIT 1;
          seq := coalesce(seq, 0);
          row_hash := coalesce(row_hash, '{chain.GENESIS}');
          SELECT coalesce(max(c.seq), 0) INTO checkpoint_seq FROM {CHECKPOINTS} c;
        END $$;""",
    ),
)


def pending_migrations(conn: psycopg.Connection[Any]) -> list[str]:
    """Names of the migrations this database has not had yet."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATIONS_TABLE,)).fetchone()
    applied: set[str] = set()
    if exists and exists[0]:
        applied = {name for (name,) in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")}
    return [name for name, _ in MIGRATIONS if name not in applied]


def migrate(url: str, connect_timeout: float = 10.0) -> list[str]:
    """Apply the pending migrations (as the schema's owner); the names applied.

    Replicas starting together take turns on an advisory lock; the first applies, the
    others find nothing left to do. Raises AuditSchemaError when some are pending and this
    role may not apply them (the sidecar's role, which may only INSERT and SELECT).
    """
    with psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(connect_timeout))) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            todo = pending_migrations(conn)
            if not todo:
                return []
            try:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (name text PRIMARY KEY, applied_at timestamptz "
                    "NOT NULL DEFAULT now())"
                )
                for name, sql in MIGRATIONS:
                    if name in todo:
                        conn.execute(sql)
                        conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (%s)", (name,))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise AuditSchemaError(
                    f"the audit schema needs migrations {todo} and this role may not apply them "
                    f"({exc.diag.message_primary}); "
                    "run `lcr-audit migrate --db <the owner's postgresql:// URL>` first"
                ) from None
    return todo


def _escape_nul(row: AuditEvent | Mapping[str, Any]) -> AuditEvent | Mapping[str, Any]:
    """PostgreSQL text cannot hold NUL: keep it as its escape, as the row is hashed."""
    source = row.__dict__ if isinstance(row, AuditEvent) else row
    if not any(type(v) is str and "\x00" in v for v in source.values()):
        return row
    return {k: v.replace("\x00", "\\u0000") if type(v) is str else v for k, v in source.items()}


_LOCK_HEAD = "SELECT * FROM lcr_audit_lock_head()"
_FLUSHED = "SELECT pg_current_xact_id()"
_ROW = "(" + ", ".join(["%s"] * len(chain.STORED_COLUMNS)) + ")"
#: multi-row INSERTs of a few fixed sizes (psycopg prepares a statement it runs often); a
#: group is sent as the fewest of them, all in one pipeline with its COMMIT
_INSERTS = {
    n: f"INSERT INTO {TABLE} ({', '.join(chain.STORED_COLUMNS)}) VALUES " + ", ".join([_ROW] * n)
    for n in (256, 64, 16, 4, 1)
}
_HEAD = f"""SELECT coalesce((SELECT seq FROM {TABLE} ORDER BY seq DESC LIMIT 1), 0),
    coalesce((SELECT row_hash FROM {TABLE} ORDER BY seq DESC LIMIT 1), '{chain.GENESIS}'),
    coalesce((SELECT max(seq) FROM {CHECKPOINTS}), 0)"""


class PgAuditStore(QueuedAppends):
    """The audit store on PostgreSQL; the same interface as AuditStore (store.py)."""

    backend = "postgresql"

    def __init__(
        self,
        url: str,
        busy_timeout_ms: int = 2000,
        *,
        checkpoint_every: int = 1000,
        checkpoint_key: str | Path | None = None,
        max_batch: int = 1000,
        pool_size: int = 4,
        key_anchor: str | Path = "var/audit.db",
        migrate_schema: bool = True,
    ) -> None:
        """`url`: postgresql://user@host:port/db. `busy_timeout_ms` bounds every wait on the
        database (connect, the chain's lock, each statement, a pooled connection) before a
        write or read fails closed. `key_anchor`: the DEV-ONLY checkpoint key lives in
        `<its folder>/keys/` when no `checkpoint_key` is given (a fleet must give one: every
        replica signs with the same key). A schema that is behind while this role may not
        migrate it, or a database that does not answer yet, is not an error here: writes
        fail closed (AuditWriteError: 503) and readiness says why until it is fixed."""
        self.url = url
        self.busy_timeout = busy_timeout_ms / 1000
        self.checkpoint_every = int(checkpoint_every)
        self.max_batch = int(max_batch)
        self.stats = WriterStats()
        self.on_commit: Callable[[int, float], None] | None = None
        self.signer: Signer = load_signer(checkpoint_key, key_anchor)
        self._schema_ready = False
        if migrate_schema:
            try:
                self.ensure_schema()
            except psycopg.OperationalError as exc:
                log.warning(
                    "audit store: PostgreSQL not reachable yet (%s); writes fail closed until it is", _one_line(exc)
                )
            except AuditSchemaError as exc:
                # Not ready (readiness says why) and every write 503, until the owner migrates.
                log.error("audit store: %s", exc)
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, int(pool_size)),
            timeout=self.busy_timeout,
            kwargs={"autocommit": True, "connect_timeout": self._connect_timeout},
            configure=self._configure,
            check=ConnectionPool.check_connection,
            reconnect_timeout=max(5.0, self.busy_timeout),
            name="lcr-audit-read",
            open=False,
        )
        self.pool.open(wait=False)
        self._writer: _PgWriter | None = None
        self._writer_lock = threading.Lock()
        self._probe: psycopg.Connection[Any] | None = None
        self._probe_lock = threading.Lock()
        self._closed = False

    @property
    def _connect_timeout(self) -> int:
        return max(1, round(self.busy_timeout))  # libpq takes whole seconds (minimum 2 in effect)

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        ms = int(self.busy_timeout * 1000)
        # Durability is the point: never let a server default of `off` answer before the flush.
        conn.execute("SET synchronous_commit = on")
        conn.execute(f"SET lock_timeout = {ms}")
        conn.execute(f"SET statement_timeout = {max(ms, 1000) * 5}")  # a slow database is a fault, bounded
        conn.execute(f"SET idle_in_transaction_session_timeout = {max(ms, 1000) * 10}")

    def connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection with the store's timeouts (close it when done)."""
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self._connect_timeout)
        try:
            self._configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def ensure_schema(self) -> None:
        """Migrate, or check that the schema is current when this role may not migrate."""
        if self._schema_ready:
            return
        migrate(self.url, self._connect_timeout)
        self._schema_ready = True

    # -- writing -------------------------------------------------------------------------

    def append(self, event: AuditEvent) -> int:
        """Commit one row durably and return its seq. Raises AuditWriteError."""
        # Prepared here, in the request's thread, not by the writer: while the writer waits
        # for the chain's lock, the rows queued meanwhile are ready to join its commit.
        return self._submit([prepare(_escape_nul(event))])

    def _new_writer(self) -> _PgWriter:
        return _PgWriter(self)

    def _ready(self, batch: list[_Pending]) -> list[_Pending]:
        """Prepare every row; a caller whose row cannot be stored gets its error now."""
        ready = []
        for p in batch:
            try:
                p.rows = [r if type(r) is tuple else prepare(_escape_nul(r)) for r in p.rows]
            except AuditWriteError as exc:
                p.resolve(error=exc)
            else:
                ready.append(p)
        return ready

    def _commit(
        self, writer: _PgWriter, batch: list[_Pending], more: Callable[[int], list[_Pending]] | None = None
    ) -> None:
        """Commit the batch as one transaction; a row the database refuses fails alone.

        `more(n)` hands over up to n rows queued since: once the writer holds the chain's
        lock, they join this commit (the longer it waited, the bigger the group)."""
        batch[:] = self._ready(batch)
        if not batch:
            return

        def joining() -> list[Prepared]:
            size = sum(len(p.rows) for p in batch)
            if more is None or size >= self.max_batch:
                return []
            extra = self._ready(more(self.max_batch - size))
            batch.extend(extra)
            return [row for p in extra for row in p.rows]

        rows = [row for p in batch for row in p.rows]
        started = time.perf_counter()
        try:
            first_seq = writer.write(rows, joining)
            rows = [row for p in batch for row in p.rows]
        except (
            psycopg.errors.IntegrityError,
            psycopg.errors.DataError,
            psycopg.errors.ProgrammingError,
            psycopg.errors.ProgramLimitExceeded,
        ) as exc:
            if len(batch) > 1:
                # A row the database refused (a duplicate decision id, a value it cannot
                # hold): one bad row must not fail its neighbours, so commit them one by one.
                for p in batch:
                    self._commit(writer, [p])
                return
            self._fail(batch, exc)
            return
        except Exception as exc:  # noqa: BLE001 - unreachable, timed out, killed: the store's state, not a row's
            self._fail(batch, exc)
            return
        elapsed = time.perf_counter() - started
        self.stats.commits += 1
        self.stats.rows += len(rows)
        AuditStore._release(batch, first_seq)
        if self.on_commit is not None:
            self.on_commit(len(rows), elapsed)

    def _fail(self, batch: list[_Pending], exc: Exception) -> None:
        self.stats.failed_commits += 1
        for p in batch:
            p.resolve(error=AuditWriteError(f"{type(exc).__name__}: {_one_line(exc)}"))

    def _insert_checkpoint(self, conn: psycopg.Connection[Any], seq: int, row_hash: str) -> dict[str, Any]:
        cp = self.signer.checkpoint(seq, row_hash, _utcnow())
        conn.execute(
            f"INSERT INTO {CHECKPOINTS} (seq, row_hash, signature, key_id, time) VALUES (%(seq)s, %(row_hash)s, "
            "%(signature)s, %(key_id)s, %(time)s)",
            cp,
        )
        self.stats.checkpoints += 1
        return cp

    def checkpoint(self) -> dict[str, Any] | None:
        """Sign the current chain head now (no-op when it is already signed); the checkpoint row."""
        self.ensure_schema()
        with self.connect() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK,))
            seq, row_hash, _ = conn.execute(_HEAD).fetchone()  # type: ignore[misc]  # the chain head always has a row (the table's sequence starts it)
            if not seq:
                return None
            existing = conn.execute(
                f"SELECT seq, row_hash, signature, key_id, time FROM {CHECKPOINTS} WHERE seq = %s", (seq,)
            ).fetchone()
            if existing is not None:
                return dict(zip(("seq", "row_hash", "signature", "key_id", "time"), existing, strict=False))
            return self._insert_checkpoint(conn, seq, row_hash)

    # -- reading -------------------------------------------------------------------------

    @contextlib.contextmanager
    def reader(self) -> Iterator[PgReader]:
        """A read-only connection from the pool, as a PgReader (sqlite3-like execute).

        Raises AuditWriteError (the store is unavailable: 503) when no connection comes
        within the busy timeout."""
        try:
            cm = self.pool.connection(timeout=self.busy_timeout)
            conn = cm.__enter__()
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise AuditWriteError(f"audit store unavailable: {type(exc).__name__}: {_one_line(exc)}") from None
        reader = PgReader(conn)
        try:
            yield reader
        except BaseException:
            reader.end()
            cm.__exit__(None, None, None)
            raise
        reader.end()
        cm.__exit__(None, None, None)

    def recent_activity(self, subject_id: str, since: str) -> dict[str, dict[str, int]]:
        """How one staff member's requests ended since `since` (the SQLite store's method:
        {"outcomes": {outcome: rows}, "reasons": {deny reason: rows}}, committed rows of the
        whole fleet). `since`: UTC ISO 8601 in the rows' format, inclusive. Raises
        AuditWriteError when the database does not answer within the busy timeout."""
        outcomes: dict[str, int] = {}
        reasons: dict[str, int] = {}
        # Counted by distinct (outcome, reasons) in the database: a caller's hour is thousands
        # of rows with a handful of distinct values, each parsed once here and counted n times.
        with self.reader() as conn:
            found = conn.execute(
                f"SELECT outcome, CASE WHEN lcr_json_valid(reasons) THEN reasons ELSE '[]' END, n FROM ("
                f"SELECT outcome, reasons, count(*) AS n FROM {TABLE} "
                f"WHERE left(subject_id, {INDEXED_PREFIX}) = left(?, {INDEXED_PREFIX}) AND subject_id = ? AND time "
                ">= ? GROUP BY outcome, reasons) AS distinct_rows",
                (subject_id, subject_id, since),
            ).fetchall()
        for outcome, reasons_json, n in found:
            outcomes[outcome] = outcomes.get(outcome, 0) + n
            for reason in json.loads(reasons_json or "[]"):
                if isinstance(reason, str):
                    reasons[reason] = reasons.get(reason, 0) + n
        return {"outcomes": outcomes, "reasons": reasons}

    def rows(self, **where: Any) -> Iterator[dict[str, Any]]:
        names = ("seq", "prev_hash", "row_hash", *chain.CONTENT_NAMES)
        clause = " AND ".join(f"{k} = %({k})s" for k in where) or "TRUE"
        with self.connect() as conn:
            found = conn.execute(
                f"SELECT {', '.join(names)} FROM {TABLE} WHERE {clause} ORDER BY seq", where
            ).fetchall()
        return iter([dict(zip(names, values, strict=False)) for values in found])

    def count(self) -> int:
        with self.connect() as conn:
            return int(conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])  # type: ignore[index]  # count(*) always returns a row

    def head(self) -> tuple[int, str]:
        """(seq, row_hash) of the last row; (0, GENESIS) when empty."""
        with self.connect() as conn:
            seq, row_hash, _ = conn.execute(_HEAD).fetchone()  # type: ignore[misc]  # the chain head always has a row (the table's sequence starts it)
        return int(seq), str(row_hash)

    def writable(self, timeout: float | None = None) -> dict[str, Any]:
        """Readiness: the database answers, is a primary, and this role may append to the log.

        {"ok": bool, "detail": str}. `timeout` is accepted for the SQLite store's signature;
        the probe's connection is bounded by the busy timeout."""
        with self._probe_lock:
            try:
                if self._probe is None or self._probe.closed:
                    self._probe = self.connect()
                self.ensure_schema()
                ok, primary = self._probe.execute(
                    f"SELECT has_table_privilege(current_user, '{TABLE}', 'INSERT'), NOT pg_is_in_recovery()"
                ).fetchone()  # type: ignore[misc]  # the chain head always has a row (the table's sequence starts it)
            except (psycopg.Error, AuditWriteError) as exc:
                if self._probe is not None:
                    self._probe.close()
                    self._probe = None
                return {"ok": False, "detail": f"audit store not writable ({type(exc).__name__}: {_one_line(exc)})"}
        if not ok or not primary:
            return {
                "ok": False,
                "detail": "audit store not writable (no INSERT privilege on the log, or a read-only standby)",
            }
        return {"ok": True, "detail": "audit store writable"}

    def close(self) -> None:
        with self._writer_lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None and writer.pid == os.getpid() and writer.is_alive():
            writer.queue.put(None)
            writer.join()
        with self._probe_lock:
            if self._probe is not None:
                self._probe.close()
                self._probe = None
        self.pool.close()


class _PgWriter(threading.Thread):
    """Commits whatever is queued, as one transaction per round, on its own connection."""

    def __init__(self, store: PgAuditStore) -> None:
        super().__init__(name="audit-writer-pg", daemon=True)
        self.store = store
        self.pid = os.getpid()
        self.queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self.stopping = False
        self.conn: psycopg.Connection[Any] | None = None

    def _take(self, rows: int) -> list[_Pending]:
        taken: list[_Pending] = []
        while rows > 0 and not self.stopping:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self.stopping = True
                break
            taken.append(item)
            rows -= len(item.rows)
        return taken

    def write(self, rows: list[Prepared], joining: Callable[[], list[Prepared]] | None = None) -> int:
        """Append the rows durably; the first one's seq. Three round trips, one of them
        with the chain's lock held:

        1. BEGIN and lcr_audit_lock_head() (the lock, the head, this transaction's commit
           not waiting for the disk), in one pipeline;
        2. the rows (and those `joining()` hands over now that the lock is held) hashed
           onto the head, sent as multi-row INSERTs with a checkpoint when one is due and
           the COMMIT, in one pipeline: the lock is released as the commit ends;
        3. the flush-waiting transaction (see "Why the flush waits outside the lock").

        A connection that turns out dead (the server restarted since the last round) is
        replaced and the round tried once more: should the first try have committed after
        all, the unique decision ids refuse the second (its callers get 503, the rows stay:
        rows ≤ answered + in flight still holds)."""
        store = self.store
        for attempt in (0, 1):
            if self.conn is None or self.conn.closed:
                store.ensure_schema()
                self.conn = store.connect()
            conn = self.conn
            try:
                with conn.pipeline() as pipeline:
                    conn.execute("BEGIN")
                    head = conn.execute(_LOCK_HEAD)
                    pipeline.sync()
                    head_seq, head_hash, last_checkpoint = head.fetchone()  # type: ignore[misc]  # the chain head always has a row (the table's sequence starts it)
                    if joining is not None and attempt == 0:
                        rows = rows + joining()
                    new_seq, new_hash = head_seq, head_hash
                    after = chain.row_hash_after
                    flat: list[Any] = []
                    for values, _content, prefix in rows:
                        new_seq += 1
                        prev, new_hash = new_hash, after(prefix, new_seq, new_hash)
                        flat.extend((new_seq, prev, new_hash, *values))
                    width = len(chain.STORED_COLUMNS)
                    start, left = 0, len(rows)
                    while left:
                        size = next(n for n in _INSERTS if n <= left)
                        conn.execute(_INSERTS[size], flat[start * width : (start + size) * width])
                        start, left = start + size, left - size
                    if store.checkpoint_every > 0 and new_seq - last_checkpoint >= store.checkpoint_every:
                        store._insert_checkpoint(conn, new_seq, new_hash)
                    conn.execute("COMMIT")
                    conn.execute(_FLUSHED)
                return int(head_seq) + 1
            except psycopg.Error:
                broken = conn.closed or conn.broken
                if broken:
                    conn.close()
                    self.conn = None
                elif conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")
                if attempt == 0 and broken:
                    continue
                raise
        raise AssertionError("unreachable")

    def run(self) -> None:
        try:
            while True:
                first = self.queue.get()
                if first is None:
                    break
                batch = [first, *self._take(self.store.max_batch - len(first.rows))]
                try:
                    self.store._commit(self, batch, self._take)
                except BaseException as exc:  # a bug: fail this round's callers, keep writing
                    for p in batch:
                        p.resolve(error=AuditWriteError(f"audit write failed: {type(exc).__name__}: {exc}"))
                    if not isinstance(exc, Exception):
                        raise
                if self.stopping:
                    break
        except BaseException as exc:  # never leave a caller waiting forever
            error = AuditWriteError(f"audit writer stopped: {type(exc).__name__}: {exc}")
            while True:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item.resolve(error=error)
            raise
        finally:
            if self.conn is not None:
                self.conn.close()


# -- reading through the sqlite3-shaped interface the queries, verify and replay use ---------

_names = itertools.count()


class PgReader:
    """A read-only PostgreSQL connection that answers `execute(sql, params)` like sqlite3.

    `?` placeholders become `%s`; results stream through server-side cursors (verify and
    replay walk millions of rows in constant memory). Everything runs in one read-only
    transaction, REPEATABLE READ, opened by the first statement or by an explicit "BEGIN"
    (one snapshot for several cursors, as verify needs) and ended by "COMMIT" or end().
    """

    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any], itersize: int = 2000) -> None:
        self.conn = conn
        self.itersize = itersize
        self._cursors: list[psycopg.ServerCursor[Any]] = []

    def execute(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> Any:
        word = sql.strip().upper()
        if word in ("BEGIN", "BEGIN TRANSACTION"):
            self.end()
            self._begin()
            return None
        if word in ("COMMIT", "ROLLBACK", "END"):
            self.end()
            return None
        if self.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self._begin()
        args = params if isinstance(params, Mapping) else list(params)
        try:
            if not word.startswith(("SELECT", "WITH")):
                # Not a query (the transaction is read-only, so nothing can change): as it is.
                return self.conn.execute(_placeholders(sql), args)
            cursor = self.conn.cursor(name=f"lcr_r{next(_names)}")
            cursor.itersize = self.itersize
            self._cursors.append(cursor)
            cursor.execute(_placeholders(sql), args)
        except psycopg.OperationalError as exc:  # gone, timed out: the store is unavailable (503)
            raise AuditWriteError(f"audit store unavailable: {type(exc).__name__}: {_one_line(exc)}") from None
        return cursor

    def _begin(self) -> None:
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def end(self) -> None:
        """Close the cursors and end the read transaction (nothing was written)."""
        for cursor in self._cursors:
            with contextlib.suppress(psycopg.Error):
                cursor.close()
        self._cursors.clear()
        if not self.conn.closed and self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.end()
        self.conn.close()


def _placeholders(sql: str) -> str:
    """sqlite3's `?` as psycopg's `%s` (the queries never put `?` or `%` in literals)."""
    return sql.replace("%", "%%").replace("?", "%s")


def is_postgres_url(value: str | os.PathLike[str] | None) -> bool:
    return isinstance(value, str) and value.startswith(("postgresql://", "postgres://"))


@contextlib.contextmanager
def read_connection(url: str, connect_timeout: float = 10.0) -> Iterator[PgReader]:
    """A read-only PgReader on a new connection (the command line's)."""
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(connect_timeout)))
    except psycopg.OperationalError as exc:
        raise AuditWriteError(f"cannot reach the audit store: {_one_line(exc)}") from None
    reader = PgReader(conn)
    try:
        yield reader
    finally:
        reader.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
