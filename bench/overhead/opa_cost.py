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
typical record (resident 9990000018) and of a 1,000-resource one, every page of each fetched
as the sidecar fetches it and asked as the sidecar asks (docs/decision-contract.md).

Policy cost (`compare_policies`): the same two records' redaction evaluated, in the same
run and interleaved, by the current policy and by the policy as it was at
OLD_POLICY_COMMIT (before it was rewritten to fail closed on contained resources,
references in every form, free text and the Patient compartment), each asked its own
input shape, each in its own OPA serving the policy folder: what the new checks cost.
"""

from __future__ import annotations

import datetime as dt
import http.client
import io
import json
import shutil
import statistics
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client.opa import OpaClient

from audit_store.events import utc_timestamp
from sidecar import fastjson
from sidecar.devtoken import requested_record
from sidecar.policy import PolicyClient
from sidecar.steps import london_date
from tests import processes

ROOT = Path(__file__).resolve().parents[2]

DECISION_PATH = "/v1/data/lcr/access/decision"
REDACT_PATH = "/v1/data/lcr/redact/result"
#: the sidecar's HISTORY_WINDOW_SECONDS (its default): how far back `history` counts
HISTORY_WINDOW_SECONDS = 3600


def decision_input(nhs_number: str, dob: str, level: str = "registered_manager") -> dict[str, Any]:
    """The access question as the sidecar asks it (sidecar/steps.py `decide`,
    docs/decision-contract.md): the verified claims of a token bound to the resident
    (`requested_record`), the resident, the request with its London date, and the
    caller's last hour from the audit store (`history`). The resident must be a current
    service user of VM101 in the roster OPA has loaded (world.py admits the benchmark's),
    or the answer is a denial (no_legitimate_relationship) and the figure measures that.
    """
    now = int(time.time())
    when = utc_timestamp()
    moment = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
    return {
        "subject": {
            "iss": "https://care-app.dev.lcr.example",
            "sub": "staff-0004",
            "aud": "lcr-sidecar",
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
            "name": "Rita Manager",
            "requesting_organization": "VM101",
            "reason_for_request": "directcare",
            "lcr_access_level": level,
            "requested_record": requested_record(nhs_number),
        },
        "patient": {"nhs_number": nhs_number, "dob": dob},
        "requested_record": {"nhs_number": nhs_number},
        "action": "record.read",
        "sections": [],
        "request": {
            "id": str(uuid.uuid4()),
            "time": when,
            "date": london_date(when),
            "client": "127.0.0.1",
            "purpose": "directcare",
        },
        "history": {
            "window_seconds": HISTORY_WINDOW_SECONDS,
            "since": utc_timestamp(moment - dt.timedelta(seconds=HISTORY_WINDOW_SECONDS)),
            "outcomes": {"allowed": 40, "no-matching-record": 1},
            "reasons": {},
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
        return self.post_raw(path, json.dumps({"input": input_data}, separators=(",", ":")).encode(), query)

    def post_raw(self, path: str, body: bytes, query: str = "provenance=true") -> dict[str, Any]:
        self.conn.request("POST", f"{path}?{query}", body=body, headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"OPA answered {response.status}: {data[:200]!r}")
        return json.loads(data)

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
        "opa_python_client.query_rule": lambda: raw.query_rule(
            opa_input, "lcr.access", "decision", query_params={"provenance": "true"}
        ),
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


def _samples(hc: HttpClientOpa, path: str, body: bytes, n: int, warmup: int = 0) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"eval": [], "handler": [], "parse": [], "rtt": []}
    for i in range(n + warmup):
        t = time.perf_counter()
        answer = hc.post_raw(path, body, query="provenance=true&metrics=true")
        rtt = time.perf_counter() - t
        if i < warmup:
            continue
        m = answer["metrics"]
        out["eval"].append(m["timer_rego_query_eval_ns"] / 1e3)
        out["handler"].append(m.get("timer_server_handler_ns", 0) / 1e3)
        out["parse"].append(m.get("timer_rego_input_parse_ns", 0) / 1e3)
        out["rtt"].append(rtt * 1e6)
    return out


def opa_metrics(opa_url: str, path: str, opa_input: dict[str, Any], n: int = 300) -> dict[str, Any]:
    hc = HttpClientOpa(opa_url, timeout=30)
    # Serialised once, as the sidecar serialises its questions (fastjson: a number read from
    # the upstream goes back exactly as it came).
    body = fastjson.dumps({"input": opa_input})
    s = _samples(hc, path, body, n, warmup=20)
    result = hc.post_raw(path, body)["result"]
    hc.close()
    med = statistics.median
    # Which path of the access decision was measured (an allow evaluates far fewer rules).
    answer = {"allow": result["allow"], "reasons": result["reasons"]} if path == DECISION_PATH else {}
    return {
        **answer,
        "request_bytes": len(body),
        "result_bytes": len(fastjson.dumps(result)),
        "opa_eval_us_p50": round(med(s["eval"]), 1),
        "opa_eval_us_p90": round(sorted(s["eval"])[int(len(s["eval"]) * 0.9)], 1),
        "opa_input_parse_us_p50": round(med(s["parse"]), 1),
        "opa_handler_us_p50": round(med(s["handler"]), 1),
        "round_trip_us_p50": round(med(s["rtt"]), 1),
        "outside_eval_us_p50": round(med(s["rtt"]) - med(s["eval"]), 1),
        "calls": n,
    }


def redact_input(
    decision: dict[str, Any],
    patient: dict[str, str],
    resources: list[dict[str, Any]],
    full_urls: list[str | None],
    base_url: str,
) -> dict[str, Any]:
    """The redaction question as the sidecar asks it (sidecar/policy.py, docs/decision-contract.md)."""
    return {
        "allowed_sections": decision["sections"],
        "permitted_sections": decision["permitted"],
        "patient": patient,
        "base_url": base_url,
        "resources": resources,
        "full_urls": full_urls,
    }


# -- the redaction policy now against the policy before the fail-closed rewrite ------------

OLD_POLICY_COMMIT = "0850e73"  # main before the redaction was rewritten to fail closed (issue 9)
TODAY_POLICY_COMMIT = "e4b8d5e"  # main before the redaction read each resource's facts apart (issue 14)


def old_redact_input(decision: dict[str, Any], patient_id: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """The redaction question as the sidecar asked it at OLD_POLICY_COMMIT."""
    return {
        "allowed_sections": decision["sections"],
        "permitted_sections": decision["permitted"],
        "patient_id": patient_id,
        "resources": resources,
    }


def policy_files(dest: Path, commit: str | None) -> Path:
    """What `bundles.build` ships (every file under policies/ but the tests), from `commit`
    by `git archive`, or from the working tree (what the benchmark's bundle is built from)
    when commit is None. Returns the policies folder inside dest."""
    dest.mkdir(parents=True)
    if commit is None:
        shutil.copytree(ROOT / "policies", dest / "policies")
    else:
        archive = subprocess.run(
            ["git", "archive", commit, "policies"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
    for test in (dest / "policies").rglob("*_test.rego"):
        test.unlink()
    return dest / "policies"


def start_policy_opa(name: str, policies: Path, log_dir: Path, env: dict[str, str] | None = None) -> processes.Process:
    """OPA serving a policy folder as a bundle (unsigned, no bundle server): the same binary,
    evaluator and environment (garbage collector) as the benchmark's OPA."""
    port = processes.free_port()
    url = f"http://127.0.0.1:{port}"
    return processes.start(
        name,
        [
            processes.opa_binary(),
            "run",
            "--server",
            "--addr",
            f"127.0.0.1:{port}",
            "--bundle",
            str(policies),
            "--log-level",
            "error",
        ],
        url,
        "/health",
        log_dir / f"{name}.log",
        env=env,
    )


def facts_input(opa_url: str, question: dict[str, Any]) -> dict[str, Any]:
    """The same redaction question as the sidecar asks it when it has seen every resource
    before (its facts cache, sidecar/policy.py): each resource as the facts the policy read
    from it, with its free text when the caller is not shown free text."""
    hc = HttpClientOpa(opa_url, timeout=60)
    try:
        first = hc.post(REDACT_PATH, {**question, "return_facts": True})["result"]
    finally:
        hc.close()
    shown = first["free_text_shown"]
    return {
        **question,
        "resources": [None] * len(question["resources"]),
        "facts": first["facts"],
        "free_text": [None if shown else text for text in first["free_text"]],
    }


def compare_policies(
    urls: dict[str, str], questions: dict[str, dict[str, dict[str, Any]]], n: dict[str, int], rounds: int = 4
) -> dict[str, Any]:
    """OPA evaluation of the same record's redaction under two policies, in one run.

    urls: {"current": OPA url, "old": OPA url}; questions: {record: {"current": input,
    "old": input}}; n: calls per record and policy, split over `rounds` interleaved rounds so
    that drift (other load, CPU frequency) hits both policies alike."""
    out: dict[str, Any] = {}
    clients = {policy: HttpClientOpa(url, timeout=30) for policy, url in urls.items()}
    try:
        for record, by_policy in questions.items():
            bodies = {policy: fastjson.dumps({"input": q}) for policy, q in by_policy.items()}
            results = {policy: clients[policy].post_raw(REDACT_PATH, body)["result"] for policy, body in bodies.items()}
            samples: dict[str, dict[str, list[float]]] = {
                p: {"eval": [], "handler": [], "parse": [], "rtt": []} for p in bodies
            }
            for policy, body in bodies.items():
                _samples(clients[policy], REDACT_PATH, body, 0, warmup=max(5, n[record] // 20))
            for _ in range(rounds):
                for policy, body in bodies.items():
                    for k, v in _samples(clients[policy], REDACT_PATH, body, max(1, n[record] // rounds)).items():
                        samples[policy][k].extend(v)
            med = statistics.median
            row: dict[str, Any] = {"resources": len(by_policy["current"]["resources"])}
            for policy, s in samples.items():
                row[policy] = {
                    "request_bytes": len(bodies[policy]),
                    "kept": sum(1 for k in results[policy]["keep"] if k),
                    "opa_eval_us_p50": round(med(s["eval"]), 1),
                    "opa_eval_us_p90": round(sorted(s["eval"])[int(len(s["eval"]) * 0.9)], 1),
                    "opa_input_parse_us_p50": round(med(s["parse"]), 1),
                    "opa_handler_us_p50": round(med(s["handler"]), 1),
                    "round_trip_us_p50": round(med(s["rtt"]), 1),
                    "calls": len(s["eval"]),
                }
            if "old" in row:
                row["eval_ratio_current_to_old"] = round(
                    row["current"]["opa_eval_us_p50"] / row["old"]["opa_eval_us_p50"], 2
                )
                row["eval_added_us"] = round(row["current"]["opa_eval_us_p50"] - row["old"]["opa_eval_us_p50"], 1)
            if "today" in row:
                row["eval_ratio_to_today"] = {
                    p: round(row[p]["opa_eval_us_p50"] / row["today"]["opa_eval_us_p50"], 3)
                    for p in samples
                    if p != "today"
                }
            row["eval_us_per_resource"] = {p: round(row[p]["opa_eval_us_p50"] / row["resources"], 1) for p in samples}
            out[record] = row
    finally:
        for hc in clients.values():
            hc.close()
    return out
