"""Durable audit append from 1, 2 and 4 writer processes: PostgreSQL vs SQLite, one machine.

    python -m bench.audit_fleet                          # 16 threads a process, 5 s a run
    python -m bench.audit_fleet --threads 32 --seconds 10

Each writer process is what a sidecar worker is to the store: its own store object (group
commit: one writer thread per process commits what its request threads queued), T threads
appending pre-built sidecar-shaped rows (bench.audit.sample_events) as fast as appends
return; every append is durable when it returns. All processes append to ONE chain:
SQLite's (one file, writers taking turns on its lock file) or PostgreSQL's (one database,
writers taking turns on the chain's advisory lock, pg.py), on a throwaway cluster the
benchmark starts (tests/pgcluster.py: fsync on, synchronous_commit on, defaults otherwise).

Reports rows/s, rows per commit, commit p50/p99 (the transaction as the writer times it,
lock wait included for PostgreSQL) and append p50/p99 (what a request waits), and the
fsync floor of the disk both write to. Writes bench/results/audit-fleet.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import multiprocessing as mp
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit_store.backends import open_store

from .audit import fsync_floor, sample_events
from .report import machine, percentile, write_result

RESULTS = Path(__file__).resolve().parent / "results"


def _worker(url: str, key: str, threads: int, seconds: float, start: Any, results: Any, index: int) -> None:
    store = open_store(
        url, 10000, checkpoint_key=key, checkpoint_every=1000, key_anchor=str(Path(key).parent / "audit.db")
    )
    commits: list[tuple[int, float]] = []
    store.on_commit = lambda n, t: commits.append((n, t))
    events = sample_events(60_000, seed=index * 1000 + threads + (7 if url.startswith("postgresql") else 0))
    gc.collect()
    gc.freeze()  # the harness's pre-built rows: out of the collector's full passes
    store.append(events.pop())  # writer thread (and connection) up before the clock starts
    commits.clear()
    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop = threading.Event()
    cursor = iter(range(len(events)))
    lock = threading.Lock()

    def run(t: int) -> None:
        mine = latencies[t]
        while not stop.is_set():
            with lock:
                i = next(cursor, None)
            if i is None:
                return
            began = time.perf_counter()
            store.append(events[i])
            mine.append(time.perf_counter() - began)

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    start.wait()
    began = time.perf_counter()
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - began
    store.close()
    results.put(
        {
            "rows": sum(len(x) for x in latencies),
            "seconds": elapsed,
            "commits": commits,
            "latencies": [v for x in latencies for v in x],
        }
    )


def run(url: str, key: Path, processes: int, threads: int, seconds: float) -> dict[str, Any]:
    open_store(url, checkpoint_key=key, key_anchor=str(key.parent / "audit.db")).close()  # schema in place first
    ctx = mp.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, str(key), threads, seconds, start, results, i)) for i in range(processes)
    ]
    for p in procs:
        p.start()
    time.sleep(2.0 + 0.5 * processes)  # events built, stores open
    start.set()
    parts = [results.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    rows = sum(p["rows"] for p in parts)
    wall = max(p["seconds"] for p in parts)
    commit_times = sorted(t for p in parts for _, t in p["commits"])
    sizes = [n for p in parts for n, _ in p["commits"]]
    latencies = sorted(v for p in parts for v in p["latencies"])
    store = open_store(url, checkpoint_key=key, key_anchor=str(key.parent / "audit.db"))
    stored = store.count()
    store.close()
    return {
        "writers": processes,
        "threads_per_writer": threads,
        "rows": rows,
        "rows_stored": stored,
        "seconds": round(wall, 3),
        "rows_per_second": round(rows / wall, 1),
        "commits": len(commit_times),
        "rows_per_commit": round(statistics.mean(sizes), 1) if sizes else 0,
        "commit_ms": {"p50": percentile(commit_times, 50, 1e3), "p99": percentile(commit_times, 99, 1e3)},
        "append_ms": {"p50": percentile(latencies, 50, 1e3), "p99": percentile(latencies, 99, 1e3)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", default="1,2,4", help="writer process counts (comma-separated)")
    parser.add_argument("--threads", type=int, default=16, help="appending threads per writer process")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from tests.pgcluster import PgCluster, PgDatabases

    counts = [int(x) for x in args.writers.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="lcr-bench-fleet-"))
    key = folder / "audit-checkpoint.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cluster = PgCluster.start()
    out: dict[str, Any] = {
        "benchmark": "audit-fleet",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load": {"threads_per_writer": args.threads, "seconds": args.seconds},
        "floor": {"sqlite_folder": fsync_floor(folder), "postgresql_datadir": fsync_floor(cluster.datadir)},
        "sqlite": [],
        "postgresql": [],
    }
    try:
        databases = PgDatabases(cluster)
        for n in counts:
            for backend in ("sqlite", "postgresql"):
                url = databases.new("bench").url if backend == "postgresql" else f"sqlite:///{folder}/fleet-{n}.db"
                result = run(url, key, n, args.threads, args.seconds)
                out[backend].append(result)
                print(
                    f"{backend:10s} {n} writers: {result['rows_per_second']:>9,.0f} rows/s, "
                    f"{result['rows_per_commit']:>6} rows/commit, "
                    f"commit p50/p99 {result['commit_ms']['p50']}/{result['commit_ms']['p99']} ms, "
                    f"append p50/p99 {result['append_ms']['p50']}/{result['append_ms']['p99']} ms",
                    flush=True,
                )
    finally:
        cluster.stop()
    out["ratio_postgresql_to_sqlite"] = {
        str(a["writers"]): round(b["rows_per_second"] / a["rows_per_second"], 2)
        for a, b in zip(out["sqlite"], out["postgresql"], strict=False)
    }
    write_result(args.out, "audit-fleet.json", out)
    print(json.dumps({"floor": out["floor"], "ratio": out["ratio_postgresql_to_sqlite"]}, indent=2))


if __name__ == "__main__":
    main()
