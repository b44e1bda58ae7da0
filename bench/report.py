"""Shared bits of the benchmarks: machine facts, percentiles, and the results files."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sqlite3
import subprocess
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average_at_start": [round(x, 2) for x in load],
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": _git(),
    }


def _git() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def percentile(sorted_values: list[float], p: float, scale: float = 1.0) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return round(sorted_values[k] * scale, 3)


def write_result(folder: Path, name: str, result: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(result, indent=2) + "\n")
    summarise(folder)
    return path


def summarise(folder: Path) -> None:
    """bench/results/README.md from whatever results are there."""
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m bench.audit` and `python -m bench.replay` (`make bench`); "
        "the JSON files beside this one hold every number.",
        "",
    ]
    append = _load(folder / "audit-append.json")
    if append:
        m, f = append["machine"], append["floor"]
        lines += [
            "## Durable append (group commit, hash chain)",
            "",
            f"{m['when']}, {m['cpus']} × {m['cpu']}, Python {m['python']}, SQLite {m['sqlite']}, "
            f"load average at start {m['load_average_at_start']}; "
            f"{append['load']['processes']} processes × {append['load']['threads_per_process']} threads, "
            f"{append['load']['seconds_per_variant']} s per variant.",
            "",
            f"Floor on this disk: one fsync p50 {f['fsync_ms']['p50']} ms, p99 {f['fsync_ms']['p99']} ms "
            f"(one commit per row could not beat ≈{f['one_commit_per_row_ceiling_per_second']:,}/s).",
            "",
            "| variant | rows/s | rows/commit | commit p50 ms | commit p99 ms | append p50 ms | append p99 ms |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for v in append["variants"].values():
            lines.append(
                f"| {v['variant']} | {v['rows_per_second']:,.0f} | {v['rows_per_commit']} | {v['commit_ms']['p50']} | "
                f"{v['commit_ms']['p99']} | {v['append_ms']['p50']} | {v['append_ms']['p99']} |"
            )
        r, t = append["ratios"], append["targets"]
        lines += [
            "",
            f"Unchained ÷ chained: {r['unchained_over_chained_rows_per_second']}× (target ≤ 2×); "
            f"group commit ÷ one commit per row: {r['chained_over_one_per_commit']}×.",
            "",
            "Targets: " + ", ".join(f"`{k}` {'met' if ok else 'NOT met'}" for k, ok in t.items()),
            "",
        ]
        lines += [f"- {note}" for note in append.get("notes", [])] + [""]
    fleet = _load(folder / "audit-fleet.json")
    if fleet:
        m, f = fleet["machine"], fleet["floor"]
        load, sq, pg = fleet["load"], f["sqlite_folder"]["fsync_ms"], f["postgresql_datadir"]["fsync_ms"]
        lines += [
            "## Durable append from several writer processes: PostgreSQL against SQLite "
            "(`python -m bench.audit_fleet`)",
            "",
            f"{m['when']}, {m['cpus']} × {m['cpu']}, load average at start {m['load_average_at_start']}; "
            f"{load['threads_per_writer']} threads per writer process, {load['seconds']} s per run; "
            "one chain per store (SQLite: one file; PostgreSQL: one database on a throwaway cluster, "
            "fsync and synchronous commit on).",
            "",
            f"Floor: a 4 KiB write + fsync p50 {sq['p50']} / p99 {sq['p99']} ms (SQLite's folder), "
            f"{pg['p50']} / {pg['p99']} ms (PostgreSQL's data folder).",
            "",
            "| store | writers | rows/s | rows/commit | commit p50 ms | commit p99 ms "
            "| append p50 ms | append p99 ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for store in ("sqlite", "postgresql"):
            for v in fleet[store]:
                commit, append = v["commit_ms"], v["append_ms"]
                lines.append(
                    f"| {store} | {v['writers']} | {v['rows_per_second']:,.0f} | {v['rows_per_commit']} "
                    f"| {commit['p50']} | {commit['p99']} | {append['p50']} | {append['p99']} |"
                )
        ratios = ", ".join(f"{k}: {v}×" for k, v in fleet["ratio_postgresql_to_sqlite"].items())
        lines += ["", f"PostgreSQL ÷ SQLite rows/s by writers: {ratios}", ""]
    for path in sorted(folder.glob("replay-*.json")):
        res = _load(path)
        if not res:
            continue
        m = res["machine"]
        lines += [
            f"## Replay and impact, {res['rows']:,} logged decisions",
            "",
            f"{m['when']}, {m['cpus']} × {m['cpu']}, load average at start {m['load_average_at_start']}; "
            f"OPA {res.get('opa_version', '?')}, policy revision `{res['revision']}`; "
            f"log generated in {res['generate_seconds']} s (not timed below).",
            "",
            "| run | decisions | seconds | decisions/s | OPA evaluations | OPA calls | peak RSS python MB | peak RSS "
            "opa MB | result |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for run in res["runs"]:
            lines.append(
                f"| {run['name']} | {run['decisions']:,} | {run['seconds']} | {run['decisions_per_second']:,.0f} | "
                f"{run['evaluations']:,} | {run['opa_calls']:,} | {run['peak_rss_mb']['python']} | "
                f"{run['peak_rss_mb']['opa']} | {run['result']} |"
            )
        lines += [""] + [f"- {note}" for note in res.get("notes", [])] + [""]
    (folder / "README.md").write_text("\n".join(lines))


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
