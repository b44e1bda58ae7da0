"""Fail closed: OPA, upstream or audit store failing gives a clear error and never record data.

Every fault is produced for real: a killed OPA, a closed port, a server that never
answers, an HTTP server that answers garbage, a SQLite file locked by another writer.
"""

from __future__ import annotations

import http.server
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .. import processes
from ..seed_table import FULL


def _assert_closed(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data()[:300]
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["details"]["coding"][0]["code"] == code
    assert b"Margaret" not in response.get_data() and b"entry" not in response.get_data()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (kernel backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    return processes.free_port()


class _Garbage(http.server.BaseHTTPRequestHandler):
    body: bytes = b""
    status: int = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(self.status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def _serve(body: bytes, status: int = 200) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = type("Handler", (_Garbage,), {"body": body, "status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/fhir"


def _request(app: Any, token: Any) -> Any:
    return app.test_client().post(
        "/v1/record", json=FULL, headers={"Authorization": f"Bearer {token('registered_manager')}"}
    )


def _last_row(app: Any) -> dict[str, Any]:
    return list(app.extensions["lcr"].audit.rows())[-1]


def test_opa_unreachable_is_503(make_app, token, closed_port):
    app = make_app(OPA_URL=f"http://127.0.0.1:{closed_port}")
    _assert_closed(_request(app, token), 503, "policy-unavailable")
    row = _last_row(app)
    assert (row["outcome"], row["http_status"]) == ("policy-unavailable", 503)
    assert row["opa_result"] is None  # no decision was made


def test_opa_slow_is_503_within_the_timeout(make_app, token, silent_port):
    app = make_app(OPA_URL=f"http://127.0.0.1:{silent_port}", OPA_TIMEOUT_SECONDS=0.2)
    response = _request(app, token)
    _assert_closed(response, 503, "policy-unavailable")
    assert _last_row(app)["latency_ms"] < 2000


def test_opa_without_a_policy_is_503(make_app, token, run_dir):
    # A running OPA with no bundle loaded: the decision is undefined, so the answer is no.
    port = processes.free_port()
    opa = processes.start(
        "opa-empty",
        [processes.opa_binary(), "run", "--server", "--addr", f"127.0.0.1:{port}"],
        f"http://127.0.0.1:{port}",
        "/health",
        run_dir / "opa-empty.log",
    )
    try:
        app = make_app(OPA_URL=opa.url)
        _assert_closed(_request(app, token), 503, "policy-unavailable")
    finally:
        opa.stop()


def test_opa_killed_then_restarted_recovers_by_itself(make_app, token, bundle_server, run_dir):
    opa = processes.start_opa(bundle_server.url, run_dir)
    port = int(opa.url.rsplit(":", 1)[1])
    app = make_app(OPA_URL=opa.url)
    assert _request(app, token).status_code == 200
    opa.kill()
    _assert_closed(_request(app, token), 503, "policy-unavailable")
    opa = processes.start_opa(bundle_server.url, run_dir, port=port)
    try:
        # The circuit opened on the failure: it lets a trial through after its cool-off.
        statuses = _until_ok(app, token, seconds=5)
    finally:
        opa.stop()
    assert statuses[-1] == 200 and set(statuses[:-1]) <= {503}
    outcomes = [r["outcome"] for r in app.extensions["lcr"].audit.rows()]
    assert outcomes[0] == "allowed" and outcomes[-1] == "allowed" and len(outcomes) == len(statuses) + 2
    # Restarted, OPA serves the bundles it persisted before it has reached the bundle server
    # for both of them: stale, not unavailable, for that moment.
    assert set(outcomes[1:-1]) <= {"policy-unavailable", "policy-stale"}


def test_opa_hung_is_refused_at_once_after_the_first_timeout(make_app, token, silent_port):
    app = make_app(OPA_URL=f"http://127.0.0.1:{silent_port}", OPA_TIMEOUT_SECONDS=0.3)
    started = time.perf_counter()
    _assert_closed(_request(app, token), 503, "policy-unavailable")
    assert time.perf_counter() - started >= 0.3  # the first one waits the timeout …
    for _ in range(5):
        started = time.perf_counter()
        _assert_closed(_request(app, token), 503, "policy-unavailable")
        assert time.perf_counter() - started < 0.2  # … then the circuit is open: no waiting
    assert [r["outcome"] for r in app.extensions["lcr"].audit.rows()] == ["policy-unavailable"] * 6


def _until_ok(app: Any, token: Any, seconds: float) -> list[int]:
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = _request(app, token)
        statuses.append(response.status_code)
        if response.status_code == 200:
            return statuses
        code = response.get_json()["issue"][0]["details"]["coding"][0]["code"]
        _assert_closed(response, 503, code if code == "policy-stale" else "policy-unavailable")
        time.sleep(0.05)
    raise AssertionError(f"not recovered within {seconds}s: {statuses}")


def test_upstream_unreachable_is_502(make_app, token, closed_port):
    app = make_app(UPSTREAM_URL=f"http://127.0.0.1:{closed_port}/fhir")
    _assert_closed(_request(app, token), 502, "upstream-unavailable")
    row = _last_row(app)
    assert (row["outcome"], row["error_code"]) == ("upstream-failed", "upstream-unavailable")
    assert json.loads(row["opa_result"])["allow"] is True  # decided, then failed to fetch


def test_upstream_slow_is_504(make_app, token, silent_port):
    app = make_app(UPSTREAM_URL=f"http://127.0.0.1:{silent_port}/fhir", UPSTREAM_TIMEOUT_SECONDS=0.2)
    _assert_closed(_request(app, token), 504, "upstream-timeout")


@pytest.mark.parametrize(
    "body, status, code",
    [
        pytest.param(b"{not json", 200, "upstream-invalid-response", id="invalid-json"),
        pytest.param(b'{"hello": "world"}', 200, "upstream-invalid-response", id="not-fhir"),
        pytest.param(
            b'{"resourceType": "Bundle", "entry": "nope"}', 200, "upstream-invalid-response", id="bad-entries"
        ),
        pytest.param(
            b'{"resourceType": "Bundle", "entry": [' + b'{"resource": {"resourceType": "Flag"}},' * 2000 + b"{}]}",
            200,
            "upstream-invalid-response",
            id="huge-body",
        ),
        pytest.param(b"oops", 500, "upstream-unavailable", id="http-500"),
    ],
)
def test_upstream_garbage_is_502(make_app, token, body, status, code):
    server, url = _serve(body, status)
    try:
        app = make_app(UPSTREAM_URL=url, UPSTREAM_MAX_BYTES=50_000)
        _assert_closed(_request(app, token), 502, code)
    finally:
        server.shutdown()
        server.server_close()


def test_audit_store_unwritable_gives_503_and_no_record(make_app, config, token):
    app = make_app(AUDIT_BUSY_TIMEOUT_MS=100)
    assert _request(app, token).status_code == 200
    # Another writer holds the database: the row cannot be committed, so nothing leaves.
    blocker = sqlite3.connect(config["AUDIT_DB"], isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        _assert_closed(_request(app, token), 503, "audit-unavailable")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert _request(app, token).status_code == 200  # resumes by itself
    assert app.extensions["lcr"].audit.count() == 2
