"""Real processes for the integration tests: OPA, a bundle server, the demo upstream, gunicorn."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.procfs import children
from bundles.opa_config import render as render_opa_config

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def opa_binary() -> str:
    if os.environ.get("LCR_OPA_BIN"):
        return os.environ["LCR_OPA_BIN"]
    return subprocess.run(
        [str(ROOT / "scripts" / "tools.sh"), "opa"], check=True, capture_output=True, text=True
    ).stdout.strip()


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def kill_tree(self) -> None:
        """SIGKILL the process and its children: a gunicorn worker outlives its killed master."""
        victims = [self.proc.pid]
        for pid in victims:
            victims += [c for c in children(pid) if c not in victims]
        for pid in reversed(victims):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


def start(
    name: str,
    cmd: list[str],
    url: str,
    ready_path: str,
    log: Path,
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> Process:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=ROOT)
    process = Process(name, proc, url, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url + ready_path, timeout=0.5).status_code == 200:
                return process
        except requests.RequestException:
            pass
        time.sleep(0.05)
    process.stop()
    raise RuntimeError(f"{name} not ready within {timeout}s:\n{log.read_text()[-3000:]}")


def start_bundle_server(directory: Path, log_dir: Path) -> Process:
    port = free_port()
    return start(
        "bundle-server",
        [
            str(VENV_BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            f"bundles.serve:create_app({str(directory)!r})",
        ],
        f"http://127.0.0.1:{port}",
        "/healthz",
        log_dir / f"bundle-server-{port}.log",
    )


@functools.cache
def docker_engine_reachable() -> bool:
    """True when a Docker engine answers (then OPA runs from the pinned image via testcontainers)."""
    if os.environ.get("LCR_TEST_OPA") == "binary":
        return False
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(host.removeprefix("unix://"))
                s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return b" 200 " in s.recv(64)
        hostname, _, port = host.removeprefix("tcp://").partition(":")
        with socket.create_connection((hostname, int(port or 2375)), timeout=2):
            return True
    except OSError:  # no engine, no socket, no permission: use the local binary
        return False


@dataclass
class ContainerProcess:
    """The same handle as Process, for OPA in a container (host network, so loopback URLs work)."""

    name: str
    container: Any
    url: str
    log_path: Path

    @property
    def log(self) -> Path:
        self.log_path.write_bytes(b"".join(self.container.get_logs()))
        return self.log_path

    def stop(self) -> None:
        self.container.stop()

    def kill(self) -> None:
        self.container.get_wrapped_container().kill()


def _start_opa_container(
    port: int, config: Path, persist_dir: Path, bundle_server_url: str, log: Path
) -> ContainerProcess:
    from testcontainers.core.container import DockerContainer

    versions = dict(
        line.split("=", 1)
        for line in (ROOT / "tools" / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    persist_dir.mkdir(parents=True, exist_ok=True)
    container = (
        DockerContainer(f"openpolicyagent/opa:{versions['OPA_VERSION'].lstrip('v')}")
        .with_kwargs(network_mode="host")
        .with_env("BUNDLE_SERVER_URL", bundle_server_url)
        .with_volume_mapping(str(config), "/config.yaml", "ro")
        .with_volume_mapping(str(persist_dir), "/persist", "rw")
        .with_command(
            f"run --server --addr 127.0.0.1:{port} --config-file /config.yaml --set persistence_directory=/persist"
        )
    )
    container.start()
    handle = ContainerProcess("opa", container, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(handle.url + "/health?bundles=true", timeout=0.5).status_code == 200:
                return handle
        except requests.RequestException:
            pass
        time.sleep(0.1)
    handle.stop()
    raise RuntimeError("opa container not ready within 30s")


def start_opa(
    bundle_server_url: str,
    log_dir: Path,
    port: int | None = None,
    persist_dir: Path | None = None,
    ready_path: str = "/health?bundles=true",
) -> Process | ContainerProcess:
    """A real OPA polling the bundle server and verifying signatures with the dev key: the
    pinned image through testcontainers where a Docker engine answers, else the local binary."""
    port = port or free_port()
    persist_dir = persist_dir or log_dir / f"opa-{port}-persist"
    config = log_dir / f"opa-{port}.yaml"
    config.write_text(render_opa_config(persistence_directory=str(persist_dir)))
    if docker_engine_reachable():
        return _start_opa_container(port, config, persist_dir, bundle_server_url, log_dir / f"opa-{port}.log")
    return start(
        "opa",
        [
            opa_binary(),
            "run",
            "--server",
            "--addr",
            f"127.0.0.1:{port}",
            "--config-file",
            str(config),
            "--log-level",
            "info",
            # Every decision with its input in the log: questions to replay against a changed
            # policy (python -m bench.overhead.policy_steps --same-answers).
            *(["--set", "decision_logs.console=true"] if os.environ.get("LCR_TEST_OPA_DECISION_LOGS") else []),
        ],
        f"http://127.0.0.1:{port}",
        ready_path,
        log_dir / f"opa-{port}.log",
        env={"BUNDLE_SERVER_URL": bundle_server_url},
    )


def start_upstream(log_dir: Path, data_dir: Path | None = None, port: int | None = None) -> Process:
    """The demo LCR upstream; `port` to start it again where a stopped one was."""
    port = port or free_port()
    env = {"DEMO_UPSTREAM_DATA_DIR": str(data_dir)} if data_dir else {}
    return start(
        "demo-upstream",
        [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1", "demo_upstream.app:create_app()"],
        f"http://127.0.0.1:{port}",
        "/fhir/metadata",
        log_dir / f"upstream-{port}.log",
        env=env,
    )


def start_sidecar(log_dir: Path, env: dict[str, str], workers: int = 2) -> Process:
    """The sidecar as deployed: gunicorn with the project's gunicorn settings."""
    port = free_port()
    return start(
        "sidecar",
        [
            str(VENV_BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--config",
            "python:sidecar.gunicorn_conf",
            "sidecar:create_app()",
        ],
        f"http://127.0.0.1:{port}",
        "/healthz",
        log_dir / f"sidecar-{port}.log",
        env=env,
    )


def sidecar_env(
    opa_url: str, upstream_url: str, audit_db: Path | str, jwks_file: Path | str | None = None, **settings: Any
) -> dict[str, str]:
    """The environment of a served sidecar: `LCR_SIDECAR_<NAME>` for OPA, the FHIR base of the
    upstream at `upstream_url` (a demo upstream's root: its API is under /fhir), the audit file,
    the test JWKS, and any other setting by name (non-strings JSON-encoded, as settings.py
    reads them back), e.g. `sidecar_env(opa.url, upstream.url, db, jwks, OPA_TIMEOUT_SECONDS=0.5)`."""
    env = {
        "LCR_SIDECAR_OPA_URL": opa_url,
        "LCR_SIDECAR_UPSTREAM_URL": upstream_url.rstrip("/") + "/fhir",
        "LCR_SIDECAR_AUDIT_DB": str(audit_db),
    }
    if jwks_file is not None:
        env["LCR_SIDECAR_TOKEN_JWKS_FILE"] = str(jwks_file)
    for name, value in settings.items():
        env["LCR_SIDECAR_" + name] = (
            value if isinstance(value, str) else str(value) if isinstance(value, Path) else json.dumps(value)
        )
    return env


#: settings for a sidecar whose record path is asked each question twice by the redaction and
#: attack suites: no redaction answer is kept, each resource's facts are, so the second ask
#: of a record sends OPA the facts read from its resources the first time (below registered
#: manager, a resource whose free text must go is sent whole again)
KEEP_FACTS_ONLY: dict[str, Any] = {"REDACT_CACHE_ENTRIES": 0, "REDACT_FACTS_CACHE_ENTRIES": 8192}


def sidecar_test_config(opa_url: str, fhir_base: str, audit_db: Path | str, jwks_file: Path | str) -> dict[str, Any]:
    """The test_config of an in-process sidecar app (create_app): OPA, the upstream's FHIR
    base (already ending in /fhir where it has one), the audit file and the test JWKS."""
    return {
        "TESTING": True,
        "OPA_URL": opa_url,
        "UPSTREAM_URL": fhir_base,
        "AUDIT_DB": str(audit_db),
        "TOKEN_JWKS_FILE": str(jwks_file),
    }


# HAPI FHIR JPA server (tools/hapi): a real FHIR server for the record path, paging at 20 a page.
HAPI_IMAGE = "hapiproject/hapi:v8.8.0-1"  # the same HAPI FHIR release as tools/hapi/pom.xml
HAPI_START_TIMEOUT = 300.0  # a start takes 25-70 s on the 2-core CI machine


def hapi_jar() -> str:
    """The built HAPI FHIR test server (`scripts/hapi.sh jar` builds it on first use)."""
    if os.environ.get("LCR_HAPI_JAR"):
        return os.environ["LCR_HAPI_JAR"]
    built = subprocess.run([str(ROOT / "scripts" / "hapi.sh"), "jar"], capture_output=True, text=True)
    if built.returncode != 0:
        raise RuntimeError(f"scripts/hapi.sh jar failed ({built.returncode}):\n{built.stderr[-3000:]}")
    return built.stdout.strip()


def start_hapi(
    log_dir: Path, port: int | None = None, timeout: float = HAPI_START_TIMEOUT
) -> Process | ContainerProcess:
    """A HAPI FHIR JPA server (R4, in-memory H2, empty) with its FHIR base at `<url>/fhir`:
    the `hapiproject/hapi` image through testcontainers where a Docker engine answers, else the
    jar that scripts/hapi.sh builds, run with the local `java`. Ready when /fhir/metadata answers."""
    port = port or free_port()
    log = log_dir / f"hapi-{port}.log"
    if docker_engine_reachable():
        return _start_hapi_container(port, log, timeout)
    import shutil

    java = shutil.which("java")
    if java is None:
        raise RuntimeError("java is required to run the HAPI FHIR test server (apt-get install default-jdk-headless)")
    # The serial collector: a third less memory than the default for a server this size, same start.
    return start(
        "hapi",
        [java, "-XX:+UseSerialGC", "-jar", hapi_jar(), f"--server.port={port}"],
        f"http://127.0.0.1:{port}",
        "/fhir/metadata",
        log,
        timeout=timeout,
    )


def _start_hapi_container(port: int, log: Path, timeout: float) -> ContainerProcess:
    from testcontainers.core.container import DockerContainer

    container = (
        DockerContainer(HAPI_IMAGE)
        .with_kwargs(network_mode="host")
        .with_env("SERVER_PORT", str(port))
        .with_env("SPRING_DATASOURCE_URL", "jdbc:h2:mem:hapi")
        .with_env("HAPI_FHIR_DEFAULT_PAGE_SIZE", "20")
        .with_env("HAPI_FHIR_MAX_PAGE_SIZE", "200")
    )
    container.start()
    handle = ContainerProcess("hapi", container, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(handle.url + "/fhir/metadata", timeout=5).status_code == 200:
                return handle
        except requests.RequestException:
            pass
        time.sleep(0.5)
    tail = handle.log.read_text(errors="replace")[-3000:]
    handle.stop()
    raise RuntimeError(f"hapi container not ready within {timeout}s:\n{tail}")
