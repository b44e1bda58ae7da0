"""Readiness transitions and metrics: each not-ready state gives the expected status and audit row.

Freshness is when OPA last reached the bundle server (OPA's own gauge), and every process
re-checks on its own: these tests take the bundle server and OPA away and bring them back
with no `/readyz` call at all (or with `/readyz` traffic alongside), and time the flips
against OPA's gauge.
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

from bundles.build import build
from sidecar import errors

from .. import processes
from ..roster import publish_seed_roster
from ..seed_table import FULL


@pytest.fixture
def own_opa(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An OPA with its own bundle server, so the test can take either away."""
    out = tmp_path / "bundles"
    revision = build(out, opa=processes.opa_binary())
    publish_seed_roster(out, processes.opa_binary())
    server = processes.start_bundle_server(out / "serve", tmp_path)
    opa = processes.start_opa(server.url, tmp_path)
    world: dict[str, Any] = {
        "opa": opa,
        "server": server,
        "revision": revision,
        "serve": out / "serve",
        "run": tmp_path,
    }
    yield world  # a test may replace "opa" and "server" with restarted ones
    world["opa"].kill()
    world["server"].stop()


def reached_at(opa_url: str, latest: bool = False) -> float | None:
    """When OPA last reached the bundle server for both bundles, policy and roster (the older
    of its two gauges, wall-clock seconds, as readiness reads them); None: not since it started.

    latest: the newer of the two instead — read as soon as both were reached again after an
    outage, the moment both became fresh (OPA polls each bundle on its own timer)."""
    reached = {}
    for line in requests.get(opa_url + "/metrics", timeout=5).text.splitlines():
        for name in ("lcr", "roster"):
            if line.startswith(f'last_success_bundle_request{{name="{name}"}}'):
                reached[name] = float(line.split()[-1])
    if len(reached) < 2 or min(reached.values()) <= 0:
        return None
    return (max if latest else min)(reached.values()) / 1e9


