"""Overhead benchmark: the sidecar against a bare proxy, in one run (about 4 minutes).

    python -m bench.overhead                  # writes bench/overhead/results.json and RESULTS.md
    python -m bench.overhead --quick          # shorter phases, for a smoke run (not for figures)
    python -m bench.overhead --worker-class sync   # another gunicorn worker class, for both servers
    python -m bench.overhead --sidecar-env LCR_SIDECAR_REDACT_CACHE_ENTRIES=0   # a sidecar setting

Needs wrk (Debian: apt-get install -y wrk) and the pinned opa (scripts/tools.sh). Load comes
from wrk in its own process; the servers are real processes on 127.0.0.1 (world.py). Phases:

 1. floor: loopback TCP round trip, fsync in the audit store's folder;
 2. max throughput: closed loop, each server at its best of 2, 4 or 8 connections, in turn;
 3. one connection: latency of each, the difference is what the sidecar adds;
 4. half load: both at a constant arrival rate of half the sidecar's maximum (load.lua);
 5. OPA client and OPA evaluation cost (opa_cost.py), in this process, and the redaction
    policy's evaluation now against the policy at opa_cost.OLD_POLICY_COMMIT;
 6. record size: residents of 10, 100, 1,000 and 5,000 resources, one connection, with the
    sidecar workers' peak RSS after each;
 7. OPA down: time to 503 with OPA stopped (SIGSTOP: hung) and killed (refused).

Every load run also records the CPU each process used per request (sidecar, bare proxy,
OPA, upstream) and the CPU other processes on the machine used meanwhile (cpu.py); each
phase first waits (60 s at most in all) for such other load to pass.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization

from sidecar import fastjson
from sidecar.devtoken import DEV_PRIVATE_KEY, mint

from . import cpu, floor, opa_cost, rego_floor, report, wrk
from .world import OPA_ENV, World, gunicorn_args

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TYPICAL = {"nhs_number": "9990000018", "dob": "1938-04-12"}  # Margaret Thompson, every section
LEVEL = "registered_manager"  # sees the most: the redaction keeps the most bytes
SIZES = [10, 100, 1000, 5000]
TOKENS = 256
# Max throughput is each server's best over these connection counts (gthread workers and
# one upstream worker: more connections can mean less throughput, so it is searched).
MAX_CONNECTIONS = (2, 4, 8)

# (seconds, whole: wrk takes no fractions) full run / --quick
DURATIONS = {
    "warmup": (3, 1),
    "probe": (3, 1),  # per server and concurrency, to find each one's best
    "max": (6, 2),  # per round; 2 rounds each, interleaved
    "one": (6, 2),  # per round; 2 rounds each, interleaved
    "half": (10, 3),
    "scale": (5, 2),
    "opa_down": (3, 1),
}
# The record-size phase runs its own sidecar with these settings, so that the time a big
# record takes is measured instead of the deployed limits' 503 or 502 (the deployed
# configuration's answer is reported separately): OPA's timeouts, and enough pages for the
# 5,000-resource record at the upstream's 20 entries a page (237 pages; deployed: 200).
SCALING_OPA_TIMEOUT_SECONDS = 10
SCALING_SETTINGS = {
    "OPA_TIMEOUT_SECONDS": str(SCALING_OPA_TIMEOUT_SECONDS),
    "OPA_REDACT_TIMEOUT_SECONDS": str(SCALING_OPA_TIMEOUT_SECONDS),
    "UPSTREAM_MAX_PAGES": "1000",
}
_KEY: Any = None
QUIET_BUDGET_S = 60.0  # most a run waits, in all, for other load on the machine to pass


def token(nhs_number: str | None = None) -> str:
    """A fresh registered_manager token from the dev key (loaded once: parsing it is slow),
    bound to the resident asked about (the typical one unless named)."""
    global _KEY
    if _KEY is None:
        _KEY = serialization.load_pem_private_key(DEV_PRIVATE_KEY.read_bytes(), password=None)
    return mint(LEVEL, lifetime=300, private_key=_KEY, nhs_number=nhs_number or TYPICAL["nhs_number"])


class Bench:
    def __init__(self, world: World, quick: bool) -> None:
        self.world = world
        self.quick = quick
        self.dir = world.run_dir / "wrk"
        self.dir.mkdir()
        self.tokens_file = self.dir / "tokens.txt"

        self.cpu: list[dict[str, Any]] = []
        self.waits: list[dict[str, Any]] = []

    def d(self, phase: str) -> int:
        full, quick = DURATIONS[phase]
        return quick if self.quick else full

    def fresh_tokens(self, nhs_number: str) -> Path:
        # Minted up front (300 s lifetime, the sidecar's maximum); re-minted before every
        # wrk run so none expires during one.
        self.tokens_file.write_text("\n".join(token(nhs_number) for _ in range(TOKENS)) + "\n")
        return self.tokens_file

    def body_file(self, body: dict[str, Any]) -> Path:
        path = self.dir / f"body-{body['nhs_number']}.json"
        path.write_text(json.dumps(body))
        return path

    def load(
        self,
        server: str,
        body: dict[str, Any],
        seconds: int,
        connections: int,
        rate: float | None = None,
        url: str | None = None,
    ) -> wrk.WrkResult:
        url = (url or getattr(self.world, server).url) + "/v1/record"
        body_file, tokens = self.body_file(body), self.fresh_tokens(body["nhs_number"])
        roles = self.world.roles()
        role_before = {name: cpu.tree_seconds(pid) for name, pid in roles.items()}
        before = cpu.sample()
        result = wrk.run(url, body_file, tokens, seconds=seconds, connections=connections, rate=rate)
        load = cpu.foreign(before, cpu.sample())
        # CPU per request of each process (tree): where the machine's two cores go.
        load["cpu_ms_per_request"] = {  # type: ignore[assignment]  # started above in the same run; JSON results typed loosely
            name: round((cpu.tree_seconds(pid) - role_before[name]) * 1000 / max(result.requests, 1), 2)
            for name, pid in roles.items()
        }
        result.raw["cpu"] = load
        self.cpu.append({"server": server, "connections": connections, "rate": rate, "seconds": seconds, **load})
        return result


def _merge(results: list[wrk.WrkResult]) -> dict[str, Any]:
    """Rounds of one configuration: requests and time add up; percentiles are the rounds' mean."""
    total_requests = sum(r.requests for r in results)
    total_seconds = sum(r.seconds for r in results)
    summaries = [r.summary() for r in results]
    latency = {
        k: round(sum(s["latency_ms"][k] for s in summaries) / len(summaries), 3) for k in summaries[0]["latency_ms"]
    }
    latency["max"] = max(s["latency_ms"]["max"] for s in summaries)
    statuses: dict[str, int] = {}
    for s in summaries:
        for code, count in s["statuses"].items():
            statuses[code] = statuses.get(code, 0) + count
    return {
        "requests": total_requests,
        "seconds": round(total_seconds, 3),
        "rps": round(total_requests / total_seconds, 1),
        "latency_ms": latency,
        "statuses": statuses,
        "foreign_cores_max": max(r.raw["cpu"]["foreign_cores"] for r in results),
        "cpu_ms_per_request": {
            name: round(
                sum(r.raw["cpu"]["cpu_ms_per_request"][name] * r.requests for r in results) / max(total_requests, 1), 2
            )
            for name in results[0].raw["cpu"]["cpu_ms_per_request"]
        },
        "rounds": summaries,
    }


