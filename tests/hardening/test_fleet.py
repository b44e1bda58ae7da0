"""A fleet: three sidecars (each its own gunicorn) write one log in one real PostgreSQL.

Under concurrent load one replica is killed with SIGKILL (master and workers). Afterwards
`lcr-audit verify` passes on the whole fleet's log, `who-accessed` returns rows answered
by all three, every answered request has its row, and the only rows without an answer
are the killed replica's requests in flight (answered ≤ rows ≤ answered + in flight).
The database going away and coming back: 503 audit-unavailable and not ready while it is
gone, answers and ready again once it returns, without a restart.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from audit_store import queries
from audit_store.cli import cli

from .. import processes
from ..audit_store.conftest import write_key

NHS = "9990000018"
MENU_BODY = {"nhs_number": NHS, "dob": "1938-04-12"}
CLIENTS_PER_REPLICA = 4


@pytest.fixture
def fleet(
    tmp_path: Path, pg_databases: Any, opa: Any, upstream: Any, jwks_file: Path
) -> Iterator[tuple[list[processes.Process], Any, Path]]:
    db = pg_databases.new("fleet")
    key = write_key(tmp_path / "audit-checkpoint.pem")  # one key, every replica signs with it
    replicas = []
    try:
        for k in range(3):
            run = tmp_path / f"replica-{k}"
            run.mkdir()
            env = processes.sidecar_env(
                opa.url,
                upstream.url,
                run / "audit.db",
                jwks_file,
                AUDIT_STORE_URL=db.url,
                AUDIT_CHECKPOINT_KEY_FILE=key,
                AUDIT_CHECKPOINT_EVERY=100,
            )
            replicas.append(processes.start_sidecar(run, env, workers=2))
        yield replicas, db, key
    finally:
        for replica in replicas:
            replica.stop()


def _load(url: str, bearer: str, answered: list[str], stop: threading.Event) -> None:
    with requests.Session() as session:
        while not stop.is_set():
            try:
                r = session.post(
                    f"{url}/v1/menu", json=MENU_BODY, headers={"Authorization": f"Bearer {bearer}"}, timeout=10
                )
            except requests.RequestException:
                return  # this replica is gone
            answered.append(r.headers["X-Decision-Id"])


def test_three_replicas_one_log_kill_9_one_of_them(fleet, token):
    replicas, db, key = fleet
    bearer = token("senior_carer")
    answered: dict[int, list[str]] = defaultdict(list)
    stops = [threading.Event() for _ in replicas]
    threads = [
        threading.Thread(target=_load, args=(replica.url, bearer, answered[k], stops[k]))
        for k, replica in enumerate(replicas)
        for _ in range(CLIENTS_PER_REPLICA)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while min(len(answered[k]) for k in range(3)) < 80 and time.monotonic() < deadline:
        time.sleep(0.02)
    replicas[1].kill_tree()  # mid-run: its clients have requests in flight
    at_kill = {k: len(answered[k]) for k in range(3)}
    while min(len(answered[k]) for k in (0, 2)) < at_kill[0] + 80 and time.monotonic() < deadline + 30:
        time.sleep(0.02)
    for stop in stops:
        stop.set()
    for t in threads:
        t.join()
    assert min(at_kill.values()) >= 80, at_kill

    rows = {r["decision_id"] for r in _all(db.url)}
    every = [d for k in range(3) for d in answered[k]]
    lost = [d for d in every if d not in rows]
    assert not lost, f"{len(lost)} answered requests have no audit row"
    # Rows nobody got an answer for: only the killed replica's requests in flight.
    unanswered = rows - set(every)
    assert len(unanswered) <= CLIENTS_PER_REPLICA, len(unanswered)
    assert len(rows) == len(every) + len(unanswered)

    result = CliRunner().invoke(cli, ["verify", "--db", db.url, "--public-key", str(key), "--max-unsigned", "100"])
    assert result.exit_code == 0, result.output
    assert f"OK: {len(rows)} rows" in result.output

    found = CliRunner().invoke(cli, ["who-accessed", NHS, "--db", db.url, "--format", "json", "--limit", "1000"])
    assert found.exit_code == 0, found.output
    ids = {r["decision_id"] for r in json.loads(found.stdout)["rows"]}
    for k in range(3):
        assert set(answered[k]) <= ids, f"replica {k}'s rows missing from who-accessed"


def _all(url: str) -> list[dict[str, Any]]:
    with queries.connect(url) as conn:
        cursor = conn.execute("SELECT seq, decision_id FROM decisions ORDER BY seq")
        return [{"seq": s, "decision_id": d} for s, d in cursor.fetchall()]


def test_the_database_gone_is_503_and_not_ready_then_it_recovers_by_itself(fleet, token, pg_cluster):
    replicas, db, key = fleet
    url = replicas[0].url
    bearer = token("senior_carer")

    def menu() -> requests.Response:
        return requests.post(
            f"{url}/v1/menu", json=MENU_BODY, headers={"Authorization": f"Bearer {bearer}"}, timeout=15
        )

    before = menu()
    assert before.status_code != 503, before.text
    pg_cluster.pause()
    try:
        gone = [menu() for _ in range(4)]
        assert all(r.status_code == 503 for r in gone), [r.status_code for r in gone]
        codes = {r.json()["issue"][0]["details"]["coding"][0]["code"] for r in gone}
        assert codes <= {"audit-unavailable"}, codes
        deadline = time.monotonic() + 15
        while requests.get(f"{url}/readyz", timeout=10).status_code != 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        ready = requests.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 503 and not ready.json()["checks"]["audit_store"]["ok"], ready.text
    finally:
        pg_cluster.resume()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if requests.get(f"{url}/readyz", timeout=10).status_code == 200 and menu().status_code != 503:
            break
        time.sleep(0.2)
    after = menu()
    assert after.status_code != 503, after.text
    rows = {r["decision_id"] for r in _all(db.url)}
    assert before.headers["X-Decision-Id"] in rows and after.headers["X-Decision-Id"] in rows
    assert not {r.headers["X-Decision-Id"] for r in gone} & rows  # refused, and no row claims otherwise
    result = CliRunner().invoke(cli, ["verify", "--db", db.url, "--public-key", str(key), "--max-unsigned", "1000"])
    assert result.exit_code == 0, result.output
