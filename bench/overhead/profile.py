"""Profile the sidecar's hot path with pyinstrument, against a real OPA and the demo upstream.

    python -m bench.overhead.profile                 # typical record and a 1,000-resource one
    python -m bench.overhead.profile --requests 300
    python -m bench.overhead.profile --cpu           # cProfile on the thread's CPU clock instead

The app runs in this process (Flask's test client, so no gunicorn in the picture) on the
same processes the benchmark starts; N requests for resident 9990000018 as
registered_manager, then N/10 for a generated 1,000-resource resident. Writes the text
trees to bench/overhead/profile-typical.txt and profile-1000.txt; PROFILE.md reads them.

pyinstrument samples wall time, which a shared, busy machine inflates at random. `--cpu`
profiles with cProfile on the request thread's CPU clock (time.thread_time) and prints the
process's CPU per request (the audit writer's and other threads' included) next to the
request thread's: compare those figures between two versions, run in turn. cProfile adds
a cost per Python call, so its tree overstates call-heavy code: take it for where, the CPU
per request without a profiler (--requests N --no-profile) for how much. Writes
profile-typical-cpu.txt and profile-1000-cpu.txt.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from pyinstrument import Profiler

from sidecar import create_app
from sidecar.devtoken import DEV_PRIVATE_KEY, mint

from .world import World

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TYPICAL = {"nhs_number": "9990000018", "dob": "1938-04-12"}


def run(app: Any, body: dict[str, str], n: int, key: Any) -> tuple[Profiler, float]:
    client = app.test_client()
    tokens = [
        mint("registered_manager", lifetime=300, private_key=key, nhs_number=body["nhs_number"]) for _ in range(n + 10)
    ]
    for t in tokens[:10]:  # warm-up: connections, OPA's caches, first-call imports
        assert client.post("/v1/record", json=body, headers={"Authorization": f"Bearer {t}"}).status_code == 200
    profiler = Profiler(interval=0.001)
    started = time.perf_counter()
    profiler.start()
    for t in tokens[10:]:
        response = client.post("/v1/record", json=body, headers={"Authorization": f"Bearer {t}"})
        assert response.status_code == 200, response.get_data()[:300]
    profiler.stop()
    return profiler, (time.perf_counter() - started) / n * 1000


def run_cpu(app: Any, body: dict[str, str], n: int, key: Any, profile: bool) -> tuple[str, float, float]:
    """N requests after a warm-up as long, with one token, as a care app's session sends it,
    then (`profile`) N more under cProfile: (cProfile's text, process CPU ms per request,
    the request thread's), the figures from the requests without the profiler."""
    client = app.test_client()
    token = mint("registered_manager", lifetime=300, private_key=key, nhs_number=body["nhs_number"])
    headers = {"Authorization": f"Bearer {token}"}

    def requests() -> None:
        for _ in range(n):
            response = client.post("/v1/record", json=body, headers=headers)
            assert response.status_code == 200, response.get_data()[:300]

    requests()
    process, thread = time.process_time(), time.thread_time()
    requests()
    process, thread = (time.process_time() - process) / n * 1000, (time.thread_time() - thread) / n * 1000
    text = io.StringIO()
    if profile:
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
        requests()
        profiler.disable()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(120)
    return text.getvalue(), process, thread


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--cpu", action="store_true", help="cProfile on the thread's CPU clock, not pyinstrument")
    parser.add_argument("--no-profile", action="store_true", help="with --cpu: only the CPU per request")
    args = parser.parse_args(argv)
    (ROOT / "var").mkdir(exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-profile-", dir=ROOT / "var"))
    world = World(run_dir, [])
    key = serialization.load_pem_private_key(DEV_PRIVATE_KEY.read_bytes(), password=None)
    try:
        world.start_processes_only([1000])
        app = create_app(
            test_config={
                "OPA_URL": world.opa_url,
                "UPSTREAM_URL": world.upstream.url + "/fhir",  # type: ignore[union-attr]  # started above in the same run
                "AUDIT_DB": str(run_dir / "audit.db"),
            }
        )
        try:
            for name, body, n in (
                ("typical", TYPICAL, args.requests),
                ("1000", world.residents[1000].body(), max(20, args.requests // 10)),
            ):
                if args.cpu:
                    text, process, thread = run_cpu(app, body, n, key, not args.no_profile)
                    figures = f"{process:.2f} ms of CPU per request ({thread:.2f} ms in the request's thread)"
                    print(f"{name}: {figures}")
                    if not args.no_profile:
                        header = f"# {n} requests; without the profiler: {figures}\n"
                        (args.out / f"profile-{name}-cpu.txt").write_text(header + text)
                    continue
                profiler, ms = run(app, body, n, key)
                text = profiler.output_text(unicode=True, color=False, show_all=False, short_mode=False)
                header = f"# {n} requests, {ms:.2f} ms per request (wall, in-process, under the profiler)\n"
                (args.out / f"profile-{name}.txt").write_text(header + text)
                print(f"{name}: {ms:.2f} ms per request → {args.out / f'profile-{name}.txt'}")
        finally:
            app.extensions["lcr"].close()
    finally:
        world.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
