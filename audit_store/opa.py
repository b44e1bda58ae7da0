"""A real OPA process per bundle, queried in batches, and what its policy can read of `input`.

`OpaServer` runs `opa run --server --bundle <bundle>` on a private unix socket (no port to
collide with, nothing exposed) and evaluates many inputs per HTTP call:

    POST /v1/query  {"query": "r := [d | some x in input.batch;
                                          d := [v | v := data.lcr.access.decision with input as x]]",
                     "input": {"batch": [<input>, …]}}

Each element comes back as `[]` (undefined) or `[decision]`, so results stay aligned with
inputs. The request body is assembled from the stored JSON text: inputs are never parsed in
Python.

`input_footprint` reads the compiled policy (GET /v1/policies) and lists every path under
`input` that the modules reachable from the entrypoint refer to. Two inputs that agree on all
of those paths get the same decision from a pure policy, so replay evaluates each distinct
combination once and applies the answer to every logged decision that shares it. When the
policy reads `input` as a whole, reads it through a computed key, or calls a builtin whose
result is not a function of its arguments (time, randomness, network), the footprint is
`None` and every decision is evaluated on its own.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

UNDEFINED = object()

#: builtins whose answer is not a function of their arguments (and of the bundle)
IMPURE_BUILTINS = frozenset(
    {
        "time.now_ns",
        "http.send",
        "rand.intn",
        "uuid.rfc4122",
        "opa.runtime",
        "net.lookup_ip_addr",
        "crypto.x509.parse_and_verify_certificates",
        "crypto.x509.parse_and_verify_certificates_with_options",
        "io.jwt.decode_verify",
        "providers.aws.sign_req",
    }
)


class OpaError(RuntimeError):
    """OPA could not be started or did not answer."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()  # not ours to keep: an OPA still starting (or gone) refused it
            raise
        self.sock = sock


def entrypoint_ref(entrypoint: str) -> str:
    """`lcr/access/decision` or `data.lcr.access.decision` → `data.lcr.access.decision`."""
    parts = [p for p in re.split(r"[/.]", entrypoint.strip()) if p]
    if parts and parts[0] == "data":
        parts = parts[1:]
    if not parts or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in parts):
        raise ValueError(f"entrypoint {entrypoint!r} is not a path like lcr/access/decision")
    return "data." + ".".join(parts)