def _only_200(result: dict[str, Any], what: str) -> None:
    bad = {k: v for k, v in result["statuses"].items() if k != "200"}
    errors = {k: v for s in result.get("rounds", [result]) for k, v in s.get("errors", {}).items() if v}
    if bad or errors:
        raise SystemExit(f"{what}: not every answer was a 200: statuses {result['statuses']}, errors {errors}")


def sanity(world: World) -> dict[str, Any]:
    """One request each: both answer the typical record, and say how big it is."""
    headers = {"Authorization": f"Bearer {token()}"}
    out = {}
    for name in ("bare", "sidecar"):
        r = requests.post(getattr(world, name).url + "/v1/record", json=TYPICAL, headers=headers, timeout=10)
        if r.status_code != 200 or r.json().get("resourceType") != "Bundle":
            raise SystemExit(f"{name} did not answer the typical record: {r.status_code} {r.text[:300]}")
        out[name] = {"resources": len(r.json().get("entry", [])), "response_bytes": len(r.content)}
    return out


def quiet(bench: Bench, phase: str) -> None:
    """Start each phase when the machine is quiet (other sessions' tests share it), if it gets quiet."""
    waited = sum(w["waited_s"] for w in bench.waits)
    if bench.quick or waited >= QUIET_BUDGET_S:
        return
    t = time.monotonic()
    load = cpu.wait_quiet(max_wait_s=min(20.0, QUIET_BUDGET_S - waited))
    bench.waits.append(
        {
            "phase": phase,
            "foreign_cores_at_start": load,
            "waited_s": round(time.monotonic() - t, 1),
            "loadavg": loadavg(),
        }
    )
    if load > 0.15:
        log(f"{phase}: machine still busy ({load:.2f} cores of other load); measuring anyway")


