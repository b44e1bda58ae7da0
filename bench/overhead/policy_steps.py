"""Evaluation steps of the redaction: a count that does not depend on the machine or its load.

    python -m bench.overhead.policy_steps                          # policies/ against TODAY_POLICY_COMMIT
    python -m bench.overhead.policy_steps --against 305e380        # against another commit
    python -m bench.overhead.policy_steps --same-answers LOG       # and replay a suite's questions (below)

`opa eval --profile` counts every expression OPA evaluates (num_eval, summed over the
policy's locations). On this machine OPA spends about 0.8 µs a step, so the count tracks the
evaluation time, but unlike a timer it is the same on every run and under any load: a
change to the policy can be judged in seconds. The questions: the typical record (resident
9990000018, 70 resources, from demo_upstream/residents) as a `registered_manager` (free
text shown) and as a `senior_carer` (free text read and removed), each asked as the sidecar
asks it — whole (resources never seen) and with each resource's facts that the same policy
returned (seen before).

`--same-answers LOG`: every redaction question in an OPA decision log (run the suites with
LCR_TEST_OPA_DECISION_LOGS=1: each OPA the tests start logs every decision with its input
to its log file, in the test run's temporary folder) is asked again of the policy folder,
whole and then with the facts it returned; any answer (sections, keep, edits) that differs
from the logged one is reported. A refactoring of the policy that changes no answer shows
0 on every distinct question of the redaction and attack suites.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from demo_upstream import store
from tests import processes

from . import opa_cost

ROOT = Path(__file__).resolve().parents[2]
TYPICAL_NHS_NUMBER = "9990000018"
BASE_URL = "http://upstream.test/fhir"
LEVELS = ("registered_manager", "senior_carer")
CORE = ("sections", "keep", "edits")


def typical_questions() -> dict[str, dict[str, Any]]:
    """{level: the redaction question of the typical record, whole} (docs/decision-contract.md)."""
    data = store.load(ROOT / "demo_upstream" / "residents")
    patient = next(
        p for p in data.patients() if any(i.get("value") == TYPICAL_NHS_NUMBER for i in p.get("identifier", []))
    )
    resources = [resource for resource, _ in data.everything(patient["id"])]
    levels = yaml.safe_load((ROOT / "policies" / "lcr" / "config" / "data.yaml").read_text())["access_levels"]
    return {
        level: {
            "allowed_sections": levels[level],
            "permitted_sections": levels[level],
            "patient": {"id": patient["id"], "nhs_number": TYPICAL_NHS_NUMBER},
            "base_url": BASE_URL,
            "resources": resources,
            "full_urls": [f"{BASE_URL}/{r['resourceType']}/{r['id']}" for r in resources],
        }
        for level in LEVELS
    }


def _eval(policies: Path, question: dict[str, Any], profile: bool) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(question, f)
        f.flush()
        args = [processes.opa_binary(), "eval", "-b", str(policies), "-i", f.name, "data.lcr.redact.result"]
        args += ["--profile", "--profile-limit", "1000000"] if profile else []
        out = subprocess.run([*args, "--format", "json"], capture_output=True, text=True, check=True).stdout
    answer: dict[str, Any] = json.loads(out)
    return answer


def with_facts(question: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The same question as the sidecar asks it when it kept every resource's facts."""
    shown = answer["free_text_shown"]
    return {
        **question,
        "resources": [None] * len(question["resources"]),
        "facts": answer["facts"],
        "free_text": [None if shown else text for text in answer["free_text"]],
    }


