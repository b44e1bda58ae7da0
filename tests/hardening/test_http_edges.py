"""HTTP at its edges, against the sidecar as deployed (gunicorn with sidecar/gunicorn_conf.py):
broken body framing, an upstream body nested too deep to take, oversize request heads,
invented methods, and slow clients. Raw sockets where the framing itself is the test.

Each answer is checked for its status, its stable code and its audit row — or, for the few
refusals gunicorn makes before the sidecar (README, "Serving"), for having no row.
"""

from __future__ import annotations

import http.server
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from .. import processes
from ..seed_table import FULL
from .conftest import LiveSidecar, outcome_code

ENDPOINTS = {"/v1/record": "record.read", "/v1/menu": "menu.read", "/v1/audit-trail": "audit.read"}


def row(sidecar: LiveSidecar, decision_id: str) -> dict[str, Any]:
    with sqlite3.connect(sidecar.audit_db) as db:
        db.row_factory = sqlite3.Row
        found = db.execute("select * from decisions where decision_id = ?", (decision_id,)).fetchone()
    assert found is not None, f"no audit row for {decision_id}"
    return dict(found)


def raw_request(
    url: str, head: bytes, body: bytes = b"", shut: bool = False, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; return (status, headers, body) of the answer, (0, {}, b"") when the
    server closed without one."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(head + body)
        if shut:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            try:
                got = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not got:
                break
            data += got
            if b"\r\n\r\n" in data:
                head_part, _, rest = data.partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":", 1)[1])
                    for line in head_part.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(rest) >= length[0]:
                    break
    if not data:
        return 0, {}, b""
    head_part, _, rest = data.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, rest


def head_of(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: sidecar"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def level_for(path: str) -> str:
    return "registered_manager" if path == "/v1/audit-trail" else "admin"


# -- 4: broken body framing is the caller's: 400, audited -------------------------------------------

BROKEN_CHUNKS = {
    "chunk-size-zz": (b"zz\r\n" + json.dumps(FULL).encode() + b"\r\n0\r\n\r\n", False),
    "chunk-missing-terminator": (b"5\r\nhelloXX0\r\n\r\n", False),
    "chunk-cut-short": (b"400\r\n" + json.dumps(FULL).encode(), True),
}


@pytest.mark.parametrize("path", sorted(ENDPOINTS))
@pytest.mark.parametrize("case", sorted(BROKEN_CHUNKS))
def test_broken_chunked_body_is_400_body_invalid_audited(live_sidecar, token, path, case):
    body, shut = BROKEN_CHUNKS[case]
    head = head_of(
        "POST",
        path,
        {
            "Authorization": f"Bearer {token(level_for(path))}",
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
    )
    status, headers, answer = raw_request(live_sidecar.url, head, body, shut=shut)
    assert status == 400, (status, answer[:300])
    assert outcome_code(json.loads(answer)) == "body-invalid"
    audit = row(live_sidecar, headers["x-decision-id"])
    assert (audit["action"], audit["http_status"], audit["error_code"], audit["outcome"]) == (
        ENDPOINTS[path],
        400,
        "body-invalid",
        "invalid-request",
    )
    assert audit["subject_id"]  # the caller was verified before the body was read


def test_content_length_body_cut_short_is_400_audited(live_sidecar, token):
    head = head_of(
        "POST",
        "/v1/record",
        {"Authorization": f"Bearer {token('admin')}", "Content-Type": "application/json", "Content-Length": "500"},
    )
    status, headers, answer = raw_request(live_sidecar.url, head, json.dumps(FULL).encode(), shut=True)
    assert status == 400 and outcome_code(json.loads(answer)) == "body-invalid"
    assert row(live_sidecar, headers["x-decision-id"])["error_code"] == "body-invalid"


def test_the_connection_still_serves_after_a_framing_refusal(live_sidecar, token):
    # The framing is unknown after a broken body: that connection closes, the next one works.
    r = requests.post(
        live_sidecar.url + "/v1/record", json=FULL, headers={"Authorization": f"Bearer {token('admin')}"}, timeout=10
    )
    assert r.status_code == 200


# -- 5: an upstream body the sidecar cannot take is a 502 ----------------------------------------------

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "birthDate": "1938-04-12",
    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}],
}


class _Upstream(http.server.BaseHTTPRequestHandler):
    everything = b""
    search = b""

    def do_GET(self) -> None:  # noqa: N802
        body = type(self).everything if "$everything" in self.path else type(self).search
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def odd_upstream() -> Iterator[type[_Upstream]]:
    handler: Any = type("Handler", (_Upstream,), {})
    handler.search = json.dumps(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 1,
            "entry": [{"fullUrl": "http://x/fhir/Patient/p1", "resource": PATIENT}],
        }
    ).encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield handler
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def odd_sidecar(tmp_path_factory, opa, odd_upstream, jwks_file) -> Iterator[LiveSidecar]:
    run = tmp_path_factory.mktemp("odd-upstream")
    env = processes.sidecar_env(opa.url, odd_upstream.url, run / "audit.db", jwks_file)
    sidecar = processes.start_sidecar(run, env, workers=1)
    yield LiveSidecar(sidecar, run / "audit.db")
    sidecar.stop()