def phase_overhead(bench: Bench, results: dict[str, Any]) -> None:
    quiet(bench, "warm-up and max throughput")
    for server in ("bare", "sidecar"):
        bench.load(server, TYPICAL, bench.d("warmup"), 4)

    log("max throughput: each server's best concurrency")
    probes: dict[str, dict[int, float]] = {}
    for server in ("bare", "sidecar"):
        probes[server] = {c: round(bench.load(server, TYPICAL, bench.d("probe"), c).rps, 1) for c in MAX_CONNECTIONS}
    best = {server: max(tries, key=tries.__getitem__) for server, tries in probes.items()}
    log(f"max throughput at {best}")
    rounds: dict[str, list[wrk.WrkResult]] = {"bare": [], "sidecar": []}
    for _ in range(2):
        for server in rounds:
            rounds[server].append(bench.load(server, TYPICAL, bench.d("max"), best[server]))
    maxed = {server: _merge(rs) for server, rs in rounds.items()}
    for server, r in maxed.items():
        _only_200(r, f"max throughput, {server}")
    results["max_throughput"] = {
        "connections": best,
        "probe_rps_by_connections": probes,
        **maxed,
        "ratio": round(maxed["sidecar"]["rps"] / maxed["bare"]["rps"], 3),
    }

    quiet(bench, "one connection")
    log("one connection")
    rounds = {"bare": [], "sidecar": []}
    for _ in range(2):
        for server in rounds:
            rounds[server].append(bench.load(server, TYPICAL, bench.d("one"), 1))
    one = {server: _merge(rs) for server, rs in rounds.items()}
    for server, r in one.items():
        _only_200(r, f"one connection, {server}")
    results["one_connection"] = {
        **one,
        "added_ms": {
            k: round(one["sidecar"]["latency_ms"][k] - one["bare"]["latency_ms"][k], 3)
            for k in ("p50", "p90", "p99", "mean")
        },
    }

    rate = round(maxed["sidecar"]["rps"] / 2, 1)
    quiet(bench, "half load")
    log(f"half load: {rate} requests/s")
    connections = 16
    half = {
        server: _merge([bench.load(server, TYPICAL, bench.d("half"), connections, rate=rate)])
        for server in ("bare", "sidecar")
    }
    for server, r in half.items():
        _only_200(r, f"half load, {server}")
        schedule = r["rounds"][0].get("schedule", {})
        r["achieved_rps_vs_target"] = round(r["rps"] / rate, 3)
        r["late_slots"] = schedule.get("late", 0)
        r["late_ms_max"] = schedule.get("late_ms_max", 0)
    results["half_load"] = {
        "rate_rps": rate,
        "connections": connections,
        "method": (
            "wrk 4.1 has no rate option (wrk2 is not in Debian): load.lua's delay() hook holds each "
            "free connection until the next slot of an even schedule at the target rate (1 ms timer "
            "resolution, no drift); a slot claimed after its time (all connections busy) is counted "
            "as late — wrk times from the actual send, so late slots would hide queueing."
        ),
        **half,
        "added_ms": {
            k: round(half["sidecar"]["latency_ms"][k] - half["bare"]["latency_ms"][k], 3)
            for k in ("p50", "p90", "p99", "mean")
        },
    }


