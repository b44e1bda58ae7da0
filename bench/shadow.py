"""Cost of shadow mode: the same menu requests with and without a candidate OPA, in one run.

    python -m bench.shadow [--requests 300]

Real processes (OPA for the live bundle, a second OPA for the candidate, the demo
upstream); the sidecar in-process. Writes bench/results/shadow.json and prints a line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bundles.build import build
from sidecar import create_app
from sidecar.devtoken import mint
from tests import processes
from tests.bundles.test_delivery import changed_policies, drop_admin_appointments
from tests.roster import publish_seed_roster

RESULTS = Path(__file__).resolve().parent / "results" / "shadow.json"
BODY = {"nhs_number": "9990000018", "dob": "1938-04-12"}


def _timings(app, n: int) -> list[float]:
    client = app.test_client()
    token = mint("admin", nhs_number=BODY["nhs_number"])
    out = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.post("/v1/menu", json=BODY, headers={"Authorization": f"Bearer {token}"})
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.get_data()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        live_out, cand_out = tmp / "live", tmp / "candidate"
        build(live_out)
        build(cand_out, changed_policies(tmp, drop_admin_appointments))
        for out in (live_out, cand_out):
            publish_seed_roster(out, processes.opa_binary())
        started: list[Any] = [
            live_server := processes.start_bundle_server(live_out / "serve", tmp),
            cand_server := processes.start_bundle_server(cand_out / "serve", tmp),
        ]
        started += [
            live := processes.start_opa(live_server.url, tmp),
            cand := processes.start_opa(cand_server.url, tmp),
        ]
        started.append(upstream := processes.start_upstream(tmp))
        try:
            common = {"OPA_URL": live.url, "UPSTREAM_URL": upstream.url + "/fhir", "AUDIT_DB": str(tmp / "audit.db")}
            off = create_app(test_config=common)
            on = create_app(test_config={**common, "SHADOW_OPA_URL": cand.url})
            _timings(off, 20), _timings(on, 20)  # warm up connections and caches
            runs: dict[str, list[float]] = {"off": [], "on": []}
            for _ in range(3):  # interleaved, so drift in the machine's load hits both
                runs["off"] += _timings(off, args.requests // 3)
                runs["on"] += _timings(on, args.requests // 3)
        finally:
            for p in reversed(started):
                p.stop()
    summary: dict[str, Any] = {
        name: {"p50_ms": round(statistics.median(v), 3), "p99_ms": round(statistics.quantiles(v, n=100)[98], 3)}
        for name, v in runs.items()
    }
    summary["added_p50_ms"] = round(summary["on"]["p50_ms"] - summary["off"]["p50_ms"], 3)
    summary["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    summary["requests_each"] = len(runs["off"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2))
    print(
        f"shadow mode adds p50 {summary['added_p50_ms']} ms per decision "
        f"(off p50 {summary['off']['p50_ms']} ms, on p50 {summary['on']['p50_ms']} ms; menu requests)"
    )


if __name__ == "__main__":
    main()