def nested(depth: int, spaced: bool) -> bytes:
    entry = {"fullUrl": "http://x/fhir/Patient/p1", "resource": PATIENT}
    text = json.dumps(
        {"resourceType": "Bundle", "type": "searchset", "entry": [entry], "extension": "HOLE"},
        separators=None if spaced else (",", ":"),
    )
    return text.replace('"HOLE"', "[" * depth + "]" * depth).encode()


@pytest.mark.parametrize("depth", [255, 980, 1000, 1015, 1023, 1030])
@pytest.mark.parametrize("spaced", [False, True], ids=["compact", "spaced"])
def test_upstream_body_nested_too_deep_is_502_audited(odd_sidecar, odd_upstream, token, depth, spaced):
    odd_upstream.everything = nested(depth, spaced)
    r = requests.post(
        odd_sidecar.url + "/v1/record", json=FULL, headers={"Authorization": f"Bearer {token('admin')}"}, timeout=20
    )
    assert r.status_code == 502, r.text[:300]
    assert outcome_code(r.json()) == "upstream-invalid-response"
    audit = row(odd_sidecar, r.headers["X-Decision-Id"])
    assert (audit["http_status"], audit["error_code"], audit["outcome"]) == (
        502,
        "upstream-invalid-response",
        "upstream-failed",
    )


def test_upstream_body_nested_as_deep_as_written_is_served(odd_sidecar, odd_upstream, token):
    odd_upstream.everything = nested(200, spaced=False)
    r = requests.post(
        odd_sidecar.url + "/v1/record", json=FULL, headers={"Authorization": f"Bearer {token('admin')}"}, timeout=20
    )
    assert r.status_code in (200, 502), r.text[:300]  # served or refused, never a 500


# -- 6: the request head: the sidecar's own limits, below gunicorn's -----------------------------------


def test_a_9000_byte_bearer_token_is_401_audited(live_sidecar):
    r = requests.post(
        live_sidecar.url + "/v1/record", json=FULL, headers={"Authorization": "Bearer " + "a" * 9000}, timeout=10
    )
    assert r.status_code == 401 and outcome_code(r.json()) == "token-invalid"
    audit = row(live_sidecar, r.headers["X-Decision-Id"])
    assert (audit["action"], audit["http_status"], audit["error_code"]) == ("record.read", 401, "token-invalid")


def test_101_headers_is_431_audited_with_the_caller(live_sidecar, token):
    headers = {"Authorization": f"Bearer {token('admin')}", **{f"X-Filler-{n}": "x" for n in range(101)}}
    r = requests.post(live_sidecar.url + "/v1/menu", json=FULL, headers=headers, timeout=10)
    assert r.status_code == 431 and outcome_code(r.json()) == "headers-too-large"
    audit = row(live_sidecar, r.headers["X-Decision-Id"])
    assert (audit["action"], audit["http_status"], audit["error_code"], audit["outcome"]) == (
        "menu.read",
        431,
        "headers-too-large",
        "invalid-request",
    )
    assert audit["subject_id"] and audit["nhs_number"] is None  # who sent it; nothing of a record


def test_a_20_kib_header_field_is_431_audited(live_sidecar, token):
    r = requests.post(
        live_sidecar.url + "/v1/record",
        json=FULL,
        timeout=10,
        headers={"Authorization": f"Bearer {token('admin')}", "X-Big": "b" * 20_000},
    )
    assert r.status_code == 431 and outcome_code(r.json()) == "headers-too-large"
    assert row(live_sidecar, r.headers["X-Decision-Id"])["error_code"] == "headers-too-large"


@pytest.mark.parametrize("length", [5_000, 8_100])
def test_a_long_url_is_414_audited(live_sidecar, token, length):
    r = requests.post(
        live_sidecar.url + "/v1/record?q=" + "a" * length,
        json=FULL,
        timeout=10,
        headers={"Authorization": f"Bearer {token('admin')}"},
    )
    assert r.status_code == 414 and outcome_code(r.json()) == "uri-too-long"
    audit = row(live_sidecar, r.headers["X-Decision-Id"])
    assert (audit["action"], audit["http_status"], audit["error_code"]) == ("record.read", 414, "uri-too-long")


