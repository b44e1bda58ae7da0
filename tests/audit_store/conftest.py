"""Audit-store fixtures: real SQLite files in tmp_path and real PostgreSQL databases on the
session's throwaway cluster, a checkpoint key, a log made by the real OPA.

Tests that take `make_store`, `filled`, `synthetic_log` or `log_copy` run once per backend
(`backend`: sqlite, postgresql); a module that is about SQLite files alone overrides
`backend` with a fixture returning "sqlite"."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit_store import AuditEvent, AuditStore, queries
from audit_store.backends import open_store
from audit_store.synthetic import generate
from bundles.build import DEFAULT_KEY_ID, DEV_VERIFICATION_KEY

from .. import processes


def write_key(path: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


@pytest.fixture(scope="session")
def checkpoint_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_key(tmp_path_factory.mktemp("keys") / "audit-checkpoint.pem")


@pytest.fixture(scope="session")
def opa_bin() -> str:
    return processes.opa_binary()


def event(i: int = 0, **kw: Any) -> AuditEvent:
    """A plausible allowed record fetch."""
    values: dict[str, Any] = {
        "decision_id": str(uuid.uuid4()),
        "time": f"2026-11-25T12:{i // 60 % 60:02d}:{i % 60:02d}.000000Z",
        "action": "record.read",
        "outcome": "allowed",
        "http_status": 200,
        "subject_id": f"staff-{i % 7:04d}",
        "subject_name": "Ada Carer",
        "care_service": "VM101",
        "access_level": "admin",
        "reason_for_request": "directcare",
        "client": "127.0.0.1",
        "nhs_number": "9990000018",
        "sections_allowed": ["alerts", "appointments", "visits_encounters"],
        "sections_returned": {"alerts": 2, "patient": 1},
        "resources_returned": 3,
        "policy_revision": "sha256-test",
        "opa_input": {
            "subject": {"sub": f"staff-{i % 7:04d}"},
            "patient": {"nhs_number": "9990000018", "dob": "1938-04-12"},
        },
        "opa_result": {"allow": True, "sections": ["alerts", "appointments", "visits_encounters"], "reasons": []},
        "response_sha256": "0" * 64,
        "latency_ms": 12.5 + i,
    }
    values.update(kw)
    return AuditEvent(**values)


BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(
    tmp_path: Path, checkpoint_key: Path, backend: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Any]]:
    """Opens stores of this test's backend: a SQLite file in tmp_path, or a new PostgreSQL
    database written by the sidecar's role (INSERT and SELECT only)."""
    opened: list[Any] = []

    def make(name: str = "audit.db", **kw: Any) -> Any:
        kw.setdefault("checkpoint_key", checkpoint_key)
        if backend == "postgresql":
            db = request.getfixturevalue("pg_databases").new()
            store = open_store(db.url, key_anchor=tmp_path / name, **kw)
            store.owner_url = db.owner_url  # type: ignore[union-attr]  # an attribute the tests add; for the tests that play the attacker
        else:
            store = AuditStore(tmp_path / name, **kw)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def db_arg(store: Any) -> str:
    """What `lcr-audit --db` takes for this store: the SQLite file, or the PostgreSQL URL."""
    return store.url if getattr(store, "backend", "sqlite") == "postgresql" else str(store.path)


def select(source: Any, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows as dicts, through the store's own read-only connection (either backend)."""
    with queries.connect(source) as conn:
        cursor = conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values, strict=False)) for values in cursor.fetchall()]


class _Attacker:
    """Raw SQL with the append-only triggers out of the way, `?` placeholders, both backends."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self.conn, self.postgres = conn, postgres

    def execute(self, sql: str, params: Any = ()) -> Any:
        if self.postgres:
            return self.conn.execute(sql.replace("?", "%s"), params)
        return self.conn.execute(sql, params)

    def close(self) -> None:
        self.conn.close()

    def __del__(self) -> None:
        # A test that fails before its close() must not leak an open connection (a
        # ResourceWarning, an error under filterwarnings) into whichever test runs next.
        self.conn.close()


@pytest.fixture
def filled(make_store: Callable[..., AuditStore]) -> AuditStore:
    """30 rows, a signed checkpoint every 10."""
    store = make_store(checkpoint_every=10)
    for i in range(30):
        store.append(event(i))
    return store


def raw(target: Any) -> Any:
    """A connection as an attacker holding the database would have it: triggers off.

    `target`: a store of either backend, or a SQLite file's path. On PostgreSQL the attacker
    is the superuser with session_replication_role = replica (no trigger fires)."""
    if (
        getattr(target, "backend", None) == "postgresql"
        or isinstance(target, str)
        and target.startswith("postgresql://")
    ):
        import psycopg

        url = getattr(target, "owner_url", target)
        pg = psycopg.connect(url, autocommit=True)
        pg.execute("SET session_replication_role = replica")
        return _Attacker(pg, True)
    path = getattr(target, "path", target)
    conn = sqlite3.connect(path, isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    return conn


@pytest.fixture(scope="session")
def archive(run_dir: Path, bundle_revision: str) -> Path:
    """The bundle archive the session's OPA fixture was built into."""
    return run_dir / "bundles" / "archive"


def _generate(store: Any, archive: Path, bundle_revision: str, opa_bin: str) -> None:
    try:
        generate(
            store,
            2000,
            archive / f"{bundle_revision}.tar.gz",
            bundle_revision,
            opa_bin,
            seed=7,
            verification_key=DEV_VERIFICATION_KEY,
            key_id=DEFAULT_KEY_ID,
        )
    finally:
        store.close()


@pytest.fixture(scope="session")
def synthetic_sqlite(
    tmp_path_factory: pytest.TempPathFactory, archive: Path, bundle_revision: str, opa_bin: str, checkpoint_key: Path
) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "audit.db"
    _generate(AuditStore(path, checkpoint_key=checkpoint_key, checkpoint_every=500), archive, bundle_revision, opa_bin)
    return path


@pytest.fixture(scope="session")
def synthetic_pg(pg_databases: Any, archive: Path, bundle_revision: str, opa_bin: str, checkpoint_key: Path) -> Any:
    db = pg_databases.new("synthetic")
    _generate(
        open_store(db.url, checkpoint_key=checkpoint_key, checkpoint_every=500), archive, bundle_revision, opa_bin
    )
    return db


@pytest.fixture
def synthetic_log(backend: str, request: pytest.FixtureRequest) -> Any:
    """2,000 decisions made by the real OPA with the built bundle, written through the
    store of this test's backend (read-only: copy to change): a SQLite Path or a
    postgresql:// URL (the sidecar's role)."""
    if backend == "postgresql":
        return request.getfixturevalue("synthetic_pg").url
    return request.getfixturevalue("synthetic_sqlite")


@pytest.fixture
def log_copy(synthetic_log: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    if isinstance(synthetic_log, str):
        import psycopg

        cluster = request.getfixturevalue("pg_cluster")
        source = request.getfixturevalue("synthetic_pg")
        name = f"copy_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source.name}"')
        return cluster.url(dbname=name)  # the owner's URL: the tests that use a copy tamper with it
    target = tmp_path / "copy.db"
    src = sqlite3.connect(synthetic_log)
    dst = sqlite3.connect(target)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    keys = Path(synthetic_log).parent / "keys"
    if keys.exists():
        shutil.copytree(keys, tmp_path / "keys", dirs_exist_ok=True)
    return target
