"""Readiness under concurrent load (issue 10, items 1 and 2): the sidecar as deployed (gunicorn,
2 workers), its own OPA and bundle server, 8 client threads sending record requests throughout,
with and without a health checker calling /readyz.

One stream of traffic through four phases, every flip timed against OPA's own gauge of when it
last reached the bundle server (`last_success_bundle_request`):

1. healthy;
2. the bundle server stopped: every answer is healthy until that gauge + BUNDLE_MAX_AGE_SECONDS,
   and 503 policy-stale from about then on (each worker re-checks by itself);
3. OPA restarted with the bundle server still down: it activates its persisted bundle without
   reaching the server, and the answers stay 503 policy-stale, past the limit counted from the
   restart (503 policy-unavailable only while OPA is down or just back);
4. the bundle server back: healthy again within about a second of OPA reaching it.

Every answer has its audit row with the same status and code.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .. import processes
from ..sidecar.test_readiness import reached_at, restart_bundle_server, wait_for
from .load import BAD_INPUT, SEE_RECORD, Answer, RecordLoad

LIMIT = 3.0  # BUNDLE_MAX_AGE_SECONDS
SETTLE = 1.0  # "about a second": the bound on each flip, from the moment it is due
STALE = (503, "policy-stale")
UNAVAILABLE = (503, "policy-unavailable")


@pytest.fixture
def world(
    tmp_path: Path, bundle_revision: str, run_dir: Path, upstream: Any, jwks_file: Path
) -> Iterator[dict[str, Any]]:
    serve = run_dir / "bundles" / "serve"  # the session's signed bundle, served by a server of our own
    server = processes.start_bundle_server(serve, tmp_path)
    opa = processes.start_opa(server.url, tmp_path)
    audit_db = tmp_path / "audit.db"
    env = processes.sidecar_env(
        opa.url, upstream.url, audit_db, jwks_file, BUNDLE_MAX_AGE_SECONDS=LIMIT, OPA_TIMEOUT_SECONDS=1.0
    )
    sidecar = processes.start_sidecar(tmp_path, env)
    w: dict[str, Any] = {
        "server": server,
        "opa": opa,
        "sidecar": sidecar,
        "audit_db": audit_db,
        "serve": serve,
        "run": tmp_path,
    }
    yield w
    sidecar.stop()
    w["opa"].kill()
    w["server"].stop()


class Readyz:
    """A health checker: GET /readyz every 100 ms (or nothing at all)."""

    def __init__(self, url: str, on: bool) -> None:
        self.url, self.on, self.calls = url, on, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.wait(0.1):
                session.get(self.url + "/readyz", timeout=10)
                self.calls += 1

    def __enter__(self) -> Readyz:
        if self.on:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self.on:
            self._thread.join(timeout=15)


def _sleep_until(wall: float) -> None:
    time.sleep(max(0.0, wall - time.time()))


@pytest.mark.parametrize("readyz", ["no-readyz", "readyz-traffic"])
def test_staleness_both_ways_and_an_opa_restart_under_load(world, token: Callable[..., str], readyz: str):
    tokens = {level: token(level) for level in (*SEE_RECORD, "no_access")}
    offset = time.time() - time.monotonic()  # answers carry monotonic times; OPA's gauge is wall-clock
    load = RecordLoad(world["sidecar"].url, tokens, threads=8).start()
    try:
        with Readyz(world["sidecar"].url, readyz == "readyz-traffic") as checker:
            wait_for(lambda: len(load.snapshot()) >= 12, 30, "healthy traffic", every=0.05)
            time.sleep(1.0)
            healthy_until = time.time()

            world["server"].stop()
            last = reached_at(world["opa"].url)
            assert last is not None
            crossing = last + LIMIT
            _sleep_until(crossing + 1.5)

            port = int(world["opa"].url.rsplit(":", 1)[1])
            opa_down = time.time()
            world["opa"].kill()
            world["opa"] = processes.start_opa(world["server"].url, world["run"], port=port)
            opa_up = time.time()
            assert reached_at(world["opa"].url) is None  # restarted on its persisted bundle alone
            _sleep_until(opa_up + LIMIT + 1.0)  # past the limit counted from the restart

            server_back = time.time()
            world["server"] = restart_bundle_server(world["server"], world["serve"], world["run"])
            wait_for(lambda: reached_at(world["opa"].url) is not None, 15, "OPA reaching the bundle server", every=0.02)
            back = reached_at(world["opa"].url, latest=True)
            assert back is not None
            _sleep_until(back + SETTLE + 1.5)
    finally:
        answers = load.stop()

    for a in answers:  # to wall-clock
        a.sent += offset
        a.done += offset
    problems = [f"{a.kind} {a.status}: {a.problem}" for a in answers if a.problem]
    assert not problems, problems[:5]

    def outcome(a: Answer) -> tuple[int | None, str | None]:
        return a.status, a.code

    checked = [a for a in answers if a.kind != BAD_INPUT]  # refused (400) before readiness is asked
    assert all(outcome(a) == (400, "nhs-number-invalid") for a in answers if a.kind == BAD_INPUT)
    # Phase 1 and 2 before the limit: healthy.
    early = [a for a in checked if a.done < crossing - 0.05]
    assert len([a for a in early if a.done < healthy_until]) >= 12
    assert all(a.healthy for a in early), _counts([a for a in early if not a.healthy])
    # From about the limit until OPA is restarted: stale.
    stale = [a for a in checked if crossing + SETTLE < a.sent and a.done < opa_down]
    assert stale and all(outcome(a) == STALE for a in stale), _counts(stale)
    # OPA restarted with the bundle server still down: stale, through and past the limit.
    restarted = [a for a in checked if opa_up + SETTLE < a.sent and a.done < server_back]
    assert restarted and all(outcome(a) == STALE for a in restarted), _counts(restarted)
    assert max(a.sent for a in restarted) > opa_up + LIMIT
    # Back: healthy within about a second of OPA reaching the bundle server.
    after = [a for a in checked if a.sent > back + SETTLE]
    assert len(after) >= 12 and all(a.healthy for a in after), _counts([a for a in after if not a.healthy])
    # Around the switches: healthy, stale, or (OPA down or just up) unavailable; nothing else.
    for a in checked:
        allowed = (
            {outcome(a)}
            if a.healthy
            else {STALE} | ({UNAVAILABLE} if a.done > opa_down and a.sent < opa_up + SETTLE else set())
        )
        assert outcome(a) in allowed, (a.kind, outcome(a), a.sent - crossing)

    went_stale = min(a.done for a in checked if outcome(a) == STALE) - crossing
    last_served = max(a.sent for a in checked if a.healthy and a.sent < opa_down) - crossing
    recovered = max(a.done for a in checked if not a.healthy) - back
    _check_audit(world["audit_db"], answers)
    print(
        f"\n{readyz} ({checker.calls} /readyz calls, {len(answers)} answers): last served {last_served:+.3f}s and "
        f"first policy-stale {went_stale:+.3f}s from crossing the {LIMIT:g}s limit; stale for "
        f"{server_back - opa_up:.1f}s after OPA's restart; last unhealthy answer {recovered:+.3f}s from OPA "
        f"reaching the bundle server again"
    )
    assert went_stale <= SETTLE and recovered <= SETTLE


def _counts(answers: list[Answer]) -> str:
    counts: dict[tuple[Any, ...], int] = {}
    for a in answers:
        counts[(a.kind, a.status, a.code)] = counts.get((a.kind, a.status, a.code), 0) + 1
    return f"{len(answers)} answers: {sorted(counts.items(), key=str)}"


def _check_audit(audit_db: Path, answers: list[Answer]) -> None:
    db = sqlite3.connect(audit_db, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        rows = {r["decision_id"]: dict(r) for r in db.execute("select * from decisions")}
    finally:
        db.close()
    answered = [a for a in answers if a.status is not None]
    assert len(answered) == len(answers), "a connection was cut"
    for a in answered:
        row = rows.get(a.decision_id)
        assert row is not None, f"{a.kind} {a.status} {a.code} has no audit row"
        assert (row["http_status"], row["error_code"]) == (a.status, a.code), (row, a)
        if a.code in ("policy-stale", "policy-unavailable"):
            assert row["outcome"] == "policy-unavailable", row
    assert set(rows) == {a.decision_id for a in answered}, "audit rows for requests nobody was answered"