@dataclass
class Fetched:
    """A resident's whole record as the sidecar fetches it: every page of the search and of
    `$everything`, numbers keeping their text."""

    patient_id: str
    resources: list[dict[str, Any]]
    full_urls: list[str | None]
    pages: int
    upstream_bytes: int  # every page of $everything together


def fetch_record(upstream: str, body: dict[str, str]) -> Fetched:
    def pages(url: str, params: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], int, int]:
        entries: list[dict[str, Any]] = []
        n = size = 0
        while url:
            r = requests.get(url, params=params, timeout=60)
            r.raise_for_status()
            page = fastjson.loads_fhir(r.content)
            entries += page.get("entry") or []
            n, size, params = n + 1, size + len(r.content), None
            url = next((link["url"] for link in page.get("link") or [] if link.get("relation") == "next"), "")
        return entries, n, size

    found, _, _ = pages(
        upstream + "/Patient",
        {"identifier": f"https://fhir.nhs.uk/Id/nhs-number|{body['nhs_number']}", "birthdate": body["dob"]},
    )
    patient_id = found[0]["resource"]["id"]
    entries, n, size = pages(f"{upstream}/Patient/{patient_id}/$everything")
    return Fetched(patient_id, [e["resource"] for e in entries], [e.get("fullUrl") for e in entries], n, size)


