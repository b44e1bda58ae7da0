"""Several processes append to one file and keep one chain; SIGKILL loses no row that was reported or answered."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from audit_store.checkpoints import load_public_keys
from audit_store.verify import verify

from .. import processes


@pytest.fixture
def backend() -> str:
    """SQLite only: SQLite files (the PostgreSQL fleet: tests/hardening/test_fleet.py)."""
    return "sqlite"


ROOT = Path(__file__).resolve().parents[2]


def writer(db: Path, key: Path, name: str, rows: int, threads: int = 4) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.audit_store.writer",
            str(db),
            "--name",
            name,
            "--rows",
            str(rows),
            "--threads",
            str(threads),
            "--key",
            str(key),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def committed(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT decision_id, seq FROM decisions"))
    finally:
        conn.close()


def check(db: Path, key: Path, **kw):
    keys = [key]
    dev = db.parent / "keys" / "audit-checkpoint-dev.pem"  # until the sidecar reads AUDIT_CHECKPOINT_KEY_FILE
    if dev.exists():
        keys.append(dev)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        return verify(conn, load_public_keys(keys), **kw)
    finally:
        conn.close()


def test_concurrent_writer_processes_keep_one_valid_chain(tmp_path, checkpoint_key):
    db = tmp_path / "audit.db"
    procs = [writer(db, checkpoint_key, f"p{k}", rows=60, threads=4) for k in range(4)]
    reported: dict[str, int] = {}
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        for line in out.splitlines():
            seq, decision_id = line.split()
            reported[decision_id] = int(seq)
    assert len(reported) == 4 * 4 * 60
    assert len(set(reported.values())) == len(reported), "two rows got the same seq"
    assert committed(db) == reported
    report = check(db, checkpoint_key, max_unsigned=50)
    assert report.ok and report.rows == 960, report.problems
    assert report.valid_checkpoints >= 960 // 50 - 1


def test_sigkill_loses_no_reported_row(tmp_path, checkpoint_key):
    db = tmp_path / "audit.db"
    proc = writer(db, checkpoint_key, "crash", rows=0, threads=8)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while len(lines) < 400 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    os.kill(proc.pid, signal.SIGKILL)  # mid-commit, most likely
    rest, _ = proc.communicate(timeout=30)
    lines += rest.splitlines()
    assert proc.returncode == -signal.SIGKILL
    reported = {d: int(s) for s, d in (line.split() for line in lines)}
    assert len(reported) >= 400
    rows = committed(db)  # opening it recovers the WAL, as the next sidecar start would
    missing = {d: s for d, s in reported.items() if rows.get(d) != s}
    assert not missing, f"{len(missing)} reported rows lost after SIGKILL"
    report = check(db, checkpoint_key, max_unsigned=10_000)
    assert report.ok, report.problems


# -- the sidecar as deployed: gunicorn workers over real HTTP ---------------------------------

MENU_BODY = {"nhs_number": "9990000018", "dob": "1938-04-12"}


@pytest.fixture
def served(tmp_path, opa, upstream, jwks_file, checkpoint_key):
    audit_db = tmp_path / "audit.db"
    env = processes.sidecar_env(opa.url, upstream.url, audit_db, jwks_file, AUDIT_CHECKPOINT_KEY_FILE=checkpoint_key)
    sidecar = processes.start_sidecar(tmp_path, env, workers=3)
    yield sidecar, audit_db
    sidecar.stop()


def _descendants(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            for child in fh.read().split():
                out += [int(child), *_descendants(int(child))]
    return out


def test_gunicorn_workers_keep_one_valid_chain(served, token, checkpoint_key):
    sidecar, audit_db = served
    tokens = [token(level) for level in ("admin", "senior_carer", "registered_manager", "no_access")]

    def one(i: int) -> str:
        r = requests.post(
            f"{sidecar.url}/v1/menu", json=MENU_BODY, headers={"Authorization": f"Bearer {tokens[i % 4]}"}, timeout=10
        )
        assert r.status_code == 200
        return r.headers["X-Decision-Id"]

    with ThreadPoolExecutor(max_workers=12) as pool:
        ids = list(pool.map(one, range(120)))
    rows = committed(audit_db)
    assert set(ids) <= rows.keys() and len(rows) == 120
    report = check(audit_db, checkpoint_key)
    assert report.ok and report.rows == 120, report.problems


def test_kill_9_of_the_serving_processes_loses_no_answered_request(served, token, checkpoint_key):
    sidecar, audit_db = served
    bearer = token("senior_carer")
    answered: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    r = session.post(
                        f"{sidecar.url}/v1/menu",
                        json=MENU_BODY,
                        headers={"Authorization": f"Bearer {bearer}"},
                        timeout=5,
                    )
                except requests.RequestException:
                    return  # the server is gone
                answered.append(r.headers["X-Decision-Id"])

    clients = [threading.Thread(target=client) for _ in range(12)]
    for t in clients:
        t.start()
    deadline = time.monotonic() + 30
    while len(answered) < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    victims = [sidecar.proc.pid, *_descendants(sidecar.proc.pid)]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    stop.set()
    for t in clients:
        t.join()
    sidecar.proc.wait()
    assert len(answered) >= 150
    rows = committed(audit_db)
    lost = [d for d in answered if d not in rows]
    assert not lost, f"{len(lost)} answered requests have no audit row"
    report = check(audit_db, checkpoint_key, max_unsigned=10_000)
    assert report.ok, report.problems
