"""docker-compose.yml and the Dockerfile stay consistent with the project (no Docker engine here).

The compose file is the fleet: N sidecar replicas (`--scale sidecar=N`) behind an nginx load
balancer, one PostgreSQL audit log, OPAs, a static bundle server."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
VERSIONS = dict(
    line.split("=", 1)
    for line in (ROOT / "tools" / "versions.env").read_text().splitlines()
    if "=" in line and not line.startswith("#")
)
# Files `make bundle` produces before `docker compose up`.
GENERATED = {"var/bundles/serve", "var/opa/config.yaml"}


def test_services_are_the_ones_make_run_starts_plus_the_fleets():
    assert set(COMPOSE["services"]) == {
        "bundle-server",
        "opa",
        "demo-upstream",
        "sidecar",
        "postgres",
        "audit-migrate",
        "lb",
    }


def test_the_sidecar_scales_behind_the_load_balancer():
    sidecar = COMPOSE["services"]["sidecar"]
    assert "ports" not in sidecar and "container_name" not in sidecar  # or --scale would clash
    assert COMPOSE["services"]["lb"]["ports"] == ["8080:8080"]
    lb_conf = (ROOT / "deploy" / "nginx-lb.conf").read_text()
    assert "http://$sidecars:8080" in lb_conf and "set $sidecars sidecar;" in lb_conf
    assert "proxy_next_upstream off;" in lb_conf  # a request is decided and audited once


def test_the_replicas_share_one_postgres_log_as_the_writer_role():
    env = COMPOSE["services"]["sidecar"]["environment"]
    url = env["LCR_SIDECAR_AUDIT_STORE_URL"]
    assert url.startswith("postgresql://lcr_sidecar:") and url.endswith("@postgres:5432/lcr_audit")
    assert "LCR_SIDECAR_AUDIT_DB" not in env
    # One checkpoint key for the whole fleet, in the image (COPY dev dev).
    key = env["LCR_SIDECAR_AUDIT_CHECKPOINT_KEY_FILE"]
    assert key.startswith("/app/dev/") and (ROOT / key.removeprefix("/app/")).exists()
    init = (ROOT / "deploy" / "postgres-init.sql").read_text()
    assert "CREATE ROLE lcr_sidecar LOGIN" in init and "IN ROLE lcr_audit_writer" in init
    migrate = COMPOSE["services"]["audit-migrate"]
    assert migrate["command"][:2] == ["lcr-audit", "migrate"] and "lcr_owner" in migrate["command"][-1]
    assert COMPOSE["services"]["sidecar"]["depends_on"]["audit-migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert COMPOSE["services"]["postgres"]["image"].startswith("postgres:15")


def test_bundles_are_served_by_a_static_server_that_revalidates():
    server = COMPOSE["services"]["bundle-server"]
    assert server["image"].startswith("nginx:")
    conf = (ROOT / "deploy" / "nginx-bundles.conf").read_text()
    assert "listen 8282;" in conf and "etag on;" in conf and "max-age=0" in conf


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
    assert "0.0.0.0:8090" in " ".join(COMPOSE["services"]["demo-upstream"]["command"])


def test_dockerfile_runs_as_non_root_with_a_readiness_health_check():
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.M)
    assert users and users[-1] not in {"root", "0"}
    assert "HEALTHCHECK" in dockerfile and "/readyz" in dockerfile
    for copied in re.findall(r"^COPY (\S+) ", dockerfile, flags=re.M):
        assert (ROOT / copied).exists(), copied
