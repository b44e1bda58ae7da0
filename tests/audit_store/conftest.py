"""Audit-store fixtures: real SQLite files in tmp_path, a checkpoint key, a log made by the real OPA."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit_store import AuditEvent, AuditStore
from audit_store.synthetic import generate
from bundles.build import DEFAULT_KEY_ID, DEV_VERIFICATION_KEY

from .. import processes


def write_key(path: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
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
        "opa_input": {"subject": {"sub": f"staff-{i % 7:04d}"}, "patient": {"nhs_number": "9990000018", "dob": "1938-04-12"}},
        "opa_result": {"allow": True, "sections": ["alerts", "appointments", "visits_encounters"], "reasons": []},
        "response_sha256": "0" * 64,
        "latency_ms": 12.5 + i,
    }
    values.update(kw)
    return AuditEvent(**values)


@pytest.fixture
def make_store(tmp_path: Path, checkpoint_key: Path) -> Iterator[Callable[..., AuditStore]]:
    opened: list[AuditStore] = []

    def make(name: str = "audit.db", **kw: Any) -> AuditStore:
        kw.setdefault("checkpoint_key", checkpoint_key)
        store = AuditStore(tmp_path / name, **kw)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def filled(make_store: Callable[..., AuditStore]) -> AuditStore:
    """30 rows, a signed checkpoint every 10."""
    store = make_store(checkpoint_every=10)
    for i in range(30):
        store.append(event(i))
    return store


def raw(path: Path) -> sqlite3.Connection:
    """A connection as an attacker with the file would have it: triggers dropped."""
    conn = sqlite3.connect(path, isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    return conn


@pytest.fixture(scope="session")
def archive(run_dir: Path, bundle_revision: str) -> Path:
    """The bundle archive the session's OPA fixture was built into."""
    return run_dir / "bundles" / "archive"


@pytest.fixture(scope="session")
def synthetic_log(tmp_path_factory: pytest.TempPathFactory, archive: Path, bundle_revision: str, opa_bin: str, checkpoint_key: Path) -> Path:
    """2,000 decisions made by the real OPA with the built bundle (read-only: copy to change)."""
    path = tmp_path_factory.mktemp("synthetic") / "audit.db"
    store = AuditStore(path, checkpoint_key=checkpoint_key, checkpoint_every=500)
    try:
        generate(store, 2000, archive / f"{bundle_revision}.tar.gz", bundle_revision, opa_bin, seed=7,
                 verification_key=DEV_VERIFICATION_KEY, key_id=DEFAULT_KEY_ID)
    finally:
        store.close()
    return path


@pytest.fixture
def log_copy(synthetic_log: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy.db"
    src = sqlite3.connect(synthetic_log)
    dst = sqlite3.connect(target)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    keys = synthetic_log.parent / "keys"
    if keys.exists():
        shutil.copytree(keys, tmp_path / "keys", dirs_exist_ok=True)
    return target