class OpaServer:
    """`opa run --server` for one bundle (a .tar.gz or a bundle directory), on a unix socket;
    `extra_bundles` load beside it (e.g. the roster a decision was made with)."""

    def __init__(
        self,
        bundle: Path,
        opa: str,
        *,
        verification_key: Path | None = None,
        key_id: str | None = None,
        workdir: Path | None = None,
        timeout: float = 600.0,
        start_timeout: float = 30.0,
        extra_bundles: Sequence[Path] = (),
    ) -> None:
        """With `verification_key`, OPA refuses a bundle whose signature does not verify
        (a tampered archive); without one, signatures are not checked (`--skip-verify`)."""
        self.bundle = Path(bundle)
        self.extra_bundles = [Path(b) for b in extra_bundles]
        self.opa = opa
        self.verification_key = verification_key
        self.key_id = key_id
        self.timeout = timeout
        self.start_timeout = start_timeout
        self._own_dir = workdir is None
        # unix socket paths are limited to ~100 bytes: keep the folder short
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="lcr-opa-"))
        self.socket = str(self.workdir / f"opa-{os.getpid()}-{id(self) % 100000}.sock")
        self.log = self.workdir / (Path(self.socket).stem + ".log")
        self.proc: subprocess.Popen[bytes] | None = None
        self._local = threading.local()
        self._calls_lock = threading.Lock()
        self._connections: list[_UnixConnection] = []
        self.calls = 0

    def __enter__(self) -> OpaServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        cmd = [
            self.opa,
            "run",
            "--server",
            "--addr",
            f"unix://{self.socket}",
            "--log-level",
            "error",
            "--skip-version-check",
            "--bundle",
            str(self.bundle),
            *(str(b) for b in self.extra_bundles),
        ]
        if self.verification_key is not None:
            cmd += ["--verification-key", str(self.verification_key)]
            if self.key_id:
                cmd += ["--verification-key-id", self.key_id]
        else:
            cmd += ["--skip-verify"]
        # Batches are large and short-lived: collect garbage less often (≈1.5× faster here).
        env = {**os.environ, "GOGC": os.environ.get("GOGC", "400")}
        with open(self.log, "wb") as log:
            try:
                self.proc = subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
                )
            except OSError as exc:
                raise OpaError(f"cannot run {self.opa}: {exc}") from None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise OpaError(f"opa exited with {self.proc.returncode} loading {self.bundle}:\n{self._log_tail()}")
            if os.path.exists(self.socket):
                try:
                    status, _ = self._request("GET", "/health?bundles=true")
                    if status == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise OpaError(f"opa did not become ready within {self.start_timeout}s for {self.bundle}:\n{self._log_tail()}")

    def stop(self) -> None:
        with self._calls_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _connection(self) -> _UnixConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _UnixConnection(self.socket, self.timeout)
            with self._calls_lock:
                self._connections.append(conn)
        return conn

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = self._connection()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):  # a kept-alive connection OPA closed: reconnect once
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, body: bytes | None = None) -> Any:
        try:
            status, data = self._request(method, path, body)
        except OSError as exc:
            raise OpaError(f"opa did not answer {method} {path}: {exc}") from None
        try:
            answer = json.loads(data)
        except ValueError:
            raise OpaError(f"opa answered {status} with non-JSON to {method} {path}") from None
        if status != 200:
            raise OpaError(f"opa answered {status} to {method} {path}: {answer.get('code')}: {answer.get('message')}")
        return answer

    def revisions(self) -> dict[str, str]:
        """The loaded bundles' revisions (from OPA's own provenance)."""
        answer = self._json("POST", "/v1/data?provenance=true", b'{"input": {}}')
        bundles = (answer.get("provenance") or {}).get("bundles") or {}
        return {name: str(b.get("revision") or "") for name, b in bundles.items()}

    def policies(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/policies").get("result") or [])

    def evaluate(self, inputs: list[str], entrypoint: str) -> list[Any]:
        """Evaluate the entrypoint once per input (JSON text); UNDEFINED where it has no value."""
        ref = entrypoint_ref(entrypoint)
        query = f"r := [d | some x in input.batch; d := [v | v := {ref} with input as x]]"
        body = ('{"query":' + json.dumps(query) + ',"input":{"batch":[' + ",".join(inputs) + "]}}").encode()
        with self._calls_lock:
            self.calls += 1
        answer = self._json("POST", "/v1/query", body)
        results = answer.get("result") or []
        if len(results) != 1 or "r" not in results[0] or len(results[0]["r"]) != len(inputs):
            raise OpaError(
                f"opa answered the batch query with {len(results)} results; expected one list of {len(inputs)}"
            )
        return [v[0] if v else UNDEFINED for v in results[0]["r"]]


def bundle_revision_of(bundle: Path) -> str | None:
    """The revision in a bundle's .manifest (a .tar.gz or a directory), if any."""
    import tarfile

    try:
        if Path(bundle).is_dir():
            manifest = json.loads((Path(bundle) / ".manifest").read_text())
        else:
            with tarfile.open(bundle, "r:gz") as tar:
                for member in tar:
                    if member.name.lstrip("/") == ".manifest":
                        handle = tar.extractfile(member)
                        manifest = json.loads(handle.read()) if handle else {}
                        break
                else:
                    return None
    except (OSError, ValueError, tarfile.TarError):
        return None
    revision = manifest.get("revision")
    return str(revision) if revision else None


# -- what the policy reads of `input` ---------------------------------------------------


def input_footprint(modules: Iterable[dict[str, Any]], entrypoint: str) -> list[tuple[str, ...]] | None:
    """The `input` paths the entrypoint can depend on, or None when that cannot be bounded."""
    entry = tuple(entrypoint_ref(entrypoint).split(".")[1:])
    facts = []
    for module in modules:
        ast = module.get("ast") or {}
        package = tuple(_strings(((ast.get("package") or {}).get("path") or [])[1:]))
        found = _Refs()
        for key in ("imports", "rules"):
            found.walk(ast.get(key))
        facts.append((package, found))
    reached: set[int] = set()
    frontier = [entry]
    while frontier:
        ref = frontier.pop()
        for i, (package, found) in enumerate(facts):
            if i not in reached and _related(package, ref):
                reached.add(i)
                frontier.extend(found.data)
    paths: set[tuple[str, ...]] = set()
    for i in reached:
        found = facts[i][1]
        if found.whole_input or found.impure:
            return None
        paths.update(found.input)
    minimal = sorted(p for p in paths if not any(p[: len(q)] == q for q in paths if q != p and len(q) < len(p)))
    return minimal


def _related(package: tuple[str, ...], ref: tuple[str, ...]) -> bool:
    n = min(len(package), len(ref))
    return package[:n] == ref[:n]


def _strings(terms: list[dict[str, Any]]) -> list[str]:
    out = []
    for term in terms:
        if term.get("type") != "string":
            break
        out.append(term["value"])
    return out


class _Refs:
    """Walks a compiled module's AST, collecting refs to input, to data, and builtin calls."""

    SKIP = frozenset({"annotations", "comments", "location"})

    def __init__(self) -> None:
        self.input: set[tuple[str, ...]] = set()
        self.data: set[tuple[str, ...]] = set()
        self.whole_input = False
        self.impure = False

    def walk(self, node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                self.walk(item)
            return
        if not isinstance(node, dict):
            return
        kind, value = node.get("type"), node.get("value")
        if kind == "ref" and isinstance(value, list) and value:
            self._ref(value)
            for term in value[1:]:
                self.walk(term)
            return
        if kind == "var" and value == "input":
            self.whole_input = True
            return
        for key, child in node.items():
            if key not in self.SKIP:
                self.walk(child)

    def _ref(self, terms: list[dict[str, Any]]) -> None:
        head = terms[0]
        if head.get("type") != "var":
            self.walk(head)
            return
        path = tuple(_strings(terms[1:]))
        if head.get("value") == "input":
            if not path or any('"' in p for p in path):
                self.whole_input = True
            else:
                self.input.add(path)
        elif head.get("value") == "data":
            self.data.add(path)
        elif len(path) == len(terms) - 1 and ".".join((head["value"], *path)) in IMPURE_BUILTINS:
            self.impure = True
