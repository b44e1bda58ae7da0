"""Policy delivery: signed bundles, rejection of bad ones, hot reload under traffic, persistence."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlite_utils
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bundles.build import POLICIES, build, publish_bundle

from .. import processes
from ..roster import publish_seed_roster
from ..seed_table import FULL

ADMIN_INPUT = {
    "subject": {
        "sub": "s1",
        "requesting_organization": "VM101",
        "reason_for_request": "directcare",
        "lcr_access_level": "admin",
    },
    "patient": {"nhs_number": "9990000018", "dob": "1938-04-12"},
    "requested_record": {"nhs_number": "9990000018"},
    "action": "record.read",
    "sections": [],
    "request": {"id": "t", "time": "2026-11-25T00:00:00Z", "date": "2026-11-25"},
}


def changed_policies(tmp: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of policies/ with the access-levels data edited, as a platform team would."""
    target = tmp / f"policies-{time.monotonic_ns()}"
    shutil.copytree(POLICIES, target)
    data_file = target / "lcr" / "config" / "data.yaml"
    data = yaml.safe_load(data_file.read_text())
    change(data)
    data_file.write_text(yaml.safe_dump(data))
    return target


def drop_admin_appointments(data: dict[str, Any]) -> None:
    data["access_levels"]["admin"].remove("appointments")


def decide(opa: processes.Process) -> tuple[list[str], str]:
    answer = requests.post(
        f"{opa.url}/v1/data/lcr/access/decision?provenance=true", json={"input": ADMIN_INPUT}, timeout=2
    ).json()
    return answer["result"]["sections"], answer["provenance"]["bundles"]["lcr"]["revision"]


@pytest.fixture
def delivery(tmp_path: Path) -> Iterator[dict[str, Any]]:
    out = tmp_path / "bundles"
    revision = build(out, opa=processes.opa_binary())
    publish_seed_roster(out, processes.opa_binary())
    server = processes.start_bundle_server(out / "serve", tmp_path)
    opa = processes.start_opa(server.url, tmp_path)
    yield {"out": out, "revision": revision, "server": server, "opa": opa, "tmp": tmp_path}
    opa.stop()
    server.stop()


def _wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _other_key(tmp: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp / "other-key.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def _unsigned(tmp: Path, policies: Path) -> Path:
    path = tmp / "unsigned.tar.gz"
    subprocess.run(
        [
            processes.opa_binary(),
            "build",
            "--bundle",
            str(policies),
            "--ignore",
            "*_test.rego",
            "--revision",
            "unsigned",
            "--output",
            str(path),
        ],
        check=True,
    )
    return path


def _altered(signed: Path, tmp: Path) -> Path:
    """The signed bundle with one data file edited after signing."""
    path = tmp / "altered.tar.gz"
    with tarfile.open(signed) as src, tarfile.open(path, "w:gz") as dst:
        for member in src.getmembers():
            extracted = src.extractfile(member) if member.isfile() else None
            content = extracted.read() if extracted is not None else None
            if member.name == "/data.json":
                assert content is not None
                data = json.loads(content)
                levels = data["lcr"]["config"]["access_levels"]
                levels["no_access"] = levels["registered_manager"]
                content = json.dumps(data).encode()
                member.size = len(content)
            dst.addfile(member, io.BytesIO(content) if content is not None else None)
    return path


@pytest.mark.parametrize("kind", ["unsigned", "wrong-key", "altered-file"])
def test_bad_bundle_is_rejected_and_old_revision_keeps_serving(delivery, kind):
    tmp, out, opa = delivery["tmp"], delivery["out"], delivery["opa"]
    assert decide(opa) == (["alerts", "appointments", "visits_encounters"], delivery["revision"])
    changed = changed_policies(tmp, drop_admin_appointments)
    if kind == "unsigned":
        bad = _unsigned(tmp, changed)
    elif kind == "wrong-key":
        revision = build(tmp / "other", changed, opa=processes.opa_binary(), signing_key=_other_key(tmp), publish=False)
        bad = tmp / "other" / "archive" / f"{revision}.tar.gz"
    else:
        bad = _altered(out / "archive" / f"{delivery['revision']}.tar.gz", tmp)
    publish_bundle(bad, out / "serve")
    assert _wait_for(lambda: "bundle load failed" in opa.log.read_text().lower(), 10), opa.log.read_text()[-2000:]
    time.sleep(1.5)  # several more polls
    assert decide(opa) == (["alerts", "appointments", "visits_encounters"], delivery["revision"])


def test_opa_starts_from_the_persisted_bundle_when_the_server_is_down(delivery):
    opa, server, tmp = delivery["opa"], delivery["server"], delivery["tmp"]
    port = int(opa.url.rsplit(":", 1)[1])
    opa.stop()
    server.stop()
    restarted = processes.start_opa(server.url, tmp, port=port, persist_dir=tmp / f"opa-{port}-persist")
    try:
        assert decide(restarted) == (["alerts", "appointments", "visits_encounters"], delivery["revision"])
    finally:
        restarted.stop()


def test_hot_reload_under_traffic(delivery, upstream, jwks_file, token):
    """Requests flow; a changed bundle is published; decisions and audit rows follow within seconds; none fail."""
    tmp, out, opa = delivery["tmp"], delivery["out"], delivery["opa"]
    audit_db = tmp / "audit.db"
    sidecar = processes.start_sidecar(tmp, processes.sidecar_env(opa.url, upstream.url, audit_db, jwks_file))
    statuses: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                r = session.post(
                    f"{sidecar.url}/v1/menu",
                    json=FULL,
                    headers={"Authorization": f"Bearer {token('admin')}"},
                    timeout=5,
                )
                statuses.append(r.status_code)

    workers = [threading.Thread(target=traffic) for _ in range(3)]
    try:
        for w in workers:
            w.start()
        time.sleep(1.0)
        new_revision = build(out, changed_policies(tmp, drop_admin_appointments), opa=processes.opa_binary())
        published = time.monotonic()
        assert _wait_for(lambda: decide(opa)[1] == new_revision, 10)
        switched_after = time.monotonic() - published
        time.sleep(1.0)
    finally:
        stop.set()
        for w in workers:
            w.join()
        sidecar.stop()
    assert switched_after < 5, f"took {switched_after:.1f}s"
    assert statuses and all(s == 200 for s in statuses), sorted(set(statuses))
    rows = list(
        sqlite_utils.Database(audit_db).query("select policy_revision, sections_allowed from decisions order by seq")
    )
    assert len(rows) == len(statuses)
    revisions = [r["policy_revision"] for r in rows]
    first_new = revisions.index(new_revision)
    assert set(revisions[:first_new]) == {delivery["revision"]}
    assert set(revisions[first_new:]) == {new_revision}  # once switched, never back
    for row in rows[first_new:]:
        assert json.loads(row["sections_allowed"]) == ["alerts", "visits_encounters"]
