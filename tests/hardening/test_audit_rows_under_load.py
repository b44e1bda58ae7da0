"""One poisoned token among concurrent good requests (issue 10, item 3), on one served worker.

A validly signed token whose `name` claim holds a lone UTF-16 surrogate (`"x\\ud800"`: a
JavaScript client that cut a name in the middle of an emoji) got `503 audit-unavailable` and
no row, and failed the group commit it joined: 12–20 of 100 concurrent good requests from
other staff on the same worker got 503 and no row too. Now its claims are escaped before
the decision, its row says what was presented (`x\\ud800`), and whatever one row holds, it
never fails its neighbours. Tokens the decision cannot rest on (NaN in a claim, an empty
`sub`) are 401 token-invalid, audited, among the same traffic.

The sidecar is served as deployed (gunicorn, the project's thread worker) with one worker,
so every request shares one audit writer and its group commits.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from click.testing import CliRunner

from audit_store.checkpoints import dev_key_path
from audit_store.cli import cli

from .. import processes
from ..conftest import TEST_KID
from ..seed_table import FULL

GOOD = 100
CLIENTS = 24
LEVELS = ("admin", "senior_carer", "registered_manager")


@pytest.fixture(scope="module")
def one_worker(
    tmp_path_factory: pytest.TempPathFactory, opa: Any, upstream: Any, jwks_file: Path
) -> Iterator[tuple[processes.Process, Path]]:
    run = tmp_path_factory.mktemp("one-worker")
    audit_db = run / "audit.db"
    sidecar = processes.start_sidecar(run, processes.sidecar_env(opa.url, upstream.url, audit_db, jwks_file), workers=1)
    yield sidecar, audit_db
    sidecar.stop()


def _signed(token: Callable[..., str], private_pem: bytes, **changes: Any) -> str:
    """A validly signed token whose claims were changed as JSON text allows (NaN included)."""
    claims = jwt.decode(token("admin", sub="staff-0666", name="Poisoned"), options={"verify_signature": False})
    claims.update(changes)
    return jwt.api_jws.encode(json.dumps(claims).encode(), private_pem, algorithm="RS256", headers={"kid": TEST_KID})


def _until_ready(url: str, bearer: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        r = requests.post(url + "/v1/record", json=FULL, headers={"Authorization": f"Bearer {bearer}"}, timeout=30)
        if r.status_code == 200:
            return
        assert time.monotonic() < deadline, f"the sidecar never answered 200: {r.status_code} {r.text[:300]}"
        time.sleep(0.2)


def test_a_poisoned_token_among_100_concurrent_good_requests(one_worker, token, private_pem):
    sidecar, audit_db = one_worker
    good = [("good", token(LEVELS[i % 3], sub=f"staff-{1000 + i}", name=f"Carer {i}")) for i in range(GOOD)]
    surrogate = _signed(token, private_pem, name="x\ud800")
    poisoned = [("surrogate", surrogate)] * 8 + [
        ("nan", _signed(token, private_pem, requesting_practitioner={"id": float("nan")})),
        ("empty-sub", _signed(token, private_pem, sub="")),
    ]
    # The poisoned requests spread through the good ones, all sent at once.
    jobs = list(good)
    for k, job in enumerate(poisoned):
        jobs.insert(5 + k * (len(jobs) // len(poisoned)), job)
    _until_ready(sidecar.url, token("admin"))
    with sqlite3.connect(audit_db) as db:
        before = int(db.execute("SELECT count(*) FROM decisions").fetchone()[0])
    local = threading.local()
    start = threading.Barrier(CLIENTS)

    def send(job: tuple[str, str]) -> tuple[str, int, str | None, str | None]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            start.wait(timeout=30)
        kind, bearer = job
        r = local.session.post(
            sidecar.url + "/v1/record", json=FULL, headers={"Authorization": f"Bearer {bearer}"}, timeout=60
        )
        code = None if r.status_code == 200 else r.json()["issue"][0]["details"]["coding"][0]["code"]
        return kind, r.status_code, code, r.headers.get("X-Decision-Id")

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(send, jobs))

    conn = sqlite3.connect(audit_db)
    conn.row_factory = sqlite3.Row
    rows = {r["decision_id"]: dict(r) for r in conn.execute("SELECT * FROM decisions")}
    conn.close()

    assert len(answers) == GOOD + len(poisoned)
    failures = [(kind, status, code) for kind, status, code, _ in answers if kind == "good" and status != 200]
    assert not failures, f"{len(failures)} good requests failed: {failures[:5]}"
    expected = {
        "good": (200, None),
        "surrogate": (200, None),
        "nan": (401, "token-invalid"),
        "empty-sub": (401, "token-invalid"),
    }
    for kind, status, code, decision_id in answers:
        assert (status, code) == expected[kind], (kind, status, code)
        row = rows.get(decision_id)
        assert row is not None, f"{kind}: no audit row for {decision_id}"
        assert (row["http_status"], row["error_code"]) == (status, code)
        if kind == "surrogate":
            assert row["subject_name"] == "x\\ud800"  # what was presented, escaped
            assert json.loads(row["opa_input"])["subject"]["name"] == "x\\ud800"
        if kind == "good":
            assert row["outcome"] == "allowed" and row["subject_id"].startswith("staff-1")
    assert len(rows) == before + len(answers)  # one row per answer, none for nothing

    assert "audit write failed" not in sidecar.log.read_text(errors="replace")
    result = CliRunner().invoke(cli, ["verify", "--db", str(audit_db), "--public-key", str(dev_key_path(audit_db))])
    assert result.exit_code == 0, result.output