def phase_opa(bench: Bench, results: dict[str, Any]) -> None:
    world = bench.world
    opa_input = opa_cost.decision_input(TYPICAL["nhs_number"], TYPICAL["dob"], LEVEL)
    quiet(bench, "OPA client and evaluation")
    log("OPA client cost")
    results["opa_client"] = opa_cost.clients(world.opa_url, opa_input, n=400 if bench.quick else 2000)
    log("OPA evaluation vs round trip")
    n = 100 if bench.quick else 300
    decision = opa_cost.HttpClientOpa(world.opa_url, timeout=5.0).post(opa_cost.DECISION_PATH, opa_input)["result"]
    evals = {"decision": opa_cost.opa_metrics(world.opa_url, opa_cost.DECISION_PATH, opa_input, n)}
    upstream = world.upstream.url + "/fhir"  # type: ignore[union-attr]  # started above in the same run
    questions: dict[str, dict[str, dict[str, Any]]] = {}
    calls = {"redact_typical": n, "redact_1000": max(20, n // 10)}
    for name, body in (("redact_typical", TYPICAL), ("redact_1000", world.residents[1000].body())):
        record = fetch_record(upstream, body)
        redact_in = opa_cost.redact_input(
            decision,
            {"id": record.patient_id, "nhs_number": body["nhs_number"]},
            record.resources,
            record.full_urls,
            upstream,
        )
        evals[name] = {
            "resources": len(record.resources),
            "pages": record.pages,
            **opa_cost.opa_metrics(world.opa_url, opa_cost.REDACT_PATH, redact_in, calls[name]),
        }
        facts_in = opa_cost.facts_input(world.opa_url, redact_in)
        questions[name] = {
            "today": redact_in,
            "current": redact_in,
            "facts": facts_in,
            "old": opa_cost.old_redact_input(decision, record.patient_id, record.resources),
        }
        evals[f"{name}_facts"] = {
            "resources": len(record.resources),
            "pages": record.pages,
            **opa_cost.opa_metrics(world.opa_url, opa_cost.REDACT_PATH, facts_in, calls[name]),
        }
    results["opa_eval"] = evals

    log("OPA evaluation: the floor under the redaction (floor.rego)")
    quiet(bench, "Rego floor")
    typical = questions["redact_typical"]
    results["rego_floor"] = {
        "how": (rego_floor.__doc__ or "").split("\n\n")[1].replace("\n", " "),
        "queries": rego_floor.measure(
            world.run_dir, OPA_ENV, {"resources": typical["current"], "facts": typical["facts"]}, n
        ),
    }

    log(f"OPA evaluation: the redaction policy now vs at {opa_cost.TODAY_POLICY_COMMIT}, {opa_cost.OLD_POLICY_COMMIT}")
    folder = world.run_dir / "policy-cost"
    opas = {}
    try:
        commits = (("current", None), ("today", opa_cost.TODAY_POLICY_COMMIT), ("old", opa_cost.OLD_POLICY_COMMIT))
        for policy, commit in commits:
            files = opa_cost.policy_files(folder / policy, commit)
            opas[policy] = opa_cost.start_policy_opa(f"opa-{policy}", files, world.run_dir, env=OPA_ENV)
        quiet(bench, "redaction policy: current vs today vs old")
        urls = {p: o.url for p, o in opas.items()}
        urls["facts"] = urls["current"]  # the current policy, asked with each resource's facts
        comparison = opa_cost.compare_policies(urls, questions, calls)
    except (subprocess.CalledProcessError, RuntimeError) as exc:  # e.g. a clone without that commit
        log(f"policy comparison skipped: {exc}")
        comparison = {"skipped": str(exc)}
    finally:
        for o in opas.values():
            o.stop()
    results["redact_policy_cost"] = {
        "old_commit": opa_cost.OLD_POLICY_COMMIT,
        "today_commit": opa_cost.TODAY_POLICY_COMMIT,
        "how": (
            "each policy in its own OPA (same binary and environment as the benchmark's OPA, policy folder served "
            "as an unsigned bundle), the same fetched record asked in each policy's own input shape, rounds "
            "interleaved; OPA's timer_rego_query_eval_ns. `facts`: the current policy asked with each resource's "
            "facts instead of the resource, as the sidecar asks when it has seen every resource before"
        ),
        **comparison,
    }


def phase_scaling(bench: Bench, results: dict[str, Any]) -> None:
    world = bench.world
    rows = []
    upstream = world.upstream.url + "/fhir"  # type: ignore[union-attr]  # started above in the same run
    scaling = world.start_sidecar(
        "sidecar-scaling", {**world.sidecar_env, **{f"LCR_SIDECAR_{k}": v for k, v in SCALING_SETTINGS.items()}}
    )
    try:
        baseline = scaling.memory_kib()
        quiet(bench, "record size")
        for size in SIZES:
            body = world.residents[size].body()
            log(f"record size {size}")
            record = fetch_record(upstream, body)
            # The deployed configuration (OPA_TIMEOUT_SECONDS 0.5) on this record, once:
            t = time.perf_counter()
            default = requests.post(
                world.sidecar.url + "/v1/record",  # type: ignore[union-attr]  # started above in the same run; JSON results typed loosely
                json=body,
                headers={"Authorization": f"Bearer {token(body['nhs_number'])}"},
                timeout=60,
            )
            default_ms = (time.perf_counter() - t) * 1000
            seconds = bench.d("scale") * (2 if size >= 5000 else 1)
            sidecar = _merge([bench.load("sidecar", body, seconds, 1, url=scaling.url)])
            memory = scaling.memory_kib()
            bare = _merge([bench.load("bare", body, seconds, 1)])
            rows.append(
                {
                    "generated": size,
                    "resources_fetched": len(record.resources),
                    "upstream_pages": record.pages,
                    "upstream_bytes": record.upstream_bytes,
                    "default_config": {
                        "status": default.status_code,
                        "ms": round(default_ms, 1),
                        "code": None
                        if default.status_code == 200
                        else default.json()["issue"][0]["details"]["coding"][0]["code"],
                    },
                    "sidecar": {
                        k: sidecar[k] for k in ("requests", "rps", "latency_ms", "statuses", "foreign_cores_max")
                    },
                    "bare": {k: bare[k] for k in ("requests", "rps", "latency_ms", "statuses", "foreign_cores_max")},
                    "added_p50_ms": round(sidecar["latency_ms"]["p50"] - bare["latency_ms"]["p50"], 3),
                    "sidecar_worker_peak_rss_mib": round(memory["peak_rss_kib"] / 1024, 1),
                    "sidecar_worker_rss_after_mib": round(memory["rss_kib"] / 1024, 1),
                }
            )
        # Bounded per request: after the biggest record, more of them must not grow the workers.
        before = scaling.memory_kib()
        bench.load("sidecar", world.residents[SIZES[-1]].body(), bench.d("scale") * 2, 1, url=scaling.url)
        after = scaling.memory_kib()
    finally:
        scaling.process.stop()
    results["scaling"] = {
        "opa_timeout_seconds": SCALING_OPA_TIMEOUT_SECONDS,
        "settings": SCALING_SETTINGS,
        "worker_rss_mib_at_start": round(baseline["rss_kib"] / 1024, 1),
        "rows": rows,
        "repeat_biggest": {
            "peak_rss_mib_before": round(before["peak_rss_kib"] / 1024, 1),
            "peak_rss_mib_after": round(after["peak_rss_kib"] / 1024, 1),
            "rss_mib_after": round(after["rss_kib"] / 1024, 1),
        },
    }


def _pct(values: list[float], q: float) -> float | None:
    return values[min(len(values) - 1, int(len(values) * q / 100))] if values else None


def phase_opa_down(bench: Bench, results: dict[str, Any]) -> None:
    world = bench.world
    body = json.dumps(TYPICAL).encode()
    out: dict[str, Any] = {}

    def timed(n: int) -> list[dict[str, Any]]:
        samples = []
        for _ in range(n):
            headers = {"Authorization": f"Bearer {token()}", "Content-Type": "application/json"}
            t = time.perf_counter()
            r = requests.post(world.sidecar.url + "/v1/record", data=body, headers=headers, timeout=30)  # type: ignore[union-attr]  # started above in the same run
            ms = (time.perf_counter() - t) * 1000
            code = r.json()["issue"][0]["details"]["coding"][0]["code"] if r.status_code != 200 else None
            samples.append({"status": r.status_code, "code": code, "ms": round(ms, 2)})
        return samples

    log("OPA hung (SIGSTOP)")
    world.pause_opa()
    try:
        time.sleep(0.2)
        hung = timed(10 if bench.quick else 40)
    finally:
        world.resume_opa()
    # Each worker's first question waits the OPA timeout, which opens that worker's
    # circuit; from then on the answer is an immediate 503 (sidecar/breaker.py).
    waited = [s for s in hung if s["ms"] > 50]
    rest = sorted(s["ms"] for s in hung if s["ms"] <= 50)
    out["hung"] = {
        "what": "OPA process stopped with SIGSTOP: connections accepted by the kernel, never answered",
        "samples": hung,
        "max_ms": max(s["ms"] for s in hung),
        "waited_the_timeout": [s["ms"] for s in waited],
        "after_circuit_open_ms": {
            "requests": len(rest),
            "p50": _pct(rest, 50),
            "p99": _pct(rest, 99),
            "max": rest[-1] if rest else None,
        },
        "statuses": sorted({s["status"] for s in hung}),
    }
    world.wait_sidecar_ready()
    time.sleep(1.5)

    log("OPA killed")
    world.kill_opa()
    first = timed(1)[0]
    down = _merge([bench.load("sidecar", TYPICAL, bench.d("opa_down"), 1)])
    out["killed"] = {
        "what": "OPA process killed: connection refused",
        "first_request": first,
        "sequential": {k: down[k] for k in ("requests", "latency_ms", "statuses")},
    }
    results["opa_down"] = out


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        mem_kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def code_version() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = [
        line[3:]
        for line in git("status", "--porcelain").splitlines()
        if line[3:].startswith(("sidecar/", "audit_store/", "policies/"))
    ]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_in_hot_path": dirty}


def loadavg() -> list[float]:
    """The machine's load average over 1, 5 and 15 minutes (2 cores: above 2 is queueing)."""
    return [round(x, 2) for x in os.getloadavg()]


def log(message: str) -> None:
    print(f"[bench.overhead {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short phases: a smoke run, not figures")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for results.json and RESULTS.md")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for both servers (deployed: 2)")
    parser.add_argument("--worker-class", default=None, help="gunicorn worker class for both (deployed: sync)")
    parser.add_argument("--threads", type=int, default=None, help="gunicorn threads per worker (gthread)")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs, audit.db)")
    parser.add_argument(
        "--skip",
        default="",
        metavar="PHASES",
        help="comma-separated phases to leave out: opa, scaling, opa_down (e.g. first-views runs)",
    )
    parser.add_argument(
        "--sidecar-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the sidecar, e.g. LCR_SIDECAR_REDACT_CACHE_ENTRIES=0 (repeatable)",
    )
    args = parser.parse_args(argv)
    sidecar_env = dict(item.split("=", 1) for item in args.sidecar_env)

    started = time.monotonic()
    (ROOT / "var").mkdir(exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-overhead-", dir=ROOT / "var"))  # same disk as var/audit.db
    world = World(run_dir, gunicorn_args(args.workers, args.worker_class, args.threads))
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "code": code_version(),
        "tools": {"wrk": wrk.wrk_version()},
        "loadavg": {"start": loadavg()},
    }
    try:
        log(f"starting OPA, bundle server, demo upstream, sidecar and bare proxy in {run_dir}")
        world.start(SIZES, sidecar_env)
        results["setup"] = {
            "policy_revision": world.revision,
            "gunicorn": " ".join(world.gunicorn_args),
            "sidecar_env": sidecar_env,
            "upstream": (
                "the demo upstream, 20 entries a page like HAPI FHIR JPA, each resident's $everything run once "
                "and later pages served from it (bench/overhead/paged_upstream.py); the bare proxy follows every "
                "page as the sidecar does and answers the whole record as one Bundle"
            ),
            "request": {"resident": TYPICAL, "access_level": LEVEL, "endpoint": "POST /v1/record"},
            "answers": sanity(world),
            "opa": subprocess.run(
                [world.opa.proc.args[0], "version"],  # type: ignore[index,list-item,union-attr]  # started above
                capture_output=True,
                text=True,
            ).stdout.splitlines()[0],
        }
        bench = Bench(world, args.quick)
        log("floor: loopback and fsync")
        results["floor"] = {
            **floor.loopback(1000 if args.quick else 3000),
            **floor.fsync(run_dir, 100 if args.quick else 300),
        }
        skip = set(filter(None, args.skip.split(",")))
        phase_overhead(bench, results)
        if "opa" not in skip:
            phase_opa(bench, results)
        if "scaling" not in skip:
            phase_scaling(bench, results)
        if "opa_down" not in skip:
            phase_opa_down(bench, results)
        results["cpu"] = {
            "foreign_cores_max": max(c["foreign_cores"] for c in bench.cpu),
            "steal_cores_max": max(c["steal_cores"] for c in bench.cpu),
            "per_load_run": bench.cpu,
            "waits_for_quiet": bench.waits,
        }
    finally:
        world.stop()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    results["loadavg"]["end"] = loadavg()
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "RESULTS.md").write_text(report.render(results))
    log(f"done in {results['wall_seconds']} s: {args.out / 'results.json'}, {args.out / 'RESULTS.md'}")
    print(report.table(results))


if __name__ == "__main__":
    main()