@pytest.mark.parametrize(
    "head, status",
    [
        # Two framings for one body (request smuggling): which bytes are the body is unknowable.
        (
            b"POST /v1/record HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (b"POST /v1/record?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: s\r\n\r\n", 414),
        (b"POST /v1/record HTTP/1.1\r\nHost: s\r\nX-Big: " + b"b" * 40_000 + b"\r\n\r\n", 431),
    ],
    ids=["content-length-and-chunked", "request-line-over-8190", "field-over-32KiB"],
)
def test_refusals_before_the_sidecar_leave_no_row(live_sidecar, head, status):
    before = live_sidecar.audit_count()
    got, _, _ = raw_request(live_sidecar.url, head)
    assert got == status
    assert live_sidecar.audit_count() == before


# -- 7: methods: a fixed set of labels --------------------------------------------------------------


@pytest.fixture(scope="module")
def counted_sidecar(
    tmp_path_factory: pytest.TempPathFactory, opa: Any, upstream: Any, jwks_file: Any
) -> Iterator[LiveSidecar]:
    """A served sidecar whose /metrics adds up both workers, as deployed (scripts/run.sh)."""
    run = tmp_path_factory.mktemp("counted-sidecar")
    (run / "prometheus").mkdir()
    env = processes.sidecar_env(opa.url, upstream.url, run / "audit.db", jwks_file)
    sidecar = processes.start_sidecar(run, {**env, "PROMETHEUS_MULTIPROC_DIR": str(run / "prometheus")})
    yield LiveSidecar(sidecar, run / "audit.db")
    sidecar.stop()


def test_an_invented_method_is_http_other_in_metrics_and_row(counted_sidecar, token):
    live_sidecar = counted_sidecar
    status, headers, answer = raw_request(
        live_sidecar.url,
        head_of("X9990000018", "/v1/record", {"Authorization": f"Bearer {token('admin')}", "Content-Length": "0"}),
    )
    assert status == 405 and outcome_code(json.loads(answer)) == "method-not-allowed"
    audit = row(live_sidecar, headers["x-decision-id"])
    assert (audit["action"], audit["http_status"], audit["error_code"]) == ("http:other", 405, "method-not-allowed")
    assert json.loads(audit["opa_input"]) == {"request": {"method": "X9990000018"}}  # the raw method: the row only
    status, headers, _ = raw_request(
        live_sidecar.url, head_of("PROPFIND" + "Z" * 12, "/nowhere", {"Content-Length": "0"})
    )
    assert status == 404
    assert row(live_sidecar, headers["x-decision-id"])["action"] == "http:other"
    metrics = requests.get(live_sidecar.url + "/metrics", timeout=5).text
    assert "X9990000018" not in metrics and "PROPFIND" not in metrics
    assert 'action="http:other"' in metrics


def test_known_methods_keep_their_label(live_sidecar):
    r = requests.delete(live_sidecar.url + "/v1/record", timeout=5)
    assert r.status_code == 405
    assert row(live_sidecar, r.headers["X-Decision-Id"])["action"] == "http:DELETE"


# -- 8: slow clients cost no thread -------------------------------------------------------------------


def test_slow_and_idle_clients_do_not_starve_the_workers(live_sidecar, token):
    host, port = live_sidecar.url.removeprefix("http://").split(":")
    slow: list[socket.socket] = []
    try:
        for n in range(40):
            s = socket.create_connection((host, int(port)), timeout=5)
            if n % 2:  # half send a partial header line and stop; half send nothing
                s.sendall(b"POST /v1/record HTTP/1.1\r\nHost: s\r\nAuthoriz")
            slow.append(s)
        time.sleep(0.3)
        headers = {"Authorization": f"Bearer {token('admin')}"}
        worst = {"healthz": 0.0, "record": 0.0}
        deadline = time.monotonic() + 7.0  # past the 5 s read deadline too
        with ThreadPoolExecutor(4) as pool:
            while time.monotonic() < deadline:

                def timed(kind: str) -> tuple[str, float, int]:
                    started = time.monotonic()
                    if kind == "healthz":
                        status = requests.get(live_sidecar.url + "/healthz", timeout=5).status_code
                    else:
                        status = requests.post(
                            live_sidecar.url + "/v1/record", json=FULL, headers=headers, timeout=5
                        ).status_code
                    return kind, time.monotonic() - started, status

                for kind, took, status in pool.map(timed, ["healthz", "record", "healthz", "record"]):
                    assert status == 200, kind
                    worst[kind] = max(worst[kind], took)
                time.sleep(0.2)
        assert worst["healthz"] < 1.0 and worst["record"] < 1.0, worst
        # The slow ones were closed at their deadline, without an answer.
        for s in slow[1::2]:
            s.settimeout(3)
            assert s.recv(100) == b""
    finally:
        for s in slow:
            s.close()
