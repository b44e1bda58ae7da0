"""A short soak (bench/soak.py's load generator and sampler, 20 s at 10 requests/s): the served
sidecar's workers hold no more descriptors at the end than early on, and stay small.

The full soak (`make soak`, 180 s) fits slopes; 20 s is too short for a slope to mean much, so
this checks what is deterministic at that length: a per-request descriptor leak would add
about 100 descriptors per worker over the second half, against a margin of FD_MARGIN (a
worker may open a few more kept-alive connections as its threads first get used); and RSS
stays under RSS_BOUND_MIB (a worker is about 65 MiB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import soak

from .. import processes
from ..conftest import TEST_KID

SECONDS = 20
RATE = 10
FD_MARGIN = 12
RSS_BOUND_MIB = 250


@pytest.fixture
def served(tmp_path: Path, opa: Any, upstream: Any, jwks_file: Path) -> Any:
    # A small redaction cache, so that it fills and evicts within the run.
    env = processes.sidecar_env(opa.url, upstream.url, tmp_path / "audit.db", jwks_file, REDACT_CACHE_ENTRIES=16)
    sidecar = processes.start_sidecar(tmp_path, env)
    yield sidecar
    sidecar.stop()


def test_short_soak_grows_no_descriptors_and_stays_small(served, private_pem, tmp_path):
    key_file = tmp_path / "care-app-test.pem"
    key_file.write_bytes(private_pem)
    result = soak.run(
        served.url,
        lambda: {"sidecar": served.proc.pid},
        seconds=SECONDS,
        rate=RATE,
        sample_every=1.0,
        key_file=str(key_file),
        kid=TEST_KID,
        work_dir=tmp_path,
    )
    workers = {name: p for name, p in result["processes"].items() if "-worker-" in name}
    assert len(workers) == 2, f"workers replaced or missing: {sorted(result['processes'])}"
    for name, p in workers.items():
        samples = p["samples"]  # [seconds, RSS MiB, descriptors]
        early = max(fds for t, _, fds in samples if t < SECONDS / 2)
        late = [fds for t, _, fds in samples if t >= SECONDS / 2]
        assert late and max(late) <= early + FD_MARGIN, f"{name}: descriptors {early} early, up to {max(late)} late"
        assert p["rss_mib"]["max"] < RSS_BOUND_MIB, f"{name}: RSS {p['rss_mib']['max']} MiB"
    assert result["requests"] == SECONDS * RATE
    # Every kind of request got its expected answer (a busy machine may time a few out).
    for kind, statuses in result["statuses"].items():
        expected = str(next(k.expect for k in soak.KINDS if k.name == kind))
        assert statuses.get(expected, 0) >= 0.9 * sum(statuses.values()), (kind, statuses)
