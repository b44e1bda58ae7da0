"""results.json → RESULTS.md: the figure/target/measured table, then the details."""

from __future__ import annotations

from typing import Any


def _ok(passed: bool) -> str:
    return "✅" if passed else "❌"


def _conns(connections: Any) -> str:
    if isinstance(connections, dict):
        return f"sidecar {connections['sidecar']}, bare {connections['bare']}"
    return str(connections)


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(figure, target, measured, met?) — met is None where there is no target."""
    out: list[tuple[str, str, str, bool | None]] = []
    mt, one, half = r["max_throughput"], r["one_connection"], r["half_load"]
    out.append(
        (
            "Throughput, sidecar ÷ bare proxy",
            "≥ 0.75×",
            f"{mt['ratio']:.2f}× ({mt['sidecar']['rps']:.0f} vs {mt['bare']['rps']:.0f} req/s, at their best of "
            f"{', '.join(str(c) for c in mt.get('probe_rps_by_connections', {}).get('bare', {})) or '?'} connections: "
            f"{_conns(mt['connections'])})",
            mt["ratio"] >= 0.75,
        )
    )
    out.append(
        (
            "Added latency, 1 connection, p50",
            "≤ 0.5 ms",
            f"{one['added_ms']['p50']:.2f} ms ({one['sidecar']['latency_ms']['p50']:.2f} vs "
            f"{one['bare']['latency_ms']['p50']:.2f})",
            one["added_ms"]["p50"] <= 0.5,
        )
    )
    out.append(
        (
            "Added latency, 1 connection, p99",
            "≤ 1.5 ms",
            f"{one['added_ms']['p99']:.2f} ms ({one['sidecar']['latency_ms']['p99']:.2f} vs "
            f"{one['bare']['latency_ms']['p99']:.2f})",
            one["added_ms"]["p99"] <= 1.5,
        )
    )
    out.append(
        (
            "Added latency at half the sidecar's max, p99",
            "≤ 3 ms",
            f"{half['added_ms']['p99']:.2f} ms at {half['rate_rps']:.0f} req/s "
            f"({half['sidecar']['latency_ms']['p99']:.2f} vs {half['bare']['latency_ms']['p99']:.2f}; "
            f"late slots {half['sidecar']['late_slots']}/{half['bare']['late_slots']})",
            half["added_ms"]["p99"] <= 3,
        )
    )
    down = r.get("opa_down")
    if down:
        killed = down["killed"]
        worst = max(killed["first_request"]["ms"], killed["sequential"]["latency_ms"]["max"])
        out.append(
            (
                "Deny when OPA is down (killed), time to 503",
                "≤ 50 ms",
                f"first {killed['first_request']['ms']:.1f} ms, then p50 "
                f"{killed['sequential']['latency_ms']['p50']:.1f} / "
                f"p99 {killed['sequential']['latency_ms']['p99']:.1f} / max "
                f"{killed['sequential']['latency_ms']['max']:.1f} ms",
                worst <= 50,
            )
        )
        hung = down["hung"]
        after = hung.get("after_circuit_open_ms")
        if after and after["requests"]:
            waited = hung["waited_the_timeout"]
            out.append(
                (
                    "Deny when OPA hangs (SIGSTOP), time to 503",
                    "≤ 50 ms",
                    f"{len(waited)} of {len(hung['samples'])} waited the OPA timeout "
                    f"({', '.join(str(round(w)) for w in waited)} ms: "
                    f"each worker's first question opens its circuit), then p50 {after['p50']:.1f} / p99 "
                    f"{after['p99']:.1f} / "
                    f"max {after['max']:.1f} ms",
                    len(waited) <= _workers(r) and after["max"] <= 50 and set(hung["statuses"]) == {503},
                )
            )
        else:
            out.append(
                (
                    "Deny when OPA hangs (SIGSTOP), time to 503",
                    "≤ 50 ms",
                    f"max {hung['max_ms']:.0f} ms ({', '.join(str(round(s['ms'])) for s in hung['samples'])})",
                    hung["max_ms"] <= 50,
                )
            )
    sc = r.get("scaling")
    if sc:
        rws = sc["rows"]
        small, big = rws[-2], rws[-1]
        growth = (big["sidecar"]["latency_ms"]["p50"] / small["sidecar"]["latency_ms"]["p50"]) / (
            big["resources_fetched"] / small["resources_fetched"]
        )
        out.append(
            (
                "Latency growth with record size (p50 per resource, 5,000 vs 1,000)",
                "linear or better (≤ 1.0)",
                f"{growth:.2f} — "
                + ", ".join(f"{x['generated']}: {x['sidecar']['latency_ms']['p50']:.1f} ms" for x in rws),
                growth <= 1.0,
            )
        )
        rep = sc["repeat_biggest"]
        out.append(
            (
                "Worker peak RSS, repeated 5,000-resource requests",
                "bounded (no growth)",
                f"{rep['peak_rss_mib_before']:.0f} → {rep['peak_rss_mib_after']:.0f} MiB; per size: "
                + ", ".join(f"{x['generated']}: {x['sidecar_worker_peak_rss_mib']:.0f}" for x in rws),
                rep["peak_rss_mib_after"] <= rep["peak_rss_mib_before"] * 1.05,
            )
        )
    if "cpu" in r:
        c = r["cpu"]
        out.append(
            (
                "Other load on the machine during the load runs (max)",
                "≈ 0 cores",
                f"{c['foreign_cores_max']:.2f} cores foreign, {c['steal_cores_max']:.2f} stolen",
                c["foreign_cores_max"] <= 0.1,
            )
        )
    fl = r["floor"]
    out.append(
        (
            "Floor: loopback TCP round trip (kept alive), p50",
            "—",
            f"{fl['round_trip_us']['p50']:.0f} µs (p99 {fl['round_trip_us']['p99']:.0f})",
            None,
        )
    )
    out.append(
        ("Floor: connect + round trip + close, p50", "—", f"{fl['connect_round_trip_close_us']['p50']:.0f} µs", None)
    )
    out.append(
        (
            "Floor: fsync 4 KiB, audit store's disk, p50",
            "—",
            f"{fl['fsync_4k_us']['p50']:.0f} µs (p99 {fl['fsync_4k_us']['p99']:.0f})",
            None,
        )
    )
    oc = r.get("opa_client")
    if oc:
        hot = oc["sidecar_PolicyClient.decide"]["cpu_us_per_call"]
        lib = oc["opa_python_client.query_rule"]["cpu_us_per_call"]
        hc = oc["http.client (kept alive)"]["cpu_us_per_call"]
        out.append(
            (
                "CPU per OPA decision call: the sidecar's PolicyClient.decide / opa-python-client / http.client",
                "—",
                f"{hot:.0f} / {lib:.0f} / {hc:.0f} µs",
                None,
            )
        )
    ev = r.get("opa_eval")
    if ev:
        d = ev["decision"]
        out.append(
            (
                "OPA decision: evaluation vs round trip, p50",
                "—",
                f"{d['opa_eval_us_p50']:.0f} µs in OPA's evaluator, {d['round_trip_us_p50']:.0f} µs round trip",
                None,
            )
        )
        rt = ev["redact_typical"]
        out.append(
            (
                "OPA redaction (typical record): evaluation vs round trip, p50",
                "—",
                f"{rt['opa_eval_us_p50']:.0f} µs vs {rt['round_trip_us_p50']:.0f} µs ({rt['resources']} resources, "
                f"{rt['request_bytes'] // 1024} KiB sent)",
                None,
            )
        )
    pc = r.get("redact_policy_cost")
    if pc and "skipped" not in pc:
        for record, label in (("redact_typical", "typical record"), ("redact_1000", "1,000-resource record")):
            c = pc.get(record)
            if c and "today" in c:
                out.append(
                    (
                        f"OPA redaction eval, {label}: this policy vs {pc['today_commit']}, p50",
                        "—",
                        f"{c['current']['opa_eval_us_p50']:.0f} vs {c['today']['opa_eval_us_p50']:.0f} µs "
                        f"({c['eval_ratio_to_today']['current']:.2f}×) for resources never seen; "
                        f"{c['facts']['opa_eval_us_p50']:.0f} µs ({c['eval_ratio_to_today']['facts']:.2f}×, "
                        f"{c['facts']['opa_eval_us_p50'] / c['resources']:.0f} µs a resource) with each "
                        "resource's facts kept from before",
                        None,
                    )
                )
            if c and "old" in c:
                out.append(
                    (
                        f"OPA redaction eval, {label}: current policy vs {pc['old_commit']}, p50",
                        "—",
                        f"{c['current']['opa_eval_us_p50']:.0f} vs {c['old']['opa_eval_us_p50']:.0f} µs = "
                        f"{c['eval_ratio_current_to_old']:.2f}× (+{c['eval_added_us']:.0f} µs; {c['resources']} "
                        "resources, "
                        f"{c['eval_us_per_resource']['current']:.0f} vs {c['eval_us_per_resource']['old']:.0f} µs "
                        "each)",
                        None,
                    )
                )
    return out


def table(r: dict[str, Any]) -> str:
    date = r["date"][:10]
    m = r["machine"]
    machine = f"{m['cores']} cores, {m['memory_gib']:.0f} GiB, {m['cpu'] or 'unknown CPU'}"
    lines = ["| figure | target | measured | met | date | machine |", "|---|---|---|---|---|---|"]
    for figure, target, measured, met in rows(r):
        lines.append(f"| {figure} | {target} | {measured} | {'' if met is None else _ok(met)} | {date} | {machine} |")
    return "\n".join(lines) + "\n"


def _lat(x: dict[str, Any]) -> str:
    lat = x["latency_ms"]
    return (
        f"{x['rps']:.1f} req/s; p50 {lat['p50']:.2f}, p90 {lat['p90']:.2f}, p99 {lat['p99']:.2f}, "
        f"max {lat['max']:.2f} ms"
    )


def render(r: dict[str, Any]) -> str:
    s = r["setup"]
    out = [
        "# Overhead benchmark: the sidecar against a bare proxy",
        "",
        "Written by `python -m bench.overhead` (bench/overhead/); do not edit by hand.",
        f"{'**Quick smoke run: not figures.** ' if r.get('quick') else ''}Run {r['date']} on "
        f"{r['machine']['hostname']} ({r['machine']['cores']} cores, {r['machine']['memory_gib']} GiB, "
        f"{r['machine']['cpu']}, Linux {r['machine']['kernel']}, Python {r['machine']['python']}), "
        f"commit {r['code']['commit']}"
        + (
            f" with uncommitted changes in {', '.join(r['code']['uncommitted_in_hot_path'])}"
            if r["code"]["uncommitted_in_hot_path"]
            else ""
        )
        + f"; {s['opa']}, {r['tools']['wrk']}; whole run {r['wall_seconds']:.0f} s"
        + (
            f"; load average (1, 5, 15 min) {r['loadavg']['start']} at the start, "
            + "".join(
                f"{w['loadavg']} before {w['phase']}, "
                for w in r.get("cpu", {}).get("waits_for_quiet", [])
                if "loadavg" in w
            )
            + f"{r['loadavg'].get('end')} at the end"
            if "loadavg" in r
            else ""
        )
        + ".",
        "",
        f"Both servers: `gunicorn {s['gunicorn']}`"
        + (f"; sidecar environment {s['sidecar_env']}" if s.get("sidecar_env") else "")
        + ". Request: `POST /v1/record` for resident "
        f"{s['request']['resident']['nhs_number']} as `{s['request']['access_level']}` — the sidecar returns "
        f"{s['answers']['sidecar']['resources']} resources ({s['answers']['sidecar']['response_bytes']} bytes), "
        f"the bare proxy the upstream's {s['answers']['bare']['resources']} "
        f"({s['answers']['bare']['response_bytes']} bytes). "
        + (f"Upstream: {s['upstream']}. " if s.get("upstream") else "")
        + "Load: wrk in its own process, one token per request from 256 minted up front.",
        "",
        table(r),
        "## Details",
        "",
        "### Throughput and latency",
        "",
        "- Max throughput (closed loop, 2 rounds interleaved, each at its best concurrency — "
        f"{_conns(r['max_throughput']['connections'])} "
        f"connections; req/s by connections tried: {r['max_throughput'].get('probe_rps_by_connections', {})}): "
        f"bare {_lat(r['max_throughput']['bare'])}; sidecar {_lat(r['max_throughput']['sidecar'])}.",
        f"- One connection: bare {_lat(r['one_connection']['bare'])}; sidecar {_lat(r['one_connection']['sidecar'])}.",
        f"- Half load, {r['half_load']['rate_rps']} req/s on {r['half_load']['connections']} connections: "
        f"bare {_lat(r['half_load']['bare'])} (late slots {r['half_load']['bare']['late_slots']}); "
        f"sidecar {_lat(r['half_load']['sidecar'])} (late slots {r['half_load']['sidecar']['late_slots']}, "
        f"worst {r['half_load']['sidecar']['late_ms_max']} ms).",
        f"- Constant rate, how: {r['half_load']['method']}",
        "",
        "CPU per request, by process, at max throughput (ms; the machine has 2 cores, so 2,000 ms of CPU per second "
        "is the ceiling for everything together, wrk included):",
        "",
        "| server under load | sidecar | bare proxy | OPA | demo upstream |",
        "|---|---|---|---|---|",
        *[
            f"| {name} | {v.get('sidecar', 0):.1f} | {v.get('bare', 0):.1f} | {v.get('opa', 0):.1f} | "
            f"{v.get('upstream', 0):.1f} |"
            for name, v in ((n, r["max_throughput"][n].get("cpu_ms_per_request", {})) for n in ("bare", "sidecar"))
        ],
        "",
    ]
    if "opa_client" in r:
        out += [
            "### The OPA client on the hot path (same decision, one kept-alive connection each)",
            "",
            "| client | CPU µs per call | wall µs p50 |",
            "|---|---|---|",
        ]
        for name, v in r["opa_client"].items():
            out.append(f"| {name} | {v['cpu_us_per_call']:.0f} | {v['wall_us_p50']:.0f} |")
        out.append("")
    if "opa_eval" in r:
        out += [
            "### OPA's own evaluation time (`?metrics=true`) against the round trip",
            "",
            "| query | resources (upstream pages) | bytes sent | eval µs p50 | input parse µs p50 | OPA handler µs "
            "p50 | round trip µs p50 |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, v in r["opa_eval"].items():
            pages = f" ({v['pages']})" if "pages" in v else ""
            out.append(
                f"| {name} | {v.get('resources', '—')}{pages} | {v['request_bytes']} | {v['opa_eval_us_p50']:.0f} | "
                f"{v['opa_input_parse_us_p50']:.0f} | {v['opa_handler_us_p50']:.0f} | {v['round_trip_us_p50']:.0f} |"
            )
        out.append("")
    pc = r.get("redact_policy_cost")
    if pc:
        out += [
            "### The redaction policy in OPA: this policy, asked with resources and with their facts, against the "
            f"policies at {pc.get('today_commit')} and {pc['old_commit']}",
            "",
        ]
        if "skipped" in pc:
            out += [f"Not measured: {pc['skipped']}", ""]
        else:
            out += [
                f'How: {pc["how"]}. Same records as above; "kept" is how many resources each policy lets a '
                f"`{s['request']['access_level']}` see.",
                "",
                "| record | resources | policy | bytes sent | kept | eval µs p50 | eval µs p90 | µs per resource | "
                "input parse µs p50 | round trip µs p50 | calls |",
                "|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            for record in ("redact_typical", "redact_1000"):
                c = pc.get(record)
                if not c:
                    continue
                for policy in [p for p in ("today", "current", "facts", "old") if p in c]:
                    v = c[policy]
                    name = {"today": pc.get("today_commit"), "old": pc["old_commit"]}.get(policy, policy)
                    out.append(
                        f"| {record} | {c['resources']} | {name} | "
                        f"{v['request_bytes']} | {v['kept']} | {v['opa_eval_us_p50']:.0f} | "
                        f"{v['opa_eval_us_p90']:.0f} | "
                        f"{c['eval_us_per_resource'][policy]:.1f} | {v['opa_input_parse_us_p50']:.0f} | "
                        f"{v['round_trip_us_p50']:.0f} | {v['calls']} |"
                    )
            out += [
                "",
                "Evaluation, current ÷ old: "
                + "; ".join(
                    f"{record} {pc[record]['eval_ratio_current_to_old']:.2f}× (+{pc[record]['eval_added_us']:.0f} µs)"
                    for record in ("redact_typical", "redact_1000")
                    if record in pc
                )
                + ".",
                "",
            ]
            if all("eval_ratio_to_today" in pc[r] for r in ("redact_typical", "redact_1000") if r in pc):
                out += [
                    f"Evaluation ÷ the policy at {pc['today_commit']}: "
                    + "; ".join(
                        f"{record} " + ", ".join(f"{p} {x:.2f}×" for p, x in pc[record]["eval_ratio_to_today"].items())
                        for record in ("redact_typical", "redact_1000")
                        if record in pc
                    )
                    + ".",
                    "",
                ]
    rf = r.get("rego_floor")
    if rf:
        floor_ev: dict[str, Any] = r.get("opa_eval", {})
        floor_policy = {
            "resources": floor_ev.get("redact_typical", {}).get("opa_eval_us_p50"),
            "facts": floor_ev.get("redact_typical_facts", {}).get("opa_eval_us_p50"),
        }
        out += [
            "### The floor under the redaction: OPA's evaluator on the typical record, whatever the policy",
            "",
            f"How: {rf['how']}",
            "",
            "| query (bench/overhead/floor.rego) | eval µs p50 | resources | µs per resource |",
            "|---|---|---|---|",
        ]
        for row in rf["queries"].values():
            out.append(
                f"| {row['what']} | {row['eval_us_p50']:.0f} | {row['resources']} | {row['us_per_resource']:.1f} |"
            )
        if floor_policy["resources"] and floor_policy["facts"]:
            out.append(
                f"| *the redaction policy, resources never seen / facts kept* | {floor_policy['resources']:.0f} / "
                f"{floor_policy['facts']:.0f} | {rf['queries']['walked']['resources']} | "
                f"{floor_policy['resources'] / rf['queries']['walked']['resources']:.1f} / "
                f"{floor_policy['facts'] / rf['queries']['walked']['resources']:.1f} |"
            )
        out.append("")
    if "scaling" in r:
        out += [
            "### Record size (one connection)",
            "",
            "Latency from a sidecar started with "
            + (
                ", ".join(f"{k}={v}" for k, v in r["scaling"]["settings"].items())
                if "settings" in r["scaling"]
                else f"OPA_TIMEOUT_SECONDS={r['scaling']['opa_timeout_seconds']}"
            )
            + " so that big records are measured rather than cut off; the deployed configuration was asked once "
            "per size "
            f"(last column). Worker RSS at start: {r['scaling']['worker_rss_mib_at_start']} MiB.",
            "",
            "| generated | fetched (pages) | upstream bytes | sidecar p50 / p99 ms | ms per resource | bare p50 ms | "
            "added p50 ms | sidecar statuses | worker peak RSS MiB | default config |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for x in r["scaling"]["rows"]:
            dc = x["default_config"]
            pages = f" ({x['upstream_pages']})" if "upstream_pages" in x else ""
            out.append(
                f"| {x['generated']} | {x['resources_fetched']}{pages} | {x['upstream_bytes']} | "
                f"{x['sidecar']['latency_ms']['p50']:.1f} / {x['sidecar']['latency_ms']['p99']:.1f} | "
                f"{x['sidecar']['latency_ms']['p50'] / x['resources_fetched']:.3f} | "
                f"{x['bare']['latency_ms']['p50']:.1f} | {x['added_p50_ms']:.1f} | {x['sidecar']['statuses']} | "
                f"{x['sidecar_worker_peak_rss_mib']:.0f} | {dc['status']}{' ' + dc['code'] if dc['code'] else ''} in "
                f"{dc['ms']:.0f} ms |"
            )
        rep = r["scaling"]["repeat_biggest"]
        out += [
            "",
            f"Repeating the biggest record: worker peak RSS {rep['peak_rss_mib_before']} → "
            f"{rep['peak_rss_mib_after']} MiB "
            f"(RSS after: {rep['rss_mib_after']} MiB).",
            "",
        ]
    if "opa_down" in r:
        d = r["opa_down"]
        out += [
            "### OPA down",
            "",
            f"- Killed (connection refused): first request {d['killed']['first_request']}; then "
            f"{d['killed']['sequential']['requests']} sequential requests, statuses "
            f"{d['killed']['sequential']['statuses']}, "
            f"p50 {d['killed']['sequential']['latency_ms']['p50']:.2f} / p99 "
            f"{d['killed']['sequential']['latency_ms']['p99']:.2f} / "
            f"max {d['killed']['sequential']['latency_ms']['max']:.2f} ms.",
            f"- Hung (SIGSTOP): {d['hung']['samples']}.",
            "",
        ]
    fl = r["floor"]
    out += [
        "### Floor",
        "",
        f"- Loopback TCP, 64-byte ping-pong on a kept-alive connection: p50 {fl['round_trip_us']['p50']} µs, p99 "
        f"{fl['round_trip_us']['p99']} µs.",
        f"- Connect + ping-pong + close: p50 {fl['connect_round_trip_close_us']['p50']} µs, p99 "
        f"{fl['connect_round_trip_close_us']['p99']} µs.",
        "- fsync after a 4 KiB append, in the run's folder on the audit store's disk: p50 "
        f"{fl['fsync_4k_us']['p50']} µs, p99 {fl['fsync_4k_us']['p99']} µs.",
        "",
    ]
    return "\n".join(out)


def _workers(r: dict[str, Any]) -> int:
    args = r["setup"]["gunicorn"].split()
    return int(args[args.index("--workers") + 1]) if "--workers" in args else 1
