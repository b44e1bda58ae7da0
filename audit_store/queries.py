"""The auditors' questions, as functions returning plain dicts (for the CLI and the HTTP API).

    who_accessed(store, "999 000 0018", since="2026-11-01", outcome="allowed")
    staff_activity(store, "staff-0042")
    service_activity(store, "VM101", until="2026-11-30")
    denials(store, reason="care_service_not_in_london_icb")

Each returns one page: `{"rows": [...], "next_after_seq": int | None}` in seq order
(or `"next_before_seq"` with `newest_first=True`); pass the cursor back to get the next
page. `iter_rows` streams every matching row for exports. Rows carry what an auditor needs
(who, when, which resident, what was decided and disclosed); the decision's full input and
result only with `detail=True`. Nothing here can change the log: connections are
query-only.

Times are compared in UTC. `since` is inclusive, `until` exclusive; a date alone
(`2026-11-25`) means the start of that day for `since` and the end of it for `until`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

from .events import utc_timestamp
from .store import LOOKUP, TABLE, AuditStore

SUMMARY_FIELDS: tuple[str, ...] = (
    "seq",
    "decision_id",
    "time",
    "action",
    "outcome",
    "http_status",
    "error_code",
    "subject_id",
    "subject_name",
    "care_service",
    "access_level",
    "reason_for_request",
    "client",
    "nhs_number",
    "reasons",
    "sections_requested",
    "sections_allowed",
    "sections_returned",
    "resources_returned",
    "resources_withheld",
    "policy_revision",
    "response_sha256",
    "latency_ms",
)
DETAIL_FIELDS: tuple[str, ...] = (
    *SUMMARY_FIELDS,
    "opa_input",
    "opa_result",
    "shadow_revision",
    "shadow_result",
    "shadow_diverged",
    "prev_hash",
    "row_hash",
)
JSON_FIELDS = frozenset(
    {
        "reasons",
        "sections_requested",
        "sections_allowed",
        "sections_returned",
        "opa_input",
        "opa_result",
        "shadow_result",
    }
)
DENIED = "denied"
_PG_PREFIXED = frozenset({"nhs_number", "subject_id", "care_service"})
_PG_PREFIX = 200  # pg.INDEXED_PREFIX (not imported: queries must not need psycopg)
MAX_LIMIT = 1000


class QueryError(ValueError):
    """A filter that cannot be applied (bad NHS number, bad time)."""


@dataclass(frozen=True)
class Filters:
    nhs_number: str | None = None
    subject_id: str | None = None
    care_service: str | None = None
    outcomes: tuple[str, ...] = ()
    reason: str | None = None
    access_level: str | None = None
    action: str | None = None
    policy_revision: str | None = None
    since: str | None = None
    until: str | None = None
    seq_from: int | None = None
    seq_to: int | None = None

    @classmethod
    def make(cls, **kw: Any) -> Filters:
        """Normalise what a person types: NHS numbers with spaces, dates, one outcome or many."""
        outcome = kw.pop("outcome", None)
        outcomes = kw.pop("outcomes", None) or ()
        if isinstance(outcome, str):
            outcomes = (*outcomes, outcome)
        elif outcome:
            outcomes = (*outcomes, *outcome)
        kw["outcomes"] = tuple(outcomes)
        if kw.get("nhs_number") is not None:
            kw["nhs_number"] = normalise_nhs_number(kw["nhs_number"])
        if kw.get("since") is not None:
            kw["since"] = normalise_time(kw["since"], end_of_day=False)
        if kw.get("until") is not None:
            kw["until"] = normalise_time(kw["until"], end_of_day=True)
        known = {f.name for f in fields(cls)}
        unknown = set(kw) - known
        if unknown:
            raise QueryError(f"unknown filters: {sorted(unknown)}")
        return cls(**kw)

    def where(self, dialect: str = "sqlite") -> tuple[str, list[Any]]:
        """The SQL condition and its parameters (`?` placeholders) for `dialect`
        ("sqlite" or "postgresql", see dialect_of)."""
        clauses, params = self._matching(
            ("nhs_number", "subject_id", "care_service", "access_level", "action", "policy_revision"), dialect
        )
        if self.reason is not None:
            if dialect == "postgresql":
                clauses.append(
                    "(CASE WHEN lcr_json_valid(reasons) THEN reasons::jsonb ELSE '[]'::jsonb END) @> "
                    "jsonb_build_array(?::text)"
                )
            else:
                clauses.append(
                    "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(reasons) THEN reasons ELSE '[]' END) WHERE "
                    "value = ?)"
                )
            params.append(self.reason)
        self._in_time_range(clauses, params)
        if self.seq_from is not None:
            clauses.append("seq >= ?")
            params.append(int(self.seq_from))
        if self.seq_to is not None:
            clauses.append("seq <= ?")
            params.append(int(self.seq_to))
        return (" AND ".join(clauses) or "TRUE"), params

    def lookup(self) -> tuple[str, list[Any]] | None:
        """A `seq IN (…)` clause that finds the candidate rows through the lookup table's
        indexes (resident, staff member, care service, outcome), plus every row not in it
        yet; None when no filter is indexed there. The clause only narrows: where() still
        applies in full to each row."""
        clauses, params = self._matching(("nhs_number", "subject_id", "care_service"))
        if not clauses:
            return None
        self._in_time_range(clauses, params)
        sql = (
            f"seq IN (SELECT seq FROM {LOOKUP} WHERE {' AND '.join(clauses)} "
            f"UNION ALL SELECT seq FROM {TABLE} WHERE seq > (SELECT coalesce(max(seq), 0) FROM {LOOKUP}))"
        )
        return sql, params

    def _matching(self, columns: tuple[str, ...], dialect: str = "sqlite") -> tuple[list[str], list[Any]]:
        """Equality on each of the columns that is set, and the outcome list.

        PostgreSQL indexes a prefix of the resident, staff member, care service and outcome
        (pg.INDEXED_PREFIX): the prefix is matched first, so the index is used."""
        clauses: list[str] = []
        params: list[Any] = []
        for name in columns:
            value = getattr(self, name)
            if value is not None:
                if dialect == "postgresql" and name in _PG_PREFIXED:
                    clauses.append(f"left({name}, {_PG_PREFIX}) = left(?, {_PG_PREFIX})")
                    params.append(value)
                clauses.append(f"{name} = ?")
                params.append(value)
        if self.outcomes:
            if dialect == "postgresql":
                clauses.append(
                    f"left(outcome, {_PG_PREFIX}) IN ({', '.join(f'left(?, {_PG_PREFIX})' for _ in self.outcomes)})"
                )
                params.extend(self.outcomes)
            clauses.append(f"outcome IN ({', '.join('?' for _ in self.outcomes)})")
            params.extend(self.outcomes)
        return clauses, params

    def _in_time_range(self, clauses: list[str], params: list[Any]) -> None:
        if self.since is not None:
            clauses.append("time >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("time < ?")
            params.append(self.until)


def dialect_of(conn: Any) -> str:
    """ "postgresql" for a PgReader (pg.py), "sqlite" for a sqlite3 connection."""
    return getattr(conn, "dialect", "sqlite")


def indexed_where(conn: Any, filters: Filters) -> tuple[str, list[Any]]:
    """filters.where(), narrowed through the lookup table when the store has one (SQLite:
    PostgreSQL indexes the log itself)."""
    dialect = dialect_of(conn)
    where, params = filters.where(dialect)
    lookup = filters.lookup()
    if (
        lookup is not None
        and dialect == "sqlite"
        and conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (LOOKUP,)).fetchone()
    ):
        where = f"({where}) AND {lookup[0]}"
        params = [*params, *lookup[1]]
    return where, params


def normalise_nhs_number(value: str) -> str:
    digits = re.sub(r"[\s-]", "", str(value))
    if not re.fullmatch(r"\d{10}", digits):
        raise QueryError(f"NHS number {value!r} is not 10 digits (spaces or hyphens allowed)")
    return digits


def normalise_time(value: str | dt.datetime | dt.date, end_of_day: bool) -> str:
    """The stored form: UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time(), dt.UTC) + (
            dt.timedelta(days=1) if end_of_day else dt.timedelta()
        )
    else:
        text = str(value).strip()
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                day = dt.date.fromisoformat(text)
                return normalise_time(day, end_of_day)
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise QueryError(f"time {value!r} is not ISO 8601 (e.g. 2026-11-25 or 2026-11-25T14:30:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return utc_timestamp(moment)


Source = Any  # a store (SQLite or PostgreSQL), a connection from connect(), a path or a URL


@contextlib.contextmanager
def connect(source: Source) -> Iterator[Any]:
    """A query-only connection to the store (closed afterwards unless one was passed in):
    a sqlite3 connection, or for PostgreSQL a PgReader (the same execute(sql, params)).
    Raises QueryError for a missing SQLite file, AuditWriteError when PostgreSQL is
    unreachable (the store is unavailable)."""
    if isinstance(source, sqlite3.Connection) or getattr(source, "dialect", None) == "postgresql":
        yield source
        return
    if getattr(source, "backend", None) == "postgresql":
        with source.reader() as reader:
            yield reader
        return
    if isinstance(source, str) and source.startswith(("postgresql://", "postgres://")):
        from .pg import read_connection

        with read_connection(source) as reader:
            yield reader
        return
    if isinstance(source, str) and source.startswith("sqlite:///"):
        source = source[len("sqlite:///") :]
    path: str | os.PathLike[str]
    if isinstance(source, AuditStore):
        path = source.path
    else:
        path = os.fspath(source)
        if not os.path.exists(path):
            raise QueryError(f"no audit store at {path}")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
    try:
        conn.execute("PRAGMA query_only = 1")
        yield conn
    finally:
        conn.close()


def decode(row: dict[str, Any]) -> dict[str, Any]:
    """JSON columns as lists/objects (malformed text is left as text, never dropped)."""
    for name in JSON_FIELDS & row.keys():
        value = row[name]
        if isinstance(value, str):
            try:
                row[name] = json.loads(value)
            except ValueError:
                pass
    return row


def search(
    source: Source,
    filters: Filters | None = None,
    *,
    after_seq: int | None = None,
    before_seq: int | None = None,
    limit: int = 100,
    newest_first: bool = False,
    detail: bool = False,
) -> dict[str, Any]:
    """One page of matching rows, by seq."""
    filters = filters or Filters()
    limit = max(1, min(int(limit), MAX_LIMIT))
    names = DETAIL_FIELDS if detail else SUMMARY_FIELDS
    order = "DESC" if newest_first else "ASC"
    with connect(source) as conn:
        where, params = indexed_where(conn, filters)
        if after_seq is not None:
            where += " AND seq > ?"
            params.append(int(after_seq))
        if before_seq is not None:
            where += " AND seq < ?"
            params.append(int(before_seq))
        sql = f"SELECT {', '.join(names)} FROM {TABLE} WHERE {where} ORDER BY seq {order} LIMIT ?"
        found = conn.execute(sql, [*params, limit + 1]).fetchall()
    more = len(found) > limit
    rows = [decode(dict(zip(names, values, strict=False))) for values in found[:limit]]
    cursor = rows[-1]["seq"] if more and rows else None
    key = "next_before_seq" if newest_first else "next_after_seq"
    return {"rows": rows, key: cursor, "limit": limit}


def who_accessed(source: Source, nhs_number: str, **kw: Any) -> dict[str, Any]:
    """Every request about one resident (by NHS number): who, when, what was decided and shown."""
    page, filt = _split(kw)
    return search(source, Filters.make(nhs_number=nhs_number, **filt), **page)


def staff_activity(source: Source, subject_id: str, **kw: Any) -> dict[str, Any]:
    """Everything one member of staff (token `sub`) asked for."""
    page, filt = _split(kw)
    return search(source, Filters.make(subject_id=subject_id, **filt), **page)


def service_activity(source: Source, care_service: str, **kw: Any) -> dict[str, Any]:
    """Everything asked for from one care service (ODS code)."""
    page, filt = _split(kw)
    return search(source, Filters.make(care_service=care_service, **filt), **page)


def denials(source: Source, **kw: Any) -> dict[str, Any]:
    """Every request the policy refused (outcome `denied`), optionally for one deny reason."""
    page, filt = _split(kw)
    return search(source, Filters.make(outcome=DENIED, **filt), **page)


def iter_rows(
    source: Source, filters: Filters | None = None, *, detail: bool = True, batch: int = 2000
) -> Iterator[dict[str, Any]]:
    """Every matching row in seq order, streamed (constant memory), JSON columns decoded."""
    filters = filters or Filters()
    names = DETAIL_FIELDS if detail else SUMMARY_FIELDS
    with connect(source) as conn:
        where, params = indexed_where(conn, filters)
        cursor = conn.execute(f"SELECT {', '.join(names)} FROM {TABLE} WHERE {where} ORDER BY seq", params)
        while True:
            chunk = cursor.fetchmany(batch)
            if not chunk:
                return
            for values in chunk:
                yield decode(dict(zip(names, values, strict=False)))


def count(source: Source, filters: Filters | None = None) -> int:
    with connect(source) as conn:
        where, params = indexed_where(conn, filters or Filters())
        return int(conn.execute(f"SELECT count(*) FROM {TABLE} WHERE {where}", params).fetchone()[0])


_PAGE_KEYS = ("after_seq", "before_seq", "limit", "newest_first", "detail")


def _split(kw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    page = {k: kw.pop(k) for k in _PAGE_KEYS if k in kw}
    return page, kw
