"""docker-compose.yml and the Dockerfile stay consistent with the project (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
VERSIONS = dict(
    line.split("=", 1) for line in (ROOT / "tools" / "versions.env").read_text().splitlines() if "=" in line and not line.startswith("#")
)
# Files `make bundle` produces before `docker compose up`.
GENERATED = {"var/bundles/serve", "var/opa/config.yaml"}


def test_services_are_the_ones_make_run_starts():
    assert set(COMPOSE["services"]) == {"bundle-server", "opa", "demo-upstream", "sidecar"}


def test_opa_image_tag_matches_the_pinned_opa():
    assert COMPOSE["services"]["opa"]["image"] == f"openpolicyagent/opa:{VERSIONS['OPA_VERSION'].lstrip('v')}"


def test_referenced_files_exist_or_are_built_by_make_bundle():
    for name, service in COMPOSE["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                rel = source[2:]
                assert rel in GENERATED or (ROOT / rel).exists(), f"{name}: {source}"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").exists()
    makefile = (ROOT / "Makefile").read_text()
    assert "bundles.build --out var/bundles" in makefile and "--out var/opa/config.yaml" in makefile


def test_wiring_points_at_the_other_services():
    env = COMPOSE["services"]["sidecar"]["environment"]
    assert env["LCR_SIDECAR_OPA_URL"] == "http://opa:8181"
    assert env["LCR_SIDECAR_UPSTREAM_URL"] == "http://demo-upstream:8090/fhir"
    assert COMPOSE["services"]["opa"]["environment"]["BUNDLE_SERVER_URL"] == "http://bundle-server:8282"
    assert "--addr=0.0.0.0:8181" in COMPOSE["services"]["opa"]["command"]
    assert "0.0.0.0:8282" in " ".join(COMPOSE["services"]["bundle-server"]["command"])
    assert "0.0.0.0:8090" in " ".join(COMPOSE["services"]["demo-upstream"]["command"])


def test_dockerfile_runs_as_non_root_with_a_readiness_health_check():
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.M)
    assert users and users[-1] not in {"root", "0"}
    assert "HEALTHCHECK" in dockerfile and "/readyz" in dockerfile
    for copied in re.findall(r"^COPY (\S+) ", dockerfile, flags=re.M):
        assert (ROOT / copied).exists(), copied
