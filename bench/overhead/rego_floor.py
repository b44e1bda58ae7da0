"""The floor under the redaction's evaluation: what OPA's evaluator costs for the typical
record whatever the policy (floor.rego), measured in the same run as the policy itself.

Each query of floor.rego is asked of its own OPA (the benchmark's binary and environment,
floor.rego alone served as an unsigned bundle) with the same fetched record, or with each
resource's facts as the sidecar's facts cache sends them. Figures: OPA's
timer_rego_query_eval_ns, p50 over n calls, and per resource.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from . import opa_cost

HERE = Path(__file__).resolve().parent

# query -> (what it does, which question it reads)
QUERIES = {
    "touched": ("each resource touched once", "resources"),
    "walked": ("each resource walked (every node)", "resources"),
    "codings": ("each resource's codings found (walk, objects with a string code)", "resources"),
    "lean": ("eight checks a resource over its facts", "facts"),
}


def measure(run_dir: Path, env: dict[str, str], questions: dict[str, dict[str, Any]], n: int) -> dict[str, Any]:
    """questions: {"resources": the redaction question, "facts": the same with facts};
    returns {query: {"what", "eval_us_p50", "eval_us_p90", "resources", "us_per_resource"}}."""
    folder = run_dir / "rego-floor"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "floor.rego", folder / "floor.rego")
    opa = opa_cost.start_policy_opa("opa-floor", folder, run_dir, env=env)
    try:
        out: dict[str, Any] = {}
        for query, (what, shape) in QUERIES.items():
            question = questions[shape]
            m = opa_cost.opa_metrics(opa.url, f"/v1/data/bench/floor/{query}", question, n)
            resources = len(question["resources"])
            out[query] = {
                "what": what,
                "eval_us_p50": m["opa_eval_us_p50"],
                "eval_us_p90": m.get("opa_eval_us_p90"),
                "resources": resources,
                "us_per_resource": round(m["opa_eval_us_p50"] / resources, 1),
            }
        return out
    finally:
        opa.stop()
