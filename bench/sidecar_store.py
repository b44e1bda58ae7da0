"""The sidecar's throughput with its audit log in PostgreSQL against SQLite, one run.

    python -m bench.sidecar_store                   # 3 rounds x 10 s per store, 16 connections
    python -m bench.sidecar_store --rounds 2 --seconds 5

The same world as bench.overhead (signed bundle, bundle server, OPA, the paged demo
upstream; world.py), two sidecars with the deployed gunicorn command line that differ only
in AUDIT_STORE_URL: a SQLite file, or a database on a throwaway PostgreSQL cluster
(tests/pgcluster.py) written by the sidecar's role. wrk sends POST /v1/record for the
typical resident with registered-manager tokens; the two stores take turns, round by round,
so load from elsewhere on the machine falls on both. Every answer is a decision with its
durable audit row, whatever its status. Writes bench/results/sidecar-store.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from tests.pgcluster import PgCluster, PgDatabases

from .overhead import wrk
from .overhead.__main__ import TYPICAL, token
from .overhead.world import World, gunicorn_args
from .report import machine

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="lcr-bench-store-"))
    cluster = PgCluster.start()
    world = World(run_dir, gunicorn_args(2, "gthread", 16))
    try:
        db = PgDatabases(cluster).new("sidecar")
        world.start_processes_only([])
        servers = {
            "sqlite": world.start_sidecar("sqlite"),
            "postgresql": world.start_sidecar("postgresql", {"LCR_SIDECAR_AUDIT_STORE_URL": db.url}),
        }
        body = run_dir / "body.json"
        body.write_text(json.dumps(TYPICAL))
        tokens = run_dir / "tokens.txt"
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        for server in servers.values():  # warm: caches, connections, first commits
            tokens.write_text("\n".join(token() for _ in range(50)) + "\n")
            wrk.run(server.url + "/v1/record", body, tokens, seconds=3, connections=args.connections)
        for _ in range(args.rounds):
            for name, server in servers.items():
                tokens.write_text("\n".join(token() for _ in range(50)) + "\n")
                r = wrk.run(server.url + "/v1/record", body, tokens, seconds=args.seconds, connections=args.connections)
                results[name].append(
                    {
                        "rps": round(r.rps, 1),
                        "p50_ms": round(r.ms("50"), 2),
                        "p99_ms": round(r.ms("99"), 2),
                        "statuses": r.statuses,
                    }
                )
                print(
                    f"{name:10s} {r.rps:7.1f} req/s  p50 {r.ms('50'):.1f} ms  p99 {r.ms('99'):.1f} ms  {r.statuses}",
                    flush=True,
                )
    finally:
        world.stop()
        cluster.stop()
    median = {name: statistics.median(x["rps"] for x in rounds) for name, rounds in results.items()}
    out = {
        "benchmark": "sidecar-store",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load": {
            "endpoint": "POST /v1/record",
            "resident": TYPICAL,
            "connections": args.connections,
            "seconds": args.seconds,
            "gunicorn": world.gunicorn_args,
        },
        "rounds": results,
        "median_rps": median,
        "ratio_postgresql_to_sqlite": round(median["postgresql"] / median["sqlite"], 3),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sidecar-store.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({"median_rps": median, "ratio": out["ratio_postgresql_to_sqlite"]}))


if __name__ == "__main__":
    main()