def restart_bundle_server(server: processes.Process, serve: Path, log_dir: Path) -> processes.Process:
    """A bundle server again on the stopped one's port (the URL in OPA's configuration)."""
    port = server.url.rsplit(":", 1)[1]
    return processes.start(
        "bundle-server",
        [
            str(processes.VENV_BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            f"bundles.serve:create_app({str(serve)!r})",
        ],
        server.url,
        "/healthz",
        log_dir / f"bundle-server-{port}-again.log",
    )


def wait_for(done: Callable[[], bool], seconds: float, what: str, every: float = 0.01) -> float:
    """Poll until done(); the wall-clock time it first held."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"not {what} within {seconds}s"
        time.sleep(every)
    return time.time()


class ReadyzTraffic:
    """GET /readyz every 100 ms from another thread, as a health checker would."""

    def __init__(self, app: Any) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(app.test_client(),), daemon=True)
        self.calls = 0

    def _run(self, client: Any) -> None:
        while not self._stop.wait(0.1):
            client.get("/readyz")
            self.calls += 1

    def __enter__(self) -> ReadyzTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _record(app: Any, token: Any) -> Any:
    return app.test_client().post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {token('admin')}"})


def _code(response: Any) -> str:
    return response.get_json()["issue"][0]["details"]["coding"][0]["code"]


def _last_row(app: Any) -> dict[str, Any]:
    return list(app.extensions["lcr"].audit.rows())[-1]


def test_ready_when_everything_is_fit(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    checks = response.get_json()["checks"]
    assert {name: c["ok"] for name, c in checks.items()} == {
        "opa": True,
        "bundle_signed": True,
        "bundle_fresh": True,
        "audit_store": True,
    }
    assert checks["bundle_fresh"]["revision"].startswith("sha256-")
    assert client.get("/healthz").status_code == 200


def test_opa_down_is_not_ready_and_requests_get_503_with_a_row(make_app, token, own_opa):
    app = make_app(OPA_URL=own_opa["opa"].url)
    assert _record(app, token).status_code == 200
    own_opa["opa"].kill()
    assert app.test_client().get("/readyz").status_code == 503
    response = _record(app, token)
    assert response.status_code == 503 and _code(response) == "policy-unavailable"
    assert (_last_row(app)["outcome"], _last_row(app)["http_status"]) == ("policy-unavailable", 503)


def test_stale_bundle_is_not_ready_and_requests_get_503_with_a_row(make_app, token, own_opa):
    app = make_app(OPA_URL=own_opa["opa"].url, BUNDLE_MAX_AGE_SECONDS=3)
    assert _record(app, token).status_code == 200
    own_opa["server"].stop()  # OPA keeps serving its bundle, but can no longer refresh it
    deadline = time.monotonic() + 15
    while app.test_client().get("/readyz").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.25)
    readyz = app.test_client().get("/readyz")
    assert readyz.status_code == 503
    assert readyz.get_json()["checks"]["bundle_fresh"]["ok"] is False
    response = _record(app, token)
    assert response.status_code == 503 and _code(response) == "policy-stale"
    row = _last_row(app)
    assert (row["outcome"], row["error_code"], row["http_status"]) == ("policy-unavailable", "policy-stale", 503)


def test_audit_store_unwritable_is_not_ready(make_app, config, token):
    app = make_app(AUDIT_BUSY_TIMEOUT_MS=100, OPA_TIMEOUT_SECONDS=0.2)
    assert _record(app, token).status_code == 200
    blocker = sqlite3.connect(config["AUDIT_DB"], isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        readyz = app.test_client().get("/readyz")
        assert readyz.status_code == 503 and readyz.get_json()["checks"]["audit_store"]["ok"] is False
        response = _record(app, token)
        assert response.status_code == 503 and _code(response) == "audit-unavailable"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert app.test_client().get("/readyz").status_code == 200
    assert _record(app, token).status_code == 200


def test_metrics_count_decisions_and_show_the_revision(client, token, bundle_revision):
    client.post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {token('admin')}"})
    client.post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {token('no_access')}"})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'lcr_requests_total{action="record.read",code="",outcome="allowed"}' in text
    assert 'lcr_requests_total{action="record.read",code="access-denied",outcome="denied"}' in text
    assert 'lcr_deny_reasons_total{reason="access_level_no_access"}' in text
    for histogram in ("lcr_request_seconds", "lcr_opa_seconds", "lcr_upstream_seconds", "lcr_audit_write_seconds"):
        assert f"{histogram}_bucket" in text
    assert f'lcr_policy_revision_info{{revision="{bundle_revision}"}} 1.0' in text


# -- freshness is when OPA last reached the bundle server; every process re-checks by itself --------


def _probe(app: Any) -> Any:
    return app.extensions["lcr"].readiness


@pytest.mark.parametrize("readyz", ["quiet", "readyz-traffic"])
def test_stale_and_ready_again_by_itself(make_app, token, own_opa, readyz):
    """Bundle server down past the limit, then back: the background verdict flips both ways
    within a second, with no request at all (or with /readyz traffic alongside). A record
    request that waits for no re-check (READINESS_RECHECK_WAIT_SECONDS 0) sees exactly that verdict."""
    limit = 2.0
    app = make_app(OPA_URL=own_opa["opa"].url, BUNDLE_MAX_AGE_SECONDS=limit, READINESS_RECHECK_WAIT_SECONDS=0)
    assert _record(app, token).status_code == 200
    probe = _probe(app)
    with ReadyzTraffic(app) if readyz == "readyz-traffic" else _Quiet():
        own_opa["server"].stop()
        last = reached_at(own_opa["opa"].url)  # no later success: the server is gone
        assert last is not None
        crossing = last + limit
        time.sleep(max(0.0, crossing - 0.2 - time.time()))
        assert probe.published().ready, "stale before the limit"
        stale_at = wait_for(lambda: not probe.published().ready, 3.0, "stale")
        assert probe.published().error is errors.PolicyStale
        went_stale = stale_at - crossing
        response = _record(app, token)
        assert response.status_code == 503 and _code(response) == "policy-stale"

        own_opa["server"] = restart_bundle_server(own_opa["server"], own_opa["serve"], own_opa["run"])
        wait_for(lambda: (reached_at(own_opa["opa"].url) or 0) > last, 10.0, "reached again", every=0.05)
        back = reached_at(own_opa["opa"].url, latest=True)
        assert back is not None
        ready_at = wait_for(lambda: probe.published().ready, 3.0, "ready again")
        recovered = ready_at - back
        assert _record(app, token).status_code == 200
    print(
        f"\n{readyz}: stale {went_stale:+.3f}s after crossing the {limit:g}s limit; ready {recovered:.3f}s after "
        f"OPA reached the bundle server again"
    )
    assert -0.05 <= went_stale <= 1.0
    assert recovered <= 1.2


class _Quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def test_record_requests_go_stale_at_the_limit_without_readyz(make_app, token, own_opa):
    """Issue 10 2(a): the bundle server down past the limit, only record traffic: 200 until the
    limit, 503 policy-stale from then on, each with its audit row."""
    limit = 2.0
    app = make_app(OPA_URL=own_opa["opa"].url, BUNDLE_MAX_AGE_SECONDS=limit)
    assert _record(app, token).status_code == 200
    own_opa["server"].stop()
    crossing = (reached_at(own_opa["opa"].url) or 0) + limit
    answers: list[tuple[float, float, int]] = []
    while time.time() < crossing + 1.5:
        sent = time.time()
        response = _record(app, token)
        answers.append((sent, time.time(), response.status_code))
        if response.status_code != 200:
            assert _code(response) == "policy-stale"
        time.sleep(0.02)
    assert all(status == 200 for sent, done, status in answers if done < crossing - 0.05)
    assert all(status == 503 for sent, done, status in answers if sent > crossing + 0.05)
    first_stale = min(done for sent, done, status in answers if status == 503)
    print(f"\nfirst 503 policy-stale {first_stale - crossing:+.3f}s from crossing the limit")
    rows = list(app.extensions["lcr"].audit.rows())
    assert [(r["error_code"], r["http_status"]) for r in rows if r["http_status"] == 503] == [
        ("policy-stale", 503)
    ] * sum(status == 503 for _, _, status in answers)


def test_a_restarted_opa_with_the_bundle_server_down_stays_stale(make_app, token, own_opa):
    """Issue 10 item 1: a restart loads the persisted bundle without reaching the bundle
    server; that is no fresher than before. Stale at once, and still past the limit."""
    limit = 3.0
    app = make_app(OPA_URL=own_opa["opa"].url, BUNDLE_MAX_AGE_SECONDS=limit)
    assert _record(app, token).status_code == 200
    own_opa["server"].stop()
    wait_for(lambda: _probe(app).published().error is errors.PolicyStale, limit + 3, "stale")
    port = int(own_opa["opa"].url.rsplit(":", 1)[1])
    own_opa["opa"].kill()
    # Same port, same persistence directory; ready means it activated the persisted bundle.
    own_opa["opa"] = processes.start_opa(own_opa["server"].url, own_opa["run"], port=port)
    restarted = time.monotonic()
    assert reached_at(own_opa["opa"].url) is None  # OPA's own word: not reached since it started
    readyz = app.test_client().get("/readyz")
    assert readyz.status_code == 503, readyz.get_json()
    checks = readyz.get_json()["checks"]
    assert checks["opa"]["ok"] and checks["bundle_signed"]["ok"]
    assert checks["bundle_fresh"]["ok"] is False and "not reached the bundle server" in checks["bundle_fresh"]["detail"]
    statuses = []
    while time.monotonic() < restarted + limit + 1.5:
        response = _record(app, token)
        statuses.append((response.status_code, _code(response) if response.status_code != 200 else None))
        time.sleep(0.1)
    assert set(statuses) == {(503, "policy-stale")}, statuses
    row = _last_row(app)
    assert (row["outcome"], row["error_code"], row["http_status"]) == ("policy-unavailable", "policy-stale", 503)
    # The bundle server back: OPA reaches it, and the record path is ready by itself.
    own_opa["server"] = restart_bundle_server(own_opa["server"], own_opa["serve"], own_opa["run"])
    wait_for(lambda: reached_at(own_opa["opa"].url) is not None, 10.0, "reached", every=0.05)
    back = time.time()
    wait_for(lambda: _record(app, token).status_code == 200, 2.0, "serving again", every=0.05)
    print(f"\nserving {time.time() - back:.3f}s after OPA reached the bundle server")


def test_cold_start_without_a_bundle_server_is_not_ready(make_app, token, tmp_path):
    """A first start with no persisted bundle and no bundle server: nothing to decide with."""
    opa = processes.start_opa(f"http://127.0.0.1:{processes.free_port()}", tmp_path, ready_path="/health")
    try:
        app = make_app(OPA_URL=opa.url, BUNDLE_MAX_AGE_SECONDS=2)
        readyz = app.test_client().get("/readyz")
        assert readyz.status_code == 503 and readyz.get_json()["checks"]["opa"]["ok"] is False
        response = _record(app, token)
        assert response.status_code == 503 and _code(response) == "policy-unavailable"
    finally:
        opa.kill()


@pytest.mark.parametrize("traffic", ["records", "quiet"])
def test_opa_restarted_serves_again_without_readyz(make_app, token, own_opa, traffic):
    """Issue 10 2(b): OPA stopped, /readyz called once, OPA started again: record requests are
    served again within ~1-2 s (the breaker's cool-off included) and no /readyz call."""
    app = make_app(OPA_URL=own_opa["opa"].url, OPA_TIMEOUT_SECONDS=0.5)
    assert app.test_client().get("/readyz").status_code == 200  # first, as a health checker does
    assert _record(app, token).status_code == 200
    port = int(own_opa["opa"].url.rsplit(":", 1)[1])
    own_opa["opa"].kill()
    assert app.test_client().get("/readyz").status_code == 503
    response = _record(app, token)
    assert response.status_code == 503 and _code(response) == "policy-unavailable"
    own_opa["opa"] = processes.start_opa(own_opa["server"].url, own_opa["run"], port=port)
    started = time.time()
    if traffic == "records":
        wait_for(lambda: _record(app, token).status_code == 200, 3.0, "serving again", every=0.05)
    else:
        wait_for(lambda: _probe(app).published().ready, 2.0, "ready by itself", every=0.01)
        time.sleep(max(0.0, started + 1.1 - time.time()))  # the breaker's cool-off (1 s) has passed
        assert _record(app, token).status_code == 200
    print(f"\n{traffic}: serving {time.time() - started:.3f}s after OPA was up again")
    assert time.time() - started <= 2.0


def test_the_refresher_runs_after_readyz_answered_first(make_app, own_opa):
    """/readyz before anything else (as a health checker does) leaves the background thread running."""
    app = make_app(OPA_URL=own_opa["opa"].url, READINESS_INTERVAL_SECONDS=0.2)
    assert app.test_client().get("/readyz").status_code == 200
    probe = _probe(app)
    first = probe.published()
    wait_for(lambda: probe.published() is not first, 2.0, "re-checked in the background")