def steps(policies: Path, questions: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """{level: {"whole": steps, "facts": steps}} for one policy folder (unsigned, tests left out)."""
    out: dict[str, dict[str, int]] = {}
    for level, question in questions.items():
        first = _eval(policies, {**question, "return_facts": True}, profile=False)
        answer = first["result"][0]["expressions"][0]["value"]
        counts = {}
        shapes = [("whole", question)]
        if "facts" in answer:  # a policy that reads facts (since issue 14)
            shapes.append(("facts", with_facts(question, answer)))
        for shape, asked in shapes:
            profile = _eval(policies, asked, profile=True)["profile"]
            counts[shape] = sum(location["num_eval"] for location in profile)
        out[level] = counts
    return out


def _logged_questions(log: Path) -> Iterator[tuple[dict[str, Any], list[Any]]]:
    """(input, [sections, keep, edits]) of each distinct redaction question asked whole."""
    seen: set[str] = set()
    with log.open() as lines:
        for line in lines:
            if '"lcr/redact/result"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            question = entry.get("input")
            if entry.get("path") != "lcr/redact/result" or not isinstance(question, dict):
                continue
            if any(question.get("facts") or []):
                continue  # facts of the logging policy: its resources' answers are asked whole here
            key = json.dumps(question, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            yield question, [(entry.get("result") or {}).get(k) for k in CORE]


def _normalised(answer: list[Any]) -> list[Any]:
    """[sections, keep, edits] with each edit's removals sorted: the sidecar applies them in
    its own order (sidecar/redact.py), so their order in the answer means nothing."""
    sections, keep, edits = answer
    if isinstance(edits, list):
        edits = [
            {**edit, "remove": sorted(edit.get("remove") or [], key=json.dumps)} if isinstance(edit, dict) else edit
            for edit in edits
        ]
    return [sections, keep, edits]


def same_answers(policies: Path, log: Path) -> dict[str, Any]:
    """Replays a decision log's redaction questions against `policies` (served by its own OPA);
    returns {"questions": n, "differing": [decision ids…]}."""
    opa = opa_cost.start_policy_opa("opa-same-answers", policies, Path(tempfile.mkdtemp()))
    address = urlsplit(opa.url)
    conn = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=120)

    def ask(question: dict[str, Any]) -> dict[str, Any]:
        conn.request(
            "POST", opa_cost.REDACT_PATH, json.dumps({"input": question}), {"Content-Type": "application/json"}
        )
        result: dict[str, Any] = json.loads(conn.getresponse().read()).get("result") or {}
        return result

    n, differing = 0, []
    try:
        for question, want in _logged_questions(log):
            n += 1
            first = ask({**question, "return_facts": True})
            again = ask(with_facts(question, first)) if "facts" in first else {}
            want = _normalised(want)
            if _normalised([first.get(k) for k in CORE]) != want or _normalised([again.get(k) for k in CORE]) != want:
                differing.append(json.dumps(question)[:200])
    finally:
        conn.close()
        opa.stop()
    return {"questions": n, "differing": differing}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", type=Path, default=ROOT / "policies", help="policy folder (default policies/)")
    parser.add_argument("--against", default=opa_cost.TODAY_POLICY_COMMIT, help="commit to compare with")
    parser.add_argument("--same-answers", type=Path, metavar="LOG", help="an OPA log with decision logs")
    args = parser.parse_args(argv)
    questions = typical_questions()
    folder = Path(tempfile.mkdtemp(prefix="policy-steps-"))
    try:
        current = shutil.copytree(args.policies, folder / "current" / "policies")
        for test in current.rglob("*_test.rego"):
            test.unlink()
        rows = {"current": steps(current, questions)}
        if args.against:
            rows[args.against] = steps(opa_cost.policy_files(folder / "against", args.against), questions)
        for name, counts in rows.items():
            cells = "  ".join(
                f"{level}: " + ", ".join(f"{shape} {n:,}" for shape, n in c.items()) for level, c in counts.items()
            )
            print(f"{name:>10}  {cells}")
        if args.same_answers:
            checked = same_answers(current, args.same_answers)
            print(f"same answers: {checked['questions'] - len(checked['differing'])} of {checked['questions']}")
            for question in checked["differing"]:
                print(f"  differs: {question}")
            if checked["differing"]:
                raise SystemExit(1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
