"""What one decision costs: the client on the sidecar's hot path, and OPA's own evaluation.

Clients (CPU time in this process per call, and wall time per call, same question to the
same OPA, one kept-alive connection each, measured in turn, after a warm-up):
  - `sidecar.policy.PolicyClient.decide` — the hot path as it is (opa-python-client,
    which is a requests.Session, plus the answer's shape check);
  - `OpaClient.query_rule` alone (opa-python-client 3.0.0);
  - a bare `requests.Session().post`;
  - `http.client.HTTPConnection`, kept alive, json.dumps/json.loads by hand.

OPA: `?metrics=true` on the same question, by http.client: OPA's `timer_rego_query_eval_ns`
(evaluation) and `timer_server_handler_ns` (everything OPA does for the request) against
the round trip this process sees — for the access decision, and for the redaction of a
typical record (resident 9990000018) and of a 1,000-resource one.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import statistics
import time
import uuid
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
from opa_client.opa import OpaClient

from sidecar.policy import PolicyClient

DECISION_PATH = "/v1/data/lcr/access/decision"
REDACT_PATH = "/v1/data/lcr/redact/result"


def decision_input(nhs_number: str, dob: str, level: str = "registered_manager") -> dict[str, Any]:
    now = int(time.time())
    return {
        "subject": {
            "iss": "https://care-app.dev.lcr.example", "sub": "staff-0004", "aud": "lcr-sidecar",
            "iat": now, "exp": now + 300, "jti": str(uuid.uuid4()), "name": "Rita Manager",
            "requesting_organization": "VM101", "reason_for_request": "directcare", "lcr_access_level": level,
        },
        "patient": {"nhs_number": nhs_number, "dob": dob},
        "action": "record.read",
        "sections": [],
        "request": {
            "id": str(uuid.uuid4()),
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "client": "127.0.0.1",
            "purpose": "directcare",
        },
    }


def _measure(call: Callable[[], Any], n: int, warmup: int = 50) -> dict[str, float]:
    for _ in range(warmup):
        call()
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(n):
        c0, w0 = time.process_time(), time.perf_counter()
        call()
        w1, c1 = time.perf_counter(), time.process_time()
        cpu.append(c1 - c0)
        wall.append(w1 - w0)
    # process_time ticks coarsely per call; the mean over n calls is exact enough.
    return {
        "cpu_us_per_call": round(sum(cpu) / n * 1e6, 1),
        "wall_us_p50": round(statistics.median(wall) * 1e6, 1),
        "wall_us_mean": round(statistics.fmean(wall) * 1e6, 1),
        "calls": n,
    }


class HttpClientOpa:
    """One kept-alive http.client connection to OPA, as a pooled hot-path client would use."""

    def __init__(self, url: str, timeout: float = 0.5) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.timeout = parts.hostname or "127.0.0.1", parts.port or 8181, timeout
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def post(self, path: str, input_data: dict[str, Any], query: str = "provenance=true") -> dict[str, Any]:
        body = json.dumps({"input": input_data}, separators=(",", ":")).encode()
        self.conn.request("POST", f"{path}?{query}", body=body, headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"OPA answered {response.status}: {data[:200]!r}")
        return json.loads(data)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.conn.close()


def clients(opa_url: str, opa_input: dict[str, Any], n: int = 1000) -> dict[str, Any]:
    parts = urlsplit(opa_url)
    # Generous timeouts: this measures cost per call, not OPA's worst case on a busy machine.
    policy = PolicyClient(opa_url, 5.0)
    raw = OpaClient(host=parts.hostname, port=parts.port, retries=0, timeout=5.0)
    session = requests.Session()
    hc = HttpClientOpa(opa_url, timeout=5.0)
    url = opa_url + DECISION_PATH + "?provenance=true"
    calls = {
        "sidecar_PolicyClient.decide": lambda: policy.decide(opa_input),
        "opa_python_client.query_rule": lambda: raw.query_rule(opa_input, "lcr.access", "decision", query_params={"provenance": "true"}),
        "requests.Session.post": lambda: session.post(url, json={"input": opa_input}, timeout=5.0).json(),
        "http.client (kept alive)": lambda: hc.post(DECISION_PATH, opa_input),
    }
    # Same answer from each, or the comparison is meaningless.
    answers = {name: call() for name, call in calls.items() if name != "sidecar_PolicyClient.decide"}
    results = {name: {"allow": a["result"]["allow"]} for name, a in answers.items()}
    # Interleave two rounds so drift (OPA's GC, CPU frequency) hits every client alike.
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in calls}
    for _ in range(2):
        for name, call in calls.items():
            rounds[name].append(_measure(call, n // 2))
    for name, parts_ in rounds.items():
        results[name] = {
            "cpu_us_per_call": round(statistics.fmean(p["cpu_us_per_call"] for p in parts_), 1),
            "wall_us_p50": round(statistics.fmean(p["wall_us_p50"] for p in parts_), 1),
            "wall_us_mean": round(statistics.fmean(p["wall_us_mean"] for p in parts_), 1),
            "calls": n,
        }
    policy.close()
    raw.close_connection()
    session.close()
    hc.close()
    return results


def opa_metrics(opa_url: str, path: str, opa_input: dict[str, Any], n: int = 300) -> dict[str, Any]:
    hc = HttpClientOpa(opa_url, timeout=30)
    body_bytes = len(json.dumps({"input": opa_input}, separators=(",", ":")).encode())
    evals, handlers, parses, rtts, response_bytes = [], [], [], [], 0
    for i in range(n + 20):
        t = time.perf_counter()
        answer = hc.post(path, opa_input, query="provenance=true&metrics=true")
        rtt = time.perf_counter() - t
        if i < 20:
            continue
        m = answer["metrics"]
        evals.append(m["timer_rego_query_eval_ns"] / 1e3)
        handlers.append(m.get("timer_server_handler_ns", 0) / 1e3)
        parses.append(m.get("timer_rego_input_parse_ns", 0) / 1e3)
        rtts.append(rtt * 1e6)
        response_bytes = len(json.dumps(answer["result"]))
    hc.close()
    med = statistics.median
    return {
        "request_bytes": body_bytes,
        "result_bytes": response_bytes,
        "opa_eval_us_p50": round(med(evals), 1),
        "opa_input_parse_us_p50": round(med(parses), 1),
        "opa_handler_us_p50": round(med(handlers), 1),
        "round_trip_us_p50": round(med(rtts), 1),
        "outside_eval_us_p50": round(med(rtts) - med(evals), 1),
        "calls": n,
    }


def redact_input(decision: dict[str, Any], patient_id: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "allowed_sections": decision["sections"],
        "permitted_sections": decision["permitted"],
        "patient_id": patient_id,
        "resources": resources,
    }
