"""The issue-14 table: today's sidecar against this one, each measured by `python -m bench.overhead`
on the same machine in back-to-back runs (their ratios to the bare proxy measured within each run).

    python -m bench.overhead.compare DIR...                  # DIR/{today,new,today-first-views,
                                                             #   new-first-views-never-seen,new-first-views-seen}.json
                                                             # → one table per DIR on stdout
    python -m bench.overhead.compare --append RESULTS.md DIR...   # the same, appended as a section

`today` is main before the change (its own venv and worktree), `new` this tree; the first-views
runs set REDACT_CACHE_ENTRIES=0 (and, for "never seen", REDACT_FACTS_CACHE_ENTRIES=0).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RUNS = ("today", "new", "today-first-views", "new-first-views-never-seen", "new-first-views-seen")


def load(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        name: json.loads((folder / f"{name}.json").read_text()) for name in RUNS if (folder / f"{name}.json").exists()
    }


def _ms(us: float) -> str:
    return f"{us / 1000:.1f} ms" if us >= 1000 else f"{us:.0f} µs"


def table(r: dict[str, dict[str, Any]]) -> str:
    today, new = r["today"], r["new"]
    fv_t, fv_0, fv_1 = r.get("today-first-views"), r.get("new-first-views-never-seen"), r.get("new-first-views-seen")
    rows: list[tuple[str, str, str, str]] = []
    pc = new["redact_policy_cost"]
    for record, label, target in (
        ("redact_typical", "typical record", "≤ 2 ms (≤ 30 µs a resource)"),
        ("redact_1000", "1,000-resource record", "≤ 30 ms"),
    ):
        c = pc[record]
        n = c["resources"]
        rows.append(
            (
                f"OPA evaluation, redaction of the {label} ({n} resources; same run, policies side by side)",
                f"{_ms(c['today']['opa_eval_us_p50'])} ({c['today']['opa_eval_us_p50'] / n:.0f} µs a resource)",
                f"resources never seen: {_ms(c['current']['opa_eval_us_p50'])} "
                f"({c['eval_ratio_to_today']['current']:.2f}×); seen before (facts kept): "
                f"{_ms(c['facts']['opa_eval_us_p50'])} ({c['eval_ratio_to_today']['facts']:.2f}×, "
                f"{c['facts']['opa_eval_us_p50'] / n:.0f} µs a resource)",
                target,
            )
        )
    rows.append(
        (
            "OPA evaluation, access decision (p50)",
            _ms(today["opa_eval"]["decision"]["opa_eval_us_p50"]),
            _ms(new["opa_eval"]["decision"]["opa_eval_us_p50"]),
            "≤ 100 µs",
        )
    )

    def ratio(x: dict[str, Any]) -> str:
        m = x["max_throughput"]
        return f"{m['ratio']:.2f}× ({m['sidecar']['rps']:.0f} vs {m['bare']['rps']:.0f} req/s)"

    if fv_t and fv_0:
        rows.append(
            (
                "throughput ÷ bare proxy, first views",
                ratio(fv_t),
                f"never seen: {ratio(fv_0)}" + (f"; resources seen before: {ratio(fv_1)}" if fv_1 else ""),
                "≥ 0.75×",
            )
        )
    rows.append(("throughput ÷ bare proxy, records opened again", ratio(today), ratio(new), "≥ 0.9×"))

    def added(x: dict[str, Any]) -> str:
        a = x["one_connection"]["added_ms"]
        return f"{a['p50']:.1f} / {a['p99']:.1f} ms"

    rows.append(
        ("added latency, 1 connection, p50 / p99 (records opened again)", added(today), added(new), "≤ 1.5 / 3 ms")
    )
    if fv_t and fv_0:
        rows.append(
            (
                "added latency, 1 connection, p50 / p99 (first views)",
                added(fv_t),
                f"never seen: {added(fv_0)}" + (f"; seen before: {added(fv_1)}" if fv_1 else ""),
                "≤ 1.5 / 3 ms",
            )
        )

    def half(x: dict[str, Any]) -> str:
        h = x["half_load"]
        return f"{h['added_ms']['p99']:.1f} ms at {h['rate_rps']:.0f} req/s"

    rows.append(("added p99 at half the sidecar's max (records opened again)", half(today), half(new), "≤ 3 ms"))
    if fv_t and fv_0:
        rows.append(
            (
                "added p99 at half the sidecar's max (first views)",
                half(fv_t),
                f"never seen: {half(fv_0)}" + (f"; seen before: {half(fv_1)}" if fv_1 else ""),
                "≤ 3 ms",
            )
        )

    def cpu(x: dict[str, Any]) -> str:
        c = x["max_throughput"]["sidecar"]["cpu_ms_per_request"]
        return f"sidecar {c.get('sidecar', 0):.1f} + OPA {c.get('opa', 0):.1f} ms"

    rows.append(("CPU per view at max throughput (records opened again)", cpu(today), cpu(new), "—"))
    if fv_t and fv_0:
        rows.append(
            (
                "CPU per view at max throughput (first views)",
                cpu(fv_t),
                f"never seen: {cpu(fv_0)}" + (f"; seen before: {cpu(fv_1)}" if fv_1 else ""),
                "—",
            )
        )

    def floor(x: dict[str, Any]) -> str:
        f = x["floor"]
        d = x.get("opa_eval", {}).get("decision", {})
        rt = f", OPA decision round trip {d['round_trip_us_p50']:.0f} µs" if d else ""
        return f"loopback round trip {f['round_trip_us']['p50']:.0f} µs, fsync {f['fsync_4k_us']['p50']:.0f} µs{rt}"

    rows.append(("floor (same runs)", floor(today), floor(new), "—"))
    lines = ["| figure | today | new | target |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    runs = "; ".join(
        f"{name} {x['date'][11:16]} UTC, commit {x['code']['commit']}, load {x['loadavg']['start']} → "
        f"{x['loadavg']['end']}, foreign cores ≤ {x['cpu']['foreign_cores_max']:.2f}"
        for name, x in r.items()
    )
    return "\n".join(lines) + f"\n\nRuns: {runs}.\n"


SECTION = """## Today vs this change (issue 14)

Written by `python -m bench.overhead.compare` from back-to-back runs of `python -m bench.overhead` on this
machine: today's sidecar (main before the change, in its own worktree and venv) and this one, each against the
bare proxy in the same run; first views with `REDACT_CACHE_ENTRIES=0` (and, for records never seen,
`REDACT_FACTS_CACHE_ENTRIES=0`; "seen before": the same record again, so every resource's facts are kept). Other
sessions used most of the machine's 2 cores during these runs (foreign cores and load averages below): compare
ratios within a run, not absolute figures across runs. The OPA evaluation rows compare the policies side by side
in one run (each in its own OPA with the benchmark's environment, rounds interleaved).
"""


def main(argv: list[str]) -> None:
    append = None
    if argv and argv[0] == "--append":
        append, argv = Path(argv[1]), argv[2:]
    parts = [SECTION]
    for n, folder in enumerate(argv, 1):
        parts += [f"### Run {n}", "", table(load(Path(folder)))]
    text = "\n".join(parts)
    if append is None:
        print(text)
    else:
        append.write_text(append.read_text().rstrip("\n") + "\n\n" + text)


if __name__ == "__main__":
    main(sys.argv[1:])
