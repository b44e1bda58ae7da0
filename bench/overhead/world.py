"""Everything the benchmark runs against, as real processes on 127.0.0.1.

Started the way `make run` and tests/processes.py start them: the signed policy bundle,
its bundle server, OPA (the pinned binary, `make run`'s flags), the demo LCR upstream, then
the sidecar and the bare proxy under the same gunicorn command line (workers, worker class,
config). The upstream (paged_upstream.py: 20 entries a page, like HAPI) serves the demo residents
plus generated ones of 10, 100, 1,000 and 5,000 resources (demo_upstream.generate.random_record)
for the record-size scaling.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bundles.build import build
from demo_upstream.generate import random_record, valid_nhs_number
from tests import processes
from tests.roster import Roster

ROOT = Path(__file__).resolve().parents[2]
RESIDENTS = ROOT / "demo_upstream" / "residents"
GUNICORN_CONF = ROOT / "sidecar" / "gunicorn_conf.py"
# OPA's garbage collector as scripts/run.sh and docker-compose.yml set it: a collection
# every 400 % of heap growth instead of 100 % (≈ a quarter less CPU per redaction,
# bench/overhead/PROFILE.md), bounded by a soft memory limit.
OPA_ENV = {"GOGC": "400", "GOMEMLIMIT": "512MiB"}


@dataclass
class Resident:
    nhs_number: str
    dob: str
    size: int  # generated resources (the Patient and 4 supporting resources come on top)

    def body(self) -> dict[str, str]:
        return {"nhs_number": self.nhs_number, "dob": self.dob}


@dataclass
class Server:
    """A gunicorn server (master + workers) we can measure."""

    process: processes.Process

    @property
    def url(self) -> str:
        return self.process.url

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def memory_kib(self) -> dict[str, int]:
        """Peak (VmHWM) and current (VmRSS) resident memory of the busiest worker, in KiB."""
        peak = current = 0
        for pid in self.worker_pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            values = {
                k: int(v.split()[0])
                for k, _, v in (line.partition(":") for line in status.splitlines())
                if k in ("VmHWM", "VmRSS")
            }
            peak, current = max(peak, values.get("VmHWM", 0)), max(current, values.get("VmRSS", 0))
        return {"peak_rss_kib": peak, "rss_kib": current}


@dataclass
class World:
    run_dir: Path
    gunicorn_args: list[str]
    revision: str = ""
    bundle_server: processes.Process | None = None
    opa: processes.Process | None = None
    opa_port: int = 0
    upstream: processes.Process | None = None
    sidecar: Server | None = None
    bare: Server | None = None
    residents: dict[int, Resident] = field(default_factory=dict)
    sidecar_env: dict[str, str] = field(default_factory=dict)

    # -- start ---------------------------------------------------------------------------

    def start_processes_only(self, sizes: list[int]) -> World:
        """Bundle, bundle server, OPA and the upstream: what the sidecar talks to."""
        self.revision = build(self.run_dir / "bundles", opa=processes.opa_binary())
        data_dir = self._data_dir(sizes)
        # Every resident benchmarked lives at the care service the tokens name (VM101).
        roster = Roster(self.run_dir / "bundles", processes.opa_binary())
        roster.services["VM101"].update(
            {r.nhs_number: {"status": "resident", "start": "2024-01-01"} for r in self.residents.values()}
        )
        roster.publish()
        self.bundle_server = processes.start_bundle_server(self.run_dir / "bundles" / "serve", self.run_dir)
        self.opa_port = processes.free_port()
        self.start_opa()
        self.upstream = self.start_upstream(data_dir)
        return self

    def start_upstream(self, data_dir: Path) -> processes.Process:
        """The demo upstream as tests/processes.py starts it, its `$everything` run once per
        resident rather than once per page (paged_upstream.py)."""
        port = processes.free_port()
        return processes.start(
            "demo-upstream",
            [
                str(processes.VENV_BIN / "gunicorn"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "bench.overhead.paged_upstream:create_app()",
            ],
            f"http://127.0.0.1:{port}",
            "/fhir/metadata",
            self.run_dir / f"upstream-{port}.log",
            env={"DEMO_UPSTREAM_DATA_DIR": str(data_dir)},
        )

    def start(self, sizes: list[int], sidecar_env: dict[str, str] | None = None) -> World:
        self.start_processes_only(sizes)
        assert self.upstream is not None
        self.sidecar_env = dict(sidecar_env or {})
        self.sidecar = self.start_sidecar("sidecar", self.sidecar_env)
        self.bare = self._gunicorn(
            "bare-proxy", f"bench.overhead.bare_proxy:create_app({self.upstream.url + '/fhir'!r})", {}
        )
        return self

    def start_sidecar(self, name: str, env: dict[str, str] | None = None) -> Server:
        """The sidecar as deployed (scripts/run.sh): its own audit file and Prometheus folder."""
        assert self.upstream is not None
        prom = self.run_dir / f"{name}-prometheus"
        prom.mkdir()
        return self._gunicorn(
            name,
            "sidecar:create_app()",
            {
                "LCR_SIDECAR_OPA_URL": self.opa_url,
                "LCR_SIDECAR_UPSTREAM_URL": self.upstream.url + "/fhir",
                "LCR_SIDECAR_AUDIT_DB": str(self.run_dir / f"{name}-audit.db"),
                "PROMETHEUS_MULTIPROC_DIR": str(prom),
                **(env or {}),
            },
        )

    @property
    def opa_url(self) -> str:
        return f"http://127.0.0.1:{self.opa_port}"

    def start_opa(self) -> None:
        """OPA as `make run` starts it: the rendered config (signature check, persistence), --log-level error."""
        from bundles.opa_config import render

        config = self.run_dir / "opa-config.yaml"
        config.write_text(render(persistence_directory=str(self.run_dir / "opa-persist")))
        self.opa = processes.start(
            "opa",
            [
                processes.opa_binary(),
                "run",
                "--server",
                "--addr",
                f"127.0.0.1:{self.opa_port}",
                "--config-file",
                str(config),
                "--log-level",
                "error",
            ],
            self.opa_url,
            "/health?bundles=true",
            self.run_dir / "opa.log",
            env={"BUNDLE_SERVER_URL": self.bundle_server.url, **OPA_ENV},  # type: ignore[union-attr]  # started above in the same run
        )

    def _data_dir(self, sizes: list[int]) -> Path:
        data = self.run_dir / "residents"
        data.mkdir()
        for path in RESIDENTS.glob("*.json"):
            shutil.copy(path, data / path.name)
        rng = random.Random(20261125)
        for size in sizes:
            nhs = valid_nhs_number(rng)
            dob = f"19{rng.randint(20, 50)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            bundle = random_record(rng, f"scale-{size}", nhs, dob, size)
            (data / f"scale-{size}.json").write_text(json.dumps(bundle))
            self.residents[size] = Resident(nhs, dob, size)
        return data

    def _gunicorn(self, name: str, app: str, env: dict[str, str]) -> Server:
        port = processes.free_port()
        cmd = [str(processes.VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", *self.gunicorn_args, app]
        return Server(
            processes.start(name, cmd, f"http://127.0.0.1:{port}", "/healthz", self.run_dir / f"{name}.log", env=env)
        )

    def roles(self) -> dict[str, int]:
        """Process (tree) ids by role, for CPU accounting; wrk is counted apart."""
        out = {}
        for name, p in (
            ("sidecar", self.sidecar and self.sidecar.process),
            ("bare", self.bare and self.bare.process),
            ("opa", self.opa),
            ("upstream", self.upstream),
        ):
            if p is not None and p.proc.poll() is None:  # type: ignore[union-attr]  # the sidecar and upstream of a world are Processes (only the bare proxy is a Server)
                out[name] = p.proc.pid  # type: ignore[union-attr]  # the sidecar and upstream of a world are Processes (only the bare proxy is a Server)
        return out

    # -- faults --------------------------------------------------------------------------

    def kill_opa(self) -> None:
        assert self.opa is not None
        self.opa.kill()

    def pause_opa(self) -> None:
        assert self.opa is not None
        os.kill(self.opa.proc.pid, signal.SIGSTOP)

    def resume_opa(self) -> None:
        assert self.opa is not None
        os.kill(self.opa.proc.pid, signal.SIGCONT)

    def wait_sidecar_ready(self, timeout: float = 20.0) -> None:
        assert self.sidecar is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.sidecar.url + "/readyz", timeout=2).status_code in (200, 404):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)

    def stop(self) -> None:
        for p in (
            self.sidecar and self.sidecar.process,
            self.bare and self.bare.process,
            self.upstream,
            self.opa,
            self.bundle_server,
        ):
            if p is None:
                continue
            try:
                if p.proc.poll() is None:  # type: ignore[union-attr]  # the sidecar and upstream of a world are Processes (only the bare proxy is a Server)
                    os.kill(p.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]  # the sidecar and upstream of a world are Processes (only the bare proxy is a Server)
            except OSError:
                pass
            p.stop()  # type: ignore[union-attr]  # the sidecar and upstream of a world are Processes (only the bare proxy is a Server)


def gunicorn_args(workers: int, worker_class: str | None, threads: int | None) -> list[str]:
    """The sidecar's deployed command line (scripts/run.sh, Dockerfile), shared by both servers."""
    args = ["--workers", str(workers)]
    if worker_class:
        args += ["--worker-class", worker_class]
    if threads:
        args += ["--threads", str(threads)]
    if GUNICORN_CONF.exists():
        args += ["--config", "python:sidecar.gunicorn_conf"]
    return args


def describe(world: World) -> dict[str, Any]:
    return {"policy_revision": world.revision, "gunicorn": world.gunicorn_args}
